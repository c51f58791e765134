//! Every call ua makes to the Docker daemon, through bollard. Knows nothing
//! of specs or HTTP: it builds, creates, starts, stops, removes and execs.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, HostConfigLogConfig, ResourcesUlimits,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, ResizeContainerTTYOptionsBuilder, ResizeExecOptions,
    StartContainerOptions, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
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
/// `instance` (per-instance container or image; also when missing, as older
/// versions made them) or `assignment` (an image shared by an assignment's instances).
pub const LABEL_KIND: &str = "ua.kind";
/// The assignment (dotted name) an assignment image, a warm-pool container
/// or an instance's container belongs to.
pub const LABEL_ASSIGNMENT: &str = "ua.assignment";
/// The handle (`crate::handle`) of the instance a container belongs to:
/// `docker ps` and Docker's events name the student without the ID.
pub const LABEL_HANDLE: &str = "ua.handle";
/// The content hash an assignment image was built from.
pub const LABEL_ASSIGNMENT_HASH: &str = "ua.assignment-hash";
/// The [`LABEL_KIND`] of an assignment image.
pub const KIND_ASSIGNMENT: &str = "assignment";
const KIND_INSTANCE: &str = "instance";
/// The [`LABEL_KIND`] of a warm-pool container (`crate::pool`).
pub const KIND_POOL: &str = "pool";
/// The limits a warm-pool container was made with, as `Limits::label` writes them.
pub const LABEL_POOL_LIMITS: &str = "ua.pool-limits";
/// Name prefix of a free warm-pool container; a claimed one is renamed
/// `ua-<instance>` (instance names never start with this).
pub const POOL_NAME_PREFIX: &str = "ua_pool-";
/// Largest file read out of a container (`/etc/passwd`, `/etc/group`).
const MAX_READ_BYTES: usize = 1 << 20;
/// Lines of build output kept for the error a failed build reports.
const BUILD_TAIL_LINES: usize = 20;
/// Read buffer of an exec's output stream.
const EXEC_READ_BYTES: usize = 8 * 1024;
/// Longest build output line kept.
const BUILD_LINE_CHARS: usize = 500;
/// Detach keys of a TTY exec (containers made before the gate only; the
/// terminal's attach has an untypeable key, see `crate::raw_attach`). An
/// exec's keys travel in JSON, which cannot carry a non-UTF-8 byte, so
/// these stay typeable (SECURITY.md, residual risks).
const DETACH_KEYS: &str = "ctrl-^,ctrl-^,ctrl-^";
/// Seconds `docker stop` waits before it kills.
const STOP_GRACE_SECS: i32 = 2;

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
    /// The build ran past its time limit and was stopped.
    #[error("the build took longer than {0:?}")]
    TimedOut(Duration),
    /// Docker itself failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

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
const CAPABILITIES: [&str; 7] = [
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

/// What ua owns in Docker, found by label.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Docker's ID of the object.
    pub id: String,
    /// Its `ua.instance` label, if any; for a claimed warm-pool container,
    /// the instance its name (`ua-<instance>`) says.
    pub instance_id: Option<String>,
    /// Whether it runs (containers only).
    pub running: bool,
    /// Set on a free (unclaimed) warm-pool container.
    pub pool: Option<Pooled>,
}

/// A free warm-pool container's labels and image.
#[derive(Debug, Clone)]
pub struct Pooled {
    /// Its name (`ua_pool-…`).
    pub name: String,
    /// The assignment (dotted) it was made for.
    pub assignment: String,
    /// The image it was created from, as given at creation (the tag).
    pub image: String,
    /// Its limits, as `Limits::label` wrote them.
    pub limits: String,
}

/// An image ua made, found by label.
#[derive(Debug, Clone)]
pub struct OwnedImage {
    /// The image's ID.
    pub id: String,
    /// The image's tags.
    pub tags: Vec<String>,
    /// Set on per-instance images.
    pub instance_id: Option<String>,
    /// Set on assignment images: the assignment's name and content hash.
    pub assignment: Option<(String, String)>,
}

/// What a finished non-TTY exec left: its exit status and last output lines.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// The exit status (-1 when Docker does not know it).
    pub status: i64,
    /// The last lines of output, for the error of a failed run.
    pub tail: Vec<String>,
}

/// A container's TTY, attached: its main process's output and input.
pub struct Attached {
    /// The TTY's output, raw bytes.
    pub output: Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>,
    /// The TTY's input.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
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

/// A non-TTY exec's standard output, as it comes.
pub struct ExecOutput {
    /// The exec's ID, for its exit status.
    pub id: String,
    /// The bytes it writes to its standard output.
    pub stdout: Pin<Box<dyn Stream<Item = Result<bytes::Bytes, DockerError>> + Send>>,
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
            (LABEL_KIND.to_string(), KIND_INSTANCE.to_string()),
        ])
    }

    /// The labels of an assignment image.
    pub fn assignment_labels(&self, assignment: &str, hash: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_OWNED.to_string(), "true".to_string()),
            (LABEL_STATE_DIR.to_string(), self.state_dir.clone()),
            (LABEL_KIND.to_string(), KIND_ASSIGNMENT.to_string()),
            (LABEL_ASSIGNMENT.to_string(), assignment.to_string()),
            (LABEL_ASSIGNMENT_HASH.to_string(), hash.to_string()),
        ])
    }

    /// The labels of a warm-pool container of `assignment` made with `limits`.
    pub fn pool_labels(&self, assignment: &str, limits: &Limits) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_OWNED.to_string(), "true".to_string()),
            (LABEL_STATE_DIR.to_string(), self.state_dir.clone()),
            (LABEL_KIND.to_string(), KIND_POOL.to_string()),
            (LABEL_ASSIGNMENT.to_string(), assignment.to_string()),
            (LABEL_POOL_LIMITS.to_string(), limits.label()),
        ])
    }

    fn owned_filter(&self) -> HashMap<String, Vec<String>> {
        let labels = vec![
            format!("{LABEL_OWNED}=true"),
            format!("{LABEL_STATE_DIR}={}", self.state_dir),
        ];
        HashMap::from([("label".to_string(), labels)])
    }

    /// The daemon's client, for a module that streams from it (`trouble`).
    pub(crate) async fn raw_client(&self) -> Result<bollard::Docker, DockerError> {
        self.client().await
    }

    /// The `ua.state-dir` label value of this server's objects.
    pub(crate) fn state_dir_label(&self) -> &str {
        &self.state_dir
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

    /// Builds `context` (a tar) into `tag`, never pulling, with the labels.
    /// Builds `context` into `tag` within `limit`. A build that fails or runs
    /// out of time leaves nothing: the step images it made are removed (the
    /// classic builder keeps them, unlabelled, and they hold whatever the
    /// rendered context put into them).
    pub async fn build_within(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        labels: &HashMap<String, String>,
        network: bool,
        limit: Duration,
    ) -> Result<(), BuildError> {
        let mut steps = Vec::new();
        let building = self.build(context, dockerfile, tag, labels, network, &mut steps);
        // Dropping the build request makes the daemon cancel the build.
        let result = match tokio::time::timeout(limit, building).await {
            Ok(result) => result,
            Err(_) => Err(BuildError::TimedOut(limit)),
        };
        if result.is_err() {
            let _ = self.remove_image(tag).await;
            for step in steps.iter().rev() {
                if let Err(e) = self.remove_step_image(step).await {
                    log::warn!("step image {step} of a failed build not removed: {e}");
                }
            }
        }
        result
    }

    /// Removes one image left by a failed build, leaving its parents alone.
    async fn remove_step_image(&self, image: &str) -> Result<(), DockerError> {
        self.remove_image_with(image, RemoveImageOptionsBuilder::new().noprune(true))
            .await
    }

    /// Builds `context` into `tag`, never pulling, with the labels; the IDs
    /// of the step images it makes (not those taken from the cache, nor the
    /// `FROM` image) are added to `steps` as they appear.
    async fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        labels: &HashMap<String, String>,
        network: bool,
        steps: &mut Vec<String>,
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
        let mut tail = Tail::default();
        let mut step_images = StepImages::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        tail.keep(text);
                        crate::progress::build_line(text);
                        steps.extend(step_images.made_in(text));
                    }
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        tail.keep(&detail);
                        return Err(BuildError::Failed { tail: tail.into() });
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    tail.keep(&error);
                    return Err(BuildError::Failed { tail: tail.into() });
                }
                Err(BollardError::DockerResponseServerError { message, .. }) => {
                    tail.keep(&message);
                    return Err(BuildError::Failed { tail: tail.into() });
                }
                Err(e) => return Err(BuildError::Docker(e.into())),
            }
        }
        Ok(())
    }

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

    /// Whether the daemon has `image` (a name or an ID).
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.client().await?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match DockerError::from(e) {
                DockerError::NotFound => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The image's `USER` (empty for root).
    pub async fn image_user(&self, image: &str) -> Result<String, DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        Ok(config.and_then(|c| c.user).unwrap_or_default())
    }

    /// Pulls `reference` from its registry; the error is the daemon's
    /// sentence. The caller bounds the time.
    pub async fn pull(&self, reference: &str) -> Result<(), DockerError> {
        let (from_image, tag) = split_reference(reference);
        let mut options = CreateImageOptionsBuilder::new().from_image(from_image);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let client = self.client().await?;
        let mut stream = client.create_image(Some(options.build()), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => {}
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(DockerError::Api {
                        status: 500,
                        message: error,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The image's own command (ENTRYPOINT followed by CMD) and USER.
    pub async fn image_command(&self, image: &str) -> Result<(Vec<String>, String), DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        let config = config.unwrap_or_default();
        let mut command = config.entrypoint.unwrap_or_default();
        command.extend(config.cmd.unwrap_or_default());
        Ok((command, config.user.unwrap_or_default()))
    }

    /// Creates a stopped container of `image` whose main process is
    /// `entrypoint` (the terminal behind its gate, see [`crate::gate`]) on a
    /// TTY that stays open between attaches. It runs as root: a setup exec
    /// as root has the container's capabilities only then. Docker keeps no
    /// log of it, so terminal output is never written to disk.
    pub async fn create_container(
        &self,
        name: &str,
        image: &str,
        entrypoint: Vec<String>,
        labels: &HashMap<String, String>,
        limits: &Limits,
    ) -> Result<String, DockerError> {
        let host_config = HostConfig {
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
            binds: Some(vec![crate::gate::gosu_mount()]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(entrypoint),
            cmd: Some(vec![]),
            labels: Some(labels.clone()),
            user: Some("0:0".into()),
            tty: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
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

    /// Whether `path` exists in the container's file system (the container
    /// need not run).
    pub async fn path_exists(&self, container: &str, path: &str) -> Result<bool, DockerError> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        let result = self
            .client()
            .await?
            .get_container_archive_info(container, Some(options))
            .await;
        match result.map_err(DockerError::from) {
            Ok(_) => Ok(true),
            Err(DockerError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The contents of the regular file `path` in the container, or `None`
    /// when there is none (the container need not run). At most 1 MiB.
    pub async fn read_file(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let limit = MAX_READ_BYTES + 64 * 1024;
        let Some(archive) = self.read_archive(container, path, limit).await? else {
            return Ok(None);
        };
        if archive.len() >= limit {
            return Err(DockerError::Api {
                status: 413,
                message: format!("{path} is larger than {MAX_READ_BYTES} bytes"),
            });
        }
        let mut entries = tar::Archive::new(archive.as_slice());
        let unreadable = |e: std::io::Error| DockerError::Api {
            status: 500,
            message: format!("the archive of {path} is unreadable: {e}"),
        };
        let Some(entry) = entries.entries().map_err(unreadable)?.next() else {
            return Ok(None);
        };
        let mut entry = entry.map_err(unreadable)?;
        if !entry.header().entry_type().is_file() {
            return Ok(None);
        }
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents).map_err(unreadable)?;
        Ok(Some(contents))
    }

    /// Unpacks `tar` at `/` in the container (owners and modes as the
    /// archive says; the container need not run).
    pub async fn upload(&self, container: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        Ok(self
            .client()
            .await?
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await?)
    }

    /// Runs `command` as root in the running container without a TTY,
    /// with `stdin` as its input, until it ends; keeps its last output lines.
    pub async fn run_as_root(
        &self,
        container: &str,
        command: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<ExecOutcome, DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            user: Some("0:0".into()),
            cmd: Some(command),
            ..Default::default()
        };
        let created = client.create_exec(container, config).await?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = client.start_exec(&created.id, None).await?
        else {
            return Err(DockerError::Api {
                status: 500,
                message: "the exec started detached".into(),
            });
        };
        let feed = async move {
            use tokio::io::AsyncWriteExt;
            // A command that stops reading early only loses its own input.
            let _ = input.write_all(&stdin).await;
            let _ = input.shutdown().await;
        };
        let mut tail = Tail::default();
        let drain = async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(log) => tail.keep(&String::from_utf8_lossy(&log.into_bytes())),
                    Err(e) => return Err(DockerError::from(e)),
                }
            }
            Ok(())
        };
        let ((), drained) = tokio::join!(feed, drain);
        drained?;
        let inspect = client.inspect_exec(&created.id).await?;
        Ok(ExecOutcome {
            status: inspect.exit_code.unwrap_or(-1),
            tail: tail.into(),
        })
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
        crate::raw_attach::attach(&version, container).await
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

    /// Removes an image that no container uses; a missing one is fine.
    /// Docker refuses (an error) while a container uses it.
    pub async fn remove_unused_image(&self, image: &str) -> Result<(), DockerError> {
        self.remove_image_with(image, RemoveImageOptionsBuilder::new().force(false))
            .await
    }

    /// Removes an image; a missing one is fine.
    pub async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        self.remove_image_with(image, RemoveImageOptionsBuilder::new().force(true))
            .await
    }

    async fn remove_image_with(
        &self,
        image: &str,
        options: RemoveImageOptionsBuilder,
    ) -> Result<(), DockerError> {
        let result = self
            .client()
            .await?
            .remove_image(image, Some(options.build()), None)
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
            .map(|c| {
                let mut labels = c.labels.unwrap_or_default();
                // Docker lists names with a leading slash.
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string();
                let mut instance_id = labels.remove(LABEL_INSTANCE);
                let mut pool = None;
                if labels.get(LABEL_KIND).map(String::as_str) == Some(KIND_POOL) {
                    if name.starts_with(POOL_NAME_PREFIX) {
                        pool = Some(Pooled {
                            name: name.clone(),
                            assignment: labels.remove(LABEL_ASSIGNMENT).unwrap_or_default(),
                            image: c.image.unwrap_or_default(),
                            limits: labels.remove(LABEL_POOL_LIMITS).unwrap_or_default(),
                        });
                    } else {
                        instance_id = name.strip_prefix("ua-").map(str::to_string);
                    }
                }
                Owned {
                    id: c.id.unwrap_or_default(),
                    instance_id,
                    running: c.state.is_some_and(|s| s.to_string() == "running"),
                    pool,
                }
            })
            .collect())
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

    /// Every image of this server (by label).
    pub async fn owned_images(&self) -> Result<Vec<OwnedImage>, DockerError> {
        let options = ListImagesOptionsBuilder::new()
            .filters(&self.owned_filter())
            .build();
        let list = self.client().await?.list_images(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|mut i| {
                let assignment = match i.labels.get(LABEL_KIND).map(String::as_str) {
                    Some(KIND_ASSIGNMENT) => Some((
                        i.labels.remove(LABEL_ASSIGNMENT).unwrap_or_default(),
                        i.labels.remove(LABEL_ASSIGNMENT_HASH).unwrap_or_default(),
                    )),
                    _ => None,
                };
                OwnedImage {
                    id: i.id,
                    tags: i.repo_tags,
                    instance_id: i.labels.remove(LABEL_INSTANCE),
                    assignment,
                }
            })
            .collect())
    }

    /// Starts `command` in a TTY inside the running container as the
    /// container's user, in its WORKDIR, with its ENV.
    pub async fn exec(&self, container: &str, command: Vec<String>) -> Result<Exec, DockerError> {
        self.exec_as(container, command, "").await
    }

    /// [`Docker::exec`] as `user` (empty: the container's user).
    pub async fn exec_as(
        &self,
        container: &str,
        command: Vec<String>,
        user: &str,
    ) -> Result<Exec, DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            detach_keys: Some(DETACH_KEYS.into()),
            env: Some(vec!["TERM=xterm-256color".into()]),
            user: Some(user.to_string()).filter(|u| !u.is_empty()),
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

    /// Starts `command` as `user` (empty: root) in the running container
    /// without a TTY and hands back its standard output as it comes (its
    /// standard error is dropped). The kernel checks `user`'s rights on
    /// everything the command opens, as for the student's own terminal.
    pub async fn exec_output(
        &self,
        container: &str,
        user: &str,
        command: Vec<String>,
    ) -> Result<ExecOutput, DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            user: Some(if user.is_empty() { "0:0" } else { user }.to_string()),
            cmd: Some(command),
            ..Default::default()
        };
        let created = client.create_exec(container, config).await?;
        let start = StartExecOptions {
            output_capacity: Some(EXEC_READ_BYTES),
            ..Default::default()
        };
        let StartExecResults::Attached { output, .. } =
            client.start_exec(&created.id, Some(start)).await?
        else {
            return Err(DockerError::Api {
                status: 500,
                message: "the exec started detached".into(),
            });
        };
        let stdout = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(_) => None,
                Err(e) => Some(Err(DockerError::from(e))),
            }
        });
        Ok(ExecOutput {
            id: created.id,
            stdout: Box::pin(stdout),
        })
    }

    /// The exit status of a finished exec (`None` while it runs or when
    /// Docker does not know it).
    pub async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, DockerError> {
        let inspect = self.client().await?.inspect_exec(exec).await?;
        Ok(inspect.exit_code.filter(|_| inspect.running != Some(true)))
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

/// Reads the classic builder's progress lines for the images it makes:
/// `Step n/m : …` then ` ---> <id>` for the step's image, where the `FROM`
/// step's image and ` ---> Using cache` ones are not the build's own.
#[derive(Default)]
struct StepImages {
    not_ours: bool,
}

impl StepImages {
    fn made_in(&mut self, text: &str) -> Vec<String> {
        let mut made = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(step) = line.strip_prefix("Step ") {
                let instruction = step.split_once(" : ").map_or("", |(_, i)| i);
                self.not_ours = instruction
                    .get(..5)
                    .is_some_and(|word| word.eq_ignore_ascii_case("FROM "));
            } else if let Some(rest) = line.strip_prefix("---> ") {
                if rest == "Using cache" {
                    self.not_ours = true;
                } else if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()) {
                    if !self.not_ours {
                        made.push(rest.to_string());
                    }
                    self.not_ours = false;
                }
            }
        }
        made
    }
}

/// The last lines of a build's or an exec's output, each cut at
/// [`BUILD_LINE_CHARS`].
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    fn keep(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if self.0.len() == BUILD_TAIL_LINES {
                self.0.pop_front();
            }
            // Bounded: output of megabytes in one line stays small here.
            let mut line = line.to_string();
            if line.len() > BUILD_LINE_CHARS {
                let cut = line.floor_char_boundary(BUILD_LINE_CHARS);
                line.truncate(cut);
                line.push('…');
            }
            self.0.push_back(line);
        }
    }
}

impl From<Tail> for Vec<String> {
    fn from(tail: Tail) -> Vec<String> {
        tail.0.into()
    }
}

/// `name[:tag]` or `name@digest` as the pull API takes it: the image and
/// the tag apart (a colon in the registry's host:port is not a tag).
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&reference[..at], Some(&reference[at + 1..]))
        }
        None => (reference, Some("latest")),
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

    #[test]
    fn references_split_at_the_tag_not_the_port() {
        assert_eq!(split_reference("debian"), ("debian", Some("latest")));
        assert_eq!(split_reference("debian:12"), ("debian", Some("12")));
        assert_eq!(
            split_reference("127.0.0.1:5000/ua/base"),
            ("127.0.0.1:5000/ua/base", Some("latest"))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/ua/base:v1"),
            ("127.0.0.1:5000/ua/base", Some("v1"))
        );
        assert_eq!(split_reference("a/b@sha256:00"), ("a/b@sha256:00", None));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_cut_short() {
        let mut tail = Tail::default();
        for i in 0..30 {
            tail.keep(&format!("line {i}\n\n"));
        }
        tail.keep(&"x".repeat(600));
        let lines: Vec<String> = tail.into();
        assert_eq!(lines.len(), BUILD_TAIL_LINES);
        assert_eq!(lines[0], "line 11");
        assert_eq!(lines[19].chars().count(), BUILD_LINE_CHARS + 1);
    }

    #[test]
    fn step_images_are_those_the_build_made() {
        let mut steps = StepImages::default();
        let stream = [
            "Step 1/4 : FROM ua-busybox:latest\n",
            " ---> 8f1a2b3c4d5e\n",
            "Step 2/4 : COPY a /a\n",
            " ---> Using cache\n",
            " ---> 0123456789ab\n",
            "Step 3/4 : RUN echo hi\n",
            " ---> Running in 5f5f5f5f5f5f\n",
            "hi\n",
            "Removing intermediate container 5f5f5f5f5f5f\n",
            " ---> abcdefabcdef\n",
            "Step 4/4 : from other\n ---> 999999999999\nStep 5/5 : RUN exit 3\n",
        ];
        let made: Vec<String> = stream.iter().flat_map(|text| steps.made_in(text)).collect();
        assert_eq!(made, vec!["abcdefabcdef".to_string()]);
    }
}
