//! Client: the API from the other side — `Server` (`POST /spec`, the
//! websocket, http or https), TLS for it, `ua connect`, `ua check`, `ua cp`, and the admin verbs
//! `ua status`, `ua list`, `ua top`, `ua clean` on the admin socket. Uses `support`,
//! `protocol`, `crypto`, `telemetry`; nothing of the server.

pub mod admin;
pub mod api;
pub mod check;
pub mod connect;
pub mod copy;
pub mod listing;
pub(crate) mod tls;
pub mod top;
