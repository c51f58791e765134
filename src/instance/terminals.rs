//! An instance's terminals by name (docs/API.md, "Terminals"): `main`, and
//! in agent containers up to `maxTerminals` more. What the registry does
//! with them by name is in `named`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::terminal::{Activity, Terminal};

/// The terminal a websocket without `?terminal=` attaches to.
pub const MAIN: &str = "main";

/// The terminals ua holds for one instance (the agent may run more that no
/// client has attached to since ua started).
#[derive(Default)]
pub struct Terminals(BTreeMap<String, Terminal>);

impl Terminals {
    /// Terminal `name`, if it runs.
    pub(crate) fn live(&self, name: &str) -> Option<&Terminal> {
        self.0.get(name).filter(|t| !t.is_over())
    }

    pub(crate) fn insert(&mut self, name: &str, terminal: Terminal) {
        self.0.insert(name.to_string(), terminal);
    }

    /// Whether any terminal runs (a client attached or in its grace).
    pub(crate) fn any_live(&self) -> bool {
        self.0.values().any(|t| !t.is_over())
    }

    /// Every running terminal, by name.
    pub(crate) fn all_live(&self) -> impl Iterator<Item = (&String, &Terminal)> {
        self.0.iter().filter(|(_, t)| !t.is_over())
    }

    /// Takes every terminal out (to end them).
    pub(crate) fn take_all(&mut self) -> Vec<Terminal> {
        std::mem::take(&mut self.0).into_values().collect()
    }

    /// Removes terminal `name` if it is still the one of `generation`.
    pub(crate) fn remove_if(&mut self, name: &str, generation: u64) -> bool {
        let current = self.0.get(name).is_some_and(|t| t.generation == generation);
        if current {
            self.0.remove(name);
        }
        current
    }

    /// The running terminals' activity (`ua list`).
    pub(crate) fn activities(&self) -> Vec<Arc<Activity>> {
        self.all_live().map(|(_, t)| t.activity.clone()).collect()
    }
}
