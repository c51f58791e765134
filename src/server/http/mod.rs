//! HTTP, by route: the connection loop (`connection`), the route table
//! (`router`), `POST /spec` and its clean (`spec`), the websocket
//! (`websocket`), graded files (`files`), pages and probes (`pages`), CORS
//! and origins (`cors`), and what they share (`app`, `respond`). Uses the
//! registry, sessions and observers; knows nothing of bollard. Inside,
//! files name each other; the rest of the server uses what is re-exported.

mod app;
mod check;
mod connection;
mod cors;
mod files;
mod pages;
mod respond;
mod router;
mod spec;
mod terminals;
mod websocket;

pub use app::App;
pub use connection::serve;
