//! The observers of a terminal (staff views): a bounded number, each with a
//! small queue; a slow one is dropped, never waited for.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::terminal::attachment::{Client, CloseReason};

/// Read-only observers per terminal (staff views); more are refused.
pub const MAX_OBSERVERS: usize = 8;

/// Output chunks queued per observer; an observer that falls further behind
/// is closed (it never slows the student's terminal).
pub(super) const OBSERVER_QUEUE: usize = 16;

/// The read-only observers of a terminal. They get output only when it is
/// read for the student (or the replay), so they never change its pace.
pub(super) struct Observers {
    pub(super) list: Vec<Client>,
    /// Why they are closed when the terminal ends.
    pub(super) reason: CloseReason,
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
    pub(super) fn add(&mut self, observer: Client, replay: Option<Bytes>) -> bool {
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

    pub(super) fn send(&mut self, chunk: &Bytes) {
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

    pub(super) fn close_all(&mut self, reason: CloseReason) {
        for observer in self.list.drain(..) {
            let _ = observer.close.send(reason);
        }
    }
}
