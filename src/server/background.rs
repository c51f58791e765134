//! Work the server does by itself, beside requests: the liveness task that
//! feeds systemd's watchdog and status line, the sweep (the reconcile at
//! start, expiry, tidy) and the warm pool's refill (`pool::run`).
//! They are separate tasks so that a slow Docker can never starve the
//! watchdog: liveness touches no Docker call.

use std::sync::Arc;
use std::time::Duration;

use crate::instance::registry::Registry;
use crate::server::http::App;
use crate::transport::systemd;

/// How often the systemd status line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// The longest a reconcile or tidy may take in the sweep; what it did not
/// finish is done by a later sweep.
pub const SWEEP_STEP_LIMIT: Duration = Duration::from_secs(60);

/// Starts the liveness, sweep, warm-pool and trouble tasks; abort them at shutdown.
pub fn spawn(app: Arc<App>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(liveness(app.clone())),
        tokio::spawn(crate::instance::warm::run(app.registry.clone())),
    ];
    tasks.extend(crate::instance::trouble::spawn(app.registry.clone()));
    tasks.push(tokio::spawn(sweep(app)));
    tasks
}

/// Feeds the watchdog and sets the status line. Each tick proves that the
/// runtime schedules tasks and that the registry answers (its tables are
/// locked for the snapshot); it never waits for Docker.
async fn liveness(app: Arc<App>) {
    let watchdog = systemd::watchdog_interval();
    let every = watchdog.map_or(STATUS_INTERVAL, |w| w.min(STATUS_INTERVAL));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = app.registry.snapshot();
        if watchdog.is_some() {
            systemd::notify_watchdog();
        }
        if last_status.is_none_or(|at| at.elapsed() >= STATUS_INTERVAL) {
            last_status = Some(tokio::time::Instant::now());
            systemd::notify_status(&format!(
                "{} instances ({} running), {} sessions, {} building ({} queued)",
                now.running + now.stopped,
                now.running,
                app.sessions.len(),
                now.building,
                now.queued,
            ));
        }
    }
}

/// Reconcile (at once at start, and again while it has not run to the
/// end), expiry and tidy, every `Registry::sweep_interval`. Every step is
/// bounded; expired instances are removed each in its own task, so one
/// slow removal holds no other.
async fn sweep(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.registry.sweep_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut at_start = true;
    loop {
        tick.tick().await;
        if !app.registry.is_reconciled() {
            let done = reconcile(&app.registry, at_start).await;
            at_start = false;
            if !done {
                continue;
            }
            let _ =
                tokio::time::timeout(SWEEP_STEP_LIMIT, app.registry.warn_of_root_checks()).await;
        }
        app.registry.expire();
        match tokio::time::timeout(SWEEP_STEP_LIMIT, app.registry.tidy()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("tidy skipped: {e}"),
            Err(_) => log::warn!("tidy took over {SWEEP_STEP_LIMIT:?}; retried later"),
        }
    }
}

/// One bounded reconcile; whether it ran to the end.
async fn reconcile(registry: &Registry, at_start: bool) -> bool {
    match tokio::time::timeout(SWEEP_STEP_LIMIT, registry.reconcile()).await {
        Ok(Ok(())) if at_start => true,
        Ok(Ok(())) => {
            log::info!("Docker answers again: reconciled");
            true
        }
        Ok(Err(e)) if at_start => {
            log::error!(
                "could not reconcile with Docker at start ({e}); instances are kept as \
                 recorded and reconciled when Docker answers"
            );
            false
        }
        Ok(Err(e)) => {
            log::debug!("reconcile skipped: {e}");
            false
        }
        Err(_) => {
            log::warn!("reconcile took over {SWEEP_STEP_LIMIT:?}; retried later");
            false
        }
    }
}
