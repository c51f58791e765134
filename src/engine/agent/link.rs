//! [`Link`]: the agent's control connection: requests with ids, replies in
//! any order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use ua_agent::proto::{Message, TerminalInfo};

use crate::engine::agent::error::AgentError;
use crate::engine::agent::frames;

/// Longest wait for a reply (setup has its own, longer bound).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the control connections and attach connections of one container
/// share: attach connections wait here for the OPEN that asked for them.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) attaches: Mutex<HashMap<u32, oneshot::Sender<UnixStream>>>,
    pub(super) next_id: std::sync::atomic::AtomicU32,
}

/// A terminal the agent opened: its attach connection, after the replay.
pub struct Opened {
    /// Whether the agent started it now (not running before).
    pub started: bool,
    /// The terminal's recent output, kept by the agent.
    pub replay: Vec<u8>,
    pub(super) stream: UnixStream,
}

struct Inner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    replies: Mutex<HashMap<u32, oneshot::Sender<Message>>>,
    alive: AtomicBool,
    shared: Arc<Shared>,
}

/// The control connection of one container's agent.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

impl Link {
    pub(super) fn start(stream: UnixStream, shared: Arc<Shared>) -> Link {
        let (mut reader, writer) = stream.into_split();
        let inner = Arc::new(Inner {
            writer: tokio::sync::Mutex::new(writer),
            replies: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            shared,
        });
        let read_side = inner.clone();
        tokio::spawn(async move {
            // Replies go to their request; anything else ends the connection.
            while let Ok(Some(message)) = frames::read(&mut reader).await {
                let Some(id) = message.id().filter(|_| !message.is_request()) else {
                    break;
                };
                let waiting = read_side.replies.lock().unwrap().remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(message);
                }
            }
            read_side.alive.store(false, Ordering::SeqCst);
            read_side.replies.lock().unwrap().clear();
            // Out of protocol or gone: the agent sees the end and reconnects.
            let _ = read_side.writer.lock().await.shutdown().await;
        });
        Link { inner }
    }

    /// Whether the connection still stands.
    pub fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }

    fn next_id(&self) -> u32 {
        self.inner.shared.next_id.fetch_add(1, Ordering::SeqCst)
    }

    async fn request(&self, message: Message, wait: Duration) -> Result<Message, AgentError> {
        let id = message.id().ok_or(AgentError::Protocol)?;
        let (tx, rx) = oneshot::channel();
        self.inner.replies.lock().unwrap().insert(id, tx);
        let sent = frames::write(&mut *self.inner.writer.lock().await, &message).await;
        let reply = match sent {
            Ok(()) => tokio::time::timeout(wait, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        self.inner.replies.lock().unwrap().remove(&id);
        match reply {
            Some(Message::Error { code, message, .. }) => Err(AgentError::Refused(code, message)),
            Some(reply) => Ok(reply),
            None => Err(AgentError::Gone),
        }
    }

    /// Starts terminal `name` unless it runs, sizes it, and attaches to it.
    pub async fn open(&self, name: &str, rows: u16, cols: u16) -> Result<Opened, AgentError> {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.inner.shared.attaches.lock().unwrap().insert(id, tx);
        let message = Message::Open {
            id,
            name: name.to_string(),
            rows,
            cols,
        };
        let opened = self.request(message, REPLY_TIMEOUT).await;
        // OPENED and the attach connection come in either order.
        let attached = async {
            let Message::Opened { started, .. } = opened? else {
                return Err(AgentError::Protocol);
            };
            let stream = tokio::time::timeout(REPLY_TIMEOUT, rx).await;
            let stream = stream.ok().and_then(Result::ok).ok_or(AgentError::Gone)?;
            Ok((started, stream))
        }
        .await;
        self.inner.shared.attaches.lock().unwrap().remove(&id);
        let (started, mut stream) = attached?;
        let replay = match frames::read(&mut stream).await {
            Ok(Some(Message::Replay(replay))) => replay,
            _ => return Err(AgentError::Protocol),
        };
        Ok(Opened {
            started,
            replay,
            stream,
        })
    }

    /// The agent's terminals.
    pub async fn list(&self) -> Result<Vec<TerminalInfo>, AgentError> {
        let id = self.next_id();
        match self.request(Message::List { id }, REPLY_TIMEOUT).await? {
            Message::Terminals { terminals, .. } => Ok(terminals),
            _ => Err(AgentError::Protocol),
        }
    }

    /// Hangs up terminal `name`.
    pub async fn close(&self, name: &str) -> Result<(), AgentError> {
        let id = self.next_id();
        let name = name.to_string();
        match self
            .request(Message::Close { id, name }, REPLY_TIMEOUT)
            .await?
        {
            Message::Closed { .. } => Ok(()),
            _ => Err(AgentError::Protocol),
        }
    }
}
