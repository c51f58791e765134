//! Attaching to an instance's terminals by name: starting the container
//! and the terminal's program when none runs (through the agent, or the
//! gate's TTY and the exec of older containers), observers, and what
//! happens when a terminal ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::engine::docker::{Attached, DockerError};
use crate::engine::gate::{self, Gate};
use crate::instance::entry::Instance;
use crate::instance::named::ONLY_MAIN;
use crate::instance::registry::{AttachError, Registry};
use crate::instance::store::InstanceRecord;
use crate::instance::terminals::MAIN;
use crate::telemetry::metrics;
use crate::terminal::{Attachment, Terminal, TerminalSettings, Tty};

/// How long a started container's agent may take to connect.
const AGENT_CONNECT: std::time::Duration = std::time::Duration::from_secs(10);

/// The agent's trouble as the terminal's (a 1011 for the client).
fn agent_trouble(e: crate::engine::agent::AgentError) -> AttachError {
    AttachError::Docker(DockerError::Stream(e.to_string()))
}

impl Registry {
    /// Attaches a new client to the instance's terminal `name`, starting
    /// the container and the terminal's command when none runs.
    pub async fn attach(
        self: &Arc<Self>,
        instance: &Arc<Instance>,
        name: &str,
        client_id: u64,
    ) -> Result<Attachment, AttachError> {
        let mut terminals = instance.terminals.lock().await;
        if self.lookup(&instance.id).is_none() {
            return Err(AttachError::Gone);
        }
        if let Some(terminal) = terminals.live(name) {
            if let Some(attachment) = terminal.attach(client_id).await {
                return Ok(attachment);
            }
        }
        let record = instance.record();
        let opened = match self.open_tty(instance, &record, name).await {
            Err(AttachError::Docker(DockerError::NotFound)) => {
                drop(terminals);
                self.forget_vanished(instance).await;
                return Err(AttachError::Gone);
            }
            other => other?,
        };
        // The terminal owns the container's running from here.
        *instance.warm_until.lock().unwrap() = None;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (registry, owner, named) = (self.clone(), instance.clone(), name.to_string());
        let settings = self.settings.load();
        let settings = TerminalSettings {
            grace: settings.reattach_grace,
            replay_bytes: settings.replay_bytes,
        };
        let terminal = Terminal::spawn(
            opened.attached,
            opened.tty,
            opened.was_running,
            self.docker.clone(),
            &settings,
            generation,
            move |ended| async move {
                registry
                    .terminal_ended(&owner, &named, generation, ended)
                    .await
            },
        );
        let h = crate::crypto::handle::of(&instance.id);
        log::info!(ua_instance = h, ua_spec = instance.spec_id; "instance {h}: terminal started ({name})");
        let attachment = terminal.attach(client_id).await.ok_or(AttachError::Gone)?;
        terminals.insert(name, terminal);
        Ok(attachment)
    }

    /// Attaches to the container's TTY and gets its terminal going: starts
    /// the container, or releases a closed gate, or (after a restart of ua)
    /// just lands in the program that runs.
    async fn open_tty(
        &self,
        instance: &Instance,
        record: &InstanceRecord,
        name: &str,
    ) -> Result<OpenedTty, AttachError> {
        let container = &record.container_id;
        if record.gate == Gate::Agent {
            return self.open_agent_tty(instance, record, name).await;
        }
        if name != MAIN {
            return Err(AttachError::Refused(ONLY_MAIN.into()));
        }
        if record.gate == Gate::Legacy {
            return self.open_legacy_exec(instance, record).await;
        }
        // Attached before it starts or is released: its first output is seen.
        let started = std::time::Instant::now();
        let attached = self.docker.attach(container).await?;
        metrics::PHASE_SECONDS.record("attach", &instance.id, started);
        let was_running = self.docker.is_running(container).await?;
        if !was_running {
            if record.gate == Gate::Closed {
                // Before the start: a gate that starts now finds it at once.
                self.docker.upload(container, gate::ready_tar()).await?;
            }
            let started = std::time::Instant::now();
            self.docker.start(container).await?;
            metrics::PHASE_SECONDS.record("start", &instance.id, started);
        } else {
            // Wakes a waiting gate; a program that runs takes it as a resize.
            self.docker.signal(container, gate::WAKE_SIGNAL).await?;
        }
        if record.gate == Gate::Closed {
            let mut record = record.clone();
            record.gate = Gate::Open;
            if let Err(e) = self.save(&record).await {
                let h = crate::crypto::handle::of(&instance.id);
                log::warn!(ua_instance = h; "instance {h}: record not saved: {e}");
            }
            *instance.record.lock().unwrap() = record;
        }
        Ok(OpenedTty {
            attached,
            tty: Tty::Main {
                container: container.clone(),
            },
            was_running,
        })
    }

    /// Terminal `name` of the container's agent: starts the container if it
    /// is stopped, waits for its agent to connect, and opens the terminal
    /// (or lands in it, with the agent's replay, when it runs).
    async fn open_agent_tty(
        &self,
        instance: &Instance,
        record: &InstanceRecord,
        name: &str,
    ) -> Result<OpenedTty, AttachError> {
        let container = &record.container_id;
        let key = record.agent_key.as_deref().unwrap_or_default();
        self.agents.listen(key).map_err(agent_trouble)?;
        if !self.docker.is_running(container).await? {
            let started = std::time::Instant::now();
            self.docker.start(container).await?;
            metrics::PHASE_SECONDS.record("start", &instance.id, started);
        }
        let started = std::time::Instant::now();
        let link = self.agents.link(key, AGENT_CONNECT).await;
        let opened = link.map_err(agent_trouble)?.open(name, 24, 80).await;
        let opened = opened.map_err(agent_trouble)?;
        metrics::PHASE_SECONDS.record("attach", &instance.id, started);
        let was_running = !opened.started;
        let (attached, tty) = crate::engine::agent::split(opened);
        Ok(OpenedTty {
            attached,
            tty: Tty::Agent {
                container: container.clone(),
                tty,
            },
            was_running,
        })
    }

    /// A container made before the gate: its main process idles and the
    /// terminal is an exec as the image's USER.
    async fn open_legacy_exec(
        &self,
        instance: &Instance,
        record: &InstanceRecord,
    ) -> Result<OpenedTty, AttachError> {
        let started = std::time::Instant::now();
        self.docker.start(&record.container_id).await?;
        metrics::PHASE_SECONDS.record("start", &instance.id, started);
        let (command, user) = self.docker.image_command(&record.image).await?;
        let command = gate::command_or_shell(command);
        let started = std::time::Instant::now();
        let exec = self
            .docker
            .exec_as(&record.container_id, command, &user)
            .await?;
        metrics::PHASE_SECONDS.record("exec", &instance.id, started);
        Ok(OpenedTty {
            attached: Attached {
                output: exec.output,
                input: exec.input,
            },
            tty: Tty::Exec { id: exec.id },
            was_running: false,
        })
    }
}

/// A TTY attached and its program going.
struct OpenedTty {
    attached: Attached,
    tty: Tty,
    /// The container ran already (a warm container, or ua restarted).
    was_running: bool,
}
