//! Execs in a container: a TTY exec for a terminal, a non-TTY exec whose
//! output streams, a script run as root, and a run as root whose two
//! output streams are kept apart (a check's feedback and its verdict).

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptions;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;

use crate::engine::docker::build::Tail;
use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::DockerError;

/// Detach keys of a TTY exec (containers made before the gate only; the
/// terminal's attach has an untypeable key, see `crate::engine::docker::attach`). An
/// exec's keys travel in JSON, which cannot carry a non-UTF-8 byte, so
/// these stay typeable (SECURITY.md, residual risks).
pub(super) const DETACH_KEYS: &str = "ctrl-^,ctrl-^,ctrl-^";

/// Read buffer of an exec's output stream.
pub(super) const EXEC_READ_BYTES: usize = 8 * 1024;

/// What a finished non-TTY exec left: its exit status and last output lines.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// The exit status (-1 when Docker does not know it).
    pub status: i64,
    /// The last lines of output, for the error of a failed run.
    pub tail: Vec<String>,
}

/// How long a split run waits for the rest of its standard output once its
/// standard error is complete.
pub const SPLIT_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// What a split run kept: the first bytes of each stream, and whether more came.
#[derive(Debug, Default)]
pub struct SplitOutcome {
    /// Standard output, at most the cap.
    pub stdout: Vec<u8>,
    /// More standard output came than was kept.
    pub stdout_cut: bool,
    /// Standard error, at most the cap.
    pub stderr: Vec<u8>,
    /// More standard error came than was kept.
    pub stderr_cut: bool,
}

/// A non-TTY exec's output frames, as bollard gives them.
type RootOutput = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Reads a split run's output into `outcome` until it ends, or
/// [`SPLIT_LINGER`] after `complete` holds for its standard error.
async fn drain_split<S>(
    mut output: S,
    cap: usize,
    outcome: &mut SplitOutcome,
    complete: impl Fn(&[u8]) -> bool,
) -> Result<(), DockerError>
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    let keep = |into: &mut Vec<u8>, cut: &mut bool, bytes: &[u8]| {
        let room = cap.saturating_sub(into.len());
        into.extend_from_slice(&bytes[..bytes.len().min(room)]);
        *cut |= bytes.len() > room;
    };
    let mut linger: Option<tokio::time::Instant> = None;
    loop {
        let next = match linger {
            Some(until) => match tokio::time::timeout_at(until, output.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(()),
            },
            None => output.next().await,
        };
        match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(DockerError::from(e)),
            Some(Ok(LogOutput::StdErr { message })) => {
                keep(&mut outcome.stderr, &mut outcome.stderr_cut, &message);
                if linger.is_none() && complete(&outcome.stderr) {
                    linger = Some(tokio::time::Instant::now() + SPLIT_LINGER);
                }
            }
            Some(Ok(other)) => {
                let bytes = other.into_bytes();
                keep(&mut outcome.stdout, &mut outcome.stdout_cut, &bytes);
            }
        }
    }
}

/// A TTY's output as it comes: raw bytes, or the error that cut it off
/// (bollard's frames and errors stay inside `engine::docker`).
pub type Output = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, DockerError>> + Send>>;

/// A container's TTY, attached: its main process's output and input.
pub struct Attached {
    /// The TTY's output, raw bytes.
    pub output: Output,
    /// The TTY's input.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// A running TTY exec: its output stream and its input.
pub struct Exec {
    /// The exec's ID, for resizing and inspecting it.
    pub id: String,
    /// The TTY's output, raw bytes.
    pub output: Output,
    /// The TTY's input.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// A non-TTY exec's standard output, as it comes.
pub struct ExecOutput {
    /// The exec's ID, for its exit status.
    pub id: String,
    /// The bytes it writes to its standard output.
    pub stdout: Pin<Box<dyn Stream<Item = Result<bytes::Bytes, DockerError>> + Send>>,
}

impl Docker {
    /// Runs `command` as root in the running container without a TTY,
    /// with `stdin` as its input, until it ends; keeps its last output lines.
    pub async fn run_as_root(
        &self,
        container: &str,
        command: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<ExecOutcome, DockerError> {
        self.run_as(container, "0:0", command, stdin).await
    }

    /// [`Docker::run_as_root`] as `user` (`docker exec -u`).
    pub async fn run_as(
        &self,
        container: &str,
        user: &str,
        command: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<ExecOutcome, DockerError> {
        let (id, mut output, feed) = self.start_as(container, user, command, stdin).await?;
        let mut tail = Tail::default();
        let drain = async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(log) => tail.keep(&String::from_utf8_lossy(&log.into_bytes())),
                    Err(e) => return Err(DockerError::from(e)),
                }
            }
            Ok(())
        };
        let ((), drained) = tokio::join!(feed, drain);
        drained?;
        let inspect = self.client().await?.inspect_exec(&id).await?;
        Ok(ExecOutcome {
            status: inspect.exit_code.unwrap_or(-1),
            tail: tail.into(),
        })
    }

    /// Runs `command` as root without a TTY, `stdin` as its input, keeping
    /// the first `cap` bytes of each stream apart. It is done when the
    /// output ends, or [`SPLIT_LINGER`] after `complete` first holds for
    /// the standard error kept so far (a background process the command
    /// left may hold its standard output open).
    pub async fn run_split_as_root(
        &self,
        container: &str,
        command: Vec<String>,
        stdin: Vec<u8>,
        cap: usize,
        complete: impl Fn(&[u8]) -> bool,
    ) -> Result<SplitOutcome, DockerError> {
        let (_, output, feed) = self.start_as(container, "0:0", command, stdin).await?;
        let mut outcome = SplitOutcome::default();
        let ((), drained) = tokio::join!(feed, drain_split(output, cap, &mut outcome, complete));
        drained?;
        Ok(outcome)
    }

    /// Starts `command` as `user` without a TTY: its ID, its output, and
    /// the task that feeds it `stdin` and then closes its input (a command
    /// that stops reading early only loses its own input).
    async fn start_as(
        &self,
        container: &str,
        user: &str,
        command: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<(String, RootOutput, impl std::future::Future<Output = ()>), DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            user: Some(user.into()),
            cmd: Some(command),
            ..Default::default()
        };
        let created = client.create_exec(container, config).await?;
        let StartExecResults::Attached { output, mut input } =
            client.start_exec(&created.id, None).await?
        else {
            return Err(DockerError::Api {
                status: 500,
                message: "the exec started detached".into(),
            });
        };
        let feed = async move {
            use tokio::io::AsyncWriteExt;
            let _ = input.write_all(&stdin).await;
            let _ = input.shutdown().await;
        };
        Ok((created.id, output, feed))
    }

    /// Starts `command` in a TTY inside the running container as the
    /// container's user, in its WORKDIR, with its ENV.
    pub async fn exec(&self, container: &str, command: Vec<String>) -> Result<Exec, DockerError> {
        self.exec_as(container, command, "").await
    }

    /// [`Docker::exec`] as `user` (empty: the container's user).
    pub async fn exec_as(
        &self,
        container: &str,
        command: Vec<String>,
        user: &str,
    ) -> Result<Exec, DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            detach_keys: Some(DETACH_KEYS.into()),
            env: Some(vec!["TERM=xterm-256color".into()]),
            user: Some(user.to_string()).filter(|u| !u.is_empty()),
            cmd: Some(command),
            ..Default::default()
        };
        let created = client.create_exec(container, config).await?;
        // Big reads: a flood arrives in few chunks (a TTY exec's frames are raw bytes).
        let start = StartExecOptions {
            output_capacity: Some(EXEC_READ_BYTES),
            ..Default::default()
        };
        match client.start_exec(&created.id, Some(start)).await? {
            StartExecResults::Attached { output, input } => Ok(Exec {
                id: created.id,
                output: Box::pin(
                    output.map(|frame| frame.map(LogOutput::into_bytes).map_err(DockerError::from)),
                ),
                input,
            }),
            StartExecResults::Detached => Err(DockerError::Api {
                status: 500,
                message: "the exec started detached".into(),
            }),
        }
    }

    /// Starts `command` as `user` (empty: root) in the running container
    /// without a TTY and hands back its standard output as it comes (its
    /// standard error is dropped). The kernel checks `user`'s rights on
    /// everything the command opens, as for the student's own terminal.
    pub async fn exec_output(
        &self,
        container: &str,
        user: &str,
        command: Vec<String>,
    ) -> Result<ExecOutput, DockerError> {
        let client = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            user: Some(if user.is_empty() { "0:0" } else { user }.to_string()),
            cmd: Some(command),
            ..Default::default()
        };
        let created = client.create_exec(container, config).await?;
        let start = StartExecOptions {
            output_capacity: Some(EXEC_READ_BYTES),
            ..Default::default()
        };
        let StartExecResults::Attached { output, .. } =
            client.start_exec(&created.id, Some(start)).await?
        else {
            return Err(DockerError::Api {
                status: 500,
                message: "the exec started detached".into(),
            });
        };
        let stdout = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(_) => None,
                Err(e) => Some(Err(DockerError::from(e))),
            }
        });
        Ok(ExecOutput {
            id: created.id,
            stdout: Box::pin(stdout),
        })
    }

    /// The exit status of a finished exec (`None` while it runs or when
    /// Docker does not know it).
    pub async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, DockerError> {
        let inspect = self.client().await?.inspect_exec(exec).await?;
        Ok(inspect.exit_code.filter(|_| inspect.running != Some(true)))
    }

    /// Whether an exec's process still runs.
    pub async fn exec_running(&self, exec: &str) -> Result<bool, DockerError> {
        let inspect = self.client().await?.inspect_exec(exec).await?;
        Ok(inspect.running.unwrap_or(false))
    }

    /// Resizes an exec's TTY (only after the exec has started).
    pub async fn resize(&self, exec: &str, rows: u16, cols: u16) -> Result<(), DockerError> {
        let options = ResizeExecOptions {
            h: rows.into(),
            w: cols.into(),
        };
        Ok(self.client().await?.resize_exec(exec, options).await?)
    }
}
