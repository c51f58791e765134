//! Flags of `ua serve`, each with its `UA_*` environment variable
//! (docs/API.md, "Operations").

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::support::time::parse_duration;

/// Running terminals plus builds: memory-bound, one per 32 MiB of RAM.
fn default_max_running() -> usize {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(4 << 20);
    (total_kib / (32 << 10)).max(16)
}

/// Stored instances: each costs its container's writable layer and its
/// image's per-spec layers on Docker's disk (typically a few MiB), plus a
/// small record; 10 000 of them at 5 MiB is about 50 GiB.
pub const DEFAULT_MAX_INSTANCES: usize = 10_000;

fn default_max_builds() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Settings of the server, from flags or `UA_*` variables.
#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen when not socket-activated: `ADDR:PORT`, or
    /// `unix:/PATH` for a reverse proxy on this host.
    #[arg(long, env = "UA_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: crate::transport::listen::ListenAddr,

    /// Key file: one base64 key per line, the first seals, all open.
    #[arg(long, env = "UA_KEY_FILE", default_value = "/etc/ua/key")]
    pub key_file: PathBuf,

    /// Root of the assignment templates.
    #[arg(long, env = "UA_ASSIGNMENTS", default_value = "/etc/ua/assignments")]
    pub assignments: PathBuf,

    /// Directory of instance records and the server lock.
    #[arg(long, env = "UA_STATE_DIR", default_value = "/var/lib/ua")]
    pub state_dir: PathBuf,

    /// The static agent put into every new container (scripts/build-agent
    /// makes one; the package installs it here).
    #[arg(long, env = "UA_AGENT", default_value = crate::engine::agent::AGENT_ON_HOST)]
    pub agent: PathBuf,

    /// How long an instance without sessions is kept.
    #[arg(long, env = "UA_INSTANCE_EXPIRY", default_value = "4h", value_parser = parse_duration)]
    pub instance_expiry: Duration,

    /// A session with no client traffic and no output for this long is closed (4002).
    #[arg(long, env = "UA_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a terminal outlives its websocket, waiting for a reconnect.
    #[arg(long, env = "UA_REATTACH_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub reattach_grace: Duration,

    /// Builds run at once; the rest wait in arrival order.
    #[arg(long, env = "UA_MAX_BUILDS", default_value_t = default_max_builds())]
    pub max_builds: usize,

    /// Running containers plus builds (memory-bound); past it a new spec's
    /// `POST /spec` answers 503. Default: one per 32 MiB of memory, at least 16.
    #[arg(long, env = "UA_MAX_RUNNING", default_value_t = default_max_running())]
    pub max_running: usize,

    /// Stored instances, running or stopped (disk-bound); past it a new spec's
    /// `POST /spec` answers 503.
    #[arg(long, env = "UA_MAX_INSTANCES", default_value_t = DEFAULT_MAX_INSTANCES)]
    pub max_instances: usize,

    /// Longest a spec's `keepUntil` may keep an instance, from its creation.
    #[arg(long, env = "UA_MAX_KEEP", default_value = "30d", value_parser = parse_duration)]
    pub max_keep: Duration,

    /// Builds that may wait for a build slot; past it `POST /spec` answers 503.
    #[arg(long, env = "UA_MAX_BUILD_QUEUE", default_value_t = 256)]
    pub max_build_queue: usize,

    /// Largest file `PUT /instance/{id}/files` takes, in MiB (413 beyond).
    #[arg(long, env = "UA_MAX_UPLOAD_MB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_upload_mb: u64,

    /// Containers kept created and started, free, per shared-image
    /// assignment (its current image), for new specs to take: a class start
    /// then waits for no container start. They count against
    /// --max-running but yield to students. 0: no warm pool.
    #[arg(long, env = "UA_WARM", default_value_t = 0)]
    pub warm: usize,

    /// Origins of other sites' pages (e.g. PrairieLearn's) allowed for CORS
    /// and the websocket, comma-separated, or `*` for any. Default: none
    /// besides the public origins (this server's own pages).
    #[arg(long, env = "UA_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,

    /// Names answered in `Host` besides the public origins' hosts, IP
    /// addresses and loopback names (comma-separated; `*`: any). Other
    /// names get 421, which keeps DNS-rebinding pages out.
    #[arg(long, env = "UA_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,

    /// Origins under which this server's own pages are reached, e.g.
    /// `https://ua.example.edu` behind a proxy (comma-separated). The browser
    /// terminal's websocket is accepted from them. Default: the listening
    /// address (`http://127.0.0.1:8000`, and `localhost` for a loopback one).
    #[arg(long, env = "UA_PUBLIC_ORIGIN", default_value = "")]
    pub public_origin: String,

    /// Bytes of recent output replayed to a reconnecting client.
    #[arg(long, env = "UA_REPLAY_BYTES", default_value_t = 64 * 1024)]
    pub replay_bytes: usize,

    /// Docker runtime of every container, e.g. `runsc` (gVisor, registered in
    /// the daemon's `runtimes`); empty: the daemon's default. An
    /// assignment.json `runtime` overrides it.
    #[arg(long, env = "UA_RUNTIME", default_value = "")]
    pub runtime: String,

    /// Memory limit of each container in MiB (swap is limited to the same).
    #[arg(long, env = "UA_MEMORY_MB", default_value_t = 512)]
    pub memory_mb: i64,

    /// Process limit of each container.
    #[arg(long, env = "UA_PIDS_LIMIT", default_value_t = 256)]
    pub pids_limit: i64,

    /// CPU limit of each container, in CPUs.
    #[arg(long, env = "UA_CPUS", default_value_t = 1.0)]
    pub cpus: f64,

    /// Size limit of each container's writable layer in MiB; 0: none. Needs
    /// overlay2 on xfs mounted with `pquota`; elsewhere ua says so and runs
    /// containers without it.
    #[arg(long, env = "UA_DISK_MB", default_value_t = 0)]
    pub disk_mb: i64,

    /// Largest disk limit an assignment.json may ask for, in MiB.
    #[arg(long, env = "UA_MAX_DISK_MB", default_value_t = 10240)]
    pub max_disk_mb: i64,

    /// Most terminals an assignment.json's maxTerminals may ask for per
    /// instance (their default is 4).
    #[arg(long, env = "UA_MAX_TERMINALS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_terminals: u32,

    /// Largest memory limit an assignment.json may ask for, in MiB.
    #[arg(long, env = "UA_MAX_MEMORY_MB", default_value_t = 2048)]
    pub max_memory_mb: i64,

    /// Largest process limit an assignment.json may ask for.
    #[arg(long, env = "UA_MAX_PIDS_LIMIT", default_value_t = 1024)]
    pub max_pids_limit: i64,

    /// Largest CPU limit an assignment.json may ask for, in CPUs.
    #[arg(long, env = "UA_MAX_CPUS", default_value_t = 2.0)]
    pub max_cpus: f64,

    /// Longest an image build may take (also the most an assignment.json may ask for).
    #[arg(long, env = "UA_BUILD_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub build_timeout: Duration,

    /// Most concurrent HTTP connections; more wait to be accepted.
    #[arg(long, env = "UA_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Let image builds reach the network (off by default).
    #[arg(long, env = "UA_BUILD_NETWORK", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub build_network: bool,

    /// When to pull the base images (`FROM`) of a build: never (a missing one
    /// fails the build, naming it), missing (pull what the host lacks) or
    /// always (pull before each build).
    #[arg(long, env = "UA_PULL", value_enum, default_value = "never")]
    pub pull: crate::assignment::base_images::PullPolicy,

    /// Serve the browser terminal at `/instance/{id}`.
    #[arg(long, env = "UA_BROWSER_TERMINAL", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub browser_terminal: bool,

    /// Directory of the browser terminal's files (made by scripts/build-web).
    #[arg(long, env = "UA_WEB_DIR", default_value = "/usr/share/ua/web")]
    pub web_dir: PathBuf,

    /// Threads that serve connections and terminals; 0 runs everything on
    /// one thread (blocking work such as rendering has its own pool).
    #[arg(long, env = "UA_WORKER_THREADS", default_value_t = default_max_builds())]
    pub worker_threads: usize,

    /// A file of `UA_*=value` lines (the syntax of /etc/default/ua) read at
    /// start and again on every reload (SIGHUP); its values override the
    /// environment, flags override it.
    #[arg(long, env = "UA_ENV_FILE")]
    pub env_file: Option<PathBuf>,
    /// This node's name when several run behind a load balancer: instance IDs
    /// start with `NAME-` (1-16 characters of a-z, 0-9). Default: none.
    #[arg(long, env = "UA_NODE_ID", value_parser = crate::crypto::ids::parse_node_id)]
    pub node_id: Option<String>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "UA_LOG_LEVEL", default_value = "info")]
    pub log_level: log::LevelFilter,
}

impl ServeConfig {
    /// The settings that `ua serve ARGS` would have (for in-process servers
    /// in tests and fuzz targets); `UA_*` variables apply as usual.
    pub fn from_args(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        #[derive(clap::Parser)]
        // A flag given twice takes its last value: reload.rs puts the env
        // file's values before the command line's flags.
        #[command(args_override_self = true)]
        struct Serve {
            #[command(flatten)]
            config: ServeConfig,
        }
        let argv = std::iter::once("serve").chain(args.iter().copied());
        <Serve as clap::Parser>::try_parse_from(argv).map(|serve| serve.config)
    }

    /// The public origins: `--public-origin`, or else those of the TCP
    /// address the server listens on (none for a unix socket).
    pub fn public_origins(&self, listening: Option<std::net::SocketAddr>) -> Vec<String> {
        let configured = origin_list(&self.public_origin);
        if !configured.is_empty() {
            return configured;
        }
        let Some(addr) = listening else {
            return Vec::new();
        };
        let mut origins = vec![format!("http://{addr}")];
        if addr.ip().is_loopback() {
            origins.push(format!("http://localhost:{}", addr.port()));
        }
        origins
    }

    /// The allowed origins of other sites, or `None` when any origin is
    /// allowed (`*`). Empty by default: only the public origins' pages.
    pub fn origin_allowlist(&self) -> Option<Vec<String>> {
        let list = origin_list(&self.allowed_origins);
        if list.iter().any(|s| s == "*") {
            None
        } else {
            Some(list)
        }
    }

    /// The `Host` names answered, from the public origins and `--allowed-hosts`.
    pub fn allowed_hosts(
        &self,
        listening: Option<std::net::SocketAddr>,
    ) -> crate::transport::host_check::AllowedHosts {
        crate::transport::host_check::AllowedHosts::new(
            &self.public_origins(listening),
            &self.allowed_hosts,
        )
    }
}

/// A comma-separated list of origins, without trailing slashes.
fn origin_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
