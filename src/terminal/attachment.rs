//! What a session or an observer holds of a terminal: its queues, the
//! commands it sends, why it was closed.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::terminal::activity::Activity;
use crate::terminal::resize::Resizer;

/// Largest output chunk handed to a client at once (one `stdout` message).
pub const MAX_CHUNK: usize = 64 * 1024;

/// Output chunks queued per client; with [`MAX_CHUNK`] this bounds memory.
pub(super) const CLIENT_QUEUE: usize = 4;

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

pub(super) enum Command {
    Attach(Client),
    Detach(u64),
    Kick(CloseReason),
    End(CloseReason),
    Observe(Client, oneshot::Sender<bool>),
}

pub(super) struct Client {
    pub(super) id: u64,
    pub(super) output: mpsc::Sender<Bytes>,
    pub(super) close: oneshot::Sender<CloseReason>,
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
    /// Counts this observer in the terminal's activity until dropped.
    pub counted: ObserverCount,
}

/// One observer in [`crate::terminal::Activity`]'s count, from its start
/// to its drop.
pub struct ObserverCount(std::sync::Arc<crate::terminal::activity::Activity>);

impl ObserverCount {
    pub(super) fn new(activity: std::sync::Arc<crate::terminal::activity::Activity>) -> Self {
        activity.observer_came();
        ObserverCount(activity)
    }
}

impl Drop for ObserverCount {
    fn drop(&mut self) {
        self.0.observer_went();
    }
}

/// Tells the terminal when its client goes.
pub struct Detacher {
    pub(super) client_id: u64,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) activity: Arc<Activity>,
}

impl Detacher {
    /// The client is gone: the grace period starts (unless another took over).
    pub async fn detach(self) {
        self.activity.detached(self.client_id);
        let _ = self.commands.send(Command::Detach(self.client_id)).await;
    }
}
