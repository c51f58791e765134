//! Telemetry: what the server says about itself — counters and histograms
//! for `/metrics`, the phases of a create, the progress of a pending spec,
//! the panic hook, the log backend. Uses `support`, `protocol`, `crypto`.

pub mod by_assignment;
pub mod create_timings;
pub mod logging;
pub mod metrics;
pub mod panics;
pub mod progress;
