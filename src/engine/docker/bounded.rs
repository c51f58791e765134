//! Background Docker calls with a time limit: a stalled daemon must not
//! hold the sweep, the pool or a removal for bollard's 120 s.

use std::time::Duration;

use crate::engine::docker::errors::DockerError;

/// The longest one Docker call of background work (removal, stop, tidy)
/// may take: a stalled daemon must not hold the sweep for bollard's 120 s.
pub const DOCKER_CALL_LIMIT: Duration = Duration::from_secs(30);

/// `call`, failed as unreachable when it takes over [`DOCKER_CALL_LIMIT`].
pub async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    tokio::time::timeout(DOCKER_CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(DockerError::Unreachable(format!(
                "no answer in {} s",
                DOCKER_CALL_LIMIT.as_secs()
            )))
        })
}
