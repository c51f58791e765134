//! Panics in the server: one error line per kind (its source location), at
//! priority 3 through the log, counted in `/metrics`; never a raw backtrace
//! on stderr, which would bypass the journal's priorities and rate limits.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Panics since the start, for `ua_panics_total`.
pub static PANICS: AtomicU64 = AtomicU64::new(0);

/// Longest panic message logged: enough to find the bug, not a dump.
const MESSAGE_CHARS: usize = 200;

/// Replaces the default panic hook with one that logs through `log`.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        let location = info
            .location()
            .map_or_else(|| "an unknown place".to_string(), ToString::to_string);
        static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        let first = SEEN
            .get_or_init(Mutex::default)
            .lock()
            .map(|mut seen| seen.insert(location.clone()))
            .unwrap_or(false);
        if !first {
            return;
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let message: String = message.chars().take(MESSAGE_CHARS).collect();
        log::error!(
            "internal error (a bug): a task panicked at {location}: {message}; \
             later panics there are only counted in ua_panics_total"
        );
    }));
}
