//! Trouble inside instances, seen by the operator: an out-of-memory kill
//! and a fork refused at the process limit are logged at warning under the
//! instance's handle (`UA_INSTANCE=`) and counted in `/metrics` by
//! assignment (`ua_oom_kills_total`, `ua_pids_limit_hits_total`).
//!
//! OOM kills come from Docker's `oom` events (one per kill in the
//! container's memory cgroup, also when it kills the main process and the
//! container with it); the event carries the container's `ua.handle` and
//! `ua.assignment` labels. Fork refusals have no event: the `max` counter of
//! each running instance's `pids.events` (cgroup v1 and v2) is read every
//! [`PIDS_POLL`], off every request's path: one small file per instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::engine::docker::{Docker, LABEL_ASSIGNMENT, LABEL_HANDLE};
use crate::instance::registry::Registry;
use crate::telemetry::by_assignment::{OOM_KILLS, PIDS_LIMIT_HITS};

/// How often the running instances' `pids.events` are read.
pub const PIDS_POLL: Duration = Duration::from_secs(5);
/// Wait before following Docker's events again after the stream ended.
const EVENTS_RETRY: Duration = Duration::from_secs(5);
/// The cgroup filesystem.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Logs and counts one OOM kill.
fn oom_killed(handle: &str, assignment: &str) {
    OOM_KILLS.add(assignment, 1);
    log::warn!(
        ua_instance = handle;
        "instance {handle}: a process was killed for lack of memory (out of memory in its container; assignment {assignment})"
    );
}

/// Logs and counts `n` fork refusals.
fn pids_limit_hit(handle: &str, assignment: &str, n: u64) {
    PIDS_LIMIT_HITS.add(assignment, n);
    log::warn!(
        ua_instance = handle;
        "instance {handle}: {n} fork(s) refused at its process limit (assignment {assignment})"
    );
}

/// Starts both watchers; abort them at shutdown.
pub fn spawn(registry: Arc<Registry>) -> [tokio::task::JoinHandle<()>; 2] {
    [
        tokio::spawn(follow_oom_events(registry.docker.clone())),
        tokio::spawn(poll_pids(registry)),
    ]
}

/// Follows Docker's `oom` events for this server's containers.
async fn follow_oom_events(docker: Arc<Docker>) {
    let mut since: Option<i64> = None;
    let mut last_nano = 0;
    loop {
        // After a break: what happened meanwhile, once.
        if let Ok(mut events) = docker.oom_events(since).await {
            while let Some(event) = events.next().await {
                let nano = event.time_nano;
                if nano != 0 && nano <= last_nano {
                    continue;
                }
                last_nano = nano;
                since = event.time.or(since);
                let attributes = event.attributes;
                let (handle, assignment) = who(&attributes);
                oom_killed(&handle, &assignment);
                let names = event
                    .container_id
                    .into_iter()
                    .chain(attributes.get("name").cloned());
                crate::engine::oom::announce(names.collect());
            }
        }
        since = since.or_else(|| Some(crate::support::time::unix_now()));
        tokio::time::sleep(EVENTS_RETRY).await;
    }
}

/// The handle and assignment of an event's container: its labels, or for
/// a container of an earlier version its name (`ua-<instance ID>`).
fn who(attributes: &HashMap<String, String>) -> (String, String) {
    let handle = attributes.get(LABEL_HANDLE).cloned().or_else(|| {
        let name = attributes.get("name")?;
        name.strip_prefix("ua-").map(crate::crypto::handle::of)
    });
    let assignment = attributes.get(LABEL_ASSIGNMENT).cloned();
    (
        handle.unwrap_or_else(|| "?".into()),
        assignment.unwrap_or_else(|| "unknown".into()),
    )
}

/// One running instance to watch.
struct Watched {
    container_id: String,
    handle: String,
    assignment: String,
}

/// Reads every running instance's `pids.events` each [`PIDS_POLL`].
async fn poll_pids(registry: Arc<Registry>) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut first = true;
    loop {
        let watched = running(&registry);
        let previous = std::mem::take(&mut seen);
        let read = tokio::task::spawn_blocking(move || {
            watched
                .into_iter()
                .filter_map(|w| pids_max(&w.container_id).map(|max| (w, max)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (w, max) in read {
            // At start the counts so far are old news; a container started
            // since the last round counts from zero.
            let before =
                previous
                    .get(&w.container_id)
                    .copied()
                    .unwrap_or(if first { max } else { 0 });
            if max > before {
                pids_limit_hit(&w.handle, &w.assignment, max - before);
            }
            seen.insert(w.container_id, max);
        }
        first = false;
        tokio::time::sleep(PIDS_POLL).await;
    }
}

/// The instances whose container runs now (a terminal, or its grace).
fn running(registry: &Registry) -> Vec<Watched> {
    let tables = registry.tables.lock().unwrap();
    tables
        .by_id
        .values()
        .filter(|i| i.is_busy())
        .map(|i| {
            let record = i.record();
            Watched {
                container_id: record.container_id,
                handle: crate::crypto::handle::of(&i.id),
                // Dotted, as the containers' labels write it.
                assignment: record.assignment.replace('/', "."),
            }
        })
        .collect()
}

/// Where a container's cgroup may be, for a controller (`pids`, `memory`):
/// cgroup v1 under the controller, v2 unified; the cgroupfs and systemd drivers.
pub fn cgroup_dirs(container_id: &str, controller: &str) -> [PathBuf; 4] {
    let root = PathBuf::from(CGROUP_ROOT);
    [
        root.join(controller).join("docker").join(container_id),
        root.join(controller)
            .join("system.slice")
            .join(format!("docker-{container_id}.scope")),
        root.join("docker").join(container_id),
        root.join("system.slice")
            .join(format!("docker-{container_id}.scope")),
    ]
}

/// The `max` count of a container's `pids.events`, if it has a cgroup here.
fn pids_max(container_id: &str) -> Option<u64> {
    cgroup_dirs(container_id, "pids").iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("pids.events")).ok()?;
        field(&text, "max")
    })
}

/// The value of `key` in a flat keyed cgroup file (`key value` lines).
pub fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_cgroup_files_are_read() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(field(oom_control, "oom_kill"), Some(3));
        assert_eq!(field("max 12\n", "max"), Some(12));
        assert_eq!(field("max 12\n", "oom"), None);
    }

    #[test]
    fn an_event_names_the_instance_by_label_or_by_name() {
        let labelled = HashMap::from([
            (LABEL_HANDLE.to_string(), "0a1b2c3d".to_string()),
            (LABEL_ASSIGNMENT.to_string(), "demo.busybox".to_string()),
        ]);
        assert_eq!(
            who(&labelled),
            ("0a1b2c3d".to_string(), "demo.busybox".to_string())
        );
        let named = HashMap::from([("name".to_string(), "ua-abc".to_string())]);
        assert_eq!(who(&named).0, crate::crypto::handle::of("abc"));
    }
}
