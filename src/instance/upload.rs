//! Files in (docs/API.md, "Files in"): `PUT /instance/{id}/files?path=P`
//! writes a file into an instance's container as the image's USER. The
//! bytes reach a shell on standard input in a Docker exec that has dropped
//! to that user, so the kernel decides, as in the student's own terminal,
//! where they may write; missing parents are made as that user.

use std::sync::Arc;

use crate::engine::docker::{bounded, DockerError};
use crate::instance::entry::Instance;
use crate::instance::files::{self, container_path, percent_decode, Reader};
use crate::instance::registry::Registry;

/// The shell that writes the file as the image's USER: `$1` the path, `$2`
/// the mode or empty; the content on standard input. Each refusal has its
/// own exit status (see [`refusal`]). It refuses to run as a non-root user
/// holding capabilities, as the graded-files shell does.
const SCRIPT: &str = r#"while read -r key value _; do
  case $key in Uid:) uid=$value;; CapEff:) caps=$value;; esac
done </proc/self/status
[ "$uid" = 0 ] || [ "$caps" = 0000000000000000 ] || exit 3
p=$1 mode=$2
d=$(dirname -- "$p")
if [ ! -d "$d" ]; then
  [ -e "$d" ] && exit 20
  mkdir -p -- "$d" 2>/dev/null || exit 21
fi
case $(cd -- "$d" 2>/dev/null && pwd -P) in
  /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) exit 27;;
esac
[ -L "$p" ] && exit 23
[ -d "$p" ] && exit 22
if [ -e "$p" ]; then [ -w "$p" ] || exit 24; else [ -w "$d" ] && [ -x "$d" ] || exit 24; fi
cat > "$p" || exit 25
if [ -n "$mode" ]; then chmod "$mode" "$p" || exit 26; fi
exit 0"#;

/// Why a file was not written.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A malformed request: a 400.
    #[error("{0}")]
    BadRequest(String),
    /// The user may not write there: a 403.
    #[error("{0}")]
    Forbidden(String),
    /// The path is a directory or a symbolic link: a 409.
    #[error("{0}")]
    Conflict(String),
    /// The write itself failed (no space, a quota): a 507.
    #[error("{0}")]
    Failed(String),
    /// Busy, or the container between states: a 503.
    #[error("{0}")]
    Busy(String),
    /// The container is gone: a 404.
    #[error("the instance's container is gone")]
    Gone,
    /// Docker failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// What a `PUT` asks: one path and an optional mode.
#[derive(Debug, PartialEq, Eq)]
pub struct Upload {
    /// As the client named it.
    pub path: String,
    /// Octal, at most 0777.
    pub mode: Option<u32>,
}

impl Upload {
    /// Reads `path` (exactly one) and `mode` from a query string.
    pub fn from_query(query: &str) -> Result<Upload, UploadError> {
        let paths =
            files::paths_from_query(query).map_err(|e| UploadError::BadRequest(e.to_string()))?;
        let [path] = <[String; 1]>::try_from(paths).map_err(|_| {
            UploadError::BadRequest("name one file to write: ?path=notes.txt".into())
        })?;
        let mode = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("mode="))
            .next_back()
            .map(|text| {
                let text = percent_decode(text).unwrap_or_default();
                u32::from_str_radix(&text, 8)
                    .ok()
                    .filter(|m| *m <= 0o777 && !text.is_empty())
                    .ok_or_else(|| {
                        UploadError::BadRequest(
                            "mode must be octal, at most 0777, e.g. mode=0755".into(),
                        )
                    })
            })
            .transpose()?;
        Ok(Upload { path, mode })
    }
}

impl Registry {
    /// Writes `content` to the upload's path as the image's USER (a stopped
    /// container is started for it and stopped after); the bytes written.
    pub async fn write_file(
        self: &Arc<Self>,
        instance: &Arc<Instance>,
        upload: &Upload,
        content: Vec<u8>,
    ) -> Result<usize, UploadError> {
        let Some(permit) = self.file_reads.try_start(&instance.id) else {
            return Err(UploadError::Busy(
                "too many file reads and writes at once; try again shortly".into(),
            ));
        };
        let written = self.write_as_user(instance, upload, content).await;
        drop(permit);
        self.stop_after_reading(instance).await;
        written
    }

    async fn write_as_user(
        &self,
        instance: &Arc<Instance>,
        upload: &Upload,
        content: Vec<u8>,
    ) -> Result<usize, UploadError> {
        let record = instance.record();
        let reader = Reader {
            user: bounded(self.docker.image_user(&record.image)).await?,
            workdir: bounded(self.docker.image_workdir(&record.image)).await?,
            gosu: record.gate != crate::engine::gate::Gate::Legacy,
            container: record.container_id.clone(),
        };
        match self.running_for_use(instance, &record.container_id).await {
            Err(DockerError::NotFound) => return Err(UploadError::Gone),
            other => other?,
        }
        let path = container_path(&reader.workdir, &upload.path);
        let mode = upload.mode.map(|m| format!("{m:o}")).unwrap_or_default();
        let script = ["/bin/sh", "-c", SCRIPT, "ua-upload", &path, &mode];
        let (user, command) = reader.as_user(script.iter().map(|s| s.to_string()).collect());
        let size = content.len();
        let ran = self
            .docker
            .run_as(&reader.container, user, command, content)
            .await;
        match ran {
            Ok(outcome) if outcome.status == 0 => Ok(size),
            Ok(outcome) => Err(refusal(outcome.status, &upload.path)),
            Err(DockerError::Api { status: 409, .. }) => Err(UploadError::Busy(
                "the container is stopping or starting; try again shortly".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// What the shell's exit status says of `path`.
fn refusal(status: i64, path: &str) -> UploadError {
    match status {
        20 => UploadError::BadRequest(format!("a parent of {path} is not a directory")),
        21 => UploadError::Forbidden(format!("the directories of {path} cannot be made as the student")),
        22 => UploadError::Conflict(format!("the path {path} is a directory")),
        23 => UploadError::Conflict(format!("the path {path} is a symbolic link; name its target")),
        24 => UploadError::Forbidden(format!("the student may not write {path}")),
        27 => UploadError::Forbidden(format!("the path {path} is under /proc, /sys or /dev")),
        25 => UploadError::Failed(format!("the file {path} could not be written (is the disk full?)")),
        26 => UploadError::Failed(format!("the mode of {path} could not be set")),
        _ => UploadError::Docker(DockerError::Api {
            status: 500,
            message: format!(
                "the container's shell failed writing the file (status {status}; does the image have /bin/sh, dirname and cat?)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_path_and_an_octal_mode_are_read() {
        let upload = Upload::from_query("path=src%2Fa+b.c&mode=0755").unwrap();
        assert_eq!(
            upload,
            Upload {
                path: "src/a b.c".into(),
                mode: Some(0o755)
            }
        );
        assert_eq!(Upload::from_query("path=x").unwrap().mode, None);
        for bad in [
            "",
            "path=a&path=b",
            "path=x&mode=9",
            "path=x&mode=1777",
            "path=x&mode=",
        ] {
            assert!(
                matches!(Upload::from_query(bad), Err(UploadError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
