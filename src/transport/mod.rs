//! Transport: how connections arrive and leave — `--listen` addresses and
//! their listeners, systemd socket activation and notifications, the write
//! deadline of every connection, the `Host` names ua answers (DNS
//! rebinding). Uses nothing of the crate; knows no route.

pub(crate) mod host_check;
pub(crate) mod listen;
pub(crate) mod systemd;
pub mod write_deadline;

pub use listen::Listener;
