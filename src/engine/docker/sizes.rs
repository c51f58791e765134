//! The writable layer of each container (`docker ps -s`): slow, as the
//! daemon walks every container's files to answer, so it is asked rarely
//! and for all of this server's containers at once.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;

use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::DockerError;

impl Docker {
    /// Bytes in the writable layer of each of this server's containers,
    /// by container ID (running or not).
    pub async fn writable_sizes(&self) -> Result<HashMap<String, u64>, DockerError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .size(true)
            .filters(&self.owned_filter())
            .build();
        let list = self.client().await?.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            // Docker leaves an empty layer's size out.
            .filter_map(|c| Some((c.id?, c.size_rw.unwrap_or(0).max(0) as u64)))
            .collect())
    }
}
