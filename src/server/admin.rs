//! The admin socket and its answers (docs/API.md, "Admin socket"): `ua
//! status`, `ua list`, `ua clean` (`admin_cli`) talk to the running server over
//! `<state-dir>/admin.sock` (mode 0660, group `ua` when it exists), never
//! over the public listener. One JSON request line, one JSON answer line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::instance::usage::Sampler;
use crate::protocol::admin::{Request, SOCKET};
use crate::server::http::App;

/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;
/// A client must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the admin socket: a stale one is replaced (the state-directory
/// lock says no other server uses it), mode 0660, group `ua` if it exists.
pub fn bind(state_dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let path = state_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("ua") {
        if let Err(e) = nix::unistd::chown(&path, None, Some(group.gid)) {
            log::warn!("admin socket {}: group ua not set: {e}", path.display());
        }
    }
    Ok(listener)
}

/// Answers admin clients until the server shuts down.
pub async fn serve(listener: tokio::net::UnixListener, app: Arc<App>) {
    let sampler = Arc::new(Sampler::default());
    loop {
        let stream = tokio::select! {
            () = app.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!("admin socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, sampler) = (app.clone(), sampler.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader =
                tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST as u64));
            let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
            let answer = match (read, serde_json::from_str::<Request>(&line)) {
                (Ok(Ok(_)), Ok(request)) => answer(&app, &sampler, request).await,
                _ => {
                    json!({"error": "not a request: send one JSON line such as {\"command\":\"status\"}"})
                }
            };
            let mut text = answer.to_string();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

async fn answer(app: &App, sampler: &Sampler, request: Request) -> Value {
    match request {
        Request::Status => {
            let now = app.registry.snapshot();
            let probe = app.health.probe().await;
            let config = app.config.load();
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "node": config.node_id,
                "instances": {
                    "running": now.running,
                    "stopped": now.stopped,
                    "building": now.building,
                    "queued": now.queued,
                },
                "pool": now.pool.iter().map(|(a, n)| (a.clone(), json!(n))).collect::<serde_json::Map<String, Value>>(),
                "sessions": app.sessions.len(),
                "docker": probe.docker.err().unwrap_or_else(|| "ok".into()),
                "stateDir": probe.state_dir.err().unwrap_or_else(|| "ok".into()),
                "records": app.registry.records_state(),
                "limits": {
                    "maxInstances": config.max_instances,
                    "maxRunning": config.max_running,
                    "maxBuilds": config.max_builds,
                    "maxBuildQueue": config.max_build_queue,
                    "warm": config.warm,
                    "memoryMB": config.memory_mb,
                    "pidsLimit": config.pids_limit,
                    "cpus": config.cpus,
                    "diskMB": config.disk_mb,
                    "instanceExpiry": humantime::format_duration(config.instance_expiry).to_string(),
                    "idleTimeout": humantime::format_duration(config.idle_timeout).to_string(),
                    "reattachGrace": humantime::format_duration(config.reattach_grace).to_string(),
                },
            })
        }
        Request::List { usage } => match app.registry.wait_reconciled().await {
            // Which containers run is known only then.
            Ok(()) if usage => json!({ "instances": sampler.gather(&app.registry).await }),
            Ok(()) => json!({ "instances": app.registry.list() }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        Request::Clean {
            spec_id: Some(spec_id),
            instance: None,
        } => {
            let cleaned = app.registry.clean(&spec_id).await;
            log::info!(ua_spec = spec_id; "admin: clean of spec {spec_id:?}: {cleaned} removed");
            json!({ "cleaned": cleaned })
        }
        Request::Clean {
            spec_id: None,
            instance: Some(handle),
        } => match app.registry.specs_by_handle(&handle).as_slice() {
            [] => json!({ "error": format!("no instance has the handle {handle}") }),
            [spec_id] => {
                let cleaned = app.registry.clean(spec_id).await;
                log::info!(
                    ua_instance = handle, ua_spec = spec_id;
                    "admin: clean of instance {handle}: {cleaned} removed"
                );
                json!({ "cleaned": cleaned })
            }
            specs => json!({
                "error": format!("the handle {handle} names {} instances; clean by --spec-id", specs.len())
            }),
        },
        Request::Clean { .. } => json!({ "error": "give one of --spec-id and --instance" }),
    }
}
