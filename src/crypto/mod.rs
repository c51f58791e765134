//! Crypto: the key file and sealing, route tokens, instance handles and
//! instance IDs. Uses `support` and `protocol`.

pub mod handle;
pub mod ids;
pub mod route;
pub mod seal;
