//! Whether the instance records agree with Docker yet (docs/API.md, "While
//! reconciling"). The records are in the tables before the server answers;
//! the reconcile with Docker runs in the background and marks them settled
//! once. What needs settled records waits here, bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::instance::errors::CreateError;

/// How long a request that needs settled records waits for them.
pub const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Set once by the reconcile; watched by whoever waits for it.
pub struct Settled {
    done: watch::Sender<bool>,
    /// The last reconcile failed for Docker: waiting is pointless until
    /// Docker answers again.
    docker_away: AtomicBool,
}

impl Default for Settled {
    fn default() -> Settled {
        Settled {
            done: watch::Sender::new(false),
            docker_away: AtomicBool::new(false),
        }
    }
}

impl Settled {
    /// Whether the reconcile has run to the end.
    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// The records agree with Docker: wakes every waiter.
    pub fn mark_done(&self) {
        self.done.send_replace(true);
    }

    /// Whether the last reconcile found Docker away.
    pub fn set_docker_away(&self, away: bool) {
        self.docker_away.store(away, Ordering::Release);
    }

    /// Waits up to `bound` for the records to settle: `DockerDown` at once
    /// while Docker is away, `Reconciling` when the bound passes.
    pub async fn wait(&self, bound: Duration) -> Result<(), CreateError> {
        if self.is_done() {
            return Ok(());
        }
        if self.docker_away.load(Ordering::Acquire) {
            return Err(CreateError::DockerDown);
        }
        let mut done = self.done.subscribe();
        let settled = tokio::time::timeout(bound, done.wait_for(|done| *done))
            .await
            .is_ok_and(|woken| woken.is_ok());
        if settled {
            Ok(())
        } else {
            Err(CreateError::Reconciling)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_woken_when_the_records_settle_and_bounded_before() {
        let settled = Arc::new(Settled::default());
        assert!(matches!(
            settled.wait(Duration::from_secs(1)).await,
            Err(CreateError::Reconciling)
        ));
        let waiting = tokio::spawn({
            let settled = settled.clone();
            async move { settled.wait(SETTLE_WAIT).await }
        });
        tokio::task::yield_now().await;
        settled.mark_done();
        assert!(waiting.await.unwrap().is_ok());
        assert!(settled.is_done());
    }

    #[tokio::test]
    async fn with_docker_away_it_answers_at_once() {
        let settled = Settled::default();
        settled.set_docker_away(true);
        assert!(matches!(
            settled.wait(SETTLE_WAIT).await,
            Err(CreateError::DockerDown)
        ));
        settled.mark_done();
        assert!(settled.wait(SETTLE_WAIT).await.is_ok());
    }
}
