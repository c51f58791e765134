//! Telemetry: what the server says about itself — counters and histograms
//! for `/metrics`, the phases of a create, the progress of a pending spec,
//! the panic hook, the log backend. Uses `protocol` and `crypto`.

pub(crate) mod by_assignment;
pub(crate) mod create_timings;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod panics;
pub(crate) mod progress;
