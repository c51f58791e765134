//! Crypto: the key file and sealing, route tokens, instance handles and
//! instance IDs. Uses `protocol` only.

pub(crate) mod handle;
pub(crate) mod ids;
pub mod route;
pub mod seal;
