//! Files in and out of a container: whether a path exists, reading one
//! file or an archive, uploading a tar.

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::DockerError;

/// Largest file read out of a container (`/etc/passwd`, `/etc/group`).
pub(super) const MAX_READ_BYTES: usize = 1 << 20;

impl Docker {
    /// Whether `path` exists in the container's file system (the container
    /// need not run).
    pub async fn path_exists(&self, container: &str, path: &str) -> Result<bool, DockerError> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        let result = self
            .client()
            .await?
            .get_container_archive_info(container, Some(options))
            .await;
        match result.map_err(DockerError::from) {
            Ok(_) => Ok(true),
            Err(DockerError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The contents of the regular file `path` in the container, or `None`
    /// when there is none (the container need not run). At most 1 MiB.
    pub async fn read_file(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let limit = MAX_READ_BYTES + 64 * 1024;
        let Some(archive) = self.read_archive(container, path, limit).await? else {
            return Ok(None);
        };
        if archive.len() >= limit {
            return Err(DockerError::Api {
                status: 413,
                message: format!("{path} is larger than {MAX_READ_BYTES} bytes"),
            });
        }
        let mut entries = tar::Archive::new(archive.as_slice());
        let unreadable = |e: std::io::Error| DockerError::Api {
            status: 500,
            message: format!("the archive of {path} is unreadable: {e}"),
        };
        let Some(entry) = entries.entries().map_err(unreadable)?.next() else {
            return Ok(None);
        };
        let mut entry = entry.map_err(unreadable)?;
        if !entry.header().entry_type().is_file() {
            return Ok(None);
        }
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents).map_err(unreadable)?;
        Ok(Some(contents))
    }

    /// Unpacks `tar` at `/` in the container (owners and modes as the
    /// archive says; the container need not run).
    pub async fn upload(&self, container: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        Ok(self
            .client()
            .await?
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await?)
    }

    /// The start of Docker's tar archive of `path` in a container (running
    /// or not), at most `limit` bytes of it; `None` when the path is missing.
    pub async fn read_archive(
        &self,
        container: &str,
        path: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let options = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let client = self.client().await?;
        let mut stream = client.download_from_container(container, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(DockerError::from) {
                Ok(chunk) => archive.extend_from_slice(&chunk),
                Err(DockerError::NotFound) => return Ok(None),
                // Docker answers 400 for some unreadable paths: treat as missing.
                Err(DockerError::Api { status: 400, .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
            if archive.len() >= limit {
                archive.truncate(limit);
                break;
            }
        }
        Ok(Some(archive))
    }
}
