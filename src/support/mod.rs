//! Support: small things every layer may use, with no knowledge of ua —
//! a value a reload swaps, redaction, durations and the clock, standard
//! output. Uses nothing of the crate.

pub mod live;
pub mod redact;
pub mod stdout;
pub mod time;
