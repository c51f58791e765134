//! The live registry of instances: get-or-create (one build per spec at a
//! time), lookup, attach, clean, expiry and reconcile-on-start. It keeps the
//! store and Docker in step; it knows nothing of websocket frames.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::assignment::{
    Assignment, AssignmentError, Mode, Settings, TemplateVars, DOCKERFILE_IN_CONTEXT,
};
use crate::config::ServeConfig;
use crate::docker::{BuildError, Docker, DockerError, Limits};
use crate::live::Swap;
use crate::metrics;
use crate::provision::{assignment_error, Pinned, Prepared, Provisioner};
use crate::redact::Redactor;
use crate::spec::Spec;
use crate::store::{InstanceRecord, Store};
use crate::terminal::{Attachment, CloseReason, Ended, Observation, Terminal, TerminalSettings};

/// Why an instance could not be made. Messages never hold spec data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateError {
    /// No such assignment (404).
    #[error("there is no assignment named `{0}` on this server")]
    NoAssignment(String),
    /// A template or `assignment.json` is unusable (422).
    #[error("the assignment's template did not render: {0}")]
    Render(String),
    /// The image did not build (422).
    #[error("{reason}")]
    Build {
        /// What failed, in words with no spec data.
        reason: String,
        /// The build's last output lines, raw: they leave the server only sealed.
        tail: Vec<String>,
    },
    /// `setup.sh` failed (422).
    #[error("the assignment's setup failed with exit status {status}")]
    Setup {
        /// Its exit status.
        status: i64,
        /// Its last output lines, raw: they leave the server only sealed.
        tail: Vec<String>,
    },
    /// A base image could not be pulled (503).
    #[error("the base image `{image}` could not be pulled ({why}); try again shortly")]
    Pull {
        /// The image.
        image: String,
        /// The daemon's or the timeout's words.
        why: String,
    },
    /// The assignment is unusable as it stands (422).
    #[error("{0}")]
    Invalid(String),
    /// At `--max-instances`: stored instances, disk-bound (503).
    #[error("the server is at its limit of {0} stored instances; try again shortly")]
    AtCapacity(usize),
    /// At `--max-running`: running terminals plus builds, memory-bound (503).
    #[error("the server is at its limit of {0} running terminals and builds; try again shortly")]
    AtRunningCapacity(usize),
    /// The build queue is full (503).
    #[error("the server's build queue is full ({0} waiting); try again shortly")]
    QueueFull(usize),
    /// Docker is unreachable (503).
    #[error("Docker is unreachable; try again shortly")]
    DockerDown,
    /// Anything else (500).
    #[error("the instance could not be created: {0}")]
    Internal(String),
}

impl CreateError {
    /// The HTTP status `POST /spec` answers with (a number: the registry
    /// knows nothing of HTTP types).
    pub fn status(&self) -> u16 {
        match self {
            CreateError::NoAssignment(_) => 404,
            CreateError::Render(_)
            | CreateError::Build { .. }
            | CreateError::Setup { .. }
            | CreateError::Invalid(_) => 422,
            CreateError::AtCapacity(_)
            | CreateError::AtRunningCapacity(_)
            | CreateError::QueueFull(_)
            | CreateError::Pull { .. }
            | CreateError::DockerDown => 503,
            CreateError::Internal(_) => 500,
        }
    }

    /// Its kind in `ua_errors_total{kind=…}`.
    pub fn metric_kind(&self) -> &'static str {
        match self {
            CreateError::NoAssignment(_) => "no_assignment",
            CreateError::Render(_) | CreateError::Invalid(_) => "render",
            CreateError::Build { .. } => "build",
            CreateError::Setup { .. } => "setup",
            CreateError::Pull { .. } => "pull",
            CreateError::AtCapacity(_)
            | CreateError::AtRunningCapacity(_)
            | CreateError::QueueFull(_) => "capacity",
            CreateError::DockerDown => "docker",
            CreateError::Internal(_) => "internal",
        }
    }

    /// Which limit was hit, for the answer's `limit` field: memory-bound
    /// (`running`), disk-bound (`instances`) or the build queue.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            CreateError::AtCapacity(_) => Some("instances"),
            CreateError::AtRunningCapacity(_) => Some("running"),
            CreateError::QueueFull(_) => Some("buildQueue"),
            _ => None,
        }
    }
}

impl From<DockerError> for CreateError {
    fn from(e: DockerError) -> CreateError {
        match e {
            DockerError::Unreachable(_) => CreateError::DockerDown,
            other => CreateError::Internal(other.to_string()),
        }
    }
}

/// Why a terminal could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The instance was cleaned or expired meanwhile (4003).
    #[error("the instance is gone")]
    Gone,
    /// Docker failed (1011).
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Why an observer was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserveRefusal {
    /// No terminal runs (the container is stopped): 4004.
    NotRunning,
    /// The terminal has all the observers it takes: 1013.
    TooMany,
}

/// The longest one Docker call of background work (removal, stop, tidy)
/// may take: a stalled daemon must not hold the sweep for bollard's 120 s.
pub const DOCKER_CALL_LIMIT: Duration = Duration::from_secs(30);

/// `call`, failed as unreachable when it takes over [`DOCKER_CALL_LIMIT`].
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    tokio::time::timeout(DOCKER_CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(DockerError::Unreachable(format!(
                "no answer in {} s",
                DOCKER_CALL_LIMIT.as_secs()
            )))
        })
}

/// One instance as `ua list` shows it: never its ID (a credential).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The short non-secret handle.
    pub handle: String,
    /// The spec it was made for.
    #[serde(rename = "specID")]
    pub spec_id: String,
    /// The assignment's name.
    pub assignment: String,
    /// `running` (a terminal runs or waits out its grace) or `stopped`.
    pub state: String,
    /// Unix seconds of the last terminal's end (or of creation).
    pub last_used: i64,
    /// Unix seconds when it expires if unused; none while running.
    pub expires: Option<i64>,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One spec's image and container, and the terminal running in it.
pub struct Instance {
    /// The instance ID.
    pub id: String,
    /// The spec it was made for.
    pub spec_id: String,
    record: Mutex<InstanceRecord>,
    /// Until when a container started by its setup is left running with no
    /// terminal, for the terminal about to attach.
    warm_until: Mutex<Option<std::time::Instant>>,
    /// The running terminal, if any. The lock also serialises starting and
    /// stopping the container.
    terminal: tokio::sync::Mutex<Option<Terminal>>,
}

impl Instance {
    fn new(record: InstanceRecord) -> Arc<Instance> {
        Arc::new(Instance {
            id: record.instance_id.clone(),
            spec_id: record.spec_id.clone(),
            record: Mutex::new(record),
            warm_until: Mutex::new(None),
            terminal: tokio::sync::Mutex::new(None),
        })
    }

    fn warm_for(&self, period: Duration) {
        *self.warm_until.lock().unwrap() = Some(std::time::Instant::now() + period);
    }

    /// Whether the container was left running for a terminal yet to come;
    /// after the period it is stopped like any container without a session.
    fn is_warm(&self) -> bool {
        self.warm_until
            .lock()
            .unwrap()
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    fn record(&self) -> InstanceRecord {
        self.record.lock().unwrap().clone()
    }

    /// True while a terminal runs (a session is attached or in its grace).
    fn is_busy(&self) -> bool {
        match self.terminal.try_lock() {
            Ok(slot) => slot.as_ref().is_some_and(|t| !t.is_over()),
            Err(_) => true,
        }
    }
}

type BuildResult = Option<Result<Arc<Instance>, CreateError>>;

#[derive(Default)]
struct Tables {
    by_id: HashMap<String, Arc<Instance>>,
    by_spec: HashMap<String, String>,
    /// Builds in flight, by spec ID: later requests wait on the first.
    building: HashMap<String, watch::Receiver<BuildResult>>,
    /// Instance IDs of builds in flight: Docker objects that have no record yet.
    building_ids: HashSet<String>,
}

/// The live instances; keeps the store and Docker in step with them.
pub struct Registry {
    /// The settings; a reload swaps those that change live (`reconfigure`).
    config: Swap<ServeConfig>,
    /// The Docker client.
    pub docker: Arc<Docker>,
    store: Arc<Store>,
    provisioner: Arc<Provisioner>,
    tables: Mutex<Tables>,
    next_generation: AtomicU64,
    /// Set once `reconcile` has loaded the records: before it, the tables
    /// know none of them, so nothing may be created or tidied away.
    reconciled: AtomicBool,
}

impl Registry {
    /// An empty registry; `reconcile` fills it from the store.
    pub fn new(config: Arc<ServeConfig>, docker: Arc<Docker>, store: Store) -> Arc<Registry> {
        Arc::new(Registry {
            provisioner: Provisioner::new(config.clone(), docker.clone()),
            config: Swap::new((*config).clone()),
            docker,
            store: Arc::new(store),
            tables: Mutex::new(Tables::default()),
            next_generation: AtomicU64::new(1),
            reconciled: AtomicBool::new(false),
        })
    }

    /// The settings in force now.
    pub fn config(&self) -> Arc<ServeConfig> {
        self.config.load()
    }

    /// Puts new settings in force for what is made, attached or swept from
    /// now on (a reload; see `reload.rs` for which settings change live).
    pub fn reconfigure(&self, config: ServeConfig) {
        self.config.store(config);
    }

    /// The live instance with this ID, if any.
    pub fn lookup(&self, instance_id: &str) -> Option<Arc<Instance>> {
        self.tables.lock().unwrap().by_id.get(instance_id).cloned()
    }

    /// Every stored instance, for the admin CLI (`ua list`), by last use.
    pub fn list(&self) -> Vec<Summary> {
        let expiry = self.config.load().instance_expiry.as_secs() as i64;
        let tables = self.tables.lock().unwrap();
        let mut list: Vec<Summary> = tables
            .by_id
            .values()
            .map(|instance| {
                let record = instance.record();
                let running = instance.is_busy();
                Summary {
                    handle: crate::handle::of(&instance.id),
                    spec_id: instance.spec_id.clone(),
                    assignment: record.assignment,
                    state: if running { "running" } else { "stopped" }.into(),
                    last_used: record.last_active_at,
                    expires: (!running).then_some(record.last_active_at + expiry),
                }
            })
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.last_used));
        list
    }

    /// The spec IDs of the instances whose handle is `handle`.
    pub fn specs_by_handle(&self, handle: &str) -> Vec<String> {
        let tables = self.tables.lock().unwrap();
        tables
            .by_id
            .values()
            .filter(|instance| crate::handle::of(&instance.id) == handle)
            .map(|instance| instance.spec_id.clone())
            .collect()
    }

    /// Instance gauges for `/metrics`, `/health` and the status line;
    /// `sessions` is filled in by the caller.
    pub fn snapshot(&self) -> metrics::Snapshot {
        let tables = self.tables.lock().unwrap();
        let running = tables.by_id.values().filter(|i| i.is_busy()).count();
        metrics::Snapshot {
            running,
            stopped: tables.by_id.len() - running,
            building: tables.building.len(),
            queued: self.provisioner.slots.queued(),
            sessions: 0,
        }
    }

    /// The instance of `spec`, made if needed. A session attached to an
    /// existing instance is closed: the newer client takes over.
    pub async fn get_or_create(self: &Arc<Self>, spec: Spec) -> Result<String, CreateError> {
        if !self.is_reconciled() {
            // Docker was away at start: the records are not loaded yet.
            return Err(CreateError::DockerDown);
        }
        let existing = self.spec_instance(&spec.spec_id);
        if let Some(instance) = existing {
            if !self.container_vanished(&instance).await {
                return Ok(self.take_over(instance));
            }
            self.forget_vanished(&instance).await;
        }
        let mut waiting = {
            let mut tables = self.tables.lock().unwrap();
            if let Some(id) = tables.by_spec.get(&spec.spec_id) {
                let instance = tables.by_id[id].clone();
                drop(tables);
                return Ok(self.take_over(instance));
            }
            match tables.building.get(&spec.spec_id) {
                Some(waiting) => waiting.clone(),
                None => {
                    let config = self.config.load();
                    let stored = tables.by_id.len() + tables.building.len();
                    if stored >= config.max_instances {
                        return Err(CreateError::AtCapacity(config.max_instances));
                    }
                    let running = tables.by_id.values().filter(|i| i.is_busy()).count();
                    if running + tables.building.len() >= config.max_running {
                        return Err(CreateError::AtRunningCapacity(config.max_running));
                    }
                    let waiting = tables.building.len().saturating_sub(config.max_builds);
                    if waiting >= config.max_build_queue {
                        return Err(CreateError::QueueFull(waiting));
                    }
                    let (done, waiting) = watch::channel(None);
                    tables
                        .building
                        .insert(spec.spec_id.clone(), waiting.clone());
                    // Its own task: a client hanging up does not stop a build halfway.
                    let registry = self.clone();
                    tokio::spawn(async move { registry.create(spec, done).await });
                    waiting
                }
            }
        };
        let result = waiting
            .wait_for(Option::is_some)
            .await
            .map_err(|_| CreateError::Internal("the build was abandoned".into()))?
            .clone()
            .expect("waited for a result");
        result.map(|instance| instance.id.clone())
    }

    fn spec_instance(&self, spec_id: &str) -> Option<Arc<Instance>> {
        let tables = self.tables.lock().unwrap();
        tables
            .by_spec
            .get(spec_id)
            .and_then(|id| tables.by_id.get(id))
            .cloned()
    }

    /// Whether the instance's container was removed behind ua's back (Docker
    /// trouble is not taken for that: the instance is kept).
    async fn container_vanished(&self, instance: &Instance) -> bool {
        let container = instance.record().container_id;
        matches!(self.docker.container_exists(&container).await, Ok(false))
    }

    /// Drops an instance whose container vanished, so that its spec makes a
    /// new one: its files went with the container.
    async fn forget_vanished(&self, instance: &Arc<Instance>) {
        let taken = {
            let mut tables = self.tables.lock().unwrap();
            let current = tables
                .by_id
                .get(&instance.id)
                .is_some_and(|known| Arc::ptr_eq(known, instance));
            if current {
                tables.by_id.remove(&instance.id);
                tables.by_spec.remove(&instance.spec_id);
            }
            current
        };
        if taken {
            log::warn!(
                "instance {}: its container was removed outside ua; dropping the instance \
                 (its files are gone), and its spec makes a new one",
                instance.id
            );
            self.remove(instance, "dropped").await;
        }
    }

    fn take_over(&self, instance: Arc<Instance>) -> String {
        let id = instance.id.clone();
        tokio::spawn(async move {
            if let Some(terminal) = instance.terminal.lock().await.as_ref() {
                terminal.kick(CloseReason::TakenOver).await;
            }
        });
        id
    }

    async fn create(self: Arc<Self>, spec: Spec, done: watch::Sender<BuildResult>) {
        let started = std::time::Instant::now();
        let instance_id = crate::node::new_instance_id(self.config.load().node_id.as_deref());
        self.tables
            .lock()
            .unwrap()
            .building_ids
            .insert(instance_id.clone());
        let mut pinned = None;
        let result = self.build_instance(&spec, &instance_id, &mut pinned).await;
        if result.is_ok() {
            metrics::SPEC_READY_SECONDS.observe(started.elapsed().as_secs_f64());
        }
        let mut tables = self.tables.lock().unwrap();
        tables.building.remove(&spec.spec_id);
        tables.building_ids.remove(&instance_id);
        if let Ok(instance) = &result {
            tables
                .by_spec
                .insert(spec.spec_id.clone(), instance.id.clone());
            tables.by_id.insert(instance.id.clone(), instance.clone());
        }
        drop(tables);
        // Registered (or failed): the garbage collector may see the image's users now.
        drop(pinned);
        done.send_replace(Some(result));
    }

    async fn build_instance(
        self: &Arc<Self>,
        spec: &Spec,
        instance_id: &str,
        pinned: &mut Option<Pinned>,
    ) -> Result<Arc<Instance>, CreateError> {
        let config = self.config.load();
        let assignment =
            Assignment::find(&config.assignments, &spec.assignment).map_err(|e| match e {
                AssignmentError::Io { .. } => {
                    CreateError::NoAssignment(spec.assignment.to_string())
                }
                other => assignment_error(other),
            })?;
        let provisioner = &self.provisioner;
        let (image, prepared, shared) = match assignment.mode {
            Mode::PerInstance => {
                let image = self.build_own_image(&assignment, spec, instance_id).await?;
                (image, None, false)
            }
            Mode::Shared => {
                // Rendering first: a spec that does not render costs no build.
                let prepared = provisioner.prepare(&assignment, spec, instance_id).await?;
                let (image, pin) = provisioner
                    .assignment_image(&assignment, instance_id)
                    .await?;
                *pinned = Some(pin);
                (image, Some(prepared), true)
            }
        };
        let container = format!("ua-{instance_id}");
        let made = self
            .make_container(
                &assignment,
                instance_id,
                &container,
                &image,
                prepared,
                shared,
                spec,
            )
            .await;
        match made {
            Ok(instance) => Ok(instance),
            Err(e) => {
                // The one way back: nothing of a failed create is left behind.
                if let Err(e) = self.docker.remove_container(&container).await {
                    log::warn!(
                        "instance {instance_id}: container not removed after a failed create: {e}"
                    );
                }
                if !shared {
                    let _ = self.docker.remove_image(&image).await;
                }
                Err(e)
            }
        }
    }

    /// Renders and builds the image of a `Dockerfile.tmpl` assignment for
    /// one instance, in a build slot.
    async fn build_own_image(
        &self,
        assignment: &Assignment,
        spec: &Spec,
        instance_id: &str,
    ) -> Result<String, CreateError> {
        let _permit = self.provisioner.slots.acquire().await;
        let started = std::time::Instant::now();
        let context = {
            let (assignment, spec, id) =
                (assignment.clone(), spec.clone(), instance_id.to_string());
            tokio::task::spawn_blocking(move || {
                assignment.render_context(&TemplateVars {
                    data: &spec.data,
                    spec_id: &spec.spec_id,
                    instance_id: &id,
                })
            })
            .await
            .map_err(|e| CreateError::Internal(e.to_string()))?
            .map_err(assignment_error)?
        };
        metrics::PHASE_SECONDS.record("render", instance_id, started);
        let redactor = Redactor::new(&spec.data);
        self.provisioner
            .base_images(&context.dockerfile, &redactor, instance_id)
            .await?;

        let image = format!("ua/{instance_id}");
        let labels = self.docker.labels(instance_id);
        let build_timeout = self.provisioner.build_timeout(assignment);
        let building_started = std::time::Instant::now();
        let built = self
            .docker
            .build_within(
                context.tar,
                DOCKERFILE_IN_CONTEXT,
                &image,
                &labels,
                self.config.load().build_network,
                build_timeout,
            )
            .await;
        metrics::BUILD_SECONDS.observe(started.elapsed().as_secs_f64());
        metrics::PHASE_SECONDS.record("build", instance_id, building_started);
        built.map(|()| image).map_err(|e| {
            log::warn!(
                "build failed for spec {:?} (assignment {}): {e}",
                spec.spec_id,
                spec.assignment
            );
            build_failure(e)
        })
    }

    /// Creates the container, puts in the instance's files and runs its
    /// setup (shared-image mode), and saves the record. The caller removes
    /// what is left when this fails.
    #[allow(clippy::too_many_arguments)]
    async fn make_container(
        &self,
        assignment: &Assignment,
        instance_id: &str,
        container: &str,
        image: &str,
        prepared: Option<Prepared>,
        shared: bool,
        spec: &Spec,
    ) -> Result<Arc<Instance>, CreateError> {
        let started = std::time::Instant::now();
        let labels = self.docker.labels(instance_id);
        // A shared-image container runs its keep-alive as root, so that its
        // setup (an exec as root) has the container's capabilities (Docker
        // gives an exec none when the container's process is not root); the
        // terminal runs as the image's USER either way.
        let user = shared.then_some("0:0");
        let container_id = self
            .docker
            .create_container(
                container,
                image,
                user,
                &labels,
                &self.limits(&assignment.settings),
            )
            .await?;
        metrics::PHASE_SECONDS.record("create", instance_id, started);
        let running = match prepared {
            Some(prepared) => {
                let timeout = self.provisioner.build_timeout(assignment);
                let provisioned = self
                    .provisioner
                    .provision(container, image, prepared, timeout, instance_id)
                    .await;
                if let Err(CreateError::Setup { status, .. }) = &provisioned {
                    log::warn!(
                        "setup failed with status {status} for spec {:?} (assignment {})",
                        spec.spec_id,
                        spec.assignment
                    );
                }
                provisioned?
            }
            None => false,
        };
        let now = unix_now();
        let record = InstanceRecord {
            instance_id: instance_id.to_string(),
            spec_id: spec.spec_id.clone(),
            assignment: spec.assignment.to_string(),
            image: image.to_string(),
            container_id,
            created_at: now,
            last_active_at: now,
            shared_image: shared,
            keep_until: spec
                .keep_until
                .map(|t| t.min(now + self.config.load().max_keep.as_secs() as i64)),
        };
        self.save(&record).await.map_err(|e| {
            CreateError::Internal(format!("the instance record was not saved: {e}"))
        })?;
        log::info!(
            "instance {instance_id} created for spec {:?} (assignment {}{}) in {} ms",
            spec.spec_id,
            spec.assignment,
            if shared { ", shared image" } else { "" },
            started.elapsed().as_millis()
        );
        let instance = Instance::new(record);
        if running {
            // Left running for the terminal that is about to attach.
            instance.warm_for(self.config.load().reattach_grace);
        }
        Ok(instance)
    }

    /// The container limits of an assignment on this server.
    fn limits(&self, settings: &Settings) -> Limits {
        container_limits(settings, &self.config.load())
    }

    async fn save(&self, record: &InstanceRecord) -> std::io::Result<()> {
        let (store, record) = (self.store.clone(), record.clone());
        tokio::task::spawn_blocking(move || store.save(&record))
            .await
            .map_err(std::io::Error::other)?
    }

    async fn delete_record(&self, instance_id: &str) {
        let (store, id) = (self.store.clone(), instance_id.to_string());
        match tokio::task::spawn_blocking(move || store.delete(&id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("instance {instance_id}: record not deleted: {e}"),
            Err(e) => log::error!("instance {instance_id}: record not deleted: {e}"),
        }
    }

    /// Attaches a new client to the instance's terminal, starting the
    /// container and the terminal's command when none runs.
    pub async fn attach(
        self: &Arc<Self>,
        instance: &Arc<Instance>,
        client_id: u64,
    ) -> Result<Attachment, AttachError> {
        let mut slot = instance.terminal.lock().await;
        if self.lookup(&instance.id).is_none() {
            return Err(AttachError::Gone);
        }
        if let Some(terminal) = slot.as_ref().filter(|t| !t.is_over()) {
            if let Some(attachment) = terminal.attach(client_id).await {
                return Ok(attachment);
            }
        }
        let record = instance.record();
        let started = std::time::Instant::now();
        if let Err(e) = self.docker.start(&record.container_id).await {
            if matches!(e, DockerError::NotFound) {
                drop(slot);
                self.forget_vanished(instance).await;
                return Err(AttachError::Gone);
            }
            return Err(e.into());
        }
        metrics::PHASE_SECONDS.record("start", &instance.id, started);
        let started = std::time::Instant::now();
        let (mut command, user) = self.docker.image_command(&record.image).await?;
        if command.is_empty() {
            command = vec!["/bin/sh".into()];
        }
        // As the image's USER: a shared-image container itself runs as root.
        let exec = self
            .docker
            .exec_as(&record.container_id, command, &user)
            .await?;
        metrics::PHASE_SECONDS.record("exec", &instance.id, started);
        // The terminal owns the container's running from here.
        *instance.warm_until.lock().unwrap() = None;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (registry, owner) = (self.clone(), instance.clone());
        let config = self.config.load();
        let settings = TerminalSettings {
            grace: config.reattach_grace,
            replay_bytes: config.replay_bytes,
        };
        let terminal = Terminal::spawn(
            exec,
            self.docker.clone(),
            &settings,
            generation,
            move |ended| async move { registry.terminal_ended(&owner, generation, ended).await },
        );
        log::info!("instance {}: terminal started", instance.id);
        let attachment = terminal.attach(client_id).await.ok_or(AttachError::Gone)?;
        *slot = Some(terminal);
        Ok(attachment)
    }

    /// Adds a read-only observer to the instance's running terminal; never
    /// starts anything.
    pub async fn observe(&self, instance: &Arc<Instance>) -> Result<Observation, ObserveRefusal> {
        let terminal = instance.terminal.lock().await.clone();
        let Some(terminal) = terminal.filter(|t| !t.is_over()) else {
            return Err(ObserveRefusal::NotRunning);
        };
        match terminal.observe().await {
            Some(observation) => Ok(observation),
            None if terminal.is_over() => Err(ObserveRefusal::NotRunning),
            None => Err(ObserveRefusal::TooMany),
        }
    }

    /// The instance of a spec, if it has one (never builds, never takes over).
    pub fn instance_of_spec(&self, spec_id: &str) -> Option<String> {
        self.tables.lock().unwrap().by_spec.get(spec_id).cloned()
    }

    /// The container's ID (for reading files from it).
    pub fn container_of(&self, instance: &Instance) -> String {
        instance.record().container_id
    }

    /// The image's ID (for its working directory).
    pub fn image_of(&self, instance: &Instance) -> String {
        instance.record().image
    }

    /// A terminal is over: stop the container (files kept) and start the
    /// expiry clock, unless a newer terminal has taken its place.
    async fn terminal_ended(&self, instance: &Arc<Instance>, generation: u64, ended: Ended) {
        let mut slot = instance.terminal.lock().await;
        if slot.as_ref().map(|t| t.generation) != Some(generation) {
            return;
        }
        *slot = None;
        log::info!(
            "instance {}: terminal ended ({ended:?}); stopping its container",
            instance.id
        );
        if ended != Ended::OnRequest {
            self.stop_and_touch(instance).await;
        }
    }

    async fn stop_and_touch(&self, instance: &Arc<Instance>) {
        let record = instance.record();
        if let Err(e) = self.docker.stop(&record.container_id).await {
            if !matches!(e, DockerError::NotFound) {
                log::warn!("instance {}: container not stopped: {e}", instance.id);
            }
        }
        let record = {
            let mut record = instance.record.lock().unwrap();
            record.last_active_at = unix_now();
            record.clone()
        };
        if self.lookup(&instance.id).is_some() {
            if let Err(e) = self.save(&record).await {
                log::error!("instance {}: record not saved: {e}", instance.id);
            }
        }
    }

    /// Removes the instance of `spec_id` (after any build of it in flight):
    /// session closed with 4003, container, image and record gone.
    pub async fn clean(&self, spec_id: &str) -> usize {
        let building = self.tables.lock().unwrap().building.get(spec_id).cloned();
        if let Some(mut waiting) = building {
            let _ = waiting.wait_for(Option::is_some).await;
        }
        let instance = {
            let mut tables = self.tables.lock().unwrap();
            tables
                .by_spec
                .remove(spec_id)
                .and_then(|id| tables.by_id.remove(&id))
        };
        match instance {
            Some(instance) => {
                self.remove(&instance, "cleaned").await;
                1
            }
            None => 0,
        }
    }

    /// Tears down an instance already taken out of the tables.
    async fn remove(&self, instance: &Arc<Instance>, why: &str) {
        if let Some(terminal) = instance.terminal.lock().await.take() {
            terminal.end(CloseReason::Gone).await;
        }
        let record = instance.record();
        let mut complete = true;
        if let Err(e) = bounded(self.docker.remove_container(&record.container_id)).await {
            log::error!("instance {}: container not removed: {e}", instance.id);
            complete = false;
        }
        // A shared image stays for its other instances; the sweep collects it.
        if !record.shared_image {
            if let Err(e) = bounded(self.docker.remove_image(&record.image)).await {
                log::error!("instance {}: image not removed: {e}", instance.id);
                complete = false;
            }
        }
        // Without its container the record is dropped on the next start anyway.
        self.delete_record(&instance.id).await;
        log::info!(
            "instance {} {why} (spec {:?}){}",
            instance.id,
            instance.spec_id,
            if complete {
                ""
            } else {
                "; Docker leftovers go at the next start"
            }
        );
    }

    /// Removes instances whose last session ended more than the expiry ago
    /// (and past their `keepUntil`), each in its own task: one slow removal
    /// holds no other.
    pub fn expire(self: &Arc<Self>) {
        let now = unix_now();
        let limit = now - self.config.load().instance_expiry.as_secs() as i64;
        let kept = |record: &InstanceRecord| record.keep_until.is_some_and(|t| t > now);
        let expired: Vec<Arc<Instance>> = {
            let mut tables = self.tables.lock().unwrap();
            let ids: Vec<String> = tables
                .by_id
                .values()
                .filter(|i| !i.is_busy())
                .filter(|i| {
                    let record = i.record();
                    record.last_active_at <= limit && !kept(&record)
                })
                .map(|i| i.id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| {
                    let instance = tables.by_id.remove(id)?;
                    tables.by_spec.remove(&instance.spec_id);
                    Some(instance)
                })
                .collect()
        };
        for instance in expired {
            let registry = self.clone();
            tokio::spawn(async move { registry.remove(&instance, "expired").await });
        }
        let registry = self.clone();
        tokio::spawn(async move {
            let in_use = registry.shared_images_in_use();
            let collecting = registry.provisioner.collect_garbage(in_use);
            if let Err(e) = bounded(collecting).await {
                log::debug!("assignment images not collected: {e}");
            }
        });
    }

    /// Tags of assignment images that registered instances use.
    fn shared_images_in_use(&self) -> HashSet<String> {
        let tables = self.tables.lock().unwrap();
        tables
            .by_id
            .values()
            .map(|i| i.record())
            .filter(|r| r.shared_image)
            .map(|r| r.image)
            .collect()
    }

    /// How often to sweep: often enough for short test expiries, rarely
    /// enough to cost nothing in production (one Docker list call).
    pub fn sweep_interval(&self) -> Duration {
        (self.config.load().instance_expiry / 4)
            .clamp(Duration::from_millis(500), Duration::from_secs(10))
    }

    /// Puts right what a crash left in flight at the daemon: a container
    /// started after reconcile ran, or one created for a build whose record
    /// was never written.
    pub async fn tidy(&self) -> Result<(), DockerError> {
        if !self.is_reconciled() {
            // Without the records every container would look unowned.
            return Ok(());
        }
        let containers = bounded(self.docker.owned_containers()).await?;
        // Concurrently and each bounded: one stalled container holds no other.
        let steps = containers
            .iter()
            .map(|container| self.tidy_container(container));
        for result in futures_util::future::join_all(steps).await {
            result?;
        }
        Ok(())
    }

    async fn tidy_container(&self, container: &crate::docker::Owned) -> Result<(), DockerError> {
        let Some(id) = container.instance_id.as_deref() else {
            return Ok(());
        };
        let building = self.tables.lock().unwrap().building_ids.contains(id);
        match self.lookup(id) {
            Some(instance) if container.running => {
                // Holding the terminal's lock: an attach waits for the stop.
                let Ok(slot) = instance.terminal.try_lock() else {
                    return Ok(());
                };
                if slot.as_ref().is_none_or(Terminal::is_over) && !instance.is_warm() {
                    log::info!("instance {id}: stopping its container (no session)");
                    bounded(self.docker.stop(&container.id)).await?;
                }
            }
            None if !building => {
                log::warn!("removing container {} that no record owns", container.id);
                bounded(self.docker.remove_container(&container.id)).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `reconcile` has run to the end.
    pub fn is_reconciled(&self) -> bool {
        self.reconciled.load(Ordering::Acquire)
    }

    /// Brings records and Docker into agreement at start (docs/API.md, "Lifecycle").
    pub async fn reconcile(&self) -> Result<(), DockerError> {
        let store = self.store.clone();
        let records = tokio::task::spawn_blocking(move || store.load_all())
            .await
            .map_err(|e| DockerError::Unreachable(e.to_string()))?
            .unwrap_or_else(|e| {
                log::error!("instance records unreadable: {e}");
                Vec::new()
            });
        let containers = self.docker.owned_containers().await?;
        let images = self.docker.owned_images().await?;
        let mut kept = HashMap::new();
        for record in records {
            let container = containers.iter().find(|c| c.id == record.container_id);
            match container {
                None => {
                    log::warn!(
                        "instance {}: its container is gone; dropping the instance",
                        record.instance_id
                    );
                    if !record.shared_image {
                        let _ = self.docker.remove_image(&record.image).await;
                    }
                    self.delete_record(&record.instance_id).await;
                }
                Some(container) => {
                    if container.running {
                        log::info!(
                            "instance {}: stopping its container (no session)",
                            record.instance_id
                        );
                        self.docker.stop(&record.container_id).await?;
                    }
                    kept.insert(record.instance_id.clone(), record);
                }
            }
        }
        let is_kept = |id: &Option<String>| id.as_ref().is_some_and(|id| kept.contains_key(id));
        for container in containers.iter().filter(|c| !is_kept(&c.instance_id)) {
            log::warn!("removing container {} that no record owns", container.id);
            self.docker.remove_container(&container.id).await?;
        }
        // Per-instance images (assignment images are collected below).
        let per_instance = images.iter().filter(|i| i.assignment.is_none());
        for image in per_instance.filter(|i| !is_kept(&i.instance_id)) {
            log::warn!("removing image {} that no record owns", image.id);
            if let Err(e) = self.docker.remove_image(&image.id).await {
                log::warn!("image {} not removed: {e}", image.id);
            }
        }
        {
            let mut tables = self.tables.lock().unwrap();
            for (id, record) in kept {
                tables.by_spec.insert(record.spec_id.clone(), id.clone());
                tables.by_id.insert(id, Instance::new(record));
            }
            log::info!("reconciled: {} instances", tables.by_id.len());
        }
        self.reconciled.store(true, Ordering::Release);
        // Assignment images: kept while a record uses them or they are current.
        self.provisioner
            .collect_garbage(self.shared_images_in_use())
            .await
    }

    /// On shutdown: close every session with 1001 and stop every container.
    pub async fn shutdown(&self) {
        let instances: Vec<Arc<Instance>> = self
            .tables
            .lock()
            .unwrap()
            .by_id
            .values()
            .cloned()
            .collect();
        let stops = instances.into_iter().map(|instance| async move {
            let terminal = instance.terminal.lock().await.take();
            if let Some(terminal) = terminal {
                terminal.end(CloseReason::Shutdown).await;
                self.stop_and_touch(&instance).await;
            } else if instance.is_warm() {
                self.stop_and_touch(&instance).await;
            }
        });
        futures_util::future::join_all(stops).await;
    }
}

/// A failed build as the client hears of it (its output stays raw here and
/// leaves the server only sealed).
pub fn build_failure(e: BuildError) -> CreateError {
    match e {
        BuildError::Failed { tail } => CreateError::Build {
            reason: "the assignment's image did not build".into(),
            tail,
        },
        BuildError::TimedOut(limit) => CreateError::Build {
            reason: format!(
                "the assignment's image took longer than {} to build and was stopped",
                humantime::format_duration(limit)
            ),
            tail: Vec::new(),
        },
        BuildError::Docker(e) => e.into(),
    }
}

/// The container limits: the assignment's, capped at the operator's maxima.
pub fn container_limits(settings: &Settings, config: &ServeConfig) -> Limits {
    let memory_mb = settings
        .memory_mb
        .unwrap_or(config.memory_mb)
        .clamp(16, config.max_memory_mb);
    let pids = settings
        .pids_limit
        .unwrap_or(config.pids_limit)
        .clamp(16, config.max_pids_limit);
    let cpus = settings
        .cpus
        .unwrap_or(config.cpus)
        .clamp(0.01, config.max_cpus);
    let disk_mb = settings
        .disk_mb
        .unwrap_or(config.disk_mb)
        .clamp(0, config.max_disk_mb);
    Limits {
        memory_bytes: memory_mb * 1024 * 1024,
        pids,
        nano_cpus: (cpus * 1e9) as i64,
        disk_bytes: disk_mb * 1024 * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_limits_are_capped_by_the_operator() {
        let config =
            ServeConfig::from_args(&["--disk-mb", "512", "--max-disk-mb", "1024"]).unwrap();
        let asked = |disk_mb| Settings {
            disk_mb,
            ..Settings::default()
        };
        let mib = 1024 * 1024;
        assert_eq!(
            container_limits(&asked(None), &config).disk_bytes,
            512 * mib
        );
        assert_eq!(
            container_limits(&asked(Some(64)), &config).disk_bytes,
            64 * mib
        );
        assert_eq!(
            container_limits(&asked(Some(1 << 20)), &config).disk_bytes,
            1024 * mib
        );
        assert_eq!(container_limits(&asked(Some(-5)), &config).disk_bytes, 0);
        let unlimited = ServeConfig::from_args(&[]).unwrap();
        assert_eq!(container_limits(&asked(None), &unlimited).disk_bytes, 0);
    }

    #[test]
    fn create_errors_know_their_status_and_metric_kind() {
        let tail = Vec::new;
        let cases = [
            (CreateError::NoAssignment("a".into()), 404, "no_assignment"),
            (CreateError::Render("r".into()), 422, "render"),
            (CreateError::Invalid("i".into()), 422, "render"),
            (
                CreateError::Build {
                    reason: "b".into(),
                    tail: tail(),
                },
                422,
                "build",
            ),
            (
                CreateError::Setup {
                    status: 1,
                    tail: tail(),
                },
                422,
                "setup",
            ),
            (
                CreateError::Pull {
                    image: "i".into(),
                    why: "w".into(),
                },
                503,
                "pull",
            ),
            (CreateError::AtCapacity(1), 503, "capacity"),
            (CreateError::AtRunningCapacity(1), 503, "capacity"),
            (CreateError::QueueFull(1), 503, "capacity"),
            (CreateError::DockerDown, 503, "docker"),
            (CreateError::Internal("x".into()), 500, "internal"),
        ];
        for (error, status, kind) in cases {
            assert_eq!(
                (error.status(), error.metric_kind()),
                (status, kind),
                "{error:?}"
            );
            assert!(metrics::ERRORS.has(kind), "{kind} is not counted");
        }
        assert_eq!(CreateError::QueueFull(1).limit(), Some("buildQueue"));
        assert_eq!(CreateError::DockerDown.limit(), None);
    }
}
