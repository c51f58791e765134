//! The flags of `ua bench`.

use std::path::PathBuf;
use std::time::Duration;

/// Flags of `ua bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Base URL of the ua server to measure (on this machine: the direct
    /// path talks to its containers through the local Docker daemon).
    #[arg(long, env = "UA_SERVER", default_value = "http://127.0.0.1:8000")]
    pub(super) server: String,
    /// The server's key file.
    #[arg(long, env = "UA_KEY_FILE", default_value = "/etc/ua/key")]
    pub(super) key_file: PathBuf,
    /// Assignment to use; it must take `{"variant": ...}` (see templates/demo/bench).
    #[arg(long, default_value = "demo.bench")]
    pub(super) assignment: String,
    /// Bytes of output for the throughput test.
    #[arg(long, default_value_t = 50_000_000)]
    pub(super) bytes: u64,
    /// Throughput rounds (ua and direct alternate), or with --startup the
    /// start-up rounds; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub(super) rounds: usize,
    /// Keystrokes timed for the echo test.
    #[arg(long, default_value_t = 300)]
    pub(super) echoes: usize,
    /// Concurrent session counts to try, e.g. `50,100,200`.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    pub(super) sessions: Vec<usize>,
    /// How long the concurrent sessions type, one key per second each.
    #[arg(long, default_value = "20s", value_parser = crate::support::time::parse_duration)]
    pub(super) typing: Duration,
    /// During the concurrent rounds, one more session floods output to a
    /// client that never reads.
    #[arg(long)]
    pub(super) flood: bool,
    /// The server's process ID, to read its memory use (RSS) from /proc.
    #[arg(long)]
    pub(super) server_pid: Option<u32>,
    /// Measure instance start-up instead: spec → first prompt for a
    /// shared-image and a `Dockerfile.tmpl` assignment beside the docker CLI
    /// doing the same by hand (`--rounds` rounds, medians), then a class start.
    #[arg(long)]
    pub(super) startup: bool,
    /// With --startup: the shared-image assignment (same data as --assignment).
    #[arg(long, default_value = "demo.bench_shared")]
    pub(super) shared_assignment: String,
    /// With --startup: the server's assignments directory, where the docker
    /// CLI side reads the same assignments (it must be on this machine).
    #[arg(long, env = "UA_ASSIGNMENTS", default_value = "/etc/ua/assignments")]
    pub(super) assignments: PathBuf,
    /// With --startup: students in the class start (new specs of the
    /// shared-image assignment); 0 skips it.
    #[arg(long, default_value_t = 100)]
    pub(super) class_size: usize,
    /// With --startup: concurrent clients posting the class's specs.
    #[arg(long, default_value_t = 8)]
    pub(super) class_clients: usize,
    /// With --startup: before the class start, wait until the server's warm
    /// pool (`/health` `pool`) holds this many containers (a server started
    /// with `--warm N`); 0 waits for none.
    #[arg(long, default_value_t = 0)]
    pub(super) class_warm: usize,
    /// Measure a restart with many records instead: starts its own server
    /// listening at --server (with --key-file and --assignments), makes one
    /// live instance, restarts the server with --records records of
    /// vanished containers beside it, and times its first /health, the
    /// live terminal and the reconcile.
    #[arg(long, conflicts_with = "startup")]
    pub(super) restart: bool,
    /// With --restart: the records of vanished containers written.
    #[arg(long, default_value_t = 10_000)]
    pub(super) records: usize,
    /// Measure a check's round trip instead (`POST /instance/{id}/check`)
    /// beside the docker CLI running the same script, with the container
    /// running and stopped; --assignments must hold --check-assignment.
    #[arg(long, conflicts_with_all = ["startup", "restart"])]
    pub(super) check: bool,
    /// With --check: the assignment with a check.sh.tmpl (see templates/demo/bench_check).
    #[arg(long, default_value = "demo.bench_check")]
    pub(super) check_assignment: String,
    /// With --check: checks timed with the container running.
    #[arg(long, default_value_t = 30)]
    pub(super) checks: usize,
    /// With --restart: the `ua` binary that serves (this one by default),
    /// e.g. an older build to compare with.
    #[arg(long)]
    pub(super) serve_binary: Option<PathBuf>,
}
