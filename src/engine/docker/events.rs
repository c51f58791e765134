//! Docker's event stream, as ua follows it: the `oom` events of this
//! server's containers (`instance::trouble` logs and counts them).

use std::collections::HashMap;
use std::pin::Pin;

use futures_util::future::ready;
use futures_util::{Stream, StreamExt};

use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::DockerError;
use crate::engine::docker::labels::LABEL_STATE_DIR;

/// One out-of-memory kill in a container of this server.
#[derive(Debug, Clone, Default)]
pub struct OomEvent {
    /// When, in seconds since the epoch (to follow again from there).
    pub time: Option<i64>,
    /// When, in nanoseconds (0: not said), to skip an event seen twice.
    pub time_nano: i64,
    /// The container's ID.
    pub container_id: Option<String>,
    /// The container's labels and name (`name`).
    pub attributes: HashMap<String, String>,
}

impl Docker {
    /// The `oom` events of this server's containers as they happen, from
    /// `since` (seconds since the epoch) when given; the stream ends at the
    /// first error.
    pub async fn oom_events(
        &self,
        since: Option<i64>,
    ) -> Result<Pin<Box<dyn Stream<Item = OomEvent> + Send>>, DockerError> {
        let client = self.client().await?;
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("event", vec!["oom".to_string()]),
            (
                "label",
                vec![format!("{LABEL_STATE_DIR}={}", self.state_dir_label())],
            ),
        ]);
        let mut options = bollard::query_parameters::EventsOptionsBuilder::new().filters(&filters);
        let from = since.map(|s| s.to_string());
        if let Some(from) = &from {
            options = options.since(from);
        }
        let events = client
            .events(Some(options.build()))
            .take_while(|event| ready(event.is_ok()))
            .filter_map(|event| {
                ready(event.ok().map(|event| {
                    let actor = event.actor.unwrap_or_default();
                    OomEvent {
                        time: event.time,
                        time_nano: event.time_nano.unwrap_or_default(),
                        container_id: actor.id,
                        attributes: actor.attributes.unwrap_or_default(),
                    }
                }))
            });
        Ok(Box::pin(events))
    }
}
