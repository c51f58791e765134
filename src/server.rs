//! `ua serve`: start-up (key, lock, listen, reconcile), background sweeps,
//! and the orderly shutdown on SIGTERM or SIGINT. [`serve`] is the server
//! in-process, on any listener, stopped by a token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeConfig;
use crate::docker::Docker;
use crate::health::Health;
use crate::http::{self, App};
use crate::instances::Registry;
use crate::seal::Keyring;
use crate::store::Store;
use crate::systemd;
use crate::web::WebAssets;

/// How often the systemd status line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// How long sessions get to close before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs `ua serve` until SIGTERM or SIGINT.
pub fn main(config: ServeConfig) -> anyhow::Result<()> {
    systemd::init_logging(config.log_level);
    crate::panics::install_hook();
    let inherited =
        systemd::take_inherited_socket().context("cannot take the socket systemd passed")?;
    let keys = Keyring::load(&config.key_file)?;
    let store = Store::open(&config.state_dir)?;
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
    runtime.block_on(run(config, keys, store, inherited))
}

/// Listens (on systemd's socket or `--listen`) and serves until a signal.
async fn run(
    config: ServeConfig,
    keys: Keyring,
    store: Store,
    inherited: systemd::Inherited,
) -> anyhow::Result<()> {
    let listener = inherited
        .into_listener(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    serve(listener, config, keys, store, shutdown).await
}

/// The server in-process, on the opened (locked) `store`: reconciles with
/// Docker, says it is listening, then answers on `listener` (connections
/// wait in its backlog until then) until `shutdown` is cancelled; then
/// closes every session and stops every container. `ua serve`, the
/// in-process tests and the router fuzz target all start here.
pub async fn serve(
    listener: http::Listener,
    config: ServeConfig,
    keys: Keyring,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let state_dir = config
        .state_dir
        .canonicalize()
        .unwrap_or_else(|_| config.state_dir.clone());
    let docker = Arc::new(Docker::new(&state_dir));
    let registry = Registry::new(config.clone(), docker.clone(), store);
    match registry.reconcile().await {
        Ok(()) => {}
        Err(e) => log::error!(
            "could not reconcile with Docker at start ({e}); instances are kept as recorded \
             and reconciled when Docker answers"
        ),
    }
    match (docker.disk_quota().await, config.disk_mb) {
        (Ok(()), _) => log::info!("per-container disk limits can be enforced"),
        (Err(why), 0) => log::info!("per-container disk limits are {why}"),
        (Err(why), mb) => log::warn!("--disk-mb {mb}: per-container disk limits are {why}"),
    }
    let listening = match &listener {
        http::Listener::Tcp(l) => l.local_addr().ok(),
        http::Listener::Unix(_) => None,
    };
    // After reconcile: whoever reads this line finds the records settled.
    match listening {
        Some(addr) => log::info!("listening on http://{addr}"),
        None => log::info!("listening on the unix socket systemd passed"),
    }
    let app = Arc::new(App {
        origins: config.origin_allowlist(),
        public_origins: config.public_origins(listening),
        config: config.clone(),
        registry: registry.clone(),
        health: Health::new(docker.clone(), &config.state_dir),
        keys,
        sessions: TaskTracker::new(),
        web: config
            .browser_terminal
            .then(|| WebAssets::load(&config.web_dir))
            .flatten(),
        shutdown,
    });
    let background = tokio::spawn(background_work(app.clone()));
    systemd::notify_ready();
    http::serve(listener, app.clone()).await;

    log::info!("shutting down: closing sessions and stopping containers");
    systemd::notify_stopping();
    background.abort();
    registry.shutdown().await;
    app.sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, app.sessions.wait())
        .await
        .is_err()
    {
        log::warn!("some sessions did not close in time");
    }
    log::info!("stopped");
    Ok(())
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

/// Expiry sweeps, status lines and the watchdog.
async fn background_work(app: Arc<App>) {
    let mut sweep = tokio::time::interval(app.registry.sweep_interval());
    let mut status = tokio::time::interval(STATUS_INTERVAL);
    let watchdog_every = systemd::watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                if !app.registry.is_reconciled() {
                    match app.registry.reconcile().await {
                        Ok(()) => log::info!("Docker answers again: reconciled"),
                        Err(e) => {
                            log::debug!("reconcile skipped: {e}");
                            continue;
                        }
                    }
                }
                app.registry.expire().await;
                if let Err(e) = app.registry.tidy().await {
                    log::debug!("tidy skipped: {e}");
                }
            }
            _ = status.tick() => {
                let now = app.registry.snapshot();
                systemd::notify_status(&format!(
                    "{} instances ({} running), {} sessions, {} building ({} queued)",
                    now.running + now.stopped,
                    now.running,
                    app.sessions.len(),
                    now.building,
                    now.queued,
                ));
            }
            _ = watchdog.tick(), if watchdog_every.is_some() => systemd::notify_watchdog(),
        }
    }
}
