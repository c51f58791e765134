//! Protocol: the wire types, shared by the server and every client — the
//! plaintext spec, the terminado messages, a check's verdict, websocket close codes, the
//! admin socket's requests and answers. Uses nothing of the crate.

pub(crate) mod admin;
pub mod check;
pub(crate) mod close;
pub mod spec;
pub mod terminado;
