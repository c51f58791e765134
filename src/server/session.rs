//! One websocket session: terminado frames in and out of an attached
//! terminal, pings, the idle timeout and the close codes (docs/API.md,
//! "Terminal websocket" and "Close codes").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::CloseFrame;
use hyper_tungstenite::tungstenite::{Error as WsError, Message};
use hyper_tungstenite::HyperWebsocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::instance::entry::Instance;
use crate::instance::registry::Registry;
use crate::protocol::close::Reason;
use crate::protocol::terminado::{self, ClientMessage, ServerMessage, Utf8Decoder};
use crate::telemetry::metrics;
use crate::terminal::{Attachment, CloseReason, Resizer, MAX_CHUNK};

/// How long the closing handshake may take.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// Longest pause between pings.
/// How long before the idle close a terminal is warned (`idle_warning`).
const IDLE_WARNING: Duration = Duration::from_secs(60);
const MAX_PING_INTERVAL: Duration = Duration::from_secs(20);
/// A peer silent this long (not even a pong) is taken for dead.
const MIN_DEAD_AFTER: Duration = Duration::from_secs(60);

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// A session's settings, from the server's.
pub struct SessionSettings {
    /// No client input and no output for this long closes the session with 4002.
    pub idle_timeout: Duration,
}

/// Runs one websocket until it closes.
pub async fn run(
    websocket: HyperWebsocket,
    registry: Arc<Registry>,
    instance: Arc<Instance>,
    name: String,
    settings: SessionSettings,
    shutdown: CancellationToken,
) {
    let mut socket = match websocket.await {
        Ok(socket) => socket,
        Err(e) => {
            let h = crate::crypto::handle::of(&instance.id);
            log::debug!(ua_instance = h; "instance {h}: websocket handshake failed: {e}");
            return;
        }
    };
    let client_id = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
    let attachment = match registry.attach(&instance, &name, client_id).await {
        Ok(attachment) => attachment,
        Err(e) => {
            let reason = match e {
                crate::instance::registry::AttachError::Gone => Reason::Gone,
                _ => {
                    let h = crate::crypto::handle::of(&instance.id);
                    let e = crate::crypto::handle::hide(&e, &instance.id);
                    log::error!(ua_instance = h; "instance {h}: terminal not started: {e}");
                    metrics::ERRORS.add("attach", 1);
                    Reason::NotStarted
                }
            };
            let _ = socket.send(closing(reason)).await;
            return;
        }
    };
    let h = crate::crypto::handle::of(&instance.id);
    log::info!(
        ua_instance = h, ua_spec = instance.spec_id;
        "instance {h}: session {client_id} attached"
    );
    let Attachment {
        output,
        closed,
        input,
        resizer,
        detacher,
    } = attachment;
    let (sink, stream) = socket.split();
    let clock = Clock::new();
    let reader = read_frames(stream, &resizer, input, &clock);
    let mut session = Writer {
        sink,
        clock: &clock,
        idle_timeout: settings.idle_timeout,
    };
    let outcome = tokio::select! {
        end = reader => match end {
            ReadEnd::Gone(why) => why,
            ReadEnd::TooBig => {
                session.send_briefly(closing(Reason::TooBig)).await;
                Outcome::Closed(Reason::TooBig)
            }
        },
        why = session.write_output(output, closed, &shutdown) => why,
    };
    detacher.detach().await;
    log::info!(
        ua_instance = h, ua_spec = instance.spec_id;
        "instance {h}: session {client_id} closed ({outcome})"
    );
    // A peer that reads nothing cannot hold the task: the close gets a deadline.
    let _ = tokio::time::timeout(CLOSE_DEADLINE, session.sink.close()).await;
}

/// Milliseconds since the session began of the last client activity and the
/// last sign of life (which includes pongs).
pub(crate) struct Clock {
    start: Instant,
    last_activity: AtomicU64,
    last_heard: AtomicU64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            last_heard: AtomicU64::new(0),
        }
    }
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    pub(crate) fn heard(&self, active: bool) {
        let now = self.now();
        self.last_heard.store(now, Ordering::Relaxed);
        if active {
            self.last_activity.store(now, Ordering::Relaxed);
        }
    }
    fn since(&self, mark: &AtomicU64) -> Duration {
        Duration::from_millis(self.now().saturating_sub(mark.load(Ordering::Relaxed)))
    }
}

pub(crate) type Stream = futures_util::stream::SplitStream<
    hyper_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
>;
pub(crate) type Sink = futures_util::stream::SplitSink<
    hyper_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    Message,
>;

/// Reads client frames until the client goes; returns why.
async fn read_frames(
    mut stream: Stream,
    resizer: &Resizer,
    input: mpsc::Sender<Bytes>,
    clock: &Clock,
) -> ReadEnd {
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) => {
                metrics::CLOSES.add("client", 1);
                return ReadEnd::Gone(Outcome::ClientClosed);
            }
            Ok(_) => {
                clock.heard(false);
                continue;
            }
            Err(WsError::Capacity(_)) => return ReadEnd::TooBig,
            Err(e) => return ReadEnd::Gone(Outcome::ReadError(e)),
        };
        clock.heard(true);
        match terminado::decode(&text) {
            ClientMessage::Stdin(keys) => {
                metrics::BYTES.add("in", keys.len() as u64);
                resizer.settled().await;
                if input.send(Bytes::from(keys)).await.is_err() {
                    return ReadEnd::Gone(Outcome::InputClosed);
                }
            }
            ClientMessage::SetSize { rows, cols } => resizer.resize(rows, cols),
            ClientMessage::Ignored(why) => log::debug!("ignored a client frame: {why}"),
        }
    }
    ReadEnd::Gone(Outcome::ConnectionLost)
}

/// Why the reading side stopped.
pub(crate) enum ReadEnd {
    /// The session is over.
    Gone(Outcome),
    /// A frame over the limit: close with 1009.
    TooBig,
}

pub(crate) struct Writer<'a> {
    pub(crate) sink: Sink,
    pub(crate) clock: &'a Clock,
    pub(crate) idle_timeout: Duration,
}

impl Writer<'_> {
    /// Sends `setup`, then output as it comes, pings, and the close frame.
    pub(crate) async fn write_output(
        &mut self,
        mut output: mpsc::Receiver<Bytes>,
        mut closed: oneshot::Receiver<CloseReason>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        if self
            .sink
            .send(Message::text(ServerMessage::Setup.encode()))
            .await
            .is_err()
        {
            return Outcome::ConnectionLost;
        }
        let ping_every = (self.idle_timeout / 4).min(MAX_PING_INTERVAL);
        let dead_after = (ping_every * 3).max(MIN_DEAD_AFTER);
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let mut decoder = Utf8Decoder::default();
        let mut warned = false;
        let reason = loop {
            tokio::select! {
                chunk = output.recv() => {
                    let Some(chunk) = chunk else {
                        break closed.await.unwrap_or(CloseReason::Gone);
                    };
                    let text = gather(chunk, &mut output, &mut decoder);
                    if !text.is_empty() {
                        self.clock.heard(true);
                        metrics::BYTES.add("out", text.len() as u64);
                        // A client that takes nothing for a long time is gone; and a
                        // close (takeover, clean) must not wait behind a stalled send.
                        let message = Message::text(ServerMessage::Stdout(text).encode());
                        tokio::select! {
                            sent = self.sink.send(message) => if sent.is_err() {
                                return Outcome::ConnectionLost;
                            },
                            reason = &mut closed => break reason.unwrap_or(CloseReason::Gone),
                            () = tokio::time::sleep(dead_after) => return Outcome::StoppedReading,
                        }
                    }
                }
                reason = &mut closed => break reason.unwrap_or(CloseReason::Gone),
                _ = ping.tick() => {
                    if let Some(outcome) = self.on_ping(dead_after, &mut warned).await {
                        return outcome;
                    }
                }
                () = shutdown.cancelled() => {
                    self.send_briefly(closing(Reason::Shutdown)).await;
                    return Outcome::Closed(Reason::Shutdown);
                }
            }
        };
        self.close_for(reason, output, decoder).await
    }

    /// One ping interval: the idle close and its warning, a client that
    /// answers nothing, the ping itself; `Some` when the session ends.
    async fn on_ping(&mut self, dead_after: Duration, warned: &mut bool) -> Option<Outcome> {
        let idle_for = self.clock.since(&self.clock.last_activity);
        if idle_for >= self.idle_timeout {
            self.send_briefly(closing(Reason::Idle)).await;
            return Some(Outcome::Closed(Reason::Idle));
        }
        if self.idle_warning(idle_for, warned).await.is_err() {
            return Some(Outcome::ConnectionLost);
        }
        if self.clock.since(&self.clock.last_heard) >= dead_after {
            return Some(Outcome::NoAnswer);
        }
        if self.sink.send(Message::Ping(Bytes::new())).await.is_err() {
            return Some(Outcome::ConnectionLost);
        }
        None
    }

    /// Closes for the terminal's `reason`; a program that exited has its
    /// last output and a `disconnect` sent first.
    async fn close_for(
        &mut self,
        reason: CloseReason,
        mut output: mpsc::Receiver<Bytes>,
        mut decoder: Utf8Decoder,
    ) -> Outcome {
        if reason == CloseReason::Exited {
            let mut text = String::new();
            while let Ok(chunk) = output.try_recv() {
                decoder.decode(&chunk, &mut text);
            }
            decoder.finish(&mut text);
            if !text.is_empty() {
                self.send_briefly(Message::text(ServerMessage::Stdout(text).encode()))
                    .await;
            }
            self.send_briefly(Message::text(ServerMessage::Disconnect.encode()))
                .await;
        }
        let reason = match reason {
            CloseReason::Exited => Reason::Exited,
            CloseReason::TakenOver => Reason::TakenOver,
            CloseReason::Gone => Reason::Gone,
            CloseReason::Shutdown => Reason::Shutdown,
            CloseReason::Failed => Reason::DockerBroke,
            CloseReason::NotRunning => Reason::NotRunning,
            CloseReason::Lagging => Reason::Lagging,
        };
        self.send_briefly(closing(reason)).await;
        Outcome::Closed(reason)
    }

    /// Warns once per idle stretch, [`IDLE_WARNING`] (at most half the idle
    /// timeout) before the idle close; activity starts a new stretch.
    async fn idle_warning(&mut self, idle_for: Duration, warned: &mut bool) -> Result<(), ()> {
        let warn_before = (self.idle_timeout / 2).min(IDLE_WARNING);
        if idle_for + warn_before < self.idle_timeout {
            *warned = false;
            return Ok(());
        }
        if *warned {
            return Ok(());
        }
        *warned = true;
        let left = (self.idle_timeout - idle_for).as_secs_f64().ceil() as u64;
        let message = Message::text(ServerMessage::IdleWarning(left).encode());
        self.sink.send(message).await.map_err(|_| ())
    }

    /// Sends a last message, giving up on a peer that reads nothing.
    pub(crate) async fn send_briefly(&mut self, message: Message) {
        let _ = tokio::time::timeout(CLOSE_DEADLINE, self.sink.send(message)).await;
    }
}

/// The close frame for `reason`, counted in the metrics as it goes out.
pub fn closing(reason: Reason) -> Message {
    let code = reason.code();
    metrics::CLOSES.add(code.label(), 1);
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code.number()),
        reason: reason.words().into(),
    }))
}

/// How a session (or an observer's websocket) ended, for the log.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server closed it, for this reason.
    Closed(Reason),
    /// The client sent a close frame.
    ClientClosed,
    /// The connection dropped, or a send failed.
    ConnectionLost,
    /// Reading a frame failed.
    ReadError(WsError),
    /// The terminal stopped taking input.
    InputClosed,
    /// The client took no output for too long.
    StoppedReading,
    /// The client answered no ping for too long.
    NoAnswer,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Closed(reason) => f.write_str(reason.words()),
            Outcome::ClientClosed => f.write_str("client closed"),
            Outcome::ConnectionLost => f.write_str("connection lost"),
            Outcome::ReadError(e) => write!(f, "read error: {e}"),
            Outcome::InputClosed => f.write_str("terminal input closed"),
            Outcome::StoppedReading => f.write_str("the client stopped reading"),
            Outcome::NoAnswer => f.write_str("no answer to pings"),
        }
    }
}

/// The chunk and whatever else is queued, up to [`MAX_CHUNK`], as text:
/// a flood goes out in few messages.
fn gather(chunk: Bytes, output: &mut mpsc::Receiver<Bytes>, decoder: &mut Utf8Decoder) -> String {
    let mut text = String::with_capacity(chunk.len());
    decoder.decode(&chunk, &mut text);
    let mut size = chunk.len();
    while size < MAX_CHUNK {
        let Ok(more) = output.try_recv() else { break };
        size += more.len();
        decoder.decode(&more, &mut text);
    }
    text
}
