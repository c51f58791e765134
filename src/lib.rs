//! ua (uAssign): a sealed spec becomes a Docker container and a terminal in
//! the browser. The code stands in folders by layer; each folder's `mod.rs`
//! says what it owns and what it may use, and arrows run one way only
//! (`tests/layers.rs` keeps it so):
//!
//! - `support`: durations and the clock, live values, stdout
//! - `protocol`: wire types: the spec, terminado, close codes, the admin socket
//! - `crypto`: the key file and sealing, route tokens, handles, instance IDs
//! - `telemetry`: metrics, create timings, progress, panics, logging
//! - `assignment`: assignments on disk, their images, base images, files
//! - `engine`: Docker (`engine::docker`), the gate, OOM events
//! - `transport`: `--listen`, listeners, systemd, the write deadline
//! - `config`: the flags of `ua serve` (read by `server` only)
//! - `terminal`: one running terminal, its flow control and replay
//! - `instance`: the registry and everything that makes, keeps and removes instances
//! - `server`: `ua serve` put together: HTTP by route, sessions, observers, admin, reload
//!
//! Apart, using only what they need: `client` (the API's other side,
//! `ua connect`, the admin verbs) and `bench` (`ua bench`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assignment;
pub mod bench;
pub mod client;
pub mod config;
pub mod crypto;
mod engine;
pub mod instance;
pub mod protocol;
pub mod server;
pub mod support;
pub mod telemetry;
mod terminal;
pub mod transport;
