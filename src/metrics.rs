//! Counters and histograms for `GET /metrics`, in the Prometheus text format.
//! Plain atomics: recording costs one relaxed add on any path, hot or not.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the duration histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A histogram of durations in seconds, with fixed buckets.
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    total: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS.len()],
            total: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one duration in seconds.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
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
/// Terminal bytes proxied, by direction.
pub static BYTES: Labelled<2> = Labelled::new(["out", "in"]);
/// Sessions ended, by close code (`client`: the client closed).
pub static CLOSES: Labelled<8> = Labelled::new([
    "1000", "1001", "1009", "1011", "4001", "4002", "4003", "client",
]);
/// Errors, by kind.
pub static ERRORS: Labelled<9> = Labelled::new([
    "bad_request",
    "no_assignment",
    "expired_spec",
    "render",
    "build",
    "capacity",
    "docker",
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
    BYTES.render(
        &mut out,
        "ua_bytes_proxied_total",
        "direction",
        "Terminal bytes proxied (out: to clients).",
    );
    CLOSES.render(
        &mut out,
        "ua_websocket_closes_total",
        "code",
        "Websocket sessions ended, by close code.",
    );
    ERRORS.render(&mut out, "ua_errors_total", "kind", "Errors by kind.");
    let _ = writeln!(
        out,
        "# HELP ua_panics_total Internal errors (bugs) caught in a task.\n# TYPE ua_panics_total counter\nua_panics_total {}",
        crate::panics::PANICS.load(std::sync::atomic::Ordering::Relaxed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
