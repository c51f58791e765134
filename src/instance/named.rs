//! The registry's named terminals (docs/API.md, "Terminals"): whether one
//! may be opened, the list, hanging one up, observers, and what happens when
//! one ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ua_agent::proto::{ErrorCode, TerminalInfo};

use crate::engine::agent::AgentError;
use crate::engine::gate::Gate;
use crate::instance::entry::Instance;
use crate::instance::limits::DEFAULT_TERMINALS;
use crate::instance::registry::Registry;
use crate::instance::store::InstanceRecord;
use crate::instance::terminals::MAIN;
use crate::terminal::{Ended, Observation};

/// Why a terminal other than `main` cannot be opened in a gate container.
pub const ONLY_MAIN: &str =
    "this instance has only the terminal \"main\" (its container predates named terminals, or runs under gVisor)";

/// One terminal as `GET /instance/{id}/terminals` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub name: String,
    /// Its program runs.
    pub running: bool,
    /// A client is attached (not in its grace period).
    pub connected: bool,
    pub observers: usize,
}

/// Why `DELETE /instance/{id}/terminals/{name}` did nothing.
#[derive(Debug)]
pub enum CloseRefusal {
    /// No such terminal runs: 404.
    NotRunning,
    /// A gate container's only terminal: 409.
    OnlyMain,
    /// The agent failed: 503.
    Agent(String),
}

impl Registry {
    /// Whether terminal `name` may be attached to now (before the upgrade):
    /// it runs already, or the instance runs fewer than its `maxTerminals`.
    pub async fn may_open(&self, instance: &Arc<Instance>, name: &str) -> Result<(), String> {
        let record = instance.record();
        if record.gate != Gate::Agent {
            return if name == MAIN {
                Ok(())
            } else {
                Err(ONLY_MAIN.into())
            };
        }
        let mut running: BTreeSet<String> = instance
            .terminals
            .lock()
            .await
            .all_live()
            .map(|(n, _)| n.clone())
            .collect();
        if !running.contains(name) {
            running.extend(
                self.agent_terminals(&record)
                    .await
                    .into_iter()
                    .filter(|t| t.running)
                    .map(|t| t.name),
            );
        }
        let max = record.max_terminals.unwrap_or(DEFAULT_TERMINALS) as usize;
        if running.contains(name) || running.len() < max {
            return Ok(());
        }
        let names: Vec<String> = running.into_iter().collect();
        Err(format!(
            "this instance already runs its {max} terminals ({}); close one first",
            names.join(", ")
        ))
    }

    /// What the agent runs (nothing when its container is stopped).
    async fn agent_terminals(&self, record: &InstanceRecord) -> Vec<TerminalInfo> {
        let key = record.agent_key.as_deref().unwrap_or_default();
        match self.agents.link(key, Duration::ZERO).await {
            Ok(link) => link.list().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The instance's terminals: those its agent runs and those ua holds.
    pub async fn terminals(&self, instance: &Arc<Instance>) -> Vec<Listed> {
        let record = instance.record();
        let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
        if record.gate == Gate::Agent {
            for t in self.agent_terminals(&record).await {
                let entry = Listed {
                    name: t.name.clone(),
                    running: t.running,
                    connected: false,
                    observers: 0,
                };
                listed.insert(t.name, entry);
            }
        }
        for (name, terminal) in instance.terminals.lock().await.all_live() {
            let entry = listed.entry(name.clone()).or_insert(Listed {
                name: name.clone(),
                running: true,
                connected: false,
                observers: 0,
            });
            entry.connected = terminal.activity.is_attached();
            entry.observers = terminal.activity.observers();
        }
        listed.into_values().collect()
    }

    /// Hangs up terminal `name` (its program gets SIGHUP); its client gets
    /// `["disconnect", 1]` and 1000 as for any exit.
    pub async fn close_terminal(
        &self,
        instance: &Arc<Instance>,
        name: &str,
    ) -> Result<(), CloseRefusal> {
        let record = instance.record();
        if record.gate != Gate::Agent {
            return Err(CloseRefusal::OnlyMain);
        }
        let key = record.agent_key.as_deref().unwrap_or_default();
        let Ok(link) = self.agents.link(key, Duration::ZERO).await else {
            return Err(CloseRefusal::NotRunning);
        };
        match link.close(name).await {
            Ok(()) => Ok(()),
            Err(AgentError::Refused(ErrorCode::NotFound, _)) => Err(CloseRefusal::NotRunning),
            Err(e) => Err(CloseRefusal::Agent(e.to_string())),
        }
    }

    /// Adds a read-only observer to the instance's terminal `name`; never
    /// starts anything.
    pub async fn observe(
        &self,
        instance: &Arc<Instance>,
        name: &str,
    ) -> Result<Observation, ObserveRefusal> {
        let terminal = instance.terminals.lock().await.live(name).cloned();
        let Some(terminal) = terminal else {
            return Err(ObserveRefusal::NotRunning);
        };
        match terminal.observe().await {
            Some(observation) => Ok(observation),
            None if terminal.is_over() => Err(ObserveRefusal::NotRunning),
            None => Err(ObserveRefusal::TooMany),
        }
    }

    /// Terminal `name` is over (unless a newer one took its name). The
    /// last one stops the container (files kept) and starts the expiry
    /// clock; while others run, one whose grace ran out is hung up.
    pub(crate) async fn terminal_ended(
        &self,
        instance: &Arc<Instance>,
        name: &str,
        generation: u64,
        ended: Ended,
    ) {
        let mut terminals = instance.terminals.lock().await;
        if !terminals.remove_if(name, generation) {
            return;
        }
        let h = crate::crypto::handle::of(&instance.id);
        if terminals.any_live() {
            log::info!(ua_instance = h, ua_spec = instance.spec_id; "instance {h}: terminal ended ({ended:?}, {name})");
            if ended == Ended::GraceOver {
                if let Err(CloseRefusal::Agent(e)) = self.close_terminal(instance, name).await {
                    log::warn!(ua_instance = h; "instance {h}: terminal {name} not hung up: {e}");
                }
            }
            return;
        }
        log::info!(
            ua_instance = h, ua_spec = instance.spec_id;
            "instance {h}: terminal ended ({ended:?}, {name}); stopping its container"
        );
        // A check in progress stops the container itself when it is done.
        if ended != Ended::OnRequest && !instance.is_checking() {
            self.stop_and_touch(instance).await;
        }
    }
}

/// Why an observer was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserveRefusal {
    /// No terminal runs (the container is stopped): 4004.
    NotRunning,
    /// The terminal has all the observers it takes: 1013.
    TooMany,
}
