//! Housekeeping of the registry: clean, remove, expire, tidy, shutdown,
//! dropping instances whose container vanished, and the sweep of unused
//! assignment images (the reconcile at start is in `reconcile`). Another
//! `impl Registry`, apart from the tables and get-or-create.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::docker::{bounded, DockerError};
use crate::engine::gate::Gate;
use crate::instance::entry::Instance;
use crate::instance::errors::CreateError;
use crate::instance::registry::Registry;
use crate::instance::store::InstanceRecord;
use crate::protocol::spec::AssignmentName;
use crate::support::time::unix_now;
use crate::terminal::CloseReason;

impl Registry {
    /// Whether the instance's container was removed behind ua's back (Docker
    /// trouble is not taken for that: the instance is kept).
    pub(crate) async fn container_vanished(&self, instance: &Instance) -> bool {
        let container = instance.record().container_id;
        matches!(self.docker.container_exists(&container).await, Ok(false))
    }

    /// Drops an instance whose container vanished, so that its spec makes a
    /// new one: its files went with the container.
    pub(crate) async fn forget_vanished(&self, instance: &Arc<Instance>) {
        let taken = self.tables.lock().unwrap().take_if_current(instance);
        if taken {
            let h = crate::crypto::handle::of(&instance.id);
            log::warn!(
                ua_instance = h, ua_spec = instance.spec_id;
                "instance {h}: its container was removed outside ua; dropping the instance \
                 (its files are gone), and its spec makes a new one"
            );
            self.remove(instance, "dropped").await;
        }
    }

    pub(crate) async fn stop_and_touch(&self, instance: &Arc<Instance>) {
        let record = instance.record();
        if let Err(e) = self.docker.stop(&record.container_id).await {
            if !matches!(e, DockerError::NotFound) {
                let h = crate::crypto::handle::of(&instance.id);
                let e = crate::crypto::handle::hide(&e, &instance.id);
                log::warn!(ua_instance = h; "instance {h}: container not stopped: {e}");
            }
        }
        let record = {
            let mut record = instance.record.lock().unwrap();
            record.last_active_at = unix_now();
            record.clone()
        };
        if self.lookup(&instance.id).is_some() {
            if let Err(e) = self.save(&record).await {
                let h = crate::crypto::handle::of(&instance.id);
                let e = crate::crypto::handle::hide(&e, &instance.id);
                log::error!(ua_instance = h; "instance {h}: record not saved: {e}");
            }
        }
    }

    /// Removes the instance of `spec_id` (after any build of it in flight):
    /// session closed with 4003, container, image and record gone.
    pub async fn clean(&self, spec_id: &str) -> usize {
        self.clean_of(spec_id, None).await.unwrap_or(0)
    }

    /// As `clean`, but only an instance of `assignment` when one is given:
    /// `OtherAssignment` when the specID's instance or build is of another.
    pub async fn clean_of(
        &self,
        spec_id: &str,
        assignment: Option<&AssignmentName>,
    ) -> Result<usize, CreateError> {
        let building = {
            let tables = self.tables.lock().unwrap();
            if let Some(assignment) = assignment {
                tables.check_assignment(spec_id, assignment)?;
            }
            tables.building.get(spec_id).cloned()
        };
        if let Some(mut waiting) = building {
            let _ = waiting.wait_for(Option::is_some).await;
        }
        let instance = {
            let mut tables = self.tables.lock().unwrap();
            if let Some(assignment) = assignment {
                tables.check_assignment(spec_id, assignment)?;
            }
            tables.take_spec(spec_id)
        };
        Ok(match instance {
            Some(instance) => {
                self.remove(&instance, "cleaned").await;
                1
            }
            None => 0,
        })
    }

    /// Tears down an instance already taken out of the tables.
    pub(crate) async fn remove(&self, instance: &Arc<Instance>, why: &str) {
        for terminal in instance.terminals.lock().await.take_all() {
            terminal.end(CloseReason::Gone).await;
        }
        let record = instance.record();
        let mut complete = true;
        if let Err(e) = bounded(self.docker.remove_container(&record.container_id)).await {
            let h = crate::crypto::handle::of(&instance.id);
            let e = crate::crypto::handle::hide(&e, &instance.id);
            log::error!(ua_instance = h; "instance {h}: container not removed: {e}");
            complete = false;
        }
        // A shared image stays for its other instances; the sweep collects it.
        if !record.shared_image {
            if let Err(e) = bounded(self.docker.remove_image(&record.image)).await {
                let h = crate::crypto::handle::of(&instance.id);
                let e = crate::crypto::handle::hide(&e, &instance.id);
                log::error!(ua_instance = h; "instance {h}: image not removed: {e}");
                complete = false;
            }
        }
        if let Some(key) = &record.agent_key {
            self.agents.forget(key);
        }
        // Without its container the record is dropped on the next start anyway.
        self.delete_record(&instance.id).await;
        let h = crate::crypto::handle::of(&instance.id);
        log::info!(
            ua_instance = h, ua_spec = instance.spec_id;
            "instance {h} {why} (spec {:?}){}",
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
        let limit = now - self.settings.load().instance_expiry.as_secs() as i64;
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
            ids.iter().filter_map(|id| tables.take(id)).collect()
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
    pub(crate) fn shared_images_in_use(&self) -> HashSet<String> {
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
        (self.settings.load().instance_expiry / 4)
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

    async fn tidy_container(
        &self,
        container: &crate::engine::docker::Owned,
    ) -> Result<(), DockerError> {
        let Some(id) = container.instance_id.as_deref() else {
            return Ok(());
        };
        let building = self.tables.lock().unwrap().building_ids.contains(id);
        match self.lookup(id) {
            Some(instance) if container.running => {
                // Holding the terminal's lock: an attach waits for the stop.
                let Ok(terminals) = instance.terminals.try_lock() else {
                    return Ok(());
                };
                // A graded-files read or a check stops it itself when done.
                let reading = self.file_reads.active(id) || instance.is_checking();
                if !terminals.any_live() && !instance.is_warm() && !reading {
                    let h = crate::crypto::handle::of(id);
                    log::info!(ua_instance = h; "instance {h}: stopping its container (no session)");
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

    /// On shutdown: close every session with 1001. Containers keep running
    /// (their terminal is their main process): the next server gives their
    /// students the reattach grace. Containers of older versions, whose
    /// terminal is an exec that dies with this process, are stopped.
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
            let terminals = instance.terminals.lock().await.take_all();
            let legacy = instance.record().gate == Gate::Legacy;
            if !terminals.is_empty() {
                for terminal in terminals {
                    terminal.end(CloseReason::Shutdown).await;
                }
                if legacy {
                    self.stop_and_touch(&instance).await;
                }
            } else if instance.is_warm() && legacy {
                self.stop_and_touch(&instance).await;
            }
        });
        futures_util::future::join_all(stops).await;
    }
}
