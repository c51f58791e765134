//! `ua serve`: start-up (key, lock, listen, records, admin socket), the
//! background tasks, reload on SIGHUP, and the orderly shutdown on SIGTERM
//! or SIGINT. [`serve`] is the server in-process, on any listeners, stopped
//! by a token.

pub(crate) mod admin;
pub(crate) mod background;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod observe;
pub(crate) mod reload;
pub(crate) mod session;
pub(crate) mod settings;
pub(crate) mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeConfig;
use crate::crypto::handle;
use crate::crypto::seal::Keyring;
use crate::engine::docker::{Docker, DockerError};
use crate::instance::registry::Registry;
use crate::instance::store::Store;
use crate::server::health::Health;
use crate::server::http::App;
use crate::server::web::WebAssets;
use crate::support::live::Swap;
use crate::transport::systemd;
use crate::transport::Listener;

/// How long sessions get to close before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs `ua serve` until SIGTERM or SIGINT.
pub fn main(config: ServeConfig) -> anyhow::Result<()> {
    let cmdline = reload::serve_cmdline();
    // With --env-file, the file's values count from the start too.
    let config = match config.env_file {
        Some(_) => reload::resolve(&cmdline).map_err(anyhow::Error::msg)?,
        None => config,
    };
    crate::telemetry::logging::init(config.log_level);
    crate::telemetry::panics::install_hook();
    let inherited =
        systemd::take_inherited_socket().context("cannot take the socket systemd passed")?;
    let keys = Keyring::load(&config.key_file)?;
    crate::engine::gate::check_host().map_err(anyhow::Error::msg)?;
    crate::engine::agent::check_host(&config.agent).map_err(anyhow::Error::msg)?;
    let store = Store::open(&config.state_dir)?;
    handle::init(&config.state_dir).with_context(|| {
        format!(
            "cannot read or make the handle key in {}",
            config.state_dir.display()
        )
    })?;
    let runtime = match config.worker_threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(run(config, keys, store, inherited, cmdline))
}

/// Listens (on every socket systemd passed, or `--listen`) and serves until
/// a signal.
async fn run(
    config: ServeConfig,
    keys: Keyring,
    store: Store,
    inherited: systemd::Inherited,
    cmdline: Vec<String>,
) -> anyhow::Result<()> {
    let from_systemd = !inherited.is_empty();
    let listen = config.listen.clone();
    let listeners = inherited
        .into_listeners(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let start = Start {
        listeners,
        from_systemd,
        cmdline,
    };
    let served = serve_from(start, config, keys, store, shutdown).await;
    if !from_systemd {
        // A socket file of ours left behind would look like a server that
        // is down; systemd's is systemd's to keep.
        listen.remove();
    }
    served
}

/// The server in-process, on the opened (locked) `store`: reads the
/// records, binds the admin socket, says it is listening, then answers on
/// `listeners` (connections wait in their backlog until then; the
/// reconcile with Docker runs in the background) until `shutdown` is
/// cancelled; then closes every session and stops every
/// container. `ua serve`, the in-process tests and the router fuzz target
/// all start here. A SIGHUP reloads the settings of this process's
/// `serve` flags.
pub async fn serve(
    listeners: Vec<Listener>,
    config: ServeConfig,
    keys: Keyring,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let start = Start {
        listeners,
        from_systemd: false,
        cmdline: reload::serve_cmdline(),
    };
    serve_from(start, config, keys, store, shutdown).await
}

/// How the server was started: its listeners, whether systemd passed
/// them (for the log), and the `serve` flags a reload reads again.
struct Start {
    listeners: Vec<Listener>,
    from_systemd: bool,
    cmdline: Vec<String>,
}

async fn serve_from(
    start: Start,
    config: ServeConfig,
    keys: Keyring,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Start {
        listeners,
        from_systemd,
        cmdline,
    } = start;
    let config = Arc::new(config);
    let state_dir = config
        .state_dir
        .canonicalize()
        .unwrap_or_else(|_| config.state_dir.clone());
    let docker = Arc::new(Docker::new(&state_dir));
    let settings = settings::instance_settings(&config);
    let agents = crate::engine::agent::Hub::new(state_dir.join("agents"))
        .with_context(|| format!("cannot make {}", state_dir.join("agents").display()))?;
    let registry = Registry::new(settings, docker.clone(), store, agents);
    settle_with_docker(&registry, &docker, &config).await?;
    // Bound before ua says it listens: it exists once ua says so.
    let admin_socket = admin::bind(&state_dir)
        .map_err(|e| {
            log::error!(
                "no admin socket in {} ({e}); ua status, list and clean will not work",
                state_dir.display()
            )
        })
        .ok();
    let listening = announce(&listeners, from_systemd)?;
    let hangup = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let app = Arc::new(App {
        origins: Swap::new(config.origin_allowlist()),
        public_origins: Swap::new(config.public_origins(listening)),
        hosts: Swap::new(config.allowed_hosts(listening)),
        config: Swap::new((*config).clone()),
        registry: registry.clone(),
        health: Health::new(docker.clone(), &config.state_dir),
        keys: Swap::new(keys),
        sessions: TaskTracker::new(),
        web: config
            .browser_terminal
            .then(|| WebAssets::load(&config.web_dir))
            .flatten(),
        shutdown,
    });
    if app.web.is_some() && app.public_origins.load().is_empty() && app.origins.load().is_some() {
        // Behind a proxy on a unix socket ua cannot know its public origin.
        log::warn!(
            "the browser terminal's own pages may open terminals only if --allowed-origins \
             lists their origin: set --public-origin (a unix socket gives no default)"
        );
    }
    let background = background::spawn(app.clone());
    let reloader = reload::Reloader { cmdline, listening };
    tokio::spawn(reload::on_sighup(hangup, app.clone(), reloader));
    if let Some(socket) = admin_socket {
        tokio::spawn(admin::serve(socket, app.clone()));
    }
    systemd::notify_ready();
    http::serve(listeners, app.clone()).await;

    shut_down(&app, &registry, background).await;
    Ok(())
}

/// Reads the records into the registry (reconciled with Docker in the
/// background: the sweep's first step) and checks `--runtime` and
/// `--disk-mb` against Docker.
async fn settle_with_docker(
    registry: &Registry,
    docker: &Docker,
    config: &ServeConfig,
) -> anyhow::Result<()> {
    let recorded = registry.load_records().await;
    log::info!("read {recorded} instance records; reconciling them with Docker");
    match docker.check_runtime(&config.runtime).await {
        Ok(()) => {}
        Err(e @ DockerError::Api { .. }) => anyhow::bail!("--runtime {}: {e}", config.runtime),
        Err(e) => log::warn!(
            "--runtime {}: not checked, Docker is away ({e})",
            config.runtime
        ),
    }
    match (docker.disk_quota().await, config.disk_mb) {
        (Ok(()), _) => log::info!("per-container disk limits can be enforced"),
        (Err(why), 0) => log::info!("per-container disk limits are {why}"),
        (Err(why), mb) => log::warn!("--disk-mb {mb}: per-container disk limits are {why}"),
    }
    Ok(())
}

/// Says where ua listens, once the records are read; the TCP address, if
/// any, is what the default public origin is made of.
fn announce(
    listeners: &[Listener],
    from_systemd: bool,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let via = if from_systemd {
        " (socket from systemd)"
    } else {
        ""
    };
    // Every recorded instance answers from here; "reconciled with Docker"
    // (and /health's `records`) says when the records are settled.
    for listener in listeners {
        match listener {
            Listener::Tcp(l) => log::info!("listening on http://{}{via}", l.local_addr()?),
            Listener::Unix(l) => match l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            {
                Some(path) => log::info!("listening on the unix socket {path}{via}"),
                None => log::info!("listening on a unix socket{via}"),
            },
        }
    }
    Ok(listeners.iter().find_map(|listener| match listener {
        Listener::Tcp(l) => l.local_addr().ok(),
        Listener::Unix(_) => None,
    }))
}

/// The orderly end: background tasks stopped, sessions closed within
/// [`SHUTDOWN_GRACE`]; containers are left running for the next start.
async fn shut_down(app: &App, registry: &Registry, background: Vec<tokio::task::JoinHandle<()>>) {
    // Containers keep running: the next server reattaches to them.
    log::info!(
        "shutting down: closing sessions; running containers are left running for the next start"
    );
    systemd::notify_stopping();
    background.iter().for_each(|task| task.abort());
    registry.shutdown().await;
    app.sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, app.sessions.wait())
        .await
        .is_err()
    {
        log::warn!("some sessions did not close in time");
    }
    log::info!("stopped (containers left running)");
}

async fn watch_signals(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot watch for signals");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}
