//! What each instance uses, for `ua list` and `ua top` (the admin socket's
//! `list` with `usage`): memory, CPU and processes from the container's
//! cgroup files, the writable layer's size from Docker, the terminal's
//! attachment and last keystroke from its [`Activity`].
//!
//! Gathered on demand at a bounded cost, off every terminal's path: one
//! gather at a time; a few small files per running container, read on a
//! blocking thread; CPU over the interval since the previous gather (or,
//! with none recent, over one short pause for all containers at once); and
//! the disk sizes, which make the daemon walk every container's files,
//! asked in the background at most once per [`DISK_REFRESH`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::docker::{bounded, Docker};
use crate::instance::entry::Instance;
use crate::instance::registry::Registry;
use crate::instance::trouble::{cgroup_dirs, field};
use crate::protocol::admin::Summary;
use crate::terminal::Activity;

/// How often the writable layers' sizes are asked of Docker, at most.
pub const DISK_REFRESH: Duration = Duration::from_secs(120);
/// How soon the sizes are asked again when a container is not in them
/// (an instance made since).
const DISK_REFRESH_NEW: Duration = Duration::from_secs(20);
/// How long a list waits for the first disk sizes (later ones: never).
const DISK_WAIT: Duration = Duration::from_secs(3);
/// With no recent sample, CPU is measured over this pause.
const CPU_PAUSE: Duration = Duration::from_millis(500);
/// A previous sample older than this is no measure of "recent".
const CPU_SAMPLE_MAX_AGE: Duration = Duration::from_secs(30);
/// A previous sample younger than this is too short an interval: its
/// figure is shown again.
const CPU_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// cgroup v1 writes "no limit" as a huge number (the page counter's maximum).
const V1_NO_LIMIT: u64 = 1 << 62;

/// The state kept between gathers; one per admin socket.
#[derive(Default)]
pub struct Sampler {
    /// One gather at a time; it guards the previous CPU samples, by container.
    cpu: tokio::sync::Mutex<HashMap<String, CpuSample>>,
    disk: Arc<Mutex<Disk>>,
    /// Held while the sizes are asked of Docker: one request in flight.
    disk_asking: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Clone, Copy)]
struct CpuSample {
    at: Instant,
    used_ns: u64,
    percent: Option<f64>,
}

#[derive(Default)]
struct Disk {
    sizes: HashMap<String, u64>,
    at: Option<Instant>,
}

/// What the cgroup files say of one container.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Cgroup {
    memory: Option<u64>,
    memory_limit: Option<u64>,
    cpu_ns: Option<u64>,
    pids: Option<u64>,
}

/// One instance being gathered.
struct Row {
    summary: Summary,
    container_id: String,
    /// Its container may run: a terminal, its grace, or warm for one.
    live: bool,
}

impl Sampler {
    /// Every instance with what it uses, by last use (as `Registry::list`).
    pub async fn gather(&self, registry: &Registry) -> Vec<Summary> {
        let mut samples = self.cpu.lock().await;
        let mut rows = rows(registry);
        let missing = {
            let disk = self.disk.lock().unwrap();
            rows.iter()
                .any(|r| !disk.sizes.contains_key(&r.container_id))
        };
        if let Some(asking) = self.refresh_disk(&registry.docker, missing) {
            if self.disk.lock().unwrap().at.is_none() {
                let _ = tokio::time::timeout(DISK_WAIT, asking).await;
            }
        }
        let live: Vec<String> = rows
            .iter()
            .filter(|r| r.live)
            .map(|r| r.container_id.clone())
            .collect();
        let mut read = read_all(live.clone()).await;
        let now = Instant::now();
        let unsampled = live.iter().any(|id| {
            read.get(id).is_some_and(|c| c.cpu_ns.is_some())
                && samples
                    .get(id)
                    .is_none_or(|s| now - s.at > CPU_SAMPLE_MAX_AGE)
        });
        if unsampled {
            // A baseline for all at once, then the figure over one pause.
            update_cpu(&mut samples, &read, now);
            tokio::time::sleep(CPU_PAUSE).await;
            read = read_all(live).await;
        }
        update_cpu(&mut samples, &read, Instant::now());
        samples.retain(|id, _| read.contains_key(id));
        let disk = self.disk.lock().unwrap();
        for row in &mut rows {
            let usage = &mut row.summary.usage;
            usage.disk_bytes = disk.sizes.get(&row.container_id).copied();
            if let Some(cgroup) = read.get(&row.container_id) {
                usage.memory_bytes = cgroup.memory;
                usage.memory_limit_bytes = cgroup.memory_limit;
                usage.pids = cgroup.pids;
                usage.cpu_percent = samples.get(&row.container_id).and_then(|s| s.percent);
            }
        }
        rows.into_iter().map(|r| r.summary).collect()
    }

    /// Asks Docker for the disk sizes in the background when they are
    /// stale (sooner when `missing`: a container is missing from them) and
    /// no request is in flight; the task, if one was started.
    fn refresh_disk(
        &self,
        docker: &Arc<Docker>,
        missing: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let every = if missing {
            DISK_REFRESH_NEW
        } else {
            DISK_REFRESH
        };
        let stale = self
            .disk
            .lock()
            .unwrap()
            .at
            .is_none_or(|at| at.elapsed() >= every);
        let asking = self
            .disk_asking
            .clone()
            .try_lock_owned()
            .ok()
            .filter(|_| stale)?;
        let (disk, docker) = (self.disk.clone(), docker.clone());
        Some(tokio::spawn(async move {
            let _asking = asking;
            let sizes = bounded(docker.writable_sizes()).await;
            let mut disk = disk.lock().unwrap();
            // After a failure too: not asked again before the next refresh.
            disk.at = Some(Instant::now());
            match sizes {
                Ok(sizes) => disk.sizes = sizes,
                Err(e) => log::warn!("usage: the containers' disk sizes are unknown: {e}"),
            }
        }))
    }
}

/// Every instance's summary, its container and whether it may run.
fn rows(registry: &Registry) -> Vec<Row> {
    let expiry = registry.settings().instance_expiry.as_secs() as i64;
    let instances: Vec<Arc<Instance>> = {
        let tables = registry.tables.lock().unwrap();
        tables.by_id.values().cloned().collect()
    };
    let mut rows: Vec<Row> = instances
        .iter()
        .map(|instance| {
            let mut summary = instance.summary(expiry);
            if let Some(activity) = activity(instance) {
                summary.usage.terminal = Some(
                    if activity.is_attached() {
                        "attached"
                    } else {
                        "grace"
                    }
                    .into(),
                );
                summary.usage.idle_seconds = Some(activity.idle().as_secs());
            }
            Row {
                live: summary.state == "running" || instance.is_warm(),
                summary,
                container_id: instance.record().container_id,
            }
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.summary.last_used));
    rows
}

/// The running terminals' activity, the attached ones first; none while a
/// terminal is being started or stopped (the lock is held): never waited for.
fn activity(instance: &Instance) -> Option<Arc<Activity>> {
    let terminals = instance.terminals.try_lock().ok()?;
    let mut all = terminals.activities();
    all.sort_by_key(|a| (!a.is_attached(), a.idle()));
    all.into_iter().next()
}

/// Folds the CPU counters read at `now` into the samples: the percent of
/// one CPU since each container's previous sample.
fn update_cpu(
    samples: &mut HashMap<String, CpuSample>,
    read: &HashMap<String, Cgroup>,
    now: Instant,
) {
    for (id, cgroup) in read {
        let Some(used_ns) = cgroup.cpu_ns else {
            continue;
        };
        let percent = match samples.get(id) {
            Some(before) if now - before.at < CPU_MIN_INTERVAL => continue,
            Some(before) if now - before.at <= CPU_SAMPLE_MAX_AGE => {
                let spent = used_ns.saturating_sub(before.used_ns) as f64;
                let interval = (now - before.at).as_nanos() as f64;
                Some((1000.0 * spent / interval).round() / 10.0)
            }
            _ => None,
        };
        samples.insert(
            id.clone(),
            CpuSample {
                at: now,
                used_ns,
                percent,
            },
        );
    }
}

/// The cgroup files of each container, read on a blocking thread.
async fn read_all(containers: Vec<String>) -> HashMap<String, Cgroup> {
    tokio::task::spawn_blocking(move || {
        containers
            .into_iter()
            .map(|id| {
                let cgroup = read_cgroup(&id);
                (id, cgroup)
            })
            .filter(|(_, c)| *c != Cgroup::default())
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn read_cgroup(container_id: &str) -> Cgroup {
    let (memory, memory_limit) = cgroup_dirs(container_id, "memory")
        .iter()
        .find_map(|dir| memory(dir))
        .unwrap_or_default();
    let cpu_ns = cgroup_dirs(container_id, "cpuacct").iter().find_map(|dir| {
        number(&dir.join("cpuacct.usage")).or_else(|| {
            let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            field(&stat, "usage_usec").map(|us| us * 1000)
        })
    });
    let pids = cgroup_dirs(container_id, "pids")
        .iter()
        .find_map(|dir| number(&dir.join("pids.current")));
    Cgroup {
        memory,
        memory_limit,
        cpu_ns,
        pids,
    }
}

/// Memory in use (less the inactive page cache, as `docker stats` shows
/// it) and the limit, from a memory cgroup of v1 or v2.
fn memory(dir: &Path) -> Option<(Option<u64>, Option<u64>)> {
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    if let Some(used) = number(&dir.join("memory.usage_in_bytes")) {
        let inactive = field(&stat, "total_inactive_file").unwrap_or(0);
        let limit = number(&dir.join("memory.limit_in_bytes")).filter(|&l| l < V1_NO_LIMIT);
        return Some((Some(used.saturating_sub(inactive)), limit));
    }
    let used = number(&dir.join("memory.current"))?;
    let inactive = field(&stat, "inactive_file").unwrap_or(0);
    // `max` (no limit) is no number.
    let limit = number(&dir.join("memory.max"));
    Some((Some(used.saturating_sub(inactive)), limit))
}

/// A file holding one number.
fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, each: &[(&str, &str)]) {
        for (name, text) in each {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn memory_is_read_from_either_cgroup_version() {
        let v1 = tempfile::tempdir().unwrap();
        files(
            v1.path(),
            &[
                ("memory.stat", "cache 10\ntotal_inactive_file 1000\n"),
                ("memory.usage_in_bytes", "5000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        assert_eq!(memory(v1.path()), Some((Some(4000), None)));
        let v2 = tempfile::tempdir().unwrap();
        files(
            v2.path(),
            &[
                ("memory.stat", "anon 10\ninactive_file 100\n"),
                ("memory.current", "5000\n"),
                ("memory.max", "536870912\n"),
            ],
        );
        assert_eq!(memory(v2.path()), Some((Some(4900), Some(536870912))));
        assert_eq!(memory(&v2.path().join("gone")), None);
    }

    #[test]
    fn cpu_is_a_percent_of_one_cpu_since_the_previous_sample() {
        let mut samples = HashMap::new();
        let start = Instant::now();
        let at = |ns| {
            HashMap::from([(
                "c".to_string(),
                Cgroup {
                    cpu_ns: Some(ns),
                    ..Cgroup::default()
                },
            )])
        };
        update_cpu(&mut samples, &at(1_000_000_000), start);
        assert_eq!(samples["c"].percent, None);
        // Half a CPU over two seconds.
        update_cpu(
            &mut samples,
            &at(2_000_000_000),
            start + Duration::from_secs(2),
        );
        assert_eq!(samples["c"].percent, Some(50.0));
        // Too soon after: the last figure stands.
        update_cpu(
            &mut samples,
            &at(9_000_000_000),
            start + Duration::from_millis(2100),
        );
        assert_eq!(samples["c"].percent, Some(50.0));
        // Too long after: no figure until the next sample.
        update_cpu(
            &mut samples,
            &at(9_000_000_000),
            start + Duration::from_secs(60),
        );
        assert_eq!(samples["c"].percent, None);
    }
}
