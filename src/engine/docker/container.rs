//! Containers: created with their limits, started, attached, signalled,
//! resized, stopped, renamed and removed.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder,
};

use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::{ignore_missing, ignore_not_modified, DockerError};
use crate::engine::docker::exec::Attached;

/// Seconds `docker stop` waits before it kills.
pub(super) const STOP_GRACE_SECS: i32 = 2;

/// Resource limits of one container (docs/API.md, "Containers").
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes (swap the same).
    pub memory_bytes: i64,
    /// Process limit.
    pub pids: i64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: i64,
    /// Size limit of the writable layer in bytes; 0: none.
    pub disk_bytes: i64,
    /// Docker runtime (`runsc`); empty: the daemon's default.
    pub runtime: String,
}

/// Open files per process (`nofile`, soft and hard) in every container:
/// bounds what one process holds of the host's per-user pools (inotify
/// instances, ptys) under runc, where every student is the same host uid.
pub const NOFILE: i64 = 1024;

/// Host tasks a gVisor sandbox spends on each of its processes: under the
/// ptrace platform every process is a host stub plus the sentry's threads
/// (measured here: ~9 each), and Docker's pids limit counts host tasks.
const GVISOR_TASKS_PER_PROCESS: i64 = 10;
/// The sentry's own tasks before the first process (measured: ~45).
const GVISOR_BASE_TASKS: i64 = 64;

/// Capabilities a shell session may need: file ownership and permissions,
/// signals, and switching user; everything else is dropped.
pub(super) const CAPABILITIES: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
];

impl Limits {
    /// Docker's pids limit for these limits: the student's process limit,
    /// in host tasks under gVisor (else its sandbox dies near a tenth of it).
    fn host_pids(&self) -> i64 {
        if self.runtime.starts_with("runsc") {
            self.pids * GVISOR_TASKS_PER_PROCESS + GVISOR_BASE_TASKS
        } else {
            self.pids
        }
    }

    /// The limits as one label value (a warm-pool container carries them).
    pub fn label(&self) -> String {
        let label = format!(
            "memory={},pids={},nanocpus={},disk={}",
            self.memory_bytes, self.pids, self.nano_cpus, self.disk_bytes
        );
        // Older pool containers (the daemon's default runtime) keep their label.
        match self.runtime.as_str() {
            "" => label,
            runtime => format!("{label},runtime={runtime}"),
        }
    }
}

impl Docker {
    /// The container's memory limit in bytes (0: none or unknown).
    pub async fn memory_limit(&self, container: &str) -> i64 {
        let Ok(client) = self.client().await else {
            return 0;
        };
        client
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.host_config?.memory)
            .unwrap_or(0)
    }

    /// Creates a stopped container of `image` whose main process is
    /// `entrypoint`: with `agent` (its bind mounts) ua's agent, which holds
    /// the terminals; without, the terminal behind its gate (see
    /// [`crate::engine::gate`]) on a TTY that stays open between attaches.
    /// It runs as root: a setup exec as root has the container's
    /// capabilities only then. Docker keeps no log of it, so terminal
    /// output is never written to disk.
    pub async fn create_container(
        &self,
        name: &str,
        image: &str,
        entrypoint: Vec<String>,
        labels: &HashMap<String, String>,
        limits: &Limits,
        agent: Option<Vec<String>>,
    ) -> Result<String, DockerError> {
        // The agent holds the terminals: the main process needs no TTY.
        let tty = agent.is_none();
        let mut binds = vec![crate::engine::gate::gosu_mount()];
        binds.extend(agent.unwrap_or_default());
        let host_config = host_config(limits, binds);
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(entrypoint),
            cmd: Some(vec![]),
            labels: Some(labels.clone()),
            user: Some("0:0".into()),
            tty: Some(tty),
            open_stdin: Some(tty),
            stdin_once: Some(false),
            attach_stdin: Some(tty),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            env: Some(vec!["TERM=xterm-256color".into()]),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        self.check_runtime(&limits.runtime).await?;
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let mut body = body;
        let want_quota = limits.disk_bytes > 0 && self.disk_quota().await.is_ok();
        if want_quota {
            let size = HashMap::from([("size".to_string(), limits.disk_bytes.to_string())]);
            body.host_config
                .get_or_insert_with(Default::default)
                .storage_opt = Some(size);
        }
        let client = self.client().await?;
        let created = match client
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Err(BollardError::DockerResponseServerError { message, .. })
                if want_quota && message.contains("storage-opt") =>
            {
                log::warn!("per-container disk limits are not enforced: {message}");
                *self.disk_quota.lock().unwrap() = Some(Err(format!("not enforced: {message}")));
                if let Some(host) = body.host_config.as_mut() {
                    host.storage_opt = None;
                }
                client.create_container(Some(options), body).await?
            }
            other => other?,
        };
        Ok(created.id)
    }

    /// Whether the container exists (running or not).
    pub async fn container_exists(&self, container: &str) -> Result<bool, DockerError> {
        let result = self
            .client()
            .await?
            .inspect_container(container, None::<InspectContainerOptions>)
            .await;
        match result.map_err(DockerError::from) {
            Ok(_) => Ok(true),
            Err(DockerError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts a container; one already running is fine.
    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        let result = self
            .client()
            .await?
            .start_container(container, None::<StartContainerOptions>)
            .await;
        ignore_not_modified(result)
    }

    /// Attaches to the TTY of a container's main process, running or not
    /// (attach before a start to see its first output). Dropping the
    /// streams leaves the process running.
    pub async fn attach(&self, container: &str) -> Result<Attached, DockerError> {
        let version = self.client().await?.client_version().to_string();
        crate::engine::docker::attach::attach(&version, container).await
    }

    /// Sends `signal` (`SIGWINCH`...) to the container's main process.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        Ok(self
            .client()
            .await?
            .kill_container(container, Some(options))
            .await?)
    }

    /// Resizes a container's TTY.
    pub async fn resize_tty(
        &self,
        container: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), DockerError> {
        let options = ResizeContainerTTYOptionsBuilder::new()
            .h(rows.into())
            .w(cols.into())
            .build();
        Ok(self
            .client()
            .await?
            .resize_container_tty(container, options)
            .await?)
    }

    /// Whether the container's main process runs.
    pub async fn is_running(&self, container: &str) -> Result<bool, DockerError> {
        let inspect = self
            .client()
            .await?
            .inspect_container(container, None::<InspectContainerOptions>)
            .await?;
        Ok(inspect.state.and_then(|s| s.running).unwrap_or(false))
    }

    /// Stops a container (killed after 2 s); one already stopped is fine.
    pub async fn stop(&self, container: &str) -> Result<(), DockerError> {
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_GRACE_SECS)
            .build();
        let result = self
            .client()
            .await?
            .stop_container(container, Some(options))
            .await;
        ignore_not_modified(result)
    }

    /// Removes a container, running or not; a missing one is fine.
    pub async fn remove_container(&self, container: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let result = self
            .client()
            .await?
            .remove_container(container, Some(options))
            .await;
        ignore_missing(result)
    }

    /// Renames a container (running or not).
    pub async fn rename(&self, container: &str, name: &str) -> Result<(), DockerError> {
        let options = bollard::query_parameters::RenameContainerOptions {
            name: name.to_string(),
        };
        Ok(self
            .client()
            .await?
            .rename_container(container, options)
            .await?)
    }
}

/// The limits and isolation of every container ua makes (docs/API.md,
/// "Containers"), with `binds` mounted.
fn host_config(limits: &Limits, binds: Vec<String>) -> HostConfig {
    HostConfig {
        network_mode: Some("none".into()),
        memory: Some(limits.memory_bytes),
        memory_swap: Some(limits.memory_bytes),
        pids_limit: Some(limits.host_pids()),
        nano_cpus: Some(limits.nano_cpus),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        init: Some(true),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(NOFILE),
            hard: Some(NOFILE),
        }]),
        runtime: Some(limits.runtime.clone()).filter(|r| !r.is_empty()),
        binds: Some(binds),
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvisor_pids_limits_count_host_tasks() {
        let mut limits = Limits {
            memory_bytes: 1,
            pids: 256,
            nano_cpus: 1,
            disk_bytes: 0,
            runtime: String::new(),
        };
        assert_eq!(limits.host_pids(), 256);
        limits.runtime = "runsc".into();
        assert_eq!(limits.host_pids(), 256 * 10 + 64);
    }
}
