//! Making one instance for a spec: find the assignment, build or reuse its
//! image, create the container, put in its files and run its setup, save
//! the record; on failure one rollback removes what was made.

use std::sync::Arc;

use tokio::sync::watch;

use crate::assignment::{
    Assignment, AssignmentError, Mode, Settings, TemplateVars, DOCKERFILE_IN_CONTEXT,
};
use crate::crypto::handle;
use crate::engine::docker::{Limits, LABEL_ASSIGNMENT};
use crate::engine::gate::{self, Gate};
use crate::instance::entry::Instance;
use crate::instance::errors::{build_failure, CreateError};
use crate::instance::limits::{capped_settings, capped_timeouts, container_limits, CAPPED_LOGGED};
use crate::instance::provision::{assignment_error, Prepared};
use crate::instance::registry::Registry;
use crate::instance::shared_image::Pinned;
use crate::instance::store::InstanceRecord;
use crate::instance::tables::BuildResult;
use crate::protocol::spec::Spec;
use crate::support::time::unix_now;
use crate::telemetry::metrics;
use crate::telemetry::progress::{self, Phase};

impl Registry {
    pub(crate) async fn create(self: Arc<Self>, spec: Spec, done: watch::Sender<BuildResult>) {
        let started = std::time::Instant::now();
        let instance_id =
            crate::crypto::ids::new_instance_id(self.settings.load().node_id.as_deref());
        self.tables
            .lock()
            .unwrap()
            .building_ids
            .insert(instance_id.clone());
        let mut pinned = None;
        crate::telemetry::create_timings::open(&instance_id);
        let building = self.build_instance(&spec, &instance_id, &mut pinned);
        let result = (progress::reporting(&spec.spec_id, building).await)
            .map_err(|e| e.hiding(&instance_id));
        crate::telemetry::create_timings::close(&instance_id);
        if result.is_ok() {
            metrics::SPEC_READY_SECONDS.observe(started.elapsed().as_secs_f64());
        }
        self.tables.lock().unwrap().finish_build(
            &spec.spec_id,
            &instance_id,
            result.as_ref().ok().cloned(),
        );
        // Registered (or failed): the garbage collector may see the image's users now.
        drop(pinned);
        done.send_replace(Some(result));
    }

    /// The steps of a create: the assignment, its image (built for this
    /// instance, or the shared one), then the container and its record.
    async fn build_instance(
        self: &Arc<Self>,
        spec: &Spec,
        instance_id: &str,
        pinned: &mut Option<Pinned>,
    ) -> Result<Arc<Instance>, CreateError> {
        let config = self.settings.load();
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
        if made.is_err() {
            self.roll_back(instance_id, &container, &image, shared)
                .await;
        }
        made
    }

    /// The one way back from a failed create: nothing of it is left behind
    /// (a shared image stays for the other instances; the sweep collects it).
    async fn roll_back(&self, instance_id: &str, container: &str, image: &str, shared: bool) {
        if let Err(e) = self.docker.remove_container(container).await {
            let h = handle::of(instance_id);
            let e = handle::hide(&e, instance_id);
            log::warn!(ua_instance = h; "instance {h}: container not removed after a failed create: {e}");
        }
        if !shared {
            let _ = self.docker.remove_image(image).await;
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
        let _permit = self.provisioner.slots.acquire(instance_id).await;
        progress::set(Phase::Building(None));
        let started = std::time::Instant::now();
        let context = {
            let (assignment, spec, id) =
                (assignment.clone(), spec.clone(), instance_id.to_string());
            let stage_label = self.docker.stage_label();
            tokio::task::spawn_blocking(move || {
                let vars = TemplateVars {
                    data: &spec.data,
                    spec_id: &spec.spec_id,
                    instance_id: &id,
                };
                assignment.render_context(&vars, &stage_label)
            })
            .await
            .map_err(|e| CreateError::Internal(e.to_string()))?
            .map_err(assignment_error)?
        };
        metrics::PHASE_SECONDS.record("render", instance_id, started);
        self.provisioner
            .base_images(
                &context.dockerfile,
                Some(&context.static_bases),
                instance_id,
            )
            .await?;

        let image = format!("ua/{instance_id}");
        let labels = self.docker.labels(&handle::of(instance_id));
        let build_timeout = self.provisioner.build_timeout(assignment);
        progress::set(Phase::Building(None));
        let building_started = std::time::Instant::now();
        let built = self
            .docker
            .build_within(
                context.tar,
                DOCKERFILE_IN_CONTEXT,
                &image,
                &labels,
                self.settings.load().build_network,
                build_timeout,
            )
            .await;
        metrics::BUILD_SECONDS.observe(started.elapsed().as_secs_f64());
        metrics::PHASE_SECONDS.record("build", instance_id, building_started);
        built.map(|()| image).map_err(|e| {
            let h = handle::of(instance_id);
            let why = handle::hide(&e, instance_id);
            log::warn!(
                ua_instance = h, ua_spec = spec.spec_id;
                "instance {h}: build failed for spec {:?} (assignment {}): {why}",
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
        progress::set(Phase::Creating);
        let started = std::time::Instant::now();
        let labels = self.instance_labels(instance_id, spec);
        // A setup runs before the terminal, and a warm container waits for
        // its student: their gate stays closed until the first attach (see
        // gate.rs).
        let limits = self.limits(
            &crate::assignment::image::dotted_name(&assignment.name),
            &assignment.settings,
        );
        let claimed = match shared {
            true => self.claim_warm(assignment, container, image, &limits).await,
            false => None,
        };
        let has_setup = prepared.as_ref().is_some_and(|p| p.setup.is_some());
        let (gate, agent_key) = choose_gate(has_setup, claimed.is_some(), &limits.runtime);
        let container_id = match claimed.clone() {
            Some(id) => id,
            None => {
                let key = agent_key.as_deref();
                self.create_own(container, image, gate, key, &labels, &limits)
                    .await?
            }
        };
        metrics::PHASE_SECONDS.record("create", instance_id, started);
        let mut record = self.new_record(instance_id, spec, image, container_id, shared, gate);
        record.agent_key = agent_key.clone();
        if agent_key.is_some() {
            let config = &self.settings.load().limits;
            let max = crate::instance::limits::max_terminals(&assignment.settings, config);
            record.max_terminals = Some(max);
        }
        let provisioned = async {
            let running = match prepared {
                Some(prepared) => {
                    self.provision_files(assignment, container, image, prepared, instance_id, spec)
                        .await?
                }
                None => false,
            };
            self.save(&record).await.map_err(|e| {
                CreateError::Internal(format!("the instance record was not saved: {e}"))
            })?;
            Ok::<bool, CreateError>(running)
        }
        .await;
        if let (Err(_), Some(key)) = (&provisioned, &agent_key) {
            self.agents.forget(key);
        }
        // A claimed container runs already (the pool started it).
        let running = provisioned? || claimed.is_some();
        let h = handle::of(instance_id);
        log::info!(
            ua_instance = h, ua_spec = spec.spec_id;
            "instance {h} created for spec {:?} (assignment {}{}) {}",
            spec.spec_id,
            spec.assignment,
            if shared { ", shared image" } else { "" },
            crate::telemetry::create_timings::describe(instance_id)
        );
        progress::set(Phase::Starting);
        let instance = Instance::new(record);
        if running {
            // Left running for the terminal that is about to attach.
            instance.warm_for(self.settings.load().reattach_grace);
        }
        Ok(instance)
    }

    /// A new container of `image`: with `agent_key`, ua's agent is its main
    /// process and listens in that key's socket directory; without, the
    /// terminal behind `gate`.
    async fn create_own(
        &self,
        container: &str,
        image: &str,
        gate: Gate,
        agent_key: Option<&str>,
        labels: &std::collections::HashMap<String, String>,
        limits: &crate::engine::docker::Limits,
    ) -> Result<String, CreateError> {
        let (command, user) = self.docker.image_command(image).await?;
        let Some(key) = agent_key else {
            let entrypoint = gate::entrypoint(gate, &user, &command);
            let made = self
                .docker
                .create_container(container, image, entrypoint, labels, limits, None);
            return Ok(made.await?);
        };
        let workdir = self.docker.image_workdir(image).await?;
        let dir = self
            .agents
            .listen(key)
            .map_err(|e| CreateError::Internal(e.to_string()))?;
        let mounts = crate::engine::agent::mounts(&self.settings.load().agent, &dir);
        let entrypoint = crate::engine::agent::entrypoint(&user, &workdir, &command);
        let made = self
            .docker
            .create_container(container, image, entrypoint, labels, limits, Some(mounts))
            .await;
        if made.is_err() {
            self.agents.forget(key);
        }
        Ok(made?)
    }

    /// The labels of an instance's container: ua's own, its handle (`docker
    /// ps --filter label=ua.handle=…` finds a student's container) and its
    /// assignment.
    fn instance_labels(
        &self,
        instance_id: &str,
        spec: &Spec,
    ) -> std::collections::HashMap<String, String> {
        let mut labels = self.docker.labels(&handle::of(instance_id));
        labels.insert(
            LABEL_ASSIGNMENT.into(),
            crate::assignment::image::dotted_name(&spec.assignment),
        );
        labels
    }

    /// Uploads a shared-image instance's files and runs its setup; true
    /// when the setup left the container running. A failed setup is logged
    /// with the spec here, where the spec is known.
    async fn provision_files(
        &self,
        assignment: &Assignment,
        container: &str,
        image: &str,
        prepared: Prepared,
        instance_id: &str,
        spec: &Spec,
    ) -> Result<bool, CreateError> {
        let timeout = self.provisioner.build_timeout(assignment);
        let provisioned = self
            .provisioner
            .provision(container, image, prepared, timeout, instance_id)
            .await;
        if let Err(CreateError::Setup { status, .. }) = &provisioned {
            let h = handle::of(instance_id);
            log::warn!(
                ua_instance = h, ua_spec = spec.spec_id;
                "instance {h}: setup failed with status {status} for spec {:?} (assignment {})",
                spec.spec_id,
                spec.assignment
            );
        }
        provisioned
    }

    /// The record of a new instance, its keep capped by `--max-keep`.
    fn new_record(
        &self,
        instance_id: &str,
        spec: &Spec,
        image: &str,
        container_id: String,
        shared: bool,
        gate: Gate,
    ) -> InstanceRecord {
        let now = unix_now();
        InstanceRecord {
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
                .map(|t| t.min(now + self.settings.load().max_keep.as_secs() as i64)),
            gate,
            agent_key: None,
            max_terminals: None,
            sealed_spec: spec.sealed.clone(),
        }
    }

    /// A running container from the warm pool, renamed `container`, for a
    /// new instance of a shared-image assignment whose limits are the
    /// pool's; `None`: create one. Also tells the pool that `image` is the
    /// assignment's current image, to keep warm from now on.
    async fn claim_warm(
        &self,
        assignment: &Assignment,
        container: &str,
        image: &str,
        limits: &Limits,
    ) -> Option<String> {
        self.pool.want(&assignment.name, image, limits);
        self.pool.claim(image, limits, container).await
    }

    /// The container limits of an assignment on this server; a setting
    /// above the server's maximum is logged (once per assignment and value).
    fn limits(&self, assignment: &str, settings: &Settings) -> Limits {
        let config = self.settings.load();
        let timeouts = capped_timeouts(settings, config.build_timeout);
        for capped in capped_settings(settings, &config.limits)
            .into_iter()
            .chain(timeouts)
        {
            let line = format!("assignment {assignment}: {capped}");
            if CAPPED_LOGGED.lock().unwrap().insert(line.clone()) {
                log::warn!("{line}");
            }
        }
        container_limits(settings, &config.limits)
    }
}

/// How a new container runs its terminals, and its agent's key: the agent,
/// except in a warm-pool container (made with the gate) and under gVisor,
/// whose sandbox cannot reach a host socket here (docs/API.md, "Containers").
fn choose_gate(has_setup: bool, claimed: bool, runtime: &str) -> (Gate, Option<String>) {
    if !claimed && !runtime.starts_with("runsc") {
        return (Gate::Agent, Some(crate::engine::agent::Hub::new_key()));
    }
    let gate = if has_setup || claimed {
        Gate::Closed
    } else {
        Gate::Open
    };
    (gate, None)
}
