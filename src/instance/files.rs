//! Graded files: `GET /instance/{id}/files?path=A&path=B` reads named files
//! out of an instance's container — the way PrairieLearn workspaces hand
//! files to graders — as the image's USER, so that a file comes out only
//! if the student could read it at that moment.
//!
//! Paths are relative to the image's `WORKDIR` unless absolute. Each is
//! opened by a shell in a Docker exec run as the image's USER: the kernel
//! resolves it inside the container and checks every component (a symlink
//! the student made to `/root` opens nothing of root's). Only regular files
//! outside `/proc` and `/sys` are returned; a symlink named directly, a
//! directory, a device, or a path the kernel refuses (ENOENT, EACCES,
//! ENOTDIR, ENAMETOOLONG, ELOOP) is `missing`. A first exec measures the
//! files (the limits are decided before the answer starts); then each file
//! is streamed from its own exec, base64-encoded on the way, so an answer
//! is never built whole. Reads are bounded per instance and in all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::engine::docker::{Docker, DockerError};

/// Largest single file returned.
pub const MAX_FILE: usize = 1 << 20;
/// Largest total of the files of one request.
pub const MAX_TOTAL: usize = 5 << 20;
/// Most paths one request may name.
pub const MAX_PATHS: usize = 64;
/// Longest path accepted.
const MAX_PATH_CHARS: usize = 4096;
/// Most graded-files reads of one instance at a time; more get 503.
pub const READS_PER_INSTANCE: usize = 2;
/// Most graded-files reads at a time on the server; more get 503.
pub const READS_IN_ALL: usize = 16;
/// The longest a whole answer may take to be read out and sent; a client
/// slower than that gets a cut-off answer and its read is ended.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(120);
/// Answer chunks queued between the container and the connection.
const QUEUED_CHUNKS: usize = 2;
/// Most output the measuring exec may give (a number per path).
const MAX_PROBE_OUTPUT: usize = 64 * 1024;

/// The shell that opens the files as the image's USER. `$1` is `probe`
/// (print, per path, `-` or its size up to `$2` bytes) or `read` (print up
/// to `$2` bytes of the one path). The file is opened once, on fd 3, and
/// everything is checked on what was opened, so a swap after the check
/// changes nothing; the kernel does the permission checks on the open.
/// (`-f` before the open only keeps a FIFO from blocking it.) It refuses
/// to run as a non-root user that holds capabilities.
const SCRIPT: &str = r#"readable() {
  [ -f /proc/self/fd/3 ] || return 1
  case $(readlink /proc/self/fd/3 2>/dev/null) in /proc/*|/sys/*) return 1;; esac
}
# A Docker that left capabilities to a non-root exec would read past the
# user's rights: refuse rather than trust it.
while read -r key value _; do
  case $key in Uid:) uid=$value;; CapEff:) caps=$value;; esac
done </proc/self/status
[ "$uid" = 0 ] || [ "$caps" = 0000000000000000 ] || exit 3
mode=$1 limit=$2
shift 2
if [ "$mode" = read ]; then
  [ ! -L "$1" ] && [ -f "$1" ] && { readable && head -c "$limit" <&3; } 2>/dev/null 3<"$1"
  exit
fi
for p do
  n=-
  if [ ! -L "$p" ] && [ -f "$p" ]; then
    n=$({ readable && head -c "$limit" <&3 | wc -c; } 2>/dev/null 3<"$p") || n=-
  fi
  echo "${n:--}"
done"#;

/// Why graded files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The request is malformed (paths, their number or their length): a 400.
    #[error("{0}")]
    BadRequest(String),
    /// A file or the total is over its limit: a 413.
    #[error("{0}")]
    TooBig(String),
    /// The instance, or the server, reads as many files as it may at once;
    /// or the container is between states: a 503, try again.
    #[error("{0}")]
    Busy(String),
    /// The instance's container is gone (removed outside ua): a 404.
    #[error("the instance's container is gone")]
    Gone,
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

pub(crate) fn percent_decode(text: &str) -> Option<String> {
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
pub(crate) fn container_path(workdir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", workdir.trim_end_matches('/'))
    }
}

/// The graded-files reads in progress, per instance and in all.
#[derive(Default)]
pub struct Reads {
    active: Mutex<(HashMap<String, usize>, usize)>,
}

impl Reads {
    /// A read of `instance`'s files may start, unless it or the server is
    /// at its bound.
    pub fn try_start(self: &Arc<Self>, instance: &str) -> Option<ReadPermit> {
        let mut active = self.active.lock().unwrap();
        let (per_instance, total) = &mut *active;
        let mine = per_instance.entry(instance.to_string()).or_default();
        if *mine >= READS_PER_INSTANCE || *total >= READS_IN_ALL {
            if *mine == 0 {
                per_instance.remove(instance);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(ReadPermit {
            reads: self.clone(),
            instance: instance.to_string(),
        })
    }

    /// Whether a read of `instance`'s files is in progress.
    pub fn active(&self, instance: &str) -> bool {
        self.active.lock().unwrap().0.contains_key(instance)
    }
}

/// One read in progress; dropping it ends it.
pub struct ReadPermit {
    reads: Arc<Reads>,
    instance: String,
}

impl Drop for ReadPermit {
    fn drop(&mut self) {
        let mut active = self.reads.active.lock().unwrap();
        let (per_instance, total) = &mut *active;
        *total -= 1;
        if let Some(mine) = per_instance.get_mut(&self.instance) {
            *mine -= 1;
            if *mine == 0 {
                per_instance.remove(&self.instance);
            }
        }
    }
}

/// Who reads, where: the container, the image's USER and WORKDIR.
#[derive(Debug, Clone)]
pub struct Reader {
    /// The running container.
    pub container: String,
    /// The image's USER (name, uid, `uid:gid`; empty is root).
    pub user: String,
    /// The image's WORKDIR.
    pub workdir: String,
    /// Whether the container has `gosu` (every container with a gate): the
    /// exec then runs as root and drops to the USER itself, since gVisor
    /// leaves a `docker exec -u` user the container's capabilities.
    pub gosu: bool,
}

impl Reader {
    /// The exec's user and command for `mode` over `paths`.
    fn exec(&self, mode: &str, limit: usize, paths: Vec<String>) -> (&str, Vec<String>) {
        self.as_user(command(mode, limit, paths))
    }

    /// The exec's user and `script` made to run as the image's USER: with
    /// the container's `gosu` from root, or as `docker exec -u` before it.
    pub(crate) fn as_user(&self, script: Vec<String>) -> (&str, Vec<String>) {
        if !self.gosu {
            return (&self.user, script);
        }
        let user = if self.user.is_empty() {
            "0:0"
        } else {
            &self.user
        };
        let mut command = vec![crate::engine::gate::GOSU.to_string(), user.to_string()];
        command.extend(script);
        ("0:0", command)
    }
}

/// The paths of a request, measured: what will be sent.
#[derive(Debug)]
pub struct Plan {
    /// Each requested path with its size, `None` when missing.
    entries: Vec<(String, Option<usize>)>,
}

fn command(mode: &str, limit: usize, paths: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut command: Vec<String> = ["/bin/sh", "-c", SCRIPT, "ua-files", mode]
        .iter()
        .map(|s| s.to_string())
        .collect();
    command.push(limit.to_string());
    command.extend(paths);
    command
}

/// A Docker failure of an exec, made plain.
fn exec_failed(what: &str) -> FilesError {
    FilesError::Docker(DockerError::Api {
        status: 500,
        message: format!("the container's shell {what}"),
    })
}

/// Measures `paths` as the image's USER and applies the limits (a 413
/// before anything is sent).
pub async fn measure(
    docker: &Docker,
    reader: &Reader,
    paths: &[String],
) -> Result<Plan, FilesError> {
    let in_container = paths.iter().map(|p| container_path(&reader.workdir, p));
    let (user, command) = reader.exec("probe", MAX_FILE + 1, in_container.collect());
    let exec = docker.exec_output(&reader.container, user, command).await?;
    let mut stdout = exec.stdout;
    let mut output = Vec::new();
    while let Some(chunk) = stdout.next().await {
        output.extend_from_slice(&chunk?);
        if output.len() > MAX_PROBE_OUTPUT {
            return Err(exec_failed("said too much"));
        }
    }
    let output = String::from_utf8_lossy(&output);
    let sizes: Vec<Option<usize>> = output.lines().map(|l| l.trim().parse().ok()).collect();
    if sizes.len() != paths.len() {
        return Err(exec_failed(
            "could not measure the files (does the image have /bin/sh, head and wc?)",
        ));
    }
    let mut total = 0usize;
    for (name, size) in paths.iter().zip(&sizes) {
        let size = size.unwrap_or(0);
        if size > MAX_FILE {
            return Err(FilesError::TooBig(format!(
                "the file {name} is over the 1 MiB limit per file"
            )));
        }
        total += size;
    }
    if total > MAX_TOTAL {
        return Err(FilesError::TooBig(
            "the files are over the 5 MiB limit together".into(),
        ));
    }
    Ok(Plan {
        entries: paths.iter().cloned().zip(sizes).collect(),
    })
}

/// An answer on its way: JSON in chunks, ended early (an error) when a
/// file could not be read after all or the client was too slow.
pub struct Answer {
    chunks: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
}

impl Answer {
    /// The next chunk; `Err` when the answer was cut off, `None` at its end.
    pub fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, std::io::Error>>> {
        match self.chunks.poll_recv(cx) {
            std::task::Poll::Ready(Some(chunk)) => std::task::Poll::Ready(Some(Ok(chunk))),
            std::task::Poll::Ready(None) if self.complete.load(Ordering::Acquire) => {
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(Some(Err(
                std::io::Error::other("the graded files could not be sent whole"),
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// Where a streamed answer goes.
pub struct Sender {
    chunks: mpsc::Sender<Bytes>,
    complete: Arc<AtomicBool>,
}

/// A channel for one answer.
pub fn answer() -> (Sender, Answer) {
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    let complete = Arc::new(AtomicBool::new(false));
    (
        Sender {
            chunks: tx,
            complete: complete.clone(),
        },
        Answer {
            chunks: rx,
            complete,
        },
    )
}

/// Why streaming stopped.
#[derive(Debug)]
pub enum Cut {
    /// The client went away.
    Gone,
    /// A file could not be read after it was measured, or Docker failed.
    Failed(String),
}

impl Sender {
    async fn send(&self, bytes: impl Into<Bytes>) -> Result<(), Cut> {
        self.chunks.send(bytes.into()).await.map_err(|_| Cut::Gone)
    }
}

/// Streams the JSON answer of `plan` into `out`, each file from its own
/// exec; marks it complete only when all of it went out.
pub async fn send(docker: &Docker, reader: &Reader, plan: Plan, out: Sender) -> Result<(), Cut> {
    out.send(&b"{\"files\":["[..]).await?;
    let mut first = true;
    for (name, size) in plan.entries.iter().filter_map(|(n, s)| Some((n, (*s)?))) {
        let lead = format!(
            "{}{{\"name\":{},\"contents\":\"",
            if first { "" } else { "," },
            serde_json::Value::from(name.as_str())
        );
        first = false;
        out.send(lead).await?;
        if size > 0 {
            send_file(docker, reader, name, size, &out).await?;
        }
        out.send(&b"\"}"[..]).await?;
    }
    let missing: Vec<&str> = plan
        .entries
        .iter()
        .filter(|(_, size)| size.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    out.send(format!("],\"missing\":{}}}", serde_json::json!(missing)))
        .await?;
    out.complete.store(true, Ordering::Release);
    Ok(())
}

/// One file's contents, base64 as they come (at most `size` bytes).
async fn send_file(
    docker: &Docker,
    reader: &Reader,
    name: &str,
    size: usize,
    out: &Sender,
) -> Result<(), Cut> {
    let failed = |e: DockerError| Cut::Failed(e.to_string());
    let path = container_path(&reader.workdir, name);
    let (user, command) = reader.exec("read", size, vec![path]);
    let exec = docker
        .exec_output(&reader.container, user, command)
        .await
        .map_err(failed)?;
    let mut stdout = exec.stdout;
    let mut carry: Vec<u8> = Vec::new();
    while let Some(chunk) = stdout.next().await {
        carry.extend_from_slice(&chunk.map_err(failed)?);
        // Whole groups of three bytes now, the rest with the next chunk.
        let whole = carry.len() / 3 * 3;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&carry[..whole]);
        carry.drain(..whole);
        out.send(encoded).await?;
    }
    out.send(base64::engine::general_purpose::STANDARD.encode(&carry))
        .await?;
    match docker.exec_exit_code(&exec.id).await.map_err(failed)? {
        Some(0) => Ok(()),
        // Replaced or made unreadable since it was measured.
        _ => Err(Cut::Failed("a file changed while it was read".into())),
    }
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
