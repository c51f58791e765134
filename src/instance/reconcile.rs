//! Start-up in two steps (docs/API.md, "While reconciling", and
//! Lifecycle, "Restart"): `load_records` puts every record into the tables
//! before the server answers, so that recorded instances work at once;
//! `reconcile` then brings them and Docker into agreement in the
//! background — records whose container is gone dropped, unowned
//! containers and images removed, running terminals given the reattach
//! grace — and marks the records settled. Another `impl Registry`.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::engine::docker::{DockerError, Owned, OwnedImage};
use crate::engine::gate::Gate;
use crate::instance::entry::Instance;
use crate::instance::errors::CreateError;
use crate::instance::registry::Registry;
use crate::instance::settled::SETTLE_WAIT;
use crate::terminal::CloseReason;

/// Records of vanished containers dropped at once (each a Docker call and a
/// file removal).
const DROPS_AT_ONCE: usize = 16;

impl Registry {
    /// Reads every record into the tables (before the server answers);
    /// the number read.
    pub async fn load_records(&self) -> usize {
        let store = self.store.clone();
        let records = match tokio::task::spawn_blocking(move || store.load_all()).await {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                log::error!("instance records unreadable: {e}");
                Vec::new()
            }
            Err(e) => {
                log::error!("instance records not read: {e}");
                Vec::new()
            }
        };
        let mut tables = self.tables.lock().unwrap();
        for record in records {
            // Listening again at once: a running agent reconnects within
            // a moment, its terminals intact.
            if let Some(key) = &record.agent_key {
                if let Err(e) = self.agents.listen(key) {
                    let h = crate::crypto::handle::of(&record.instance_id);
                    log::error!(ua_instance = h; "instance {h}: its agent's socket: {e}");
                }
            }
            tables.insert(Instance::new(record));
        }
        tables.by_id.len()
    }

    /// Whether `reconcile` has run to the end.
    pub fn is_reconciled(&self) -> bool {
        self.reconciled.is_done()
    }

    /// `records` in `/health` and `ua status`: `"reconciling"` until the
    /// reconcile has run to the end, then `"ok"`.
    pub fn records_state(&self) -> &'static str {
        if self.is_reconciled() {
            "ok"
        } else {
            "reconciling"
        }
    }

    /// Waits (bounded) for the records to settle, for what needs to know
    /// which containers run (`ua list`).
    pub async fn wait_reconciled(&self) -> Result<(), CreateError> {
        self.reconciled.wait(SETTLE_WAIT).await
    }

    /// Whether the instance's container is gone. Before the reconcile the
    /// record is trusted only when Docker shows the container (`DockerDown`
    /// when it does not answer); after it, Docker trouble keeps the instance.
    pub(crate) async fn container_gone(&self, instance: &Instance) -> Result<bool, CreateError> {
        if self.is_reconciled() {
            return Ok(self.container_vanished(instance).await);
        }
        let container = instance.record().container_id;
        match self.docker.container_exists(&container).await {
            Ok(exists) => Ok(!exists),
            Err(_) => Err(CreateError::DockerDown),
        }
    }

    /// Brings the records in the tables and Docker into agreement; once it
    /// has run to the end, the records are settled. Safe to run again after
    /// a failure or a timeout: each step starts from what is left.
    pub async fn reconcile(&self) -> Result<(), DockerError> {
        let listed = async {
            let containers = self.docker.owned_containers().await?;
            Ok::<_, DockerError>((containers, self.docker.owned_images().await?))
        };
        let (containers, images) = match listed.await {
            Ok(listed) => listed,
            Err(e) => {
                self.reconciled.set_docker_away(true);
                return Err(e);
            }
        };
        self.reconciled.set_docker_away(false);
        let dropped = self.drop_or_adopt(&containers).await?;
        self.remove_unowned(&containers, &images).await?;
        let kept = self.tables.lock().unwrap().by_id.len();
        self.reconciled.mark_done();
        // Assignment images: kept while a record uses them or they are current.
        let collected = self
            .provisioner
            .collect_garbage(self.shared_images_in_use())
            .await;
        // Said once the images are settled too (tests and operators wait for it).
        log::info!("reconciled with Docker: {kept} instances ({dropped} dropped)");
        collected
    }

    /// Drops the recorded instances whose container is gone and adopts the
    /// running ones; the number dropped.
    async fn drop_or_adopt(&self, containers: &[Owned]) -> Result<usize, DockerError> {
        let by_id: HashMap<&str, &Owned> = containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let recorded: Vec<Arc<Instance>> = self
            .tables
            .lock()
            .unwrap()
            .by_id
            .values()
            .cloned()
            .collect();
        let mut gone = Vec::new();
        for instance in recorded {
            let container = instance.record().container_id;
            match by_id.get(container.as_str()) {
                None => gone.push(instance),
                Some(container) if container.running => self.adopt_running(&instance).await?,
                Some(_) => {}
            }
        }
        let dropped = std::sync::atomic::AtomicUsize::new(0);
        futures_util::stream::iter(gone)
            .for_each_concurrent(DROPS_AT_ONCE, |instance| {
                let dropped = &dropped;
                async move {
                    if self.drop_gone(&instance).await {
                        dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .await;
        Ok(dropped.into_inner())
    }

    /// A container found running: its terminal outlived the old server, and
    /// its student has the reattach grace to come back to it, as after a
    /// dropped connection (then the sweep stops it). One of an older
    /// version, whose terminal was an exec gone with the old server, is
    /// stopped. A student already back (attached while reconciling) keeps
    /// the terminal; an instance cleaned meanwhile is left alone.
    async fn adopt_running(&self, instance: &Instance) -> Result<(), DockerError> {
        let terminals = instance.terminals.lock().await;
        let back = terminals.any_live();
        // Cleaned meanwhile: its container is gone or going.
        if back || self.lookup(&instance.id).is_none() {
            return Ok(());
        }
        let record = instance.record();
        if record.gate != Gate::Legacy {
            instance.warm_for(self.settings.load().reattach_grace);
            return Ok(());
        }
        let h = crate::crypto::handle::of(&record.instance_id);
        log::info!(
            ua_instance = h, ua_spec = record.spec_id;
            "instance {h}: stopping its container (no session)"
        );
        self.docker.stop(&record.container_id).await
    }

    /// Drops a recorded instance whose container is gone (unless a use of it
    /// has dropped it already); whether this did.
    async fn drop_gone(&self, instance: &Arc<Instance>) -> bool {
        if !self.tables.lock().unwrap().take_if_current(instance) {
            return false;
        }
        let record = instance.record();
        let h = crate::crypto::handle::of(&record.instance_id);
        log::warn!(
            ua_instance = h, ua_spec = record.spec_id;
            "instance {h}: its container is gone; dropping the instance"
        );
        for terminal in instance.terminals.lock().await.take_all() {
            terminal.end(CloseReason::Gone).await;
        }
        if !record.shared_image {
            let _ = self.docker.remove_image(&record.image).await;
        }
        if let Some(key) = &record.agent_key {
            self.agents.forget(key);
        }
        self.delete_record(&record.instance_id).await;
        true
    }

    /// Removes the containers and per-instance images that no record owns.
    /// Free warm-pool containers are the pool's to adopt or remove
    /// (`warm::adopt`); assignment images are collected apart.
    async fn remove_unowned(
        &self,
        containers: &[Owned],
        images: &[OwnedImage],
    ) -> Result<(), DockerError> {
        let owned = |id: &Option<String>| id.as_ref().is_some_and(|id| self.lookup(id).is_some());
        let unowned = containers
            .iter()
            .filter(|c| c.pool.is_none() && !owned(&c.instance_id));
        for container in unowned {
            log::warn!("removing container {} that no record owns", container.id);
            self.docker.remove_container(&container.id).await?;
        }
        let per_instance = images.iter().filter(|i| i.assignment.is_none());
        for image in per_instance.filter(|i| !owned(&i.instance_id)) {
            log::warn!("removing image {} that no record owns", image.id);
            if let Err(e) = self.docker.remove_image(&image.id).await {
                log::warn!("image {} not removed: {e}", image.id);
            }
        }
        Ok(())
    }
}
