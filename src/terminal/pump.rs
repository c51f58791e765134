//! The pump: the one task that owns a terminal's output. It reads the TTY
//! only once the client has taken the last chunk (a slow client blocks the
//! program, not the server's memory), coalesces floods, feeds the replay
//! buffer and the observers, and reattaches after a detach.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::docker::{Docker, Output};

use crate::terminal::attachment::{Client, CloseReason, Command, MAX_CHUNK};
use crate::terminal::observers::Observers;
use crate::terminal::replay::Replay;
use crate::terminal::tty::{Input, Tty};

/// A read at least this big is taken for a flood (an echo is a few bytes).
pub(super) const FLOOD_READ: usize = 1024;

/// During a flood, how long to wait for more output before sending.
pub(super) const FLOOD_WAIT: Duration = Duration::from_millis(1);

/// Attaches again in a row, with no output between, before a terminal whose
/// stream keeps ending is taken as broken.
pub(super) const MAX_REATTACHES: u32 = 3;

/// How long a finished terminal waits for its client to take the last output.
pub(super) const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// How a terminal ended, for whoever stops its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The command exited by itself.
    Exited,
    /// Nobody reattached within the grace period.
    GraceOver,
    /// Ended on request (clean, expiry, shutdown): the requester handles the container.
    OnRequest,
}

pub(super) struct Pump {
    pub(super) output: Output,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) replay: Replay,
    pub(super) grace: Duration,
    pub(super) docker: Arc<Docker>,
    pub(super) tty: Tty,
    /// The input half of a new attach goes to the input writer.
    pub(super) writers: mpsc::Sender<Input>,
}

/// What the pump holds between two events.
struct Flow {
    /// The attached client, if any.
    client: Option<Client>,
    /// A chunk read but not yet taken by the client: while it waits, no
    /// more is read.
    pending: Option<Bytes>,
    /// When the grace period ends (no client attached).
    grace_ends: Option<Instant>,
    /// Output read with no client attached: once it has refilled the
    /// replay buffer, reading stops and the program blocks on its output
    /// instead of spinning through the grace period.
    unseen: usize,
    /// Attaches again in a row with no output between: a bound, so a
    /// daemon that keeps cutting the stream ends the terminal.
    reattached: u32,
}

impl Pump {
    pub(super) async fn run(mut self) -> Ended {
        let mut observers = Observers::default();
        let ended = self.pump(&mut observers).await;
        let reason = match ended {
            Ended::GraceOver => CloseReason::NotRunning,
            _ => observers.reason,
        };
        observers.close_all(reason);
        ended
    }

    pub(super) async fn pump(&mut self, observers: &mut Observers) -> Ended {
        let mut flow = Flow {
            client: None,
            pending: None,
            grace_ends: Some(Instant::now() + self.grace),
            unseen: 0,
            reattached: 0,
        };
        loop {
            let keep_reading = flow.client.is_some() || flow.unseen < self.replay.capacity;
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    if let Some(ended) = self.on_command(command, &mut flow, observers) {
                        return ended;
                    }
                }
                permit = reserve(flow.client.as_ref().filter(|_| flow.pending.is_some()).map(|c| c.output.clone())) => match permit {
                    Some(permit) => {
                        permit.send(flow.pending.take().expect("reserve waits for a pending chunk"));
                    }
                    // The client's receiver is gone; its detach is on the way.
                    None => flow.pending = None,
                },
                item = self.output.next(), if flow.pending.is_none() && keep_reading => match item {
                    Some(Ok(first)) => {
                        flow.reattached = 0;
                        let chunk = self.coalesce(first).await;
                        self.replay.push(&chunk);
                        observers.send(&chunk);
                        if flow.client.is_some() {
                            flow.pending = Some(chunk);
                        } else {
                            flow.unseen += chunk.len();
                        }
                    }
                    Some(Err(_)) | None if flow.reattached < MAX_REATTACHES && self.reattach().await => {
                        flow.reattached += 1;
                    }
                    Some(Err(e)) => {
                        log::warn!("terminal output broke off: {e}");
                        observers.reason = CloseReason::Failed;
                        finish(flow.client, flow.pending, CloseReason::Failed).await;
                        return Ended::Exited;
                    }
                    None => {
                        // A cut connection to Docker also ends the stream: ask.
                        let reason = match self.tty.has_exited(&self.docker).await {
                            Ok(true) => CloseReason::Exited,
                            Ok(false) | Err(_) => CloseReason::Failed,
                        };
                        observers.reason = reason;
                        finish(flow.client, flow.pending, reason).await;
                        return Ended::Exited;
                    }
                },
                () = sleep_until(flow.grace_ends) => return Ended::GraceOver,
            }
        }
    }

    /// A session's or the registry's command: attach (the old client is
    /// taken over, the replay goes first), detach or kick (the grace
    /// starts), end, observe. `Some` when the terminal ends.
    fn on_command(
        &self,
        command: Option<Command>,
        flow: &mut Flow,
        observers: &mut Observers,
    ) -> Option<Ended> {
        match command {
            Some(Command::Attach(new)) => {
                if let Some(old) = flow.client.take() {
                    let _ = old.close.send(CloseReason::TakenOver);
                }
                flow.pending = self.replay.snapshot();
                flow.client = Some(new);
                flow.unseen = 0;
                flow.grace_ends = None;
            }
            Some(Command::Detach(id)) => {
                if flow.client.as_ref().is_some_and(|c| c.id == id) {
                    flow.client = None;
                    flow.pending = None;
                    flow.unseen = 0;
                    flow.grace_ends = Some(Instant::now() + self.grace);
                }
            }
            Some(Command::Kick(reason)) => {
                if let Some(old) = flow.client.take() {
                    let _ = old.close.send(reason);
                    flow.pending = None;
                    flow.unseen = 0;
                    flow.grace_ends = Some(Instant::now() + self.grace);
                }
            }
            Some(Command::End(reason)) => {
                if let Some(old) = flow.client.take() {
                    let _ = old.close.send(reason);
                }
                observers.reason = reason;
                return Some(Ended::OnRequest);
            }
            Some(Command::Observe(observer, accepted)) => {
                let _ = accepted.send(observers.add(observer, self.replay.snapshot()));
            }
            None => return Some(Ended::OnRequest),
        }
        None
    }

    /// After the output stream ended: when the container's main process
    /// still runs (the stream broke, or Docker detached), attaches again and
    /// hands the new input to the writer. False when the program ended or
    /// no new attach came.
    pub(super) async fn reattach(&mut self) -> bool {
        let Tty::Main { container } = &self.tty else {
            return false;
        };
        if !matches!(self.tty.has_exited(&self.docker).await, Ok(false)) {
            return false;
        }
        let Ok(attached) = self.docker.attach(container).await else {
            return false;
        };
        // An attach to a stopped container would wait for a start: ask again.
        if !matches!(self.docker.is_running(container).await, Ok(true)) {
            return false;
        }
        self.output = attached.output;
        log::warn!("a terminal's output ended while its program runs: attached again");
        self.writers.send(attached.input).await.is_ok()
    }

    /// Joins output to `first`, up to [`MAX_CHUNK`]: a small read (an echo,
    /// a prompt) takes only what is already waiting and goes out at once; a
    /// big one means a flood, so it waits briefly for more, and the flood goes
    /// out in few big messages instead of many small ones.
    pub(super) async fn coalesce(&mut self, first: Bytes) -> Bytes {
        if first.len() >= MAX_CHUNK {
            return first;
        }
        let flood = first.len() >= FLOOD_READ;
        let mut joined: Option<BytesMut> = None;
        while joined.as_ref().map_or(first.len(), BytesMut::len) < MAX_CHUNK {
            let next = if flood {
                tokio::time::timeout(FLOOD_WAIT, self.output.next())
                    .await
                    .ok()
            } else {
                self.output.next().now_or_never()
            };
            match next {
                Some(Some(Ok(more))) => {
                    let buffer = joined.get_or_insert_with(|| BytesMut::from(&first[..]));
                    buffer.extend_from_slice(&more);
                }
                // The end (or an error) shows again on the next poll of a fused stream.
                _ => break,
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }
}

/// Waits for room in the client's queue, when there is a client and a chunk.
pub(super) async fn reserve(
    queue: Option<mpsc::Sender<Bytes>>,
) -> Option<mpsc::OwnedPermit<Bytes>> {
    match queue {
        Some(queue) => queue.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Hands the last output to the client, then tells it why the terminal ended.
pub(super) async fn finish(client: Option<Client>, pending: Option<Bytes>, reason: CloseReason) {
    let Some(client) = client else { return };
    if let Some(chunk) = pending {
        let _ = tokio::time::timeout(FINAL_FLUSH, client.output.send(chunk)).await;
    }
    let _ = client.close.send(reason);
}
