//! The `/health` probe: Docker answers and the state directory takes writes.
//! Cached for [`PROBE_PERIOD`], so any rate of `/health` costs Docker at most
//! one ping per period; concurrent requests share one probe.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::engine::docker::Docker;

/// How long one probe's answer is served.
pub const PROBE_PERIOD: Duration = Duration::from_secs(2);

/// What one probe found: `Ok` or a sentence saying what is wrong.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Whether Docker answers a ping.
    pub docker: Result<(), String>,
    /// Whether the state directory takes writes.
    pub state_dir: Result<(), String>,
    /// Whether container disk limits are enforced; never makes ua unhealthy.
    pub disk_quota: Result<(), String>,
}

impl Probe {
    /// Whether ua is healthy: Docker answers and the state directory takes writes.
    pub fn ok(&self) -> bool {
        self.docker.is_ok() && self.state_dir.is_ok()
    }
}

/// The cached probe of one server.
pub struct Health {
    docker: Arc<Docker>,
    state_dir: PathBuf,
    last: Mutex<Option<(Instant, Probe)>>,
}

impl Health {
    /// A probe of `docker` and `state_dir`; nothing is probed until asked.
    pub fn new(docker: Arc<Docker>, state_dir: &Path) -> Health {
        Health {
            docker,
            state_dir: state_dir.to_path_buf(),
            last: Mutex::new(None),
        }
    }

    /// The latest probe, made anew when the cached one is older than the period.
    pub async fn probe(&self) -> Probe {
        let mut last = self.last.lock().await;
        if let Some((at, probe)) = last.as_ref() {
            if at.elapsed() < PROBE_PERIOD {
                return probe.clone();
            }
        }
        let probe = Probe {
            docker: self.docker.ping().await.map_err(|e| e.to_string()),
            state_dir: state_dir_writable(&self.state_dir).await,
            disk_quota: self.docker.disk_quota().await,
        };
        *last = Some((Instant::now(), probe.clone()));
        probe
    }
}

async fn state_dir_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(".health-probe");
    tokio::fs::write(&probe, b"ok")
        .await
        .map_err(|e| format!("state directory {} is not writable: {e}", dir.display()))?;
    let _ = tokio::fs::remove_file(&probe).await;
    Ok(())
}
