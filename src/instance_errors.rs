//! Why an instance could not be made or attached: typed errors whose
//! messages never hold spec data (build and setup output stays raw inside
//! and leaves the server only sealed).

use crate::docker::{BuildError, DockerError};

/// Why an instance could not be made. Messages never hold spec data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateError {
    /// No such assignment (404).
    #[error("there is no assignment named `{0}` on this server")]
    NoAssignment(String),
    /// A template or `assignment.json` is unusable (422).
    #[error("the assignment's template did not render: {0}")]
    Render(String),
    /// The image did not build (422).
    #[error("{reason}")]
    Build {
        /// What failed, in words with no spec data.
        reason: String,
        /// The build's last output lines, raw: they leave the server only sealed.
        tail: Vec<String>,
    },
    /// `setup.sh` failed (422).
    #[error("the assignment's setup failed with exit status {status}")]
    Setup {
        /// Its exit status.
        status: i64,
        /// Its last output lines, raw: they leave the server only sealed.
        tail: Vec<String>,
    },
    /// A base image could not be pulled (503).
    #[error("the base image `{image}` could not be pulled ({why}); try again shortly")]
    Pull {
        /// The image.
        image: String,
        /// The daemon's or the timeout's words.
        why: String,
    },
    /// The assignment is unusable as it stands (422).
    #[error("{0}")]
    Invalid(String),
    /// At `--max-instances`: stored instances, disk-bound (503).
    #[error("the server is at its limit of {0} stored instances; try again shortly")]
    AtCapacity(usize),
    /// At `--max-running`: running terminals plus builds, memory-bound (503).
    #[error("the server is at its limit of {0} running terminals and builds; try again shortly")]
    AtRunningCapacity(usize),
    /// The build queue is full (503).
    #[error("the server's build queue is full ({0} waiting); try again shortly")]
    QueueFull(usize),
    /// Docker is unreachable (503).
    #[error("Docker is unreachable; try again shortly")]
    DockerDown,
    /// Anything else (500).
    #[error("the instance could not be created: {0}")]
    Internal(String),
}

impl From<DockerError> for CreateError {
    fn from(e: DockerError) -> CreateError {
        match e {
            DockerError::Unreachable(_) => CreateError::DockerDown,
            other => CreateError::Internal(other.to_string()),
        }
    }
}

/// Why a terminal could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The instance was cleaned or expired meanwhile (4003).
    #[error("the instance is gone")]
    Gone,
    /// Docker failed (1011).
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// A failed build as the client hears of it (its output stays raw here and
/// leaves the server only sealed).
pub fn build_failure(e: BuildError) -> CreateError {
    match e {
        BuildError::Failed { tail } => CreateError::Build {
            reason: "the assignment's image did not build".into(),
            tail,
        },
        BuildError::TimedOut(limit) => CreateError::Build {
            reason: format!(
                "the assignment's image took longer than {} to build and was stopped",
                humantime::format_duration(limit)
            ),
            tail: Vec::new(),
        },
        BuildError::Docker(e) => e.into(),
    }
}
