//! Graded files: `GET /instance/{id}/files?path=A&path=B` reads named files
//! out of an instance's container, running or stopped, through Docker's
//! archive API — the way PrairieLearn workspaces hand files to graders.
//!
//! Paths are relative to the image's `WORKDIR` unless absolute. Docker
//! resolves them inside the container's own file system (a symlink cannot
//! reach the host); only regular files are returned (a symlink, directory or
//! device named directly counts as missing).

use base64::Engine;
use serde_json::{json, Value};

use crate::docker::{Docker, DockerError};

/// Largest single file returned.
pub const MAX_FILE: usize = 1 << 20;
/// Largest total of the files of one request.
pub const MAX_TOTAL: usize = 5 << 20;
/// Most paths one request may name.
pub const MAX_PATHS: usize = 64;
/// Longest path accepted.
const MAX_PATH_CHARS: usize = 4096;
/// Room for tar headers (long names, PAX records) before the file's bytes.
const HEADER_SLACK: usize = 64 * 1024;

/// Why graded files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The request is malformed (paths, their number or their length): a 400.
    #[error("{0}")]
    BadRequest(String),
    /// A file or the total is over its limit: a 413.
    #[error("{0}")]
    TooBig(String),
    /// Docker failed or could not be reached.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl FilesError {
    /// Whether Docker could not be reached (try again) rather than failed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, FilesError::Docker(DockerError::Unreachable(_)))
    }
}

/// The `path` values of a query string, percent-decoded, in order.
pub fn paths_from_query(query: &str) -> Result<Vec<String>, FilesError> {
    let mut paths = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "path" {
            continue;
        }
        let path = percent_decode(value).ok_or_else(|| {
            FilesError::BadRequest("a path is not valid UTF-8 URL encoding".into())
        })?;
        if path.is_empty() || path.contains('\0') || path.chars().count() > MAX_PATH_CHARS {
            return Err(FilesError::BadRequest(
                "each path must be non-empty, without NUL, at most 4096 characters".into(),
            ));
        }
        paths.push(path);
    }
    if paths.is_empty() {
        return Err(FilesError::BadRequest(
            "name the files to read: ?path=hello.c&path=notes.txt".into(),
        ));
    }
    if paths.len() > MAX_PATHS {
        return Err(FilesError::BadRequest(format!(
            "at most {MAX_PATHS} paths per request"
        )));
    }
    Ok(paths)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Where `path` is in the container: absolute as given, else under `workdir`.
fn container_path(workdir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", workdir.trim_end_matches('/'))
    }
}

/// The contents of the archive's first entry when it is a regular file.
fn regular_file(archive: &[u8], name: &str) -> Result<Option<Vec<u8>>, FilesError> {
    let mut archive = tar::Archive::new(archive);
    let Ok(mut entries) = archive.entries() else {
        return Ok(None);
    };
    let Some(Ok(mut entry)) = entries.next() else {
        return Ok(None);
    };
    if !entry.header().entry_type().is_file() {
        return Ok(None);
    }
    let size = entry.size();
    if size > MAX_FILE as u64 {
        return Err(FilesError::TooBig(format!(
            "the file {name} is over the 1 MiB limit per file"
        )));
    }
    let mut contents = Vec::with_capacity(size as usize);
    std::io::Read::read_to_end(&mut entry, &mut contents)
        .map_err(|e| DockerError::Unreachable(format!("the archive broke off: {e}")))?;
    if contents.len() as u64 != size {
        return Err(DockerError::Unreachable("the archive broke off".into()).into());
    }
    Ok(Some(contents))
}

/// Reads `paths` from `container`: `{"files": [{"name", "contents"}], "missing": [...]}`.
pub async fn read(
    docker: &Docker,
    container: &str,
    image: &str,
    paths: &[String],
) -> Result<Value, FilesError> {
    let workdir = docker.image_workdir(image).await?;
    let mut files = Vec::new();
    let mut missing = Vec::new();
    let mut total = 0usize;
    for name in paths {
        let path = container_path(&workdir, name);
        let archive = docker
            .read_archive(container, &path, MAX_FILE + HEADER_SLACK)
            .await?;
        let contents = match archive {
            Some(archive) => regular_file(&archive, name)?,
            None => None,
        };
        match contents {
            Some(contents) => {
                total += contents.len();
                if total > MAX_TOTAL {
                    return Err(FilesError::TooBig(
                        "the files are over the 5 MiB limit together".into(),
                    ));
                }
                let encoded = base64::engine::general_purpose::STANDARD.encode(&contents);
                files.push(json!({ "name": name, "contents": encoded }));
            }
            None => missing.push(name.clone()),
        }
    }
    Ok(json!({ "files": files, "missing": missing }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_paths_decode_and_are_bounded() {
        let paths = paths_from_query("path=hello.c&x=1&path=a%20b%2Fc.txt&path=d+e").unwrap();
        assert_eq!(paths, ["hello.c", "a b/c.txt", "d e"]);
        assert!(paths_from_query("x=1").is_err());
        assert!(paths_from_query("path=").is_err());
        assert!(paths_from_query("path=%00").is_err());
        assert!(paths_from_query("path=%zz").is_err());
        let many = vec!["path=a"; MAX_PATHS + 1].join("&");
        assert!(paths_from_query(&many).is_err());
    }

    #[test]
    fn relative_paths_are_under_the_workdir() {
        assert_eq!(container_path("/home/student", "a.c"), "/home/student/a.c");
        assert_eq!(container_path("/", "a.c"), "/a.c");
        assert_eq!(container_path("/w/", "/etc/motd"), "/etc/motd");
    }
}
