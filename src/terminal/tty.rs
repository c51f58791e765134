//! The TTY a terminal runs on: a pty of the container's agent or, in
//! containers of older versions, the container's main process (attached)
//! or an exec; and the input writer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::engine::agent::AgentTty;
use crate::engine::docker::{Docker, DockerError};
use crate::terminal::activity::Activity;

/// How often, and how far apart, an ended stream asks whether its program
/// exited.
pub(super) const EXIT_CHECKS: usize = 10;
pub(super) const EXIT_CHECK_PAUSE: Duration = Duration::from_millis(50);
pub(super) type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Input messages queued before the websocket reader waits.
pub(super) const INPUT_QUEUE: usize = 16;

/// Whose TTY a terminal drives.
#[derive(Debug, Clone)]
pub enum Tty {
    /// The container's main process: survives ua's restarts.
    Main {
        /// The container.
        container: String,
    },
    /// An exec (containers made by versions before the gate).
    Exec {
        /// The exec's ID.
        id: String,
    },
    /// A pty held by the container's agent, reached over its socket.
    Agent {
        /// The container.
        container: String,
        /// The attach connection's resizes and exit.
        tty: AgentTty,
    },
}

impl Tty {
    pub(super) async fn resize(
        &self,
        docker: &Docker,
        rows: u16,
        cols: u16,
    ) -> Result<(), DockerError> {
        match self {
            Tty::Main { container } => docker.resize_tty(container, rows, cols).await,
            Tty::Exec { id } => docker.resize(id, rows, cols).await,
            Tty::Agent { tty, .. } => tty.resize(rows, cols).await,
        }
    }

    pub(super) async fn is_running(&self, docker: &Docker) -> Result<bool, DockerError> {
        match self {
            Tty::Main { container } => docker.is_running(container).await,
            Tty::Exec { id } => docker.exec_running(id).await,
            Tty::Agent { tty, .. } => Ok(tty.is_running()),
        }
    }

    /// Whether the program ended, asked when its output stream ended: Docker
    /// may close the stream a moment before it marks the process exited.
    pub(super) async fn has_exited(&self, docker: &Docker) -> Result<bool, DockerError> {
        for _ in 0..EXIT_CHECKS {
            if !self.is_running(docker).await? {
                return Ok(true);
            }
            tokio::time::sleep(EXIT_CHECK_PAUSE).await;
        }
        Ok(false)
    }
}

/// Writes input to the TTY; after a write fails, waits for the input of
/// the next attach ([`Pump::reattach`]) and writes what failed there.
pub(super) async fn write_input(
    mut input: Input,
    mut queue: mpsc::Receiver<Bytes>,
    mut writers: mpsc::Receiver<Input>,
    activity: Arc<Activity>,
) {
    loop {
        tokio::select! {
            biased;
            writer = writers.recv() => match writer {
                Some(writer) => input = writer,
                None => break,
            },
            bytes = queue.recv() => {
                let Some(mut bytes) = bytes else { break };
                activity.heard_input();
                while input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                    let Some(writer) = writers.recv().await else { return };
                    input = writer;
                    bytes = bytes.clone();
                }
            }
        }
    }
    let _ = input.shutdown().await;
}
