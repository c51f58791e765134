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

use crate::assignment::image::dotted_name;
use crate::engine::docker::bounded;
use crate::engine::docker::{Docker, Limits};
use crate::protocol::spec::AssignmentName;

/// No refill until this long after the last claim: a class start's claims
/// and terminals get Docker to themselves, the pool refills after the rush.
pub(super) const QUIET: Duration = Duration::from_secs(2);

/// What the pool keeps warm for one assignment: its current image, with
/// the limits its instances get.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) image: String,
    pub(super) limits: Limits,
}

/// A free pool container.
#[derive(Debug, Clone)]
pub(super) struct Warm {
    pub(super) id: String,
    pub(super) assignment: String,
    pub(super) target: Target,
}

/// The pool's targets (by assignment, dotted) and its free containers.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) targets: HashMap<String, Target>,
    pub(super) free: Vec<Warm>,
}

/// What the refill task does next.
#[derive(Debug)]
pub(super) enum Step {
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
    pub(super) fn next_step(&self, warm: usize, room: usize) -> Step {
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

    pub(super) fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for w in &self.free {
            *counts.entry(w.assignment.clone()).or_default() += 1;
        }
        counts
    }
}

/// The warm pool of one server.
pub struct Pool {
    pub(super) docker: Arc<Docker>,
    pub(super) state: Mutex<State>,
    pub(super) wake: Notify,
    pub(super) last_claim: Mutex<Option<std::time::Instant>>,
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

    pub(super) fn claimed_lately(&self) -> bool {
        let last = *self.last_claim.lock().unwrap();
        last.is_some_and(|at| at.elapsed() < QUIET)
    }

    pub(super) fn total(&self) -> usize {
        self.state.lock().unwrap().free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn limits(memory: i64) -> Limits {
        Limits {
            memory_bytes: memory,
            pids: 256,
            nano_cpus: 1_000_000_000,
            disk_bytes: 0,
            runtime: String::new(),
        }
    }

    pub(super) fn target(image: &str) -> Target {
        Target {
            image: image.into(),
            limits: limits(512),
        }
    }

    pub(super) fn warm(id: &str, assignment: &str, target: Target) -> Warm {
        Warm {
            id: id.into(),
            assignment: assignment.into(),
            target,
        }
    }

    #[test]
    pub(super) fn fills_the_neediest_assignment_up_to_warm() {
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
    pub(super) fn outdated_containers_drain_first() {
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
    pub(super) fn the_pool_gives_places_back_to_students() {
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
