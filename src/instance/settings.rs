//! What the instance layer reads of the server's settings: made of
//! `ua serve`'s flags at the edge (`server`), swapped whole by a reload.

use std::path::PathBuf;
use std::time::Duration;

use crate::assignment::base_images::PullPolicy;
use crate::instance::tables::Caps;

/// The settings the registry and everything under it go by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--assignments`: the root of the assignment templates.
    pub assignments: PathBuf,
    /// The static agent on the host, bind-mounted into new containers.
    pub agent: PathBuf,
    /// `--node-id`: the prefix of new instance IDs.
    pub node_id: Option<String>,
    /// `--instance-expiry`: how long an instance without sessions is kept.
    pub instance_expiry: Duration,
    /// `--reattach-grace`: how long a terminal outlives its websocket.
    pub reattach_grace: Duration,
    /// `--replay-bytes`: recent output replayed to a reconnecting client.
    pub replay_bytes: usize,
    /// `--max-keep`: the longest a spec's `keepUntil` may keep an instance.
    pub max_keep: Duration,
    /// `--warm`: free containers kept per shared-image assignment.
    pub warm: usize,
    /// The limits on instances and builds.
    pub caps: Caps,
    /// Each container's limits: the defaults and the maxima.
    pub limits: LimitSettings,
    /// `--build-timeout`: the longest an image build may take.
    pub build_timeout: Duration,
    /// `--build-network`: whether builds reach the network.
    pub build_network: bool,
    /// `--pull`: when a build's base images are pulled.
    pub pull: PullPolicy,
}

/// A container's limits when the assignment asks for none (`--memory-mb`
/// and the like), and the most it may ask for (`--max-memory-mb` …).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// `--memory-mb`.
    pub memory_mb: i64,
    /// `--pids-limit`.
    pub pids_limit: i64,
    /// `--cpus`.
    pub cpus: f64,
    /// `--disk-mb`; 0: none.
    pub disk_mb: i64,
    /// `--runtime`; empty: the daemon's default.
    pub runtime: String,
    /// `--max-memory-mb`.
    pub max_memory_mb: i64,
    /// `--max-pids-limit`.
    pub max_pids_limit: i64,
    /// `--max-cpus`.
    pub max_cpus: f64,
    /// `--max-disk-mb`.
    pub max_disk_mb: i64,
    /// `--max-terminals`.
    pub max_terminals: u32,
}
