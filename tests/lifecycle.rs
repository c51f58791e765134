//! Instances living and dying (docs/API.md, "Terminal websocket" and
//! "Lifecycle"): reattach within the grace period, idle close, expiry, crash
//! safety, reconcile, the state lock and SIGTERM. Short durations come from
//! the flags.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn a_reload_within_the_grace_lands_in_the_same_shell_with_replay() {
    let server = TestServer::start_with(&["--reattach-grace", "30s"]);
    let id = server.instance(&server.demo_spec("reattach"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("export X=1; echo before-$((6*7))").await;
        term.close().await;
        let mut again = Term::connect(&server.ws_url(&id)).await;
        // Recent output is replayed first.
        again.wait_for("before-42").await;
        let out = again.run("echo x=$X").await;
        assert!(out.contains("x=1"), "{out}");
    });
}

#[test]
fn after_the_grace_the_container_stops_and_a_fresh_shell_keeps_the_files() {
    let server = TestServer::start_with(&["--reattach-grace", "1s"]);
    let id = server.instance(&server.demo_spec("grace"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("export X=1; echo saved > work.txt").await;
        term.close().await;
    });
    eventually(
        Duration::from_secs(15),
        "the container stopped after the grace",
        || server.containers() == vec![format!("ua-{id} exited")],
    );
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo x=$X; cat work.txt").await;
        assert!(out.contains("x=\r\n") && out.contains("saved"), "{out}");
    });
}

#[test]
fn an_idle_session_is_closed_with_4002() {
    let server = TestServer::start_with(&["--idle-timeout", "2s"]);
    let id = server.instance(&server.demo_spec("idle"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.wait_for("$").await;
        // `["idle_warning", seconds]` comes first (docs/API.md); a key
        // starts a new idle stretch, which warns again before the close.
        let mut warnings = 0;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), term.socket.next())
                .await
                .expect("a frame within 15 s");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(ServerMessage::IdleWarning(left)) = ServerMessage::decode(&text) {
                        assert!(left <= 1, "{text}");
                        warnings += 1;
                        if warnings == 1 {
                            term.send_keys(" ").await;
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(4002));
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close: {other:?}"),
            }
        }
        assert_eq!(warnings, 2, "one warning per idle stretch");
    });
}

#[test]
fn instances_expire_after_their_last_session_and_are_removed() {
    let server = TestServer::start_with(&["--instance-expiry", "3s", "--reattach-grace", "1s"]);
    let sealed = server.demo_spec("expire");
    let id = server.instance(&sealed);
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("true").await;
        // While a session is attached, nothing expires.
        tokio::time::sleep(Duration::from_secs(5)).await;
        term.run("true").await;
        term.close().await;
    });
    assert_eq!(server.records().len(), 1, "kept while in use");
    eventually(Duration::from_secs(20), "the instance expired", || {
        server.http("GET", &format!("/instance/{id}/ws"), "").status == 404
    });
    eventually(
        Duration::from_secs(10),
        "its container, image and record are gone",
        || {
            server.containers().is_empty()
                && server.images().is_empty()
                && server.records().is_empty()
        },
    );
    assert_ne!(server.instance(&sealed), id, "the spec builds anew");
}

#[test]
fn an_unused_instance_expires_from_its_creation() {
    let server = TestServer::start_with(&["--instance-expiry", "2s"]);
    let id = server.instance(&server.demo_spec("unused"));
    eventually(
        Duration::from_secs(15),
        "the unused instance expired",
        || server.http("GET", &format!("/instance/{id}/ws"), "").status == 404,
    );
}

#[test]
fn a_second_server_on_the_state_directory_refuses_to_start() {
    let server = TestServer::start();
    let mut second = server.command();
    let out = second
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("locked"), "{message}");
    assert!(
        message.contains(&server.state_dir().display().to_string()),
        "{message}"
    );
    assert!(message.contains(&server.pid().to_string()), "{message}");
}

#[test]
fn sigterm_closes_sessions_with_1001_leaves_terminals_running_and_exits_0() {
    let mut server = TestServer::start();
    let id = server.instance(&server.demo_spec("sigterm"));
    let rt = runtime();
    let mut term = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo in-session").await;
        term
    });
    let status = server.terminate();
    let (ended, _) = rt.block_on(term.until_closed(Duration::from_secs(10)));
    assert_eq!(ended, Ended::Closed(1001));
    assert!(status.success(), "exit status {status:?}");
    // The terminal is the container's main process: it waits for the next
    // server (tests/restart.rs reattaches to it).
    assert_eq!(server.containers(), vec![format!("ua-{id} running")]);
    assert_eq!(server.records().len(), 1);
    // Back up: the same spec finds the same instance.
    server.spawn();
    assert_eq!(server.instance(&server.demo_spec("sigterm")), id);
}

#[test]
fn reconcile_on_start_drops_orphans_and_stops_idle_containers() {
    let mut server = TestServer::start_with(&["--reattach-grace", "1s"]);
    let kept = server.instance(&server.demo_spec("kept"));
    let lost = server.instance(&server.demo_spec("lost"));
    server.kill();
    // A running container with no session, a record whose container vanished,
    // and a container and image no record owns.
    docker(&["start", &format!("ua-{kept}")]);
    docker(&["rm", "-f", &format!("ua-{lost}")]);
    let state = server.state_dir().canonicalize().unwrap();
    let labels = [
        "--label".to_string(),
        "ua.owned=true".to_string(),
        "--label".to_string(),
        format!("ua.state-dir={}", state.display()),
        "--label".to_string(),
        "ua.instance=ffffffffffffffffffffffffffffffff".to_string(),
    ];
    let mut create = vec!["create", "--network", "none", "--name", "ua-orphan-test"];
    create.extend(labels.iter().map(String::as_str));
    create.push("ua-busybox:latest");
    let orphan = docker(&create);
    assert!(!orphan.is_empty(), "the orphan container was created");

    server.spawn();
    // A running container may be a terminal that outlived the last server:
    // it gets the reattach grace, then it is stopped.
    eventually(
        Duration::from_secs(60),
        "the idle container is stopped after the grace",
        || server.containers() == vec![format!("ua-{kept} exited")],
    );
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["instanceID"], kept.as_str());
    assert_eq!(server.images(), vec![format!("ua/{kept}")]);
    assert_eq!(
        server
            .http("GET", &format!("/instance/{lost}/ws"), "")
            .status,
        404
    );
    assert_eq!(server.instance(&server.demo_spec("kept")), kept);
}

/// A pseudo-random number below `n` (no need for a crate here).
fn random_below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = nanos ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x % n
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_corrupts_nothing() {
    // A short grace: a terminal that outlives a kill stops soon after.
    let mut server = TestServer::start_with(&["--reattach-grace", "2s"]);
    let keep_spec = server.demo_spec("survivor");
    let keep = server.instance(&keep_spec);
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&keep)).await;
        term.run("echo precious > data.txt").await;
        term.close().await;
    });
    for round in 0..8 {
        // Busy work in the background: builds, attaches and cleans.
        let port = server.port;
        let specs: Vec<String> = (0..3)
            .map(|i| server.demo_spec(&format!("churn-{round}-{i}")))
            .collect();
        let cleaned = server.demo_spec(&format!("churn-{}-0", round.max(1) - 1));
        let keep_url = server.ws_url(&keep);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                for sealed in specs.iter().chain([&cleaned]) {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let _ = std::panic::catch_unwind(|| {
                        http(port, "POST", "/spec", &[], sealed.as_bytes())
                    });
                    let _ = std::panic::catch_unwind(|| {
                        http(
                            port,
                            "POST",
                            "/spec/clean?async=false",
                            &[],
                            cleaned.as_bytes(),
                        )
                    });
                    rt.block_on(async {
                        if let Ok(Ok((socket, _))) = tokio::time::timeout(
                            Duration::from_secs(2),
                            tokio_tungstenite::connect_async(&keep_url),
                        )
                        .await
                        {
                            drop(socket);
                        }
                    });
                }
            })
        };
        std::thread::sleep(Duration::from_millis(50 + random_below(1500)));
        server.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = worker.join();

        server.spawn();
        // Every record is whole and has its container; every container its record.
        let records = server.records();
        let containers = server.containers();
        for record in &records {
            let name = format!("ua-{}", record["instanceID"].as_str().unwrap());
            assert!(
                containers
                    .iter()
                    .any(|c| c.starts_with(&format!("{name} "))),
                "round {round}: record without container {name}: {containers:?}"
            );
        }
        // A start or create in flight at the daemon when ua died may land
        // after the restart's reconcile: the periodic tidy puts it right.
        eventually(
            Duration::from_secs(30),
            "every container has a record and none runs",
            || {
                let containers = server.containers();
                containers.len() == records.len()
                    && containers
                        .iter()
                        .all(|c| c.ends_with(" exited") || c.ends_with(" created"))
            },
        );
    }
    // The survivor kept its ID and its files through every kill.
    assert_eq!(server.instance(&keep_spec), keep);
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&keep)).await;
        let out = term.run("cat data.txt").await;
        assert!(out.contains("precious"), "{out}");
    });
}
