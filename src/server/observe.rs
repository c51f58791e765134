//! A read-only websocket on an instance's terminal (`?mode=observe`), for
//! staff views: `setup`, the replay, then live output. Input and `set_size`
//! are ignored; it never starts a container, never takes over, never counts
//! as the student's activity and never ends the student's session.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::tungstenite::{Error as WsError, Message};
use hyper_tungstenite::HyperWebsocket;
use tokio_util::sync::CancellationToken;

use crate::instance::entry::Instance;
use crate::instance::named::ObserveRefusal;
use crate::instance::registry::Registry;
use crate::protocol::close::Reason;
use crate::server::session::{closing, Clock, Outcome, ReadEnd, SessionSettings, Stream, Writer};
use crate::telemetry::metrics;
use crate::terminal::Observation;

/// Runs one observer websocket until it closes.
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
    let Observation {
        output,
        closed,
        counted: _counted,
    } = match registry.observe(&instance, &name).await {
        Ok(observation) => observation,
        Err(refusal) => {
            let reason = match refusal {
                ObserveRefusal::NotRunning => Reason::NotRunning,
                ObserveRefusal::TooMany => Reason::ObserversFull,
            };
            let _ = socket.send(closing(reason)).await;
            let _ = socket.close(None).await;
            return;
        }
    };
    let h = crate::crypto::handle::of(&instance.id);
    log::info!(ua_instance = h, ua_spec = instance.spec_id; "instance {h}: observer attached");
    let (sink, stream) = socket.split();
    let clock = Clock::new();
    let mut writer = Writer {
        sink,
        clock: &clock,
        idle_timeout: settings.idle_timeout,
    };
    let outcome = tokio::select! {
        end = ignore_frames(stream, &clock) => match end {
            ReadEnd::Gone(why) => why,
            ReadEnd::TooBig => {
                writer.send_briefly(closing(Reason::TooBig)).await;
                Outcome::Closed(Reason::TooBig)
            }
        },
        why = writer.write_output(output, closed, &shutdown) => why,
    };
    log::info!(
        ua_instance = h, ua_spec = instance.spec_id;
        "instance {h}: observer closed ({outcome})"
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer.sink.close()).await;
}

/// Reads the observer's frames only to notice pongs and its going away.
async fn ignore_frames(mut stream: Stream, clock: &Clock) -> ReadEnd {
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Close(_)) => {
                metrics::CLOSES.add("client", 1);
                return ReadEnd::Gone(Outcome::ClientClosed);
            }
            Ok(_) => clock.heard(false),
            Err(WsError::Capacity(_)) => return ReadEnd::TooBig,
            Err(e) => return ReadEnd::Gone(Outcome::ReadError(e)),
        }
    }
    ReadEnd::Gone(Outcome::ConnectionLost)
}
