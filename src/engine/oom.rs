//! Out-of-memory kills said in the terminal: while a terminal runs, Docker's
//! `oom` events of its container become a line in its output, which the
//! student, observers and the replay all get (docs/API.md, "Terminal
//! websocket"). The server follows Docker's events once (`trouble`) and
//! announces each kill here; every terminal listens for its own container,
//! so a class of terminals costs dockerd one event stream, not one each.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::docker::{Docker, Output};

/// The containers (names and IDs) of the out-of-memory kills the server's
/// event follower has seen, as they happen.
static KILLS: LazyLock<broadcast::Sender<Vec<String>>> = LazyLock::new(|| broadcast::channel(64).0);

/// Tells the terminals of the container known by `names` (its name, its ID)
/// that a process in it was killed for memory.
pub fn announce(names: Vec<String>) {
    let _ = KILLS.send(names);
}

/// Sends the memory limit of `container` on `kills` at each announced
/// kill in it, until nobody listens.
async fn watch(docker: Arc<Docker>, container: String, kills: mpsc::Sender<i64>) {
    let mut announced = KILLS.subscribe();
    loop {
        match announced.recv().await {
            Ok(names) if names.contains(&container) => {
                let limit = docker.memory_limit(&container).await;
                if kills.send(limit).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `output` with a notice after each out-of-memory kill in `container`; the
/// watch ends with the output.
pub fn with_notices(output: Output, docker: Arc<Docker>, container: &str) -> Output {
    let (kills, killed) = mpsc::channel(4);
    let (ended, output_ended) = oneshot::channel::<()>();
    let container = container.to_string();
    tokio::spawn(async move {
        tokio::select! {
            () = watch(docker, container, kills) => {}
            _ = output_ended => {}
        }
    });
    let notices = stream::unfold(killed, |mut killed| async move {
        let limit = killed.recv().await?;
        Some((Ok(notice(limit)), killed))
    });
    let output =
        output.chain(stream::once(async move { drop(ended) }).filter_map(|()| async { None }));
    Box::pin(stream::select(output, notices))
}

/// The line a student reads: what happened, and the limit in MiB.
pub fn notice(limit_bytes: i64) -> Bytes {
    let limit = match limit_bytes {
        n if n > 0 => format!("the {} MiB this environment has", n >> 20),
        _ => "the memory this environment has".to_string(),
    };
    Bytes::from(format!(
        "\r\n\x1b[1;31m[ua: out of memory: a program used more than {limit} and was stopped]\x1b[0m\r\n"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notice_names_the_limit_in_mib() {
        let text = super::notice(64 << 20);
        assert!(String::from_utf8_lossy(&text).contains("more than the 64 MiB"));
        assert!(String::from_utf8_lossy(&super::notice(0)).contains("the memory this"));
    }
}
