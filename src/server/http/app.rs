//! What every request handler shares: the registry, the keys, the settings
//! and the live values a reload swaps.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeConfig;
use crate::crypto::seal::Keyring;
use crate::instance::registry::Registry;
use crate::server::health::Health;
use crate::server::web::WebAssets;
use crate::support::live::Swap;

/// Everything a request handler needs.
pub struct App {
    /// The server's settings in force (swapped by a reload; the registry
    /// gets its part as `instance::settings::Settings`).
    pub config: Swap<ServeConfig>,
    /// The live instances.
    pub registry: Arc<Registry>,
    /// The cached `/health` probe.
    pub health: Health,
    /// The keys that open specs (swapped by a reload).
    pub keys: Swap<Keyring>,
    /// The allowed origins; `None` allows any (swapped by a reload).
    pub origins: Swap<Option<Vec<String>>>,
    /// Origins of this server's own pages (`--public-origin`; swapped by a reload).
    pub public_origins: Swap<Vec<String>>,
    /// The `Host` names answered (swapped by a reload).
    pub hosts: Swap<crate::transport::host_check::AllowedHosts>,
    /// The websocket session tasks, for shutdown and the gauges.
    pub sessions: TaskTracker,
    /// The browser terminal, when on and built.
    pub web: Option<WebAssets>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}
