//! Support: small things every layer may use, with no knowledge of ua —
//! a value a reload swaps, redaction, durations and the clock, standard
//! output. Uses nothing of the crate.

pub(crate) mod live;
pub(crate) mod redact;
pub mod stdout;
pub(crate) mod time;
