//! Resizing: the last size a client asked for, applied at most once per
//! [`RESIZE_INTERVAL`], and settling after a redraw.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::docker::Docker;

use crate::terminal::tty::Tty;

/// Resizes reach Docker at most this often; the last size wins.
pub(super) const RESIZE_INTERVAL: Duration = Duration::from_millis(200);

/// After a restart, how long the program has to take the odd size that
/// makes it repaint.
pub(super) const REDRAW_PAUSE: Duration = Duration::from_millis(100);

/// Longest that input waits for an asked size to be applied.
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// Asks for a new terminal size. Sizes are coalesced: however fast a client
/// sends them, Docker gets at most one resize per [`RESIZE_INTERVAL`].
#[derive(Clone)]
pub struct Resizer {
    pub(super) asked: Arc<watch::Sender<AskedSize>>,
    /// The number of the last asked size that Docker has applied.
    pub(super) applied: watch::Receiver<u64>,
}

/// The latest size asked for, numbered.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AskedSize {
    pub(super) number: u64,
    pub(super) size: Option<(u16, u16)>,
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

/// Applies the latest asked size, then waits before the next: a client
/// sending sizes in a loop costs Docker a few calls a second. Ends when the
/// terminal and its attachments are gone.
pub(super) async fn resize_terminal(
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
