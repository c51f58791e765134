//! The warm pool's refill task ([`run`]): adopts the pool containers of an
//! earlier run, then refills one Docker call at a time, drains containers of
//! outdated images or limits, and gives places back when students need
//! them. The pool itself ([`Pool`](crate::instance::pool::Pool)) knows no registry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::assignment::image::{dotted_name, image_tag};
use crate::assignment::{Assignment, Mode};
use crate::engine::docker::bounded;
use crate::engine::docker::{DockerError, Owned, OwnedImage, POOL_NAME_PREFIX};
use crate::instance::limits::container_limits;
use crate::instance::pool::{Pool, Step, Target, Warm};
use crate::instance::registry::Registry;
use crate::protocol::spec::AssignmentName;

/// How often the pool looks again at its assignments (edited ones drain)
/// when nothing wakes it.
pub(super) const RECHECK: Duration = Duration::from_secs(10);

/// The pause after a failed Docker call, so a broken image is not retried hot.
pub(super) const BACKOFF: Duration = Duration::from_secs(5);

/// How often the task looks whether the registry has reconciled.
pub(super) const RECONCILE_POLL: Duration = Duration::from_millis(200);

/// How often a refill held back by students looks again.
pub(super) const BUSY_POLL: Duration = Duration::from_millis(100);

/// The refill task: after reconcile, adopts the free containers a previous
/// run left, then fills, drains and gives back, one Docker call at a time,
/// each bounded. Runs until aborted at shutdown.
pub async fn run(registry: Arc<Registry>) {
    while !registry.is_reconciled() {
        tokio::time::sleep(RECONCILE_POLL).await;
    }
    adopt(&registry).await;
    let pool = registry.pool.clone();
    loop {
        let config = registry.settings();
        let (running, building) = {
            let tables = registry.tables.lock().unwrap();
            (tables.running(), tables.building.len())
        };
        let room = config.caps.max_running.saturating_sub(running + building);
        let step = pool.state.lock().unwrap().next_step(config.warm, room);
        let done = match step {
            Step::Remove(warm) => remove(&pool, &warm).await,
            // Students first: no refill while an instance is being made,
            // nor right after a claim.
            Step::Make(..) if building > 0 || pool.claimed_lately() => {
                tokio::time::sleep(BUSY_POLL).await;
                Ok(())
            }
            Step::Make(assignment, target) => make(&registry, &assignment, &target).await,
            Step::Idle => {
                let woken = tokio::time::timeout(RECHECK, pool.wake.notified()).await;
                if woken.is_err() && config.warm > 0 {
                    refresh(&registry).await;
                }
                Ok(())
            }
        };
        if let Err(e) = done {
            log::warn!("warm pool: {e}; trying again in {} s", BACKOFF.as_secs());
            let _ = tokio::time::timeout(BACKOFF, pool.wake.notified()).await;
            refresh(&registry).await;
        }
    }
}

pub(super) async fn remove(pool: &Pool, warm: &Warm) -> Result<(), DockerError> {
    let taken = {
        let mut state = pool.state.lock().unwrap();
        let at = state.free.iter().position(|w| w.id == warm.id);
        at.map(|at| state.free.swap_remove(at))
    };
    if taken.is_some() {
        bounded(pool.docker.remove_container(&warm.id)).await?;
        log::debug!(
            "warm pool: removed container {} ({})",
            warm.id,
            warm.assignment
        );
    }
    Ok(())
}

/// Creates and starts one container as an instance's, then offers it, if
/// its target is still the assignment's.
pub(super) async fn make(
    registry: &Registry,
    assignment: &str,
    target: &Target,
) -> Result<(), DockerError> {
    let pool = &registry.pool;
    let docker = &registry.docker;
    let name = format!(
        "{POOL_NAME_PREFIX}{}",
        &crate::crypto::ids::random_id()[..12]
    );
    let labels = docker.pool_labels(assignment, &target.limits);
    // An instance's container with its gate closed: the student's program
    // starts only after their files and setup, at the first attach.
    let (command, user) = bounded(docker.image_command(&target.image)).await?;
    let entrypoint =
        crate::engine::gate::entrypoint(crate::engine::gate::Gate::Closed, &user, &command);
    let id = bounded(docker.create_container(
        &name,
        &target.image,
        entrypoint,
        &labels,
        &target.limits,
        None,
    ))
    .await?;
    if let Err(e) = bounded(docker.start(&id)).await {
        let _ = bounded(docker.remove_container(&id)).await;
        return Err(e);
    }
    let offered = {
        let mut state = pool.state.lock().unwrap();
        let current = state.targets.get(assignment) == Some(target);
        if current {
            state.free.push(Warm {
                id: id.clone(),
                assignment: assignment.to_string(),
                target: target.clone(),
            });
        }
        current
    };
    if !offered {
        bounded(docker.remove_container(&id)).await?;
    }
    Ok(())
}

/// The current target of each named assignment that is a shared-image one
/// whose current image exists; others have none. Blocking work off the runtime.
pub(super) async fn current_targets(
    registry: &Registry,
    names: HashSet<String>,
) -> HashMap<String, Option<Target>> {
    let config = registry.settings();
    let hashes = registry.provisioner.hashes();
    let root = config.assignments.clone();
    let found = tokio::task::spawn_blocking(move || {
        let parsed: HashSet<AssignmentName> = names
            .iter()
            .filter_map(|name| AssignmentName::parse(name).ok())
            .collect();
        parsed
            .into_iter()
            .map(|parsed| {
                let name = dotted_name(&parsed);
                let current = Assignment::find(&root, &parsed)
                    .ok()
                    .filter(|a| a.mode == Mode::Shared)
                    .and_then(|a| match hashes.hash(&a) {
                        Ok(hash) => Some((image_tag(&a.name, &hash), a.settings)),
                        Err(e) => {
                            log::warn!("warm pool: assignment {name} not hashed: {e}");
                            None
                        }
                    });
                (name, current)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut targets = HashMap::new();
    for (name, current) in found {
        let target = match current {
            Some((image, settings)) => match bounded(registry.docker.image_exists(&image)).await {
                Ok(true) => Some(Target {
                    image,
                    limits: container_limits(&settings, &config.limits),
                }),
                other => {
                    if config.warm > 0 {
                        log::debug!(
                            "warm pool: {name}: its image {image} is not there ({other:?})"
                        );
                    }
                    None
                }
            },
            None => {
                if config.warm > 0 {
                    log::debug!("warm pool: {name} is not a shared-image assignment here");
                }
                None
            }
        };
        targets.insert(name, target);
    }
    targets
}

/// Looks at the assignments the pool keeps warm again: an edited one (a new
/// content hash) or new limits retarget it (its old containers drain); one
/// gone, or whose new image is not built yet, has no pool until a spec
/// builds it.
pub(super) async fn refresh(registry: &Registry) {
    let names: HashSet<String> = registry
        .pool
        .state
        .lock()
        .unwrap()
        .targets
        .keys()
        .cloned()
        .collect();
    if names.is_empty() {
        return;
    }
    let current = current_targets(registry, names).await;
    let mut state = registry.pool.state.lock().unwrap();
    for (name, target) in current {
        match target {
            Some(target) => {
                state.targets.insert(name, target);
            }
            None => {
                state.targets.remove(&name);
            }
        }
    }
}

/// At start: targets for the assignments whose current image exists, and
/// the free containers a previous run left that still fit one (running, of
/// the current image, with the limits in force); the others are removed.
pub(super) async fn adopt(registry: &Registry) {
    let docker = &registry.docker;
    let (images, containers) = match (
        bounded(docker.owned_images()).await,
        bounded(docker.owned_containers()).await,
    ) {
        (Ok(images), Ok(containers)) => (images, containers),
        (Err(e), _) | (_, Err(e)) => {
            log::warn!("warm pool: nothing adopted ({e}); leftovers wait for the next start");
            return;
        }
    };
    let names = known_assignments(registry, images, &containers);
    let targets = current_targets(registry, names).await;
    {
        let mut state = registry.pool.state.lock().unwrap();
        for (name, target) in &targets {
            if let Some(target) = target {
                state.targets.insert(name.clone(), target.clone());
            }
        }
    }
    let adopted = adopt_or_remove(registry, containers, &targets).await;
    // `--warm 0` (the default) has no pool to speak of.
    if registry.settings().warm > 0 || adopted > 0 {
        log::info!(
            "warm pool: {adopted} containers adopted, {} assignments kept warm",
            registry.pool.counts().len()
        );
    }
    registry.pool.wake.notify_one();
}

/// The assignments that may have pool containers: those of this server's
/// assignment images, instances and pool containers. An image another
/// server on the daemon built (the tag is the content hash) carries that
/// server's labels, not ours.
fn known_assignments(
    registry: &Registry,
    images: Vec<OwnedImage>,
    containers: &[Owned],
) -> HashSet<String> {
    let mut names: HashSet<String> = images
        .into_iter()
        .filter_map(|i| i.assignment.map(|(name, _)| name))
        .collect();
    names.extend(
        containers
            .iter()
            .filter_map(|c| c.pool.as_ref())
            .map(|p| p.assignment.clone()),
    );
    names.extend(
        registry
            .tables
            .lock()
            .unwrap()
            .by_id
            .values()
            .map(|i| i.record())
            .filter(|r| r.shared_image)
            .map(|r| r.assignment),
    );
    names
}

/// Takes into the pool the containers that fit their assignment's current
/// target (running, same image, same limits) and removes the others;
/// returns how many were taken.
async fn adopt_or_remove(
    registry: &Registry,
    containers: Vec<Owned>,
    targets: &HashMap<String, Option<Target>>,
) -> usize {
    let mut adopted = 0;
    for container in containers {
        let Owned {
            id,
            running,
            pool: Some(pooled),
            ..
        } = container
        else {
            continue;
        };
        let target = targets.get(&pooled.assignment).cloned().flatten();
        let fits = target.as_ref().is_some_and(|t| {
            running && t.image == pooled.image && t.limits.label() == pooled.limits
        });
        match target {
            Some(target) if fits => {
                registry.pool.state.lock().unwrap().free.push(Warm {
                    id,
                    assignment: pooled.assignment,
                    target,
                });
                adopted += 1;
            }
            _ => {
                log::info!(
                    "warm pool: removing container {} (outdated or stopped)",
                    pooled.name
                );
                if let Err(e) = bounded(registry.docker.remove_container(&id)).await {
                    log::warn!("warm pool: container {} not removed: {e}", pooled.name);
                }
            }
        }
    }
    adopted
}

impl Registry {
    /// Free pool containers in all, for `/health`.
    pub fn pool_total(&self) -> usize {
        self.pool.total()
    }
}
