//! One running terminal: the TTY of an instance's container (its main
//! process; an exec in containers of older versions), outliving the
//! websockets attached to it. A single task (the pump) owns the TTY's
//! output, the replay buffer and the attached client; input has its own
//! writer task so that a paste never blocks output.
//!
//! Flow control: the pump reads the next chunk only once the client's queue
//! has taken the previous one, so a slow client blocks the program on its own
//! output instead of growing our memory. With no client attached (the grace
//! period) output goes only to the bounded replay buffer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::engine::docker::{Attached, Docker, DockerError};
use crate::engine::oom;

pub mod activity;
pub use activity::Activity;

/// Largest output chunk handed to a client at once (one `stdout` message).
pub const MAX_CHUNK: usize = 64 * 1024;
/// Output chunks queued per client; with [`MAX_CHUNK`] this bounds memory.
const CLIENT_QUEUE: usize = 4;
/// Input messages queued before the websocket reader waits.
const INPUT_QUEUE: usize = 16;
/// A read at least this big is taken for a flood (an echo is a few bytes).
const FLOOD_READ: usize = 1024;
/// During a flood, how long to wait for more output before sending.
const FLOOD_WAIT: Duration = Duration::from_millis(1);
/// Resizes reach Docker at most this often; the last size wins.
const RESIZE_INTERVAL: Duration = Duration::from_millis(200);
/// After a restart, how long the program has to take the odd size that
/// makes it repaint.
const REDRAW_PAUSE: Duration = Duration::from_millis(100);
/// How often, and how far apart, an ended stream asks whether its program
/// exited.
const EXIT_CHECKS: usize = 10;
/// Attaches again in a row, with no output between, before a terminal whose
/// stream keeps ending is taken as broken.
const MAX_REATTACHES: u32 = 3;
const EXIT_CHECK_PAUSE: Duration = Duration::from_millis(50);
/// Longest that input waits for an asked size to be applied.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);
/// How long a finished terminal waits for its client to take the last output.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// Read-only observers per terminal (staff views); more are refused.
pub const MAX_OBSERVERS: usize = 8;
/// Output chunks queued per observer; an observer that falls further behind
/// is closed (it never slows the student's terminal).
const OBSERVER_QUEUE: usize = 16;

/// Why a client's connection is being closed by the terminal side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The command exited: `["disconnect", 1]`, then 1000.
    Exited,
    /// A newer connection took over: 4001.
    TakenOver,
    /// The instance was cleaned or expired: 4003.
    Gone,
    /// The server is shutting down: 1001.
    Shutdown,
    /// The terminal's stream broke (Docker trouble): 1011.
    Failed,
    /// Observers only: the terminal stopped (nobody came back in the grace): 4004.
    NotRunning,
    /// Observers only: it fell behind the output: 1013.
    Lagging,
}

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

enum Command {
    Attach(Client),
    Detach(u64),
    Kick(CloseReason),
    End(CloseReason),
    Observe(Client, oneshot::Sender<bool>),
}

struct Client {
    id: u64,
    output: mpsc::Sender<Bytes>,
    close: oneshot::Sender<CloseReason>,
}

/// What a websocket gets when it attaches.
pub struct Attachment {
    /// Output in order: the replay first, then live output.
    pub output: mpsc::Receiver<Bytes>,
    /// Fires once when the terminal side closes this client.
    pub closed: oneshot::Receiver<CloseReason>,
    /// Input for the terminal (shared by its clients).
    pub input: mpsc::Sender<Bytes>,
    /// Asks for a new terminal size.
    pub resizer: Resizer,
    /// Tells the terminal when this client goes.
    pub detacher: Detacher,
}

/// What a read-only observer gets: the replay, then live output; no input.
pub struct Observation {
    /// Output in order: the replay first, then live output.
    pub output: mpsc::Receiver<Bytes>,
    /// Fires once when the terminal side closes this observer.
    pub closed: oneshot::Receiver<CloseReason>,
}

/// Asks for a new terminal size. Sizes are coalesced: however fast a client
/// sends them, Docker gets at most one resize per [`RESIZE_INTERVAL`].
#[derive(Clone)]
pub struct Resizer {
    asked: Arc<watch::Sender<AskedSize>>,
    /// The number of the last asked size that Docker has applied.
    applied: watch::Receiver<u64>,
}

/// The latest size asked for, numbered.
#[derive(Debug, Clone, Copy, Default)]
struct AskedSize {
    number: u64,
    size: Option<(u16, u16)>,
}

impl Resizer {
    /// Asks for `rows` × `cols`; it is applied in the background.
    pub fn resize(&self, rows: u16, cols: u16) {
        self.asked.send_modify(|asked| {
            asked.number += 1;
            asked.size = Some((rows, cols));
        });
    }

    /// Waits (briefly) until the sizes asked so far are applied, so that
    /// input sent after a `set_size` meets the new size, as it did when
    /// every resize was made in line.
    pub async fn settled(&self) {
        let wanted = self.asked.borrow().number;
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(SETTLE_LIMIT, applied.wait_for(|&done| done >= wanted)).await;
    }
}

/// Tells the terminal when its client goes.
pub struct Detacher {
    client_id: u64,
    commands: mpsc::Sender<Command>,
    activity: Arc<Activity>,
}

impl Detacher {
    /// The client is gone: the grace period starts (unless another took over).
    pub async fn detach(self) {
        self.activity.detached(self.client_id);
        let _ = self.commands.send(Command::Detach(self.client_id)).await;
    }
}

/// How terminals behave, from the server's settings.
pub struct TerminalSettings {
    /// How long a terminal outlives its websocket.
    pub grace: Duration,
    /// Bytes of recent output replayed on reattach.
    pub replay_bytes: usize,
}

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
}

impl Tty {
    async fn resize(&self, docker: &Docker, rows: u16, cols: u16) -> Result<(), DockerError> {
        match self {
            Tty::Main { container } => docker.resize_tty(container, rows, cols).await,
            Tty::Exec { id } => docker.resize(id, rows, cols).await,
        }
    }

    async fn is_running(&self, docker: &Docker) -> Result<bool, DockerError> {
        match self {
            Tty::Main { container } => docker.is_running(container).await,
            Tty::Exec { id } => docker.exec_running(id).await,
        }
    }

    /// Whether the program ended, asked when its output stream ended: Docker
    /// may close the stream a moment before it marks the process exited.
    async fn has_exited(&self, docker: &Docker) -> Result<bool, DockerError> {
        for _ in 0..EXIT_CHECKS {
            if !self.is_running(docker).await? {
                return Ok(true);
            }
            tokio::time::sleep(EXIT_CHECK_PAUSE).await;
        }
        Ok(false)
    }
}

/// A handle on a running terminal, kept by its instance.
#[derive(Clone)]
pub struct Terminal {
    /// Tells this terminal from a later one of the same instance.
    pub generation: u64,
    commands: mpsc::Sender<Command>,
    input: mpsc::Sender<Bytes>,
    resizer: Resizer,
    /// Who is attached and when input last came (`ua list`).
    pub activity: Arc<Activity>,
}

impl Terminal {
    /// Starts the pump and the input writer of an attached TTY. With
    /// `redraw`, the program was running before (ua restarted): the first
    /// size is applied with a change first, so that full-screen programs
    /// repaint what the client has lost. `on_end` runs once the terminal is
    /// over, with how it ended.
    pub fn spawn<F, Fut>(
        attached: Attached,
        tty: Tty,
        redraw: bool,
        docker: Arc<Docker>,
        settings: &TerminalSettings,
        generation: u64,
        on_end: F,
    ) -> Terminal
    where
        F: FnOnce(Ended) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (commands, command_rx) = mpsc::channel(8);
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (writers, writer_rx) = mpsc::channel(1);
        let activity = Arc::new(Activity::default());
        let heard = activity.clone();
        tokio::spawn(write_input(attached.input, input_rx, writer_rx, heard));
        let (asked, sizes) = watch::channel(AskedSize::default());
        let (done, applied) = watch::channel(0);
        tokio::spawn(resize_terminal(
            docker.clone(),
            tty.clone(),
            redraw,
            sizes,
            done,
        ));
        let output = match &tty {
            Tty::Main { container } => {
                oom::with_notices(attached.output, docker.clone(), container)
            }
            Tty::Exec { .. } => attached.output,
        };
        let pump = Pump {
            output,
            commands: command_rx,
            replay: Replay::new(settings.replay_bytes),
            grace: settings.grace,
            docker,
            tty,
            writers,
        };
        tokio::spawn(async move { on_end(pump.run().await).await });
        Terminal {
            generation,
            commands,
            input,
            resizer: Resizer {
                asked: Arc::new(asked),
                applied,
            },
            activity,
        }
    }

    /// Whether the terminal has ended.
    pub fn is_over(&self) -> bool {
        self.commands.is_closed()
    }

    /// Attaches a new client, closing the current one with 4001.
    pub async fn attach(&self, client_id: u64) -> Option<Attachment> {
        let (output_tx, output) = mpsc::channel(CLIENT_QUEUE);
        let (close, closed) = oneshot::channel();
        let client = Client {
            id: client_id,
            output: output_tx,
            close,
        };
        self.commands.send(Command::Attach(client)).await.ok()?;
        self.activity.attached(client_id);
        Some(Attachment {
            output,
            closed,
            input: self.input.clone(),
            resizer: self.resizer.clone(),
            detacher: Detacher {
                client_id,
                commands: self.commands.clone(),
                activity: self.activity.clone(),
            },
        })
    }

    /// Adds a read-only observer; `None` when the terminal is over or has
    /// [`MAX_OBSERVERS`] already.
    pub async fn observe(&self) -> Option<Observation> {
        let (output_tx, output) = mpsc::channel(OBSERVER_QUEUE);
        let (close, closed) = oneshot::channel();
        let (accepted_tx, accepted) = oneshot::channel();
        let observer = Client {
            id: 0,
            output: output_tx,
            close,
        };
        let command = Command::Observe(observer, accepted_tx);
        self.commands.send(command).await.ok()?;
        accepted
            .await
            .unwrap_or(false)
            .then_some(Observation { output, closed })
    }

    /// Closes the attached client, if any, keeping the program running.
    pub async fn kick(&self, reason: CloseReason) {
        self.activity.kicked();
        let _ = self.commands.send(Command::Kick(reason)).await;
    }

    /// Closes the attached client and ends the terminal.
    pub async fn end(&self, reason: CloseReason) {
        let _ = self.commands.send(Command::End(reason)).await;
    }
}

type Output = Pin<
    Box<dyn Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
>;

struct Pump {
    output: Output,
    commands: mpsc::Receiver<Command>,
    replay: Replay,
    grace: Duration,
    docker: Arc<Docker>,
    tty: Tty,
    /// The input half of a new attach goes to the input writer.
    writers: mpsc::Sender<Input>,
}

type Input = Pin<Box<dyn AsyncWrite + Send>>;

impl Pump {
    async fn run(mut self) -> Ended {
        let mut observers = Observers::default();
        let ended = self.pump(&mut observers).await;
        let reason = match ended {
            Ended::GraceOver => CloseReason::NotRunning,
            _ => observers.reason,
        };
        observers.close_all(reason);
        ended
    }

    async fn pump(&mut self, observers: &mut Observers) -> Ended {
        let mut client: Option<Client> = None;
        // A chunk read but not yet taken by the client: while it waits, no more is read.
        let mut pending: Option<Bytes> = None;
        let mut grace_ends = Some(Instant::now() + self.grace);
        // Output read with no client attached: once it has refilled the
        // replay buffer, reading stops and the program blocks on its output
        // instead of spinning through the grace period.
        let mut unseen: usize = 0;
        // Attaches again in a row with no output between: a bound, so a
        // daemon that keeps cutting the stream ends the terminal.
        let mut reattached = 0;
        loop {
            let keep_reading = client.is_some() || unseen < self.replay.capacity;
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Attach(new)) => {
                        if let Some(old) = client.take() {
                            let _ = old.close.send(CloseReason::TakenOver);
                        }
                        pending = self.replay.snapshot();
                        client = Some(new);
                        unseen = 0;
                        grace_ends = None;
                    }
                    Some(Command::Detach(id)) => {
                        if client.as_ref().is_some_and(|c| c.id == id) {
                            client = None;
                            pending = None;
                            unseen = 0;
                            grace_ends = Some(Instant::now() + self.grace);
                        }
                    }
                    Some(Command::Kick(reason)) => {
                        if let Some(old) = client.take() {
                            let _ = old.close.send(reason);
                            pending = None;
                            unseen = 0;
                            grace_ends = Some(Instant::now() + self.grace);
                        }
                    }
                    Some(Command::End(reason)) => {
                        if let Some(old) = client.take() {
                            let _ = old.close.send(reason);
                        }
                        observers.reason = reason;
                        return Ended::OnRequest;
                    }
                    Some(Command::Observe(observer, accepted)) => {
                        let _ = accepted.send(observers.add(observer, self.replay.snapshot()));
                    }
                    None => return Ended::OnRequest,
                },
                permit = reserve(client.as_ref().filter(|_| pending.is_some()).map(|c| c.output.clone())) => match permit {
                    Some(permit) => {
                        permit.send(pending.take().expect("reserve waits for a pending chunk"));
                    }
                    // The client's receiver is gone; its detach is on the way.
                    None => pending = None,
                },
                item = self.output.next(), if pending.is_none() && keep_reading => match item {
                    Some(Ok(first)) => {
                        reattached = 0;
                        let chunk = self.coalesce(first.into_bytes()).await;
                        self.replay.push(&chunk);
                        observers.send(&chunk);
                        if client.is_some() {
                            pending = Some(chunk);
                        } else {
                            unseen += chunk.len();
                        }
                    }
                    Some(Err(_)) | None if reattached < MAX_REATTACHES && self.reattach().await => {
                        reattached += 1;
                    }
                    Some(Err(e)) => {
                        log::warn!("terminal output broke off: {e}");
                        observers.reason = CloseReason::Failed;
                        finish(client, pending, CloseReason::Failed).await;
                        return Ended::Exited;
                    }
                    None => {
                        // A cut connection to Docker also ends the stream: ask.
                        let reason = match self.tty.has_exited(&self.docker).await {
                            Ok(true) => CloseReason::Exited,
                            Ok(false) | Err(_) => CloseReason::Failed,
                        };
                        observers.reason = reason;
                        finish(client, pending, reason).await;
                        return Ended::Exited;
                    }
                },
                () = sleep_until(grace_ends) => return Ended::GraceOver,
            }
        }
    }

    /// After the output stream ended: when the container's main process
    /// still runs (the stream broke, or Docker detached), attaches again and
    /// hands the new input to the writer. False when the program ended or
    /// no new attach came.
    async fn reattach(&mut self) -> bool {
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
    async fn coalesce(&mut self, first: Bytes) -> Bytes {
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
                    buffer.extend_from_slice(&more.into_bytes());
                }
                // The end (or an error) shows again on the next poll of a fused stream.
                _ => break,
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }
}

/// The read-only observers of a terminal. They get output only when it is
/// read for the student (or the replay), so they never change its pace.
struct Observers {
    list: Vec<Client>,
    /// Why they are closed when the terminal ends.
    reason: CloseReason,
}

impl Default for Observers {
    fn default() -> Observers {
        Observers {
            list: Vec::new(),
            reason: CloseReason::NotRunning,
        }
    }
}

impl Observers {
    fn add(&mut self, observer: Client, replay: Option<Bytes>) -> bool {
        self.list.retain(|o| !o.output.is_closed());
        if self.list.len() >= MAX_OBSERVERS {
            return false;
        }
        if let Some(replay) = replay {
            let _ = observer.output.try_send(replay);
        }
        self.list.push(observer);
        true
    }

    fn send(&mut self, chunk: &Bytes) {
        let mut kept = Vec::with_capacity(self.list.len());
        for observer in self.list.drain(..) {
            match observer.output.try_send(chunk.clone()) {
                Ok(()) => kept.push(observer),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = observer.close.send(CloseReason::Lagging);
                }
            }
        }
        self.list = kept;
    }

    fn close_all(&mut self, reason: CloseReason) {
        for observer in self.list.drain(..) {
            let _ = observer.close.send(reason);
        }
    }
}

/// Waits for room in the client's queue, when there is a client and a chunk.
async fn reserve(queue: Option<mpsc::Sender<Bytes>>) -> Option<mpsc::OwnedPermit<Bytes>> {
    match queue {
        Some(queue) => queue.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Hands the last output to the client, then tells it why the terminal ended.
async fn finish(client: Option<Client>, pending: Option<Bytes>, reason: CloseReason) {
    let Some(client) = client else { return };
    if let Some(chunk) = pending {
        let _ = tokio::time::timeout(FINAL_FLUSH, client.output.send(chunk)).await;
    }
    let _ = client.close.send(reason);
}

/// Applies the latest asked size, then waits before the next: a client
/// sending sizes in a loop costs Docker a few calls a second. Ends when the
/// terminal and its attachments are gone.
async fn resize_terminal(
    docker: Arc<Docker>,
    tty: Tty,
    mut redraw: bool,
    mut sizes: watch::Receiver<AskedSize>,
    applied: watch::Sender<u64>,
) {
    while sizes.changed().await.is_ok() {
        let asked = *sizes.borrow_and_update();
        if let Some((rows, cols)) = asked.size {
            if std::mem::take(&mut redraw) {
                // A program repaints on a size change, not on the same size;
                // and it must see the odd size before the real one comes.
                let _ = tty
                    .resize(&docker, rows, cols.saturating_sub(1).max(1))
                    .await;
                tokio::time::sleep(REDRAW_PAUSE).await;
            }
            if let Err(e) = tty.resize(&docker, rows, cols).await {
                log::debug!("resize failed: {e}");
            }
        }
        applied.send_replace(asked.number);
        tokio::time::sleep(RESIZE_INTERVAL).await;
    }
}

/// Writes input to the TTY; after a write fails, waits for the input of
/// the next attach ([`Pump::reattach`]) and writes what failed there.
async fn write_input(
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

/// The most recent output, at most `capacity` bytes, starting on a UTF-8
/// character boundary.
struct Replay {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl Replay {
    fn new(capacity: usize) -> Replay {
        Replay {
            bytes: VecDeque::new(),
            capacity,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(self.capacity);
        self.bytes.drain(..excess);
        while self.bytes.front().is_some_and(|b| b & 0xC0 == 0x80) {
            self.bytes.pop_front();
        }
    }

    fn snapshot(&self) -> Option<Bytes> {
        if self.bytes.is_empty() {
            return None;
        }
        let (a, b) = self.bytes.as_slices();
        Some(Bytes::from([a, b].concat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_tail_on_a_character_boundary() {
        let mut replay = Replay::new(4);
        assert_eq!(replay.snapshot(), None);
        replay.push(b"abc");
        replay.push("dé€".as_bytes()); // é is 2 bytes, € is 3
                                       // The last 4 bytes start inside é: its tail byte is dropped.
        assert_eq!(replay.snapshot().unwrap(), "€".as_bytes());
        replay.push(b"0123456789");
        assert_eq!(replay.snapshot().unwrap(), &b"6789"[..]);
    }
}
