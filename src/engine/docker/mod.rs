//! Every call ua makes to the Docker daemon, through bollard, split by what
//! it touches: the daemon, labels, images, containers, execs, archives and
//! the raw attach. Uses `telemetry` (build progress) and the gate's
//! mount; knows nothing of specs, the registry or HTTP. Other
//! folders use what is re-exported here; inside, files name each other.

mod archive;
mod attach;
mod bounded;
mod build;
mod container;
mod daemon;
mod errors;
mod events;
mod exec;
mod labels;
mod sizes;

pub use bounded::{bounded, DOCKER_CALL_LIMIT};

pub use container::Limits;
pub use daemon::Docker;
pub use errors::{BuildError, DockerError};
pub use exec::{Attached, Exec, Output, SplitOutcome};
pub use labels::*;
