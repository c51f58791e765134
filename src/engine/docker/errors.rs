//! Docker's errors as ua sees them: unreachable, missing, a failed build,
//! and the few answers that are no error.

use std::time::Duration;

use bollard::errors::Error as BollardError;

/// A failed Docker call.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon did not answer (or its socket is missing).
    #[error("the Docker daemon is unreachable: {0}")]
    Unreachable(String),
    /// The daemon answered with an error status.
    #[error("Docker answered {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The object does not exist (404).
    #[error("not found")]
    NotFound,
    /// A terminal's stream from the container's agent broke.
    #[error("{0}")]
    Stream(String),
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> DockerError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => DockerError::NotFound,
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api {
                status: status_code,
                message,
            },
            other => DockerError::Unreachable(other.to_string()),
        }
    }
}

/// A failed image build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The build ran and failed.
    #[error("the image did not build")]
    Failed {
        /// The build's last output lines; they may show spec data.
        tail: Vec<String>,
    },
    /// The build ran past its time limit and was stopped.
    #[error("the build took longer than {0:?}")]
    TimedOut(Duration),
    /// Docker itself failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Docker answers 304 when a container already is in the asked state.
pub(super) fn ignore_not_modified(result: Result<(), BollardError>) -> Result<(), DockerError> {
    match result {
        Ok(())
        | Err(BollardError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removing what is already gone is fine.
pub(super) fn ignore_missing<T>(result: Result<T, BollardError>) -> Result<(), DockerError> {
    match result.map_err(DockerError::from) {
        Ok(_) | Err(DockerError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}
