//! Counters by assignment for `/metrics`: trouble inside instances (OOM
//! kills, fork refusals), counted where it is seen (`instance::trouble`).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A counter per assignment.
pub struct ByAssignment(Mutex<BTreeMap<String, u64>>);

impl ByAssignment {
    const fn new() -> Self {
        ByAssignment(Mutex::new(BTreeMap::new()))
    }

    /// Adds `n` to `assignment`'s count.
    pub fn add(&self, assignment: &str, n: u64) {
        *self.0.lock().unwrap().entry(assignment.into()).or_default() += n;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (assignment, n) in self.0.lock().unwrap().iter() {
            let _ = writeln!(out, "{name}{{assignment=\"{assignment}\"}} {n}");
        }
    }
}

/// OOM kills inside instances, counted by `instance::trouble`.
pub static OOM_KILLS: ByAssignment = ByAssignment::new();
/// Forks refused at the process limit, counted by `instance::trouble`.
pub static PIDS_LIMIT_HITS: ByAssignment = ByAssignment::new();

/// Appends the trouble counters (OOM kills, fork refusals) to the `/metrics` page.
pub fn render(out: &mut String) {
    OOM_KILLS.render(
        out,
        "ua_oom_kills_total",
        "Processes killed for memory inside instances (Docker's oom events), by assignment.",
    );
    PIDS_LIMIT_HITS.render(
        out,
        "ua_pids_limit_hits_total",
        "Forks refused at an instance's process limit (pids.events max), by assignment.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_and_rendered_by_assignment() {
        let counter = ByAssignment::new();
        counter.add("a.b", 2);
        let mut out = String::new();
        counter.render(&mut out, "x_total", "help");
        assert!(out.contains("x_total{assignment=\"a.b\"} 2\n"), "{out}");
    }
}
