//! Every call ua makes to the Docker daemon, through bollard. Knows nothing
//! of specs or HTTP: it builds, creates, starts, stops, removes and execs.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    ResizeExecOptions, StartContainerOptions, StopContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;
use tokio::sync::Mutex;

/// Label on everything ua makes in Docker: `ua.owned=true`.
pub const LABEL_OWNED: &str = "ua.owned";
/// Label naming the instance a container or image belongs to.
pub const LABEL_INSTANCE: &str = "ua.instance";
/// Which server (by state directory) made an object: two servers sharing a
/// daemon never reconcile away each other's instances.
pub const LABEL_STATE_DIR: &str = "ua.state-dir";
/// Lines of build output kept for the error a failed build reports.
const BUILD_TAIL_LINES: usize = 20;
/// Read buffer of an exec's output stream.
const EXEC_READ_BYTES: usize = 8 * 1024;
/// Longest build output line kept.
const BUILD_LINE_CHARS: usize = 500;
/// Seconds `docker stop` waits before it kills.
const STOP_GRACE_SECS: i32 = 2;
/// The container's own process: an idle loop under Docker's init, so that
/// terminals run as execs beside it and a stop ends promptly.
const KEEP_ALIVE: [&str; 3] = [
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];

/// A failed Docker call.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon did not answer (or its socket is missing).
    #[error("the Docker daemon is unreachable: {0}")]
    Unreachable(String),
    /// The daemon answered with an error status.
    #[error("Docker answered {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The object does not exist (404).
    #[error("not found")]
    NotFound,
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> DockerError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => DockerError::NotFound,
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api {
                status: status_code,
                message,
            },
            other => DockerError::Unreachable(other.to_string()),
        }
    }
}

/// A failed image build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The build ran and failed.
    #[error("the image did not build")]
    Failed {
        /// The build's last output lines; they may show spec data.
        tail: Vec<String>,
    },
    /// Docker itself failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Resource limits of one container (docs/API.md, "Containers").
#[derive(Debug, Clone)]
pub struct Limits {
    /// Memory limit in bytes (swap the same).
    pub memory_bytes: i64,
    /// Process limit.
    pub pids: i64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: i64,
    /// Size limit of the writable layer in bytes; 0: none.
    pub disk_bytes: i64,
}

/// Capabilities a shell session may need: file ownership and permissions,
/// signals, and switching user; everything else is dropped.
const CAPABILITIES: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
];

/// What ua owns in Docker, found by label.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Docker's ID of the object.
    pub id: String,
    /// Its `ua.instance` label, if any.
    pub instance_id: Option<String>,
    /// Whether it runs (containers only).
    pub running: bool,
}

/// A running TTY exec: its output stream and its input.
pub struct Exec {
    /// The exec's ID, for resizing and inspecting it.
    pub id: String,
    /// The TTY's output, raw bytes.
    pub output: Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>,
    /// The TTY's input.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// A lazily connected Docker client: the daemon may come and go.
pub struct Docker {
    client: Mutex<Option<bollard::Docker>>,
    state_dir: String,
    /// Whether the daemon enforces a container size limit (`--storage-opt
    /// size`), or why not; `None` until known.
    disk_quota: std::sync::Mutex<Option<Result<(), String>>>,
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

    /// The labels of everything made for `instance_id`.
    pub fn labels(&self, instance_id: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_OWNED.to_string(), "true".to_string()),
            (LABEL_INSTANCE.to_string(), instance_id.to_string()),
            (LABEL_STATE_DIR.to_string(), self.state_dir.clone()),
        ])
    }

    fn owned_filter(&self) -> HashMap<String, Vec<String>> {
        let labels = vec![
            format!("{LABEL_OWNED}=true"),
            format!("{LABEL_STATE_DIR}={}", self.state_dir),
        ];
        HashMap::from([("label".to_string(), labels)])
    }

    async fn client(&self) -> Result<bollard::Docker, DockerError> {
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

    pub async fn ping(&self) -> Result<(), DockerError> {
        let client = self.client().await?;
        match tokio::time::timeout(Duration::from_secs(3), client.ping()).await {
            Ok(result) => result.map(drop).map_err(DockerError::from),
            Err(_) => Err(DockerError::Unreachable("no answer in 3 s".into())),
        }
    }

    /// Builds `context` (a tar) into `tag`, never pulling, with the labels.
    pub async fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        labels: &HashMap<String, String>,
        network: bool,
    ) -> Result<(), BuildError> {
        let client = self.client().await?;
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(tag)
            .labels(labels)
            .networkmode(if network { "default" } else { "none" })
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            client.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut tail = std::collections::VecDeque::with_capacity(BUILD_TAIL_LINES);
        let mut keep = |text: &str| {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if tail.len() == BUILD_TAIL_LINES {
                    tail.pop_front();
                }
                // Bounded: a build printing megabytes in one line stays small here.
                let mut line = line.to_string();
                if line.len() > BUILD_LINE_CHARS {
                    let cut = line.floor_char_boundary(BUILD_LINE_CHARS);
                    line.truncate(cut);
                    line.push('…');
                }
                tail.push_back(line);
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        keep(text);
                    }
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        keep(&detail);
                        return Err(BuildError::Failed { tail: tail.into() });
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    keep(&error);
                    return Err(BuildError::Failed { tail: tail.into() });
                }
                Err(BollardError::DockerResponseServerError { message, .. }) => {
                    keep(&message);
                    return Err(BuildError::Failed { tail: tail.into() });
                }
                Err(e) => return Err(BuildError::Docker(e.into())),
            }
        }
        Ok(())
    }

    /// The image's own command: ENTRYPOINT followed by CMD.
    pub async fn image_command(&self, image: &str) -> Result<Vec<String>, DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        let config = config.unwrap_or_default();
        let mut command = config.entrypoint.unwrap_or_default();
        command.extend(config.cmd.unwrap_or_default());
        Ok(command)
    }

    /// Creates a stopped container of `image` that runs the keep-alive.
    pub async fn create_container(
        &self,
        name: &str,
        image: &str,
        labels: &HashMap<String, String>,
        limits: &Limits,
    ) -> Result<String, DockerError> {
        let host_config = HostConfig {
            network_mode: Some("none".into()),
            memory: Some(limits.memory_bytes),
            memory_swap: Some(limits.memory_bytes),
            pids_limit: Some(limits.pids),
            nano_cpus: Some(limits.nano_cpus),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            init: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
            cmd: Some(vec![]),
            labels: Some(labels.clone()),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
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

    /// Starts a container; one already running is fine.
    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        let result = self
            .client()
            .await?
            .start_container(container, None::<StartContainerOptions>)
            .await;
        ignore_not_modified(result)
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

    /// Removes an image; a missing one is fine.
    pub async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        let result = self
            .client()
            .await?
            .remove_image(image, Some(options), None)
            .await;
        ignore_missing(result)
    }

    /// Every container of this server (by label), running or not.
    pub async fn owned_containers(&self) -> Result<Vec<Owned>, DockerError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&self.owned_filter())
            .build();
        let list = self.client().await?.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|c| Owned {
                id: c.id.unwrap_or_default(),
                instance_id: c.labels.and_then(|mut l| l.remove(LABEL_INSTANCE)),
                running: c.state.is_some_and(|s| s.to_string() == "running"),
            })
            .collect())
    }

    /// Every image of this server (by label).
    pub async fn owned_images(&self) -> Result<Vec<Owned>, DockerError> {
        let options = ListImagesOptionsBuilder::new()
            .filters(&self.owned_filter())
            .build();
        let list = self.client().await?.list_images(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|i| Owned {
                id: i.id,
                instance_id: i.labels.get(LABEL_INSTANCE).cloned(),
                running: false,
            })
            .collect())
    }

    /// Starts `command` in a TTY inside the running container, as the image's
    /// USER, in its WORKDIR, with its ENV.
    pub async fn exec(&self, container: &str, command: Vec<String>) -> Result<Exec, DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            env: Some(vec!["TERM=xterm-256color".into()]),
            cmd: Some(command),
            ..Default::default()
        };
        let created = client.create_exec(container, config).await?;
        // Big reads: a flood arrives in few chunks (a TTY exec's frames are raw bytes).
        let start = StartExecOptions {
            output_capacity: Some(EXEC_READ_BYTES),
            ..Default::default()
        };
        match client.start_exec(&created.id, Some(start)).await? {
            StartExecResults::Attached { output, input } => Ok(Exec {
                id: created.id,
                output,
                input,
            }),
            StartExecResults::Detached => Err(DockerError::Api {
                status: 500,
                message: "the exec started detached".into(),
            }),
        }
    }

    /// Whether an exec's process still runs.
    pub async fn exec_running(&self, exec: &str) -> Result<bool, DockerError> {
        let inspect = self.client().await?.inspect_exec(exec).await?;
        Ok(inspect.running.unwrap_or(false))
    }

    /// Resizes an exec's TTY (only after the exec has started).
    pub async fn resize(&self, exec: &str, rows: u16, cols: u16) -> Result<(), DockerError> {
        let options = ResizeExecOptions {
            h: rows.into(),
            w: cols.into(),
        };
        Ok(self.client().await?.resize_exec(exec, options).await?)
    }

    /// The image's working directory (`/` when it sets none).
    pub async fn image_workdir(&self, image: &str) -> Result<String, DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        let dir = config.and_then(|c| c.working_dir).unwrap_or_default();
        Ok(if dir.is_empty() { "/".into() } else { dir })
    }

    /// The start of Docker's tar archive of `path` in a container (running
    /// or not), at most `limit` bytes of it; `None` when the path is missing.
    pub async fn read_archive(
        &self,
        container: &str,
        path: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let options = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let client = self.client().await?;
        let mut stream = client.download_from_container(container, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(DockerError::from) {
                Ok(chunk) => archive.extend_from_slice(&chunk),
                Err(DockerError::NotFound) => return Ok(None),
                // Docker answers 400 for some unreadable paths: treat as missing.
                Err(DockerError::Api { status: 400, .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
            if archive.len() >= limit {
                archive.truncate(limit);
                break;
            }
        }
        Ok(Some(archive))
    }
}

/// Docker answers 304 when a container already is in the asked state.
fn ignore_not_modified(result: Result<(), BollardError>) -> Result<(), DockerError> {
    match result {
        Ok(())
        | Err(BollardError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removing what is already gone is fine.
fn ignore_missing<T>(result: Result<T, BollardError>) -> Result<(), DockerError> {
    match result.map_err(DockerError::from) {
        Ok(_) | Err(DockerError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}
