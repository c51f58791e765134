//! The registry's tables and the decisions taken on them, with no Docker and
//! no store: which instance a spec has, whether a new build may start
//! (capacity and queue), builds in flight, and taking instances out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;

use crate::instance::entry::Instance;
use crate::instance::errors::CreateError;
use crate::protocol::spec::AssignmentName;

/// What waiters for a build hear: `None` until it is over.
pub(crate) type BuildResult = Option<Result<Arc<Instance>, CreateError>>;

/// The operator's limits on instances and builds.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// `--max-instances`: stored instances plus builds.
    pub max_instances: usize,
    /// `--max-running`: running terminals plus builds.
    pub max_running: usize,
    /// `--max-builds`: builds at once; the rest wait in the queue.
    pub max_builds: usize,
    /// `--max-build-queue`: builds waiting for a slot.
    pub max_build_queue: usize,
}

impl Caps {
    /// Whether one more build may start, given the instances stored, the
    /// terminals running and the builds in flight.
    pub fn admit(&self, stored: usize, running: usize, building: usize) -> Result<(), CreateError> {
        if stored + building >= self.max_instances {
            return Err(CreateError::AtCapacity(self.max_instances));
        }
        if running + building >= self.max_running {
            return Err(CreateError::AtRunningCapacity(self.max_running));
        }
        let waiting = building.saturating_sub(self.max_builds);
        if waiting >= self.max_build_queue {
            return Err(CreateError::QueueFull(waiting));
        }
        Ok(())
    }
}

/// What `get_or_create` does for a spec.
pub(crate) enum Admission {
    /// The spec has an instance.
    Existing(Arc<Instance>),
    /// A build of the spec is in flight: wait for it.
    Wait(watch::Receiver<BuildResult>),
    /// A new build is registered: run it and send its result here.
    Build(watch::Sender<BuildResult>, watch::Receiver<BuildResult>),
}

/// The live instances by ID and by spec, and the builds in flight.
#[derive(Default)]
pub(crate) struct Tables {
    pub(crate) by_id: HashMap<String, Arc<Instance>>,
    pub(crate) by_spec: HashMap<String, String>,
    /// Builds in flight, by spec ID: later requests wait on the first.
    pub(crate) building: HashMap<String, watch::Receiver<BuildResult>>,
    /// The assignment each build in flight is for, by spec ID.
    pub(crate) building_for: HashMap<String, AssignmentName>,
    /// Instance IDs of builds in flight: Docker objects that have no record yet.
    pub(crate) building_ids: HashSet<String>,
}

impl Tables {
    /// The instance of a spec, if it has one.
    pub fn of_spec(&self, spec_id: &str) -> Option<Arc<Instance>> {
        self.by_spec
            .get(spec_id)
            .and_then(|id| self.by_id.get(id))
            .cloned()
    }

    /// Instances whose terminal runs.
    pub fn running(&self) -> usize {
        self.by_id.values().filter(|i| i.is_busy()).count()
    }

    /// The existing instance, the build to wait for, or a new build
    /// registered under the spec if the caps allow one; `OtherAssignment`
    /// when the specID's instance or build is of another assignment.
    pub fn admit(
        &mut self,
        spec_id: &str,
        assignment: &AssignmentName,
        caps: &Caps,
    ) -> Result<Admission, CreateError> {
        self.check_assignment(spec_id, assignment)?;
        if let Some(instance) = self.of_spec(spec_id) {
            return Ok(Admission::Existing(instance));
        }
        if let Some(waiting) = self.building.get(spec_id) {
            return Ok(Admission::Wait(waiting.clone()));
        }
        caps.admit(self.by_id.len(), self.running(), self.building.len())?;
        let (done, waiting) = watch::channel(None);
        self.building.insert(spec_id.to_string(), waiting.clone());
        self.building_for
            .insert(spec_id.to_string(), assignment.clone());
        Ok(Admission::Build(done, waiting))
    }

    /// `OtherAssignment` when the specID's instance, or its build in
    /// flight, is of an assignment other than `assignment`.
    pub fn check_assignment(
        &self,
        spec_id: &str,
        assignment: &AssignmentName,
    ) -> Result<(), CreateError> {
        let instance_ok = self
            .of_spec(spec_id)
            .is_none_or(|instance| instance.is_of(assignment));
        let build_ok = self
            .building_for
            .get(spec_id)
            .is_none_or(|building| building == assignment);
        if instance_ok && build_ok {
            Ok(())
        } else {
            Err(CreateError::OtherAssignment)
        }
    }

    /// Adds an instance under its ID and its spec.
    pub fn insert(&mut self, instance: Arc<Instance>) {
        self.by_spec
            .insert(instance.spec_id.clone(), instance.id.clone());
        self.by_id.insert(instance.id.clone(), instance);
    }

    /// A build is over: it waits no more, and a made instance is added.
    pub fn finish_build(&mut self, spec_id: &str, instance_id: &str, made: Option<Arc<Instance>>) {
        self.building.remove(spec_id);
        self.building_for.remove(spec_id);
        self.building_ids.remove(instance_id);
        if let Some(instance) = made {
            self.insert(instance);
        }
    }

    /// Takes out the instance of a spec.
    pub fn take_spec(&mut self, spec_id: &str) -> Option<Arc<Instance>> {
        let id = self.by_spec.remove(spec_id)?;
        self.by_id.remove(&id)
    }

    /// Takes out an instance by ID (and its spec's entry).
    pub fn take(&mut self, instance_id: &str) -> Option<Arc<Instance>> {
        let instance = self.by_id.remove(instance_id)?;
        self.by_spec.remove(&instance.spec_id);
        Some(instance)
    }

    /// Takes out this very instance, unless another has taken its place;
    /// whether it was taken.
    pub fn take_if_current(&mut self, instance: &Arc<Instance>) -> bool {
        let current = self
            .by_id
            .get(&instance.id)
            .is_some_and(|known| Arc::ptr_eq(known, instance));
        if current {
            self.take(&instance.id);
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::store::InstanceRecord;

    fn instance(id: &str, spec_id: &str) -> Arc<Instance> {
        Instance::new(InstanceRecord {
            instance_id: id.into(),
            spec_id: spec_id.into(),
            assignment: "a".into(),
            image: "ua/x".into(),
            container_id: "c".into(),
            created_at: 0,
            last_active_at: 0,
            shared_image: false,
            keep_until: None,
            gate: crate::engine::gate::Gate::Open,
            agent_key: None,
            max_terminals: None,
            sealed_spec: None,
        })
    }

    fn name(text: &str) -> AssignmentName {
        AssignmentName::parse(text).unwrap()
    }

    const ROOMY: Caps = Caps {
        max_instances: 10,
        max_running: 10,
        max_builds: 2,
        max_build_queue: 10,
    };

    #[test]
    fn a_spec_id_does_not_cross_assignments() {
        let mut tables = Tables::default();
        let Ok(Admission::Build(..)) = tables.admit("s1", &name("a.b"), &ROOMY) else {
            panic!("a first request builds");
        };
        assert!(matches!(
            tables.admit("s1", &name("other"), &ROOMY),
            Err(CreateError::OtherAssignment)
        ));
        assert!(matches!(
            tables.admit("s1", &name("a/b"), &ROOMY),
            Ok(Admission::Wait(_))
        ));
        tables.finish_build("s1", "i1", None);
        tables.insert(instance("i2", "s2"));
        assert!(tables.check_assignment("s2", &name("a")).is_ok());
        assert!(matches!(
            tables.admit("s2", &name("b"), &ROOMY),
            Err(CreateError::OtherAssignment)
        ));
        assert!(tables.check_assignment("s1", &name("b")).is_ok());
    }

    #[test]
    fn caps_refuse_at_each_limit_in_order() {
        let caps = Caps {
            max_instances: 5,
            max_running: 3,
            max_builds: 1,
            max_build_queue: 1,
        };
        assert!(caps.admit(0, 0, 0).is_ok());
        assert!(matches!(
            caps.admit(4, 0, 1),
            Err(CreateError::AtCapacity(5))
        ));
        assert!(matches!(
            caps.admit(5, 0, 0),
            Err(CreateError::AtCapacity(5))
        ));
        assert!(matches!(
            caps.admit(0, 2, 1),
            Err(CreateError::AtRunningCapacity(3))
        ));
        assert!(caps.admit(0, 0, 1).is_ok());
        // One building and one waiting: the queue of one is full.
        assert!(matches!(
            caps.admit(0, 0, 2),
            Err(CreateError::QueueFull(1))
        ));
    }

    #[test]
    fn a_spec_builds_once_and_later_requests_wait() {
        let mut tables = Tables::default();
        let Ok(Admission::Build(done, _)) = tables.admit("s1", &name("a"), &ROOMY) else {
            panic!("the first request builds");
        };
        let Ok(Admission::Wait(mut waiting)) = tables.admit("s1", &name("a"), &ROOMY) else {
            panic!("the second request waits");
        };
        assert!(matches!(
            tables.admit("s2", &name("a"), &ROOMY),
            Ok(Admission::Build(..))
        ));
        let made = instance("i1", "s1");
        tables.building_ids.insert("i1".into());
        tables.finish_build("s1", "i1", Some(made.clone()));
        done.send_replace(Some(Ok(made.clone())));
        let heard = waiting.borrow_and_update().clone();
        assert!(matches!(heard, Some(Ok(i)) if Arc::ptr_eq(&i, &made)));
        assert!(tables.building_ids.is_empty());
        assert_eq!(tables.building.len(), 1, "s2 still builds");
        match tables.admit("s1", &name("a"), &ROOMY) {
            Ok(Admission::Existing(i)) => assert!(Arc::ptr_eq(&i, &made)),
            _ => panic!("the spec has its instance now"),
        }
    }

    #[test]
    fn builds_in_flight_count_against_the_caps() {
        let caps = Caps {
            max_instances: 2,
            ..ROOMY
        };
        let mut tables = Tables::default();
        tables.insert(instance("i1", "s1"));
        assert!(matches!(
            tables.admit("s2", &name("a"), &caps),
            Ok(Admission::Build(..))
        ));
        assert!(matches!(
            tables.admit("s3", &name("a"), &caps),
            Err(CreateError::AtCapacity(2))
        ));
        // A failed build frees its place.
        tables.finish_build("s2", "i2", None);
        assert!(tables.of_spec("s2").is_none());
        assert!(matches!(
            tables.admit("s3", &name("a"), &caps),
            Ok(Admission::Build(..))
        ));
    }

    #[test]
    fn taking_out_removes_both_entries_and_spares_a_successor() {
        let mut tables = Tables::default();
        let old = instance("i1", "s1");
        tables.insert(old.clone());
        assert!(Arc::ptr_eq(&tables.take_spec("s1").unwrap(), &old));
        assert!(tables.by_id.is_empty() && tables.by_spec.is_empty());
        assert!(tables.take_spec("s1").is_none());

        tables.insert(old.clone());
        let stale = instance("i1", "s1");
        assert!(!tables.take_if_current(&stale), "another object, same ID");
        assert!(tables.of_spec("s1").is_some());
        assert!(tables.take_if_current(&old));
        assert!(tables.of_spec("s1").is_none() && tables.by_id.is_empty());
    }
}
