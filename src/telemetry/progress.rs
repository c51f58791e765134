//! What a pending create is doing, for `POST /spec?progress` (docs/API.md,
//! "Progress"). A create runs in its own task: it reports its phases through
//! a task-local, so the steps deep in the create path (a pull, a build line)
//! need no plumbing; a client watches the phases of its spec by spec ID.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{json, Value};
use tokio::sync::watch;

/// One phase of a create; `Building` counts the Dockerfile's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a build slot, or for the spec's create to start.
    Queued,
    /// Pulling a base image.
    Pulling,
    /// Building the image: step `k` of `n` once the builder says so.
    Building(Option<(u32, u32)>),
    /// Creating the container.
    Creating,
    /// Copying the instance's files in.
    Copying,
    /// Running the assignment's setup.
    Setup,
    /// Starting the terminal.
    Starting,
}

impl Phase {
    /// The phase as the API shows it: `{"phase": …}` plus `step`/`steps`.
    pub fn to_json(self) -> Value {
        let name = match self {
            Phase::Queued => "queued",
            Phase::Pulling => "pulling",
            Phase::Building(_) => "building",
            Phase::Creating => "creating",
            Phase::Copying => "copying",
            Phase::Setup => "setup",
            Phase::Starting => "starting",
        };
        let mut value = json!({ "phase": name });
        if let Phase::Building(Some((step, steps))) = self {
            value["step"] = json!(step);
            value["steps"] = json!(steps);
        }
        value
    }
}

type Channel = Arc<watch::Sender<Phase>>;

static BY_SPEC: LazyLock<Mutex<HashMap<String, Channel>>> = LazyLock::new(Default::default);

tokio::task_local! {
    static CURRENT: Channel;
}

/// A hold on a spec's phase channel; the channel goes when its last hold does.
pub struct Watch {
    spec_id: String,
    channel: Channel,
}

impl Watch {
    /// Holds the phases of `spec_id`'s create (made `Queued` if none is known).
    pub fn of(spec_id: &str) -> Watch {
        let mut map = BY_SPEC.lock().unwrap();
        let channel = map
            .entry(spec_id.to_string())
            .or_insert_with(|| Arc::new(watch::channel(Phase::Queued).0))
            .clone();
        Watch {
            spec_id: spec_id.to_string(),
            channel,
        }
    }

    /// A receiver of the phases.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.channel.subscribe()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = BY_SPEC.lock().unwrap();
        // The map's clone and ours: nobody else holds it.
        if Arc::strong_count(&self.channel) <= 2 {
            map.remove(&self.spec_id);
        }
    }
}

/// Runs a create with its phases published under `spec_id`.
pub async fn reporting<F: Future>(spec_id: &str, create: F) -> F::Output {
    let watch = Watch::of(spec_id);
    watch.channel.send_replace(Phase::Queued);
    let output = CURRENT.scope(watch.channel.clone(), create).await;
    drop(watch);
    output
}

/// The running create is now in `phase` (nothing outside a create).
pub fn set(phase: Phase) {
    let _ = CURRENT.try_with(|channel| channel.send_replace(phase));
}

/// A line of the image builder's output: `Step k/n : …` moves the count.
pub fn build_line(text: &str) {
    for line in text.lines() {
        if let Some(count) = line.strip_prefix("Step ").and_then(step_count) {
            set(Phase::Building(Some(count)));
        }
    }
}

fn step_count(rest: &str) -> Option<(u32, u32)> {
    let (count, _) = rest.split_once(' ')?;
    let (step, steps) = count.split_once('/')?;
    Some((step.parse().ok()?, steps.parse().ok()?))
}

/// A phase as `to_json` gave it, in words (for `ua connect`).
pub fn describe(phase: &Value) -> String {
    let words = match phase["phase"].as_str().unwrap_or("") {
        "queued" => "waiting for its turn",
        "pulling" => "pulling the base image",
        "building" => "building the image",
        "creating" => "creating the container",
        "copying" => "copying the files in",
        "setup" => "running the setup",
        "starting" => "starting",
        _ => "working",
    };
    match (phase["step"].as_u64(), phase["steps"].as_u64()) {
        (Some(step), Some(steps)) => format!("{words}: step {step} of {steps}"),
        _ => words.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_create_publishes_its_phases() {
        let watch = Watch::of("spec-a");
        let phases = watch.subscribe();
        reporting("spec-a", async {
            set(Phase::Pulling);
            build_line("Step 2/5 : RUN true\n ---> abc\n");
            assert_eq!(*phases.borrow(), Phase::Building(Some((2, 5))));
        })
        .await;
        assert_eq!(
            phases.borrow().to_json(),
            json!({"phase": "building", "step": 2, "steps": 5})
        );
        drop(watch);
        assert!(!BY_SPEC.lock().unwrap().contains_key("spec-a"));
        set(Phase::Setup); // outside a create: nothing happens
    }
}
