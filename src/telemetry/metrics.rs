//! Counters and histograms for `GET /metrics`, in the Prometheus text format.
//! Plain atomics: recording costs one relaxed add on any path, hot or not.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::close::Code;

/// Upper bounds (seconds) of the duration histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Finer buckets for the phases of making an instance, most of which take
/// milliseconds.
const PHASE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];
const MAX_BUCKETS: usize = 16;

/// A histogram of durations in seconds, with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    counts: [AtomicU64; MAX_BUCKETS],
    total: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram::with_bounds(&BUCKETS)
    }

    const fn with_bounds(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() <= MAX_BUCKETS);
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; MAX_BUCKETS],
            total: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one duration in seconds.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|&bound| seconds <= bound) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The series of one histogram; `label` is `key="value",` or empty.
    fn render_series(&self, out: &mut String, name: &str, label: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{label}le=\"{bound}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{label}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let plain = label.trim_end_matches(',');
        let braces = if plain.is_empty() {
            String::new()
        } else {
            format!("{{{plain}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {total}"
        );
    }
}

/// The phases of making an instance and starting its terminal.
pub const PHASES: [&str; 10] = [
    "queue", "render", "pull", "build", "create", "copy", "start", "setup", "attach", "exec",
];

/// A duration histogram per phase.
pub struct Phases {
    histograms: [Histogram; PHASES.len()],
}

impl Phases {
    const fn new() -> Phases {
        Phases {
            histograms: [const { Histogram::with_bounds(&PHASE_BUCKETS) }; PHASES.len()],
        }
    }

    /// Records that `phase` of `instance` (its ID) took from `started` until
    /// now, and logs it at debug level under the instance's handle.
    pub fn record(&self, phase: &str, instance: &str, started: std::time::Instant) {
        let elapsed = started.elapsed();
        if let Some(i) = PHASES.iter().position(|&p| p == phase) {
            self.histograms[i].observe(elapsed.as_secs_f64());
            crate::telemetry::create_timings::note(instance, PHASES[i], elapsed);
        }
        if log::log_enabled!(log::Level::Debug) {
            let h = crate::crypto::handle::of(instance);
            log::debug!(
                ua_instance = h;
                "instance {h}: {phase} took {} ms",
                elapsed.as_millis()
            );
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (phase, histogram) in PHASES.iter().zip(&self.histograms) {
            histogram.render_series(out, name, &format!("phase=\"{phase}\","));
        }
    }
}

/// A counter per label value, for a fixed set of values.
pub struct Labelled<const N: usize> {
    labels: [&'static str; N],
    counts: [AtomicU64; N],
}

impl<const N: usize> Labelled<N> {
    const fn new(labels: [&'static str; N]) -> Self {
        Labelled {
            labels,
            counts: [const { AtomicU64::new(0) }; N],
        }
    }

    /// Adds `n` to the counter of `label`; unknown labels are ignored.
    pub fn add(&self, label: &str, n: u64) {
        if let Some(i) = self.labels.iter().position(|&l| l == label) {
            self.counts[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Whether `label` is one of the counted values.
    #[cfg(test)]
    pub(crate) fn has(&self, label: &str) -> bool {
        self.labels.contains(&label)
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (value, count) in self.labels.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{value}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// Render and build time of new instances.
pub static BUILD_SECONDS: Histogram = Histogram::new();
/// `POST /spec` to its answer, for new instances.
pub static SPEC_READY_SECONDS: Histogram = Histogram::new();
/// Time of each phase of making an instance.
pub static PHASE_SECONDS: Phases = Phases::new();
/// Terminal bytes proxied, by direction.
pub static BYTES: Labelled<2> = Labelled::new(["out", "in"]);
/// Sessions (and observers) ended, by close code (`client`: the client closed).
pub static CLOSES: Labelled<10> = Labelled::new([
    Code::Exited.label(),
    Code::Shutdown.label(),
    Code::TooBig.label(),
    Code::Internal.label(),
    Code::TryLater.label(),
    Code::TakenOver.label(),
    Code::Idle.label(),
    Code::Gone.label(),
    Code::NotRunning.label(),
    "client",
]);
/// Checks (`POST /instance/{id}/check`), by outcome: a verdict, or why none.
pub static CHECKS: Labelled<6> = Labelled::new([
    "verdict", "failed", "no_check", "running", "too_soon", "error",
]);
/// Time a check ran in its container, for those that ran.
pub static CHECK_SECONDS: Histogram = Histogram::new();
/// Errors, by kind.
pub static ERRORS: Labelled<13> = Labelled::new([
    "bad_request",
    "conflict",
    "no_assignment",
    "expired_spec",
    "render",
    "build",
    "setup",
    "pull",
    "capacity",
    "docker",
    "reconciling",
    "internal",
    "attach",
]);

/// Gauges read at scrape time.
pub struct Snapshot {
    /// Instances with a live terminal (or one in its grace period).
    pub running: usize,
    /// Instances without one.
    pub stopped: usize,
    /// Instances being made, queued ones included.
    pub building: usize,
    /// Builds waiting for a slot.
    pub queued: usize,
    /// Open websockets.
    pub sessions: usize,
    /// Free warm-pool containers by assignment.
    pub pool: Vec<(String, usize)>,
}

/// The `/metrics` page: the gauges in `now` and every counter.
pub fn render(now: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP ua_instances Instances by state (running: a terminal is live or in its grace period).\n\
         # TYPE ua_instances gauge\n\
         ua_instances{{state=\"running\"}} {}\n\
         ua_instances{{state=\"stopped\"}} {}\n\
         ua_instances{{state=\"building\"}} {}",
        now.running, now.stopped, now.building
    );
    let _ = writeln!(
        out,
        "# HELP ua_sessions Live websocket sessions.\n# TYPE ua_sessions gauge\nua_sessions {}",
        now.sessions
    );
    let _ = writeln!(
        out,
        "# HELP ua_pool_containers Free warm-pool containers, by assignment.\n# TYPE ua_pool_containers gauge"
    );
    for (assignment, count) in &now.pool {
        let _ = writeln!(
            out,
            "ua_pool_containers{{assignment=\"{assignment}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP ua_builds_in_flight Image builds running now.\n# TYPE ua_builds_in_flight gauge\nua_builds_in_flight {}",
        now.building.saturating_sub(now.queued)
    );
    let _ = writeln!(
        out,
        "# HELP ua_builds_queued Builds waiting for a build slot.\n# TYPE ua_builds_queued gauge\nua_builds_queued {}",
        now.queued
    );
    BUILD_SECONDS.render(
        &mut out,
        "ua_build_duration_seconds",
        "Time to render and build an instance's image.",
    );
    SPEC_READY_SECONDS.render(
        &mut out,
        "ua_spec_ready_duration_seconds",
        "Time from POST /spec to a new instance's answer, queueing included.",
    );
    PHASE_SECONDS.render(
        &mut out,
        "ua_phase_duration_seconds",
        "Time of each phase of making an instance (queue: waiting for a build slot, render, pull, build, create, copy, start, setup) and of starting a terminal (attach, start; exec for containers of earlier versions).",
    );
    render_counters(&mut out);
    let _ = writeln!(
        out,
        "# HELP ua_panics_total Internal errors (bugs) caught in a task.\n# TYPE ua_panics_total counter\nua_panics_total {}",
        crate::telemetry::panics::PANICS.load(std::sync::atomic::Ordering::Relaxed)
    );
    crate::telemetry::by_assignment::render(&mut out);
    out
}

/// The counters of `/metrics` (and the check histogram beside its counter).
fn render_counters(out: &mut String) {
    BYTES.render(
        out,
        "ua_bytes_proxied_total",
        "direction",
        "Terminal bytes proxied (out: to clients).",
    );
    CLOSES.render(
        out,
        "ua_websocket_closes_total",
        "code",
        "Websocket sessions ended, by close code.",
    );
    ERRORS.render(out, "ua_errors_total", "kind", "Errors by kind.");
    CHECKS.render(
        out,
        "ua_checks_total",
        "outcome",
        "Checks asked for, by outcome (verdict; failed: no verdict, over time, no render; no_check, running, too_soon; error: Docker).",
    );
    CHECK_SECONDS.render(
        out,
        "ua_check_duration_seconds",
        "Time a check ran in its container (start of a stopped one included).",
    );
}

/// The `ua_node_info` gauge of `/metrics`.
pub fn render_node(out: &mut String, node: Option<&str>) {
    let _ = writeln!(
        out,
        "# HELP ua_node_info The node this server is (--node-id; empty for none).\n\
         # TYPE ua_node_info gauge\n\
         ua_node_info{{node=\"{}\"}} 1",
        node.unwrap_or("")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_code_is_counted() {
        for code in Code::ALL {
            assert!(CLOSES.has(code.label()), "{code:?}");
        }
        assert!(CLOSES.has("client"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::new();
        histogram.observe(0.07);
        histogram.observe(3.0);
        histogram.observe(1000.0);
        let mut out = String::new();
        histogram.render(&mut out, "h", "help");
        assert!(out.contains("h_bucket{le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_count 3\n"), "{out}");
    }

    #[test]
    fn phases_render_one_labelled_series_each() {
        let phases = Phases::new();
        phases.record("copy", "i", std::time::Instant::now());
        let mut out = String::new();
        phases.render(&mut out, "p", "help");
        assert!(
            out.contains("p_bucket{phase=\"copy\",le=\"+Inf\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("p_count{phase=\"copy\"} 1\n"), "{out}");
        assert!(out.contains("p_count{phase=\"exec\"} 0\n"), "{out}");
    }
}
