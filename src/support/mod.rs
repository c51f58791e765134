//! Support: small things every layer may use, with no knowledge of ua —
//! a value a reload swaps, durations and the clock, the redactor of spec
//! data, standard output. Uses nothing of the crate.

pub(crate) mod live;
pub(crate) mod redact;
pub mod stdout;
pub(crate) mod time;
