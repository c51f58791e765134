//! One instance: a spec's record, its warm period and the terminal running
//! in its container.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::instance::store::InstanceRecord;
use crate::instance::terminals::Terminals;
use crate::protocol::admin::Summary;

/// One spec's image and container, and the terminal running in it.
pub struct Instance {
    /// The instance ID.
    pub id: String,
    /// The spec it was made for.
    pub spec_id: String,
    pub(crate) record: Mutex<InstanceRecord>,
    /// Until when a container started by its setup is left running with no
    /// terminal, for the terminal about to attach.
    pub(crate) warm_until: Mutex<Option<std::time::Instant>>,
    /// The running terminals by name. The lock also serialises starting
    /// and stopping the container.
    pub(crate) terminals: tokio::sync::Mutex<Terminals>,
    /// Whether a check runs, and when the last one ended.
    pub(crate) check: Mutex<CheckState>,
}

/// An instance's checks: one at a time, and not too often.
#[derive(Debug, Default)]
pub(crate) struct CheckState {
    pub(crate) running: bool,
    pub(crate) last_end: Option<std::time::Instant>,
}

impl Instance {
    pub(crate) fn new(record: InstanceRecord) -> Arc<Instance> {
        Arc::new(Instance {
            id: record.instance_id.clone(),
            spec_id: record.spec_id.clone(),
            record: Mutex::new(record),
            warm_until: Mutex::new(None),
            terminals: tokio::sync::Mutex::new(Terminals::default()),
            check: Mutex::new(CheckState::default()),
        })
    }

    pub(crate) fn warm_for(&self, period: Duration) {
        *self.warm_until.lock().unwrap() = Some(std::time::Instant::now() + period);
    }

    /// Whether the container was left running for a terminal yet to come;
    /// after the period it is stopped like any container without a session.
    pub(crate) fn is_warm(&self) -> bool {
        self.warm_until
            .lock()
            .unwrap()
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    /// Whether a check of it runs (its container is in use).
    pub(crate) fn is_checking(&self) -> bool {
        self.check.lock().unwrap().running
    }

    /// Whether it was made for `assignment` (records store either form).
    pub(crate) fn is_of(&self, assignment: &crate::protocol::spec::AssignmentName) -> bool {
        let stored = self.record.lock().unwrap().assignment.clone();
        crate::protocol::spec::AssignmentName::parse(&stored).is_ok_and(|name| name == *assignment)
    }

    pub(crate) fn record(&self) -> InstanceRecord {
        self.record.lock().unwrap().clone()
    }

    /// How `ua list` shows it (no usage); `expiry` in seconds.
    pub(crate) fn summary(&self, expiry: i64) -> Summary {
        let record = self.record();
        let running = self.is_busy();
        Summary {
            handle: crate::crypto::handle::of(&self.id),
            spec_id: self.spec_id.clone(),
            assignment: record.assignment,
            state: if running { "running" } else { "stopped" }.into(),
            last_used: record.last_active_at,
            expires: (!running).then_some(record.last_active_at + expiry),
            usage: Default::default(),
        }
    }

    /// True while a terminal runs (a session is attached or in its grace).
    pub(crate) fn is_busy(&self) -> bool {
        match self.terminals.try_lock() {
            Ok(terminals) => terminals.any_live(),
            Err(_) => true,
        }
    }
}
