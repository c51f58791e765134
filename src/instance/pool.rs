//! The warm pool (`--warm N`): containers of shared-image assignments,
//! created and started before any student asks, so that a class start waits
//! for no container start (most of a new instance's time is Docker starting
//! the container). A new spec takes one ([`Pool::claim`]): renamed
//! `ua-<instance>`, it is an ordinary instance container from then on. One
//! background task ([`run`]) refills, one Docker call at a time, drains
//! containers of outdated images or limits, and gives places back when
//! students need them (docs/API.md, "Shared-image assignments").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::assignment::image::{dotted_name, image_tag};
use crate::assignment::{Assignment, Mode};
use crate::engine::docker::bounded;
use crate::engine::docker::{Docker, DockerError, Limits, Owned, POOL_NAME_PREFIX};
use crate::instance::create::container_limits;
use crate::instance::registry::Registry;
use crate::protocol::spec::AssignmentName;

/// How often the pool looks again at its assignments (edited ones drain)
/// when nothing wakes it.
const RECHECK: Duration = Duration::from_secs(10);
/// The pause after a failed Docker call, so a broken image is not retried hot.
const BACKOFF: Duration = Duration::from_secs(5);
/// How often the task looks whether the registry has reconciled.
const RECONCILE_POLL: Duration = Duration::from_millis(200);
/// How often a refill held back by students looks again.
const BUSY_POLL: Duration = Duration::from_millis(100);
/// No refill until this long after the last claim: a class start's claims
/// and terminals get Docker to themselves, the pool refills after the rush.
const QUIET: Duration = Duration::from_secs(2);

/// What the pool keeps warm for one assignment: its current image, with
/// the limits its instances get.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    image: String,
    limits: Limits,
}

/// A free pool container.
#[derive(Debug, Clone)]
struct Warm {
    id: String,
    assignment: String,
    target: Target,
}

/// The pool's targets (by assignment, dotted) and its free containers.
#[derive(Debug, Default)]
struct State {
    targets: HashMap<String, Target>,
    free: Vec<Warm>,
}

/// What the refill task does next.
#[derive(Debug)]
enum Step {
    /// Remove a free container (outdated, surplus, or its place is needed).
    Remove(Warm),
    /// Make one container for the assignment.
    Make(String, Target),
    /// Nothing until woken.
    Idle,
}

impl State {
    /// One step towards `warm` free containers per target, with at most
    /// `room` free containers in all (the places `--max-running` leaves).
    fn next_step(&self, warm: usize, room: usize) -> Step {
        let outdated = self
            .free
            .iter()
            .find(|w| self.targets.get(&w.assignment) != Some(&w.target));
        if let Some(warm) = outdated {
            return Step::Remove(warm.clone());
        }
        let counts = self.counts();
        let fullest = counts.iter().max_by_key(|(_, n)| *n);
        if self.free.len() > room || fullest.is_some_and(|(_, n)| *n > warm) {
            let (assignment, _) = fullest.expect("some are free");
            let surplus = self.free.iter().rev().find(|w| &w.assignment == assignment);
            return Step::Remove(surplus.expect("counted").clone());
        }
        if self.free.len() >= room {
            return Step::Idle;
        }
        let neediest = self
            .targets
            .iter()
            .map(|(a, t)| (counts.get(a).copied().unwrap_or(0), a, t))
            .filter(|(n, _, _)| *n < warm)
            .min_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.cmp(y.1)));
        match neediest {
            Some((_, assignment, target)) => Step::Make(assignment.clone(), target.clone()),
            None => Step::Idle,
        }
    }

    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for w in &self.free {
            *counts.entry(w.assignment.clone()).or_default() += 1;
        }
        counts
    }
}

/// The warm pool of one server.
pub struct Pool {
    docker: Arc<Docker>,
    state: Mutex<State>,
    wake: Notify,
    last_claim: Mutex<Option<std::time::Instant>>,
}

impl Pool {
    /// An empty pool; [`run`] fills it.
    pub fn new(docker: Arc<Docker>) -> Pool {
        Pool {
            docker,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            last_claim: Mutex::new(None),
        }
    }

    /// Keep `assignment`'s current image `image` warm with `limits` (called
    /// when a spec found or built it). A changed image or limits drain the
    /// old containers.
    pub fn want(&self, assignment: &AssignmentName, image: &str, limits: &Limits) {
        let target = Target {
            image: image.to_string(),
            limits: limits.clone(),
        };
        let changed = {
            let mut state = self.state.lock().unwrap();
            let old = state
                .targets
                .insert(dotted_name(assignment), target.clone());
            old != Some(target)
        };
        if changed {
            self.wake.notify_one();
        }
    }

    /// Takes a free container of `image` made with `limits`, renamed `name`;
    /// its ID, or `None` when the pool has none (then the caller creates one).
    pub async fn claim(&self, image: &str, limits: &Limits, name: &str) -> Option<String> {
        loop {
            let taken = {
                let mut state = self.state.lock().unwrap();
                let at = state
                    .free
                    .iter()
                    .position(|w| w.target.image == image && w.target.limits == *limits)?;
                state.free.swap_remove(at)
            };
            *self.last_claim.lock().unwrap() = Some(std::time::Instant::now());
            self.wake.notify_one();
            // Renamed first: from here on nothing takes it for a free one,
            // not even the adoption after a crash.
            match bounded(self.docker.rename(&taken.id, name)).await {
                Ok(()) => return Some(taken.id),
                Err(e) => {
                    log::warn!("pool container {} not claimed ({e}); removing it", taken.id);
                    let _ = bounded(self.docker.remove_container(&taken.id)).await;
                }
            }
        }
    }

    /// Free containers by assignment (dotted name), for every assignment the
    /// pool keeps warm, sorted by name.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let state = self.state.lock().unwrap();
        let counts = state.counts();
        let mut all: Vec<(String, usize)> = state
            .targets
            .keys()
            .chain(counts.keys())
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|a| (a.clone(), counts.get(a).copied().unwrap_or(0)))
            .collect();
        all.sort();
        all
    }

    fn claimed_lately(&self) -> bool {
        let last = *self.last_claim.lock().unwrap();
        last.is_some_and(|at| at.elapsed() < QUIET)
    }

    fn total(&self) -> usize {
        self.state.lock().unwrap().free.len()
    }
}

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
        let config = registry.config();
        let (running, building) = {
            let tables = registry.tables.lock().unwrap();
            (tables.running(), tables.building.len())
        };
        let room = config.max_running.saturating_sub(running + building);
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

async fn remove(pool: &Pool, warm: &Warm) -> Result<(), DockerError> {
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
async fn make(registry: &Registry, assignment: &str, target: &Target) -> Result<(), DockerError> {
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
    let id =
        bounded(docker.create_container(&name, &target.image, entrypoint, &labels, &target.limits))
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
async fn current_targets(
    registry: &Registry,
    names: HashSet<String>,
) -> HashMap<String, Option<Target>> {
    let config = registry.config();
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
                    limits: container_limits(&settings, &config),
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
async fn refresh(registry: &Registry) {
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
async fn adopt(registry: &Registry) {
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
    // Its assignment images, its instances' and its pool's assignments: an
    // image another server on the daemon built (the tag is the content
    // hash) carries that server's labels, not ours.
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
    let targets = current_targets(registry, names).await;
    let mut adopted = 0;
    {
        let mut state = registry.pool.state.lock().unwrap();
        for (name, target) in &targets {
            if let Some(target) = target {
                state.targets.insert(name.clone(), target.clone());
            }
        }
    }
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
                if let Err(e) = bounded(docker.remove_container(&id)).await {
                    log::warn!("warm pool: container {} not removed: {e}", pooled.name);
                }
            }
        }
    }
    // `--warm 0` (the default) has no pool to speak of.
    if registry.config().warm > 0 || adopted > 0 {
        log::info!(
            "warm pool: {adopted} containers adopted, {} assignments kept warm",
            registry.pool.counts().len()
        );
    }
    registry.pool.wake.notify_one();
}

impl Registry {
    /// Free pool containers in all, for `/health`.
    pub fn pool_total(&self) -> usize {
        self.pool.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory: i64) -> Limits {
        Limits {
            memory_bytes: memory,
            pids: 256,
            nano_cpus: 1_000_000_000,
            disk_bytes: 0,
            runtime: String::new(),
        }
    }

    fn target(image: &str) -> Target {
        Target {
            image: image.into(),
            limits: limits(512),
        }
    }

    fn warm(id: &str, assignment: &str, target: Target) -> Warm {
        Warm {
            id: id.into(),
            assignment: assignment.into(),
            target,
        }
    }

    #[test]
    fn fills_the_neediest_assignment_up_to_warm() {
        let mut state = State::default();
        state.targets.insert("a".into(), target("ia"));
        state.targets.insert("b".into(), target("ib"));
        state.free.push(warm("1", "a", target("ia")));
        match state.next_step(2, 100) {
            Step::Make(assignment, t) => assert_eq!((assignment.as_str(), t), ("b", target("ib"))),
            other => panic!("{other:?}"),
        }
        state.free.push(warm("2", "b", target("ib")));
        state.free.push(warm("3", "a", target("ia")));
        state.free.push(warm("4", "b", target("ib")));
        assert!(matches!(state.next_step(2, 100), Step::Idle));
        // --warm lowered by a reload: the surplus goes.
        assert!(matches!(state.next_step(1, 100), Step::Remove(_)));
    }

    #[test]
    fn outdated_containers_drain_first() {
        let mut state = State::default();
        state.targets.insert("a".into(), target("new"));
        state.free.push(warm("1", "a", target("new")));
        state.free.push(warm("2", "a", target("old")));
        state.free.push(warm("3", "gone", target("x")));
        let other_limits = Target {
            limits: limits(1024),
            ..target("new")
        };
        state.free.push(warm("4", "a", other_limits));
        let mut removed = Vec::new();
        while let Step::Remove(w) = state.next_step(5, 100) {
            state.free.retain(|f| f.id != w.id);
            removed.push(w.id);
        }
        assert_eq!(removed, vec!["2", "3", "4"]);
    }

    #[test]
    fn the_pool_gives_places_back_to_students() {
        let mut state = State::default();
        state.targets.insert("a".into(), target("ia"));
        for id in ["1", "2", "3"] {
            state.free.push(warm(id, "a", target("ia")));
        }
        // Room for 2 only: one goes, and nothing is made while none is left.
        assert!(matches!(state.next_step(5, 2), Step::Remove(_)));
        state.free.pop();
        assert!(matches!(state.next_step(5, 2), Step::Idle));
        assert!(matches!(state.next_step(5, 0), Step::Remove(_)));
        assert!(matches!(state.next_step(5, 3), Step::Make(..)));
    }
}
