//! Engine: the container runtime — every call to Docker (`docker/`), the
//! gate that is each container's main process, Docker's OOM events.
//! Uses `telemetry` only (a build's progress); knows no spec, no
//! registry, no HTTP.

pub mod agent;
pub mod docker;
pub mod gate;
pub mod oom;
