//! Transport: how connections arrive and leave — `--listen` addresses and
//! their listeners, systemd socket activation and notifications, the write
//! deadline of every connection. Uses `support` only; knows no route.

pub mod listen;
pub mod systemd;
pub mod write_deadline;

pub use listen::Listener;
