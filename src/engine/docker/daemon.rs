//! The connection to the daemon, made lazily (the daemon may come and go):
//! ping, runtimes, whether a disk limit is enforced.

use std::time::Duration;

use tokio::sync::Mutex;

use crate::engine::docker::errors::DockerError;

/// A lazily connected Docker client: the daemon may come and go.
pub struct Docker {
    pub(super) client: Mutex<Option<bollard::Docker>>,
    pub(super) state_dir: String,
    /// Whether the daemon enforces a container size limit (`--storage-opt
    /// size`), or why not; `None` until known.
    pub(super) disk_quota: std::sync::Mutex<Option<Result<(), String>>>,
}

impl Docker {
    /// A client for the server whose state lives in `state_dir`.
    pub fn new(state_dir: &std::path::Path) -> Docker {
        Docker {
            client: Mutex::new(None),
            state_dir: state_dir.display().to_string(),
            disk_quota: std::sync::Mutex::new(None),
        }
    }

    pub(super) async fn client(&self) -> Result<bollard::Docker, DockerError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = bollard::Docker::connect_with_defaults()
            .map_err(|e| DockerError::Unreachable(e.to_string()))?;
        let client =
            match tokio::time::timeout(Duration::from_secs(5), client.negotiate_version()).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(DockerError::Unreachable(e.to_string())),
                Err(_) => return Err(DockerError::Unreachable("no answer in 5 s".into())),
            };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Pings the daemon, with a 3 s limit.
    /// Whether containers can get a disk limit here, or why not. Asked of
    /// `docker info` once; a daemon that refuses a limit later corrects it.
    pub async fn disk_quota(&self) -> Result<(), String> {
        if let Some(known) = self.disk_quota.lock().unwrap().clone() {
            return known;
        }
        let info = self
            .client()
            .await
            .map_err(|e| e.to_string())?
            .info()
            .await
            .map_err(|e| DockerError::from(e).to_string())?;
        let driver = info.driver.unwrap_or_default();
        let backing = info
            .driver_status
            .unwrap_or_default()
            .into_iter()
            .find(|pair| pair.first().is_some_and(|k| k == "Backing Filesystem"))
            .and_then(|pair| pair.get(1).cloned())
            .unwrap_or_default();
        let known = if driver == "overlay2" && backing == "xfs" {
            Ok(())
        } else {
            Err(format!(
                "not enforced: the storage driver is {driver} on {backing}; per-container \
                 disk limits need overlay2 on xfs mounted with pquota"
            ))
        };
        *self.disk_quota.lock().unwrap() = Some(known.clone());
        known
    }

    /// The runtimes the daemon knows (`docker info`), sorted.
    pub async fn runtimes(&self) -> Result<Vec<String>, DockerError> {
        let info = self.client().await?.info().await?;
        let mut names: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        names.sort();
        Ok(names)
    }

    /// A clear error for a runtime the daemon does not know (empty: its default).
    pub async fn check_runtime(&self, runtime: &str) -> Result<(), DockerError> {
        if runtime.is_empty() {
            return Ok(());
        }
        let known = self.runtimes().await?;
        if known.iter().any(|r| r == runtime) {
            return Ok(());
        }
        Err(DockerError::Api {
            status: 400,
            message: format!(
                "the Docker daemon has no runtime {runtime:?} (it has: {}); register it in \
                 daemon.json (docs/OPERATING.md, \"A sandboxed runtime\")",
                known.join(", ")
            ),
        })
    }

    /// Whether the daemon answers, within 3 seconds.
    pub async fn ping(&self) -> Result<(), DockerError> {
        let client = self.client().await?;
        match tokio::time::timeout(Duration::from_secs(3), client.ping()).await {
            Ok(result) => result.map(drop).map_err(DockerError::from),
            Err(_) => Err(DockerError::Unreachable("no answer in 3 s".into())),
        }
    }
}
