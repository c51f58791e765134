//! What a terminal's users do, for `ua list` and `ua top`: which client is
//! attached (none: the grace period), and when input last came. Atomics
//! that the terminal's paths only store, so reading them never waits on
//! the pump or slows a keystroke.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// No client attached.
const NONE: u64 = u64::MAX;

/// One terminal's attachment and last input.
#[derive(Debug)]
pub struct Activity {
    /// The attached client's ID, or [`NONE`].
    client: AtomicU64,
    /// Milliseconds from `started` to the last input.
    last_input_ms: AtomicU64,
    started: Instant,
    /// Read-only observers watching.
    observers: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            client: AtomicU64::new(NONE),
            last_input_ms: AtomicU64::new(0),
            started: Instant::now(),
            observers: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    /// Client `id` is attached now (a takeover replaces the previous one).
    pub(crate) fn attached(&self, id: u64) {
        self.client.store(id, Ordering::Relaxed);
    }

    /// Client `id` went; a later client that took over stays attached.
    pub(crate) fn detached(&self, id: u64) {
        let _ = self
            .client
            .compare_exchange(id, NONE, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whoever was attached was closed (kicked).
    pub(crate) fn kicked(&self) {
        self.client.store(NONE, Ordering::Relaxed);
    }

    /// Input came now.
    pub(crate) fn heard_input(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_input_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn observer_came(&self) {
        self.observers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observer_went(&self) {
        self.observers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Observers watching now.
    pub fn observers(&self) -> usize {
        self.observers.load(Ordering::Relaxed)
    }

    /// Whether a client is attached (else the terminal is in its grace).
    pub fn is_attached(&self) -> bool {
        self.client.load(Ordering::Relaxed) != NONE
    }

    /// Time since the last input, or since the terminal started.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_input_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_stays_attached_when_the_old_client_goes() {
        let activity = Activity::default();
        assert!(!activity.is_attached());
        activity.attached(1);
        activity.attached(2);
        activity.detached(1);
        assert!(activity.is_attached());
        activity.detached(2);
        assert!(!activity.is_attached());
        activity.attached(3);
        activity.kicked();
        assert!(!activity.is_attached());
    }

    #[test]
    fn input_resets_the_idle_time() {
        let activity = Activity {
            started: Instant::now() - Duration::from_secs(60),
            ..Activity::default()
        };
        assert!(activity.idle() >= Duration::from_secs(60));
        activity.heard_input();
        assert!(activity.idle() < Duration::from_secs(60));
    }
}
