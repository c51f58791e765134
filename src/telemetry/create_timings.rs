//! The phases of one create, for its "instance … created" log line: how
//! long it waited for a build slot (`queue`), built, created, copied files,
//! ran its setup and started, so that a student's 25 s wait in the queue is
//! not reported as "created in 27 ms". Creates are rare: one lock per phase.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An open create: since when, and each phase as it ended.
struct Timing {
    since: Instant,
    phases: Vec<(&'static str, Duration)>,
}

static OPEN: Mutex<Option<HashMap<String, Timing>>> = Mutex::new(None);

/// A create of `instance_id` begins.
pub(crate) fn open(instance_id: &str) {
    let timing = Timing {
        since: Instant::now(),
        phases: Vec::new(),
    };
    OPEN.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(instance_id.to_string(), timing);
}

/// `phase` of `instance_id` took `elapsed`; ignored unless a create is open.
pub(crate) fn note(instance_id: &str, phase: &'static str, elapsed: Duration) {
    if let Some(timing) = OPEN
        .lock()
        .unwrap()
        .as_mut()
        .and_then(|open| open.get_mut(instance_id))
    {
        timing.phases.push((phase, elapsed));
    }
}

/// The create's total so far and its phases, as `in 25080 ms (queue 25012
/// ms, build 40 ms, create 27 ms, files 1 ms)`.
pub(crate) fn describe(instance_id: &str) -> String {
    let open = OPEN.lock().unwrap();
    let Some(timing) = open.as_ref().and_then(|open| open.get(instance_id)) else {
        return String::new();
    };
    render(timing.since.elapsed(), &timing.phases)
}

/// The create is over (made or not).
pub(crate) fn close(instance_id: &str) {
    if let Some(open) = OPEN.lock().unwrap().as_mut() {
        open.remove(instance_id);
    }
}

fn render(total: Duration, phases: &[(&'static str, Duration)]) -> String {
    let mut out = format!("in {} ms", total.as_millis());
    let mut parts = Vec::new();
    for (phase, elapsed) in phases {
        // The metrics' `copy` phase: the instance files.
        let name = if *phase == "copy" { "files" } else { phase };
        parts.push(format!("{name} {} ms", elapsed.as_millis()));
    }
    if !parts.is_empty() {
        let _ = write!(out, " ({})", parts.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_line_splits_its_phases() {
        let ms = Duration::from_millis;
        assert_eq!(
            render(
                ms(25080),
                &[("queue", ms(25012)), ("build", ms(40)), ("copy", ms(1))]
            ),
            "in 25080 ms (queue 25012 ms, build 40 ms, files 1 ms)"
        );
        open("t-1");
        note("t-1", "create", ms(27));
        note("t-other", "create", ms(5));
        assert!(
            describe("t-1").ends_with("(create 27 ms)"),
            "{}",
            describe("t-1")
        );
        close("t-1");
        assert_eq!(describe("t-1"), "");
    }
}
