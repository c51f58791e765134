//! The live registry of instances: the tables, get-or-create (one build per
//! spec at a time), lookup, attach and observe. Making an instance is in
//! `create`, cleaning up in `housekeeping`; the pure table decisions are in
//! `tables`. It keeps the store and Docker in step; it knows nothing of
//! websocket frames.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::engine::docker::bounded;
use crate::engine::docker::DOCKER_CALL_LIMIT;
use crate::engine::docker::{Docker, DockerError};
use crate::instance::entry::Instance;
pub use crate::instance::errors::{AttachError, CreateError};
use crate::instance::files::{self, FilesError};
use crate::instance::pool::Pool;
use crate::instance::provision::Provisioner;
use crate::instance::settings::Settings;
use crate::instance::settled::{Settled, SETTLE_WAIT};
use crate::instance::store::{InstanceRecord, Store};
use crate::instance::tables::{Admission, Tables};
use crate::protocol::admin::Summary;
use crate::protocol::spec::Spec;
use crate::support::live::Swap;
use crate::telemetry::metrics;
use crate::terminal::CloseReason;

/// The live instances; keeps the store and Docker in step with them.
pub struct Registry {
    /// The settings; a reload swaps those that change live (`reconfigure`).
    pub(crate) settings: Swap<Settings>,
    /// The Docker client.
    pub(crate) docker: Arc<Docker>,
    pub(crate) store: Arc<Store>,
    pub(crate) provisioner: Arc<Provisioner>,
    /// The warm pool of shared-image containers (`--warm`).
    pub(crate) pool: Arc<Pool>,
    pub(crate) tables: Mutex<Tables>,
    pub(crate) next_generation: AtomicU64,
    /// Set once `reconcile` has brought the records (in the tables since
    /// `load_records`) and Docker into agreement: before it, nothing may be
    /// created or tidied away.
    pub(crate) reconciled: Settled,
    /// The graded-files reads in progress (bounded per instance and in all).
    pub(crate) file_reads: Arc<files::Reads>,
    /// The socket directories of agent containers.
    pub(crate) agents: Arc<crate::engine::agent::Hub>,
}

impl Registry {
    /// An empty registry; `load_records` fills it from the store.
    pub fn new(
        settings: Settings,
        docker: Arc<Docker>,
        store: Store,
        agents: Arc<crate::engine::agent::Hub>,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            agents,
            provisioner: Provisioner::new(Arc::new(settings.clone()), docker.clone()),
            pool: Arc::new(Pool::new(docker.clone())),
            settings: Swap::new(settings),
            docker,
            store: Arc::new(store),
            tables: Mutex::new(Tables::default()),
            next_generation: AtomicU64::new(1),
            reconciled: Settled::default(),
            file_reads: Arc::default(),
        })
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load()
    }

    /// Puts new settings in force for what is made, attached or swept from
    /// now on (a reload; see `reload.rs` for which settings change live).
    pub fn reconfigure(&self, settings: Settings) {
        self.settings.store(settings);
    }

    /// The live instance with this ID, if any.
    pub fn lookup(&self, instance_id: &str) -> Option<Arc<Instance>> {
        self.tables.lock().unwrap().by_id.get(instance_id).cloned()
    }

    /// Every stored instance, for the admin CLI (`ua list`), by last use.
    pub fn list(&self) -> Vec<Summary> {
        let expiry = self.settings.load().instance_expiry.as_secs() as i64;
        let tables = self.tables.lock().unwrap();
        let mut list: Vec<Summary> = tables
            .by_id
            .values()
            .map(|instance| instance.summary(expiry))
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
            .filter(|instance| crate::crypto::handle::of(&instance.id) == handle)
            .map(|instance| instance.spec_id.clone())
            .collect()
    }

    /// Instance gauges for `/metrics`, `/health` and the status line;
    /// `sessions` is filled in by the caller.
    pub fn snapshot(&self) -> metrics::Snapshot {
        let tables = self.tables.lock().unwrap();
        let running = tables.running();
        metrics::Snapshot {
            running,
            stopped: tables.by_id.len() - running,
            building: tables.building.len(),
            queued: self.provisioner.slots.queued(),
            sessions: 0,
            pool: self.pool.counts(),
        }
    }

    /// The instance of `spec`, made if needed. A session attached to an
    /// existing instance is closed: the newer client takes over.
    pub async fn get_or_create(self: &Arc<Self>, spec: Spec) -> Result<String, CreateError> {
        let existing = self.spec_instance(&spec.spec_id);
        if let Some(instance) = existing {
            if !instance.is_of(&spec.assignment) {
                return Err(CreateError::OtherAssignment);
            }
            if !self.container_gone(&instance).await? {
                return Ok(self.take_over(instance));
            }
            self.forget_vanished(&instance).await;
        }
        // Nothing is made before reconcile: it would take a new container for an orphan.
        self.reconciled.wait(SETTLE_WAIT).await?;
        let admission = self.tables.lock().unwrap().admit(
            &spec.spec_id,
            &spec.assignment,
            &self.settings.load().caps,
        )?;
        let mut waiting = match admission {
            Admission::Existing(instance) => return Ok(self.take_over(instance)),
            Admission::Wait(waiting) => waiting,
            Admission::Build(done, waiting) => {
                // Its own task: a client hanging up does not stop a build halfway.
                let registry = self.clone();
                tokio::spawn(async move { registry.create(spec, done).await });
                waiting
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
        self.tables.lock().unwrap().of_spec(spec_id)
    }

    fn take_over(&self, instance: Arc<Instance>) -> String {
        let id = instance.id.clone();
        tokio::spawn(async move {
            for (_, terminal) in instance.terminals.lock().await.all_live() {
                terminal.kick(CloseReason::TakenOver).await;
            }
        });
        id
    }

    pub(crate) async fn save(&self, record: &InstanceRecord) -> std::io::Result<()> {
        let (store, record) = (self.store.clone(), record.clone());
        tokio::task::spawn_blocking(move || store.save(&record))
            .await
            .map_err(std::io::Error::other)?
    }

    pub(crate) async fn delete_record(&self, instance_id: &str) {
        let (store, id) = (self.store.clone(), instance_id.to_string());
        match tokio::task::spawn_blocking(move || store.delete(&id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let h = crate::crypto::handle::of(instance_id);
                log::error!(ua_instance = h; "instance {h}: record not deleted: {e}")
            }
            Err(e) => {
                let h = crate::crypto::handle::of(instance_id);
                log::error!(ua_instance = h; "instance {h}: record not deleted: {e}")
            }
        }
    }

    /// The instance of a spec, if it has one (never builds, never takes over).
    /// `OtherAssignment` when the spec's specID has an instance or a build
    /// of another assignment.
    pub fn check_assignment(&self, spec: &Spec) -> Result<(), CreateError> {
        let tables = self.tables.lock().unwrap();
        tables.check_assignment(&spec.spec_id, &spec.assignment)
    }

    /// The spec's instance, if it has one; `OtherAssignment` when it is of
    /// another assignment than the spec's.
    pub fn instance_of_spec(&self, spec: &Spec) -> Result<Option<String>, CreateError> {
        let tables = self.tables.lock().unwrap();
        tables.check_assignment(&spec.spec_id, &spec.assignment)?;
        Ok(tables.by_spec.get(&spec.spec_id).cloned())
    }

    /// Starts reading graded files out of the instance's container as the
    /// image's USER (a stopped container is started for the read and
    /// stopped after it): the HTTP layer asks here and never sees Docker.
    /// The limits are checked before the answer starts; it then streams.
    pub async fn read_files(
        self: &Arc<Self>,
        instance: &Arc<Instance>,
        paths: &[String],
    ) -> Result<files::Answer, FilesError> {
        let Some(permit) = self.file_reads.try_start(&instance.id) else {
            return Err(FilesError::Busy(
                "too many graded-files reads at once; try again shortly".into(),
            ));
        };
        let measured = self.measure_files(instance, paths).await;
        let (reader, plan) = match measured {
            Ok(measured) => measured,
            Err(e) => {
                drop(permit);
                self.stop_after_reading(instance).await;
                return Err(e);
            }
        };
        let (sender, answer) = files::answer();
        let (registry, instance) = (self.clone(), instance.clone());
        tokio::spawn(async move {
            let sent = tokio::time::timeout(
                files::ANSWER_DEADLINE,
                files::send(&registry.docker, &reader, plan, sender),
            )
            .await;
            drop(permit);
            if let Ok(Err(files::Cut::Failed(e))) = sent {
                let h = crate::crypto::handle::of(&instance.id);
                let e = crate::crypto::handle::hide(&e, &instance.id);
                log::warn!(ua_instance = h; "instance {h}: graded files cut off: {e}");
            }
            registry.stop_after_reading(&instance).await;
        });
        Ok(answer)
    }

    /// The container running (started if need be), and the files measured.
    async fn measure_files(
        &self,
        instance: &Arc<Instance>,
        paths: &[String],
    ) -> Result<(files::Reader, files::Plan), FilesError> {
        let record = instance.record();
        let user = bounded(self.docker.image_user(&record.image)).await?;
        let workdir = bounded(self.docker.image_workdir(&record.image)).await?;
        self.running_for_files(instance, &record.container_id)
            .await?;
        let reader = files::Reader {
            container: record.container_id,
            user,
            workdir,
            gosu: record.gate != crate::engine::gate::Gate::Legacy,
        };
        let plan = match bounded_files(files::measure(&self.docker, &reader, paths)).await {
            // Stopped or restarted meanwhile (a terminal's end, a clean).
            Err(FilesError::Docker(DockerError::Api { status: 409, .. })) => {
                return Err(FilesError::Busy(
                    "the container is stopping or starting; try again shortly".into(),
                ))
            }
            other => other?,
        };
        Ok((reader, plan))
    }

    /// Starts a stopped container for a read (the terminal's lock held, so
    /// that no attach or end of a terminal crosses it).
    async fn running_for_files(
        &self,
        instance: &Arc<Instance>,
        container: &str,
    ) -> Result<(), FilesError> {
        match self.running_for_use(instance, container).await {
            Err(DockerError::NotFound) => Err(FilesError::Gone),
            other => Ok(other?),
        }
    }

    /// Starts a stopped container for a read or a check, the terminal's
    /// lock held, so that no attach or end of a terminal crosses it. A
    /// vanished container (`NotFound`) drops the instance.
    pub(crate) async fn running_for_use(
        &self,
        instance: &Arc<Instance>,
        container: &str,
    ) -> Result<(), DockerError> {
        let slot = instance.terminals.lock().await;
        let started = match bounded(self.docker.is_running(container)).await {
            Ok(true) => Ok(()),
            Ok(false) => bounded(self.docker.start(container)).await,
            Err(e) => Err(e),
        };
        if let Err(DockerError::NotFound) = started {
            drop(slot);
            self.forget_vanished(instance).await;
        }
        started
    }

    /// After the last read of an instance's files (or its check): its
    /// container is stopped again unless a terminal runs in it or waits for
    /// it (warm), or a check or a read still uses it.
    pub(crate) async fn stop_after_reading(&self, instance: &Arc<Instance>) {
        if self.file_reads.active(&instance.id) || instance.is_checking() {
            return;
        }
        let slot = instance.terminals.lock().await;
        let in_use = slot.any_live() || instance.is_warm() || instance.is_checking();
        if in_use || self.file_reads.active(&instance.id) || self.lookup(&instance.id).is_none() {
            return;
        }
        let container = instance.record().container_id;
        if let Err(e) = bounded(self.docker.stop(&container)).await {
            if !matches!(e, DockerError::NotFound) {
                let h = crate::crypto::handle::of(&instance.id);
                let e = crate::crypto::handle::hide(&e, &instance.id);
                log::warn!(ua_instance = h; "instance {h}: container not stopped after a read: {e}");
            }
        }
        drop(slot);
    }
}

/// `call` (measuring graded files), a 503 when it takes over
/// [`DOCKER_CALL_LIMIT`] (a FIFO swapped in can hold the open).
async fn bounded_files<T>(
    call: impl std::future::Future<Output = Result<T, FilesError>>,
) -> Result<T, FilesError> {
    tokio::time::timeout(DOCKER_CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(FilesError::Busy(
                "the files took too long to open; try again shortly".into(),
            ))
        })
}
