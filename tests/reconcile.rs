//! A server answers while it reconciles (issue 25 item 5, docs/API.md
//! "While reconciling"): with many records on disk, `/health`, a live
//! instance's terminal and its `POST /spec` work before the reconcile with
//! Docker has finished, and `ua status` says it reconciles; a new spec and
//! `ua list` wait for it and then hear `503` with `Retry-After` (an error);
//! afterwards the records of vanished containers are gone.
//! The reconcile is held at its container list by a proxy in front of the
//! real Docker daemon, so "before it finished" is certain, not a race.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Records of containers that are gone, beside the one live instance.
const VANISHED: usize = 2000;

/// Docker's socket behind a proxy that can hold every container listing
/// (the reconcile's first call) until released; everything else passes.
struct HeldLists {
    /// Runs the proxy for as long as it lives.
    _runtime: tokio::runtime::Runtime,
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl HeldLists {
    fn new(path: &Path) -> HeldLists {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let open = Arc::new(tokio::sync::watch::Sender::new(true));
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(path).unwrap()
        };
        let gate = open.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, gate.subscribe()));
            }
        });
        HeldLists {
            _runtime: runtime,
            open,
        }
    }

    fn hold(&self) {
        self.open.send_replace(false);
    }

    fn release(&self) {
        self.open.send_replace(true);
    }
}

/// Passes one connection through, holding a request for
/// `/containers/json` while the gate is shut.
async fn forward(client: tokio::net::UnixStream, mut open: tokio::sync::watch::Receiver<bool>) {
    const NEEDLE: &[u8] = b"/containers/json";
    let Ok(daemon) = tokio::net::UnixStream::connect("/var/run/docker.sock").await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_daemon, mut to_daemon) = daemon.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_daemon, &mut to_client).await;
    });
    let mut buffer = vec![0; 64 * 1024];
    // The end of the last read: a request line cut in two is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from_client.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tail.extend_from_slice(&buffer[..n]);
        if tail.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            let _ = open.wait_for(|open| *open).await;
        }
        tail.drain(..tail.len().saturating_sub(NEEDLE.len() - 1));
        if to_daemon.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to_daemon.shutdown().await;
    let _ = back.await;
}

/// Writes `n` records like `live`'s whose containers never existed.
fn write_vanished(records: &Path, live: &serde_json::Value, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("{:016x}{:016x}", 0x7e57_0000_0000_0000u64 + i as u64, i);
            let mut record = live.clone();
            record["instanceID"] = id.clone().into();
            record["specID"] = format!("vanished/{i}").into();
            record["image"] = format!("ua/{id}").into();
            record["containerId"] = format!("{id}{id}").into();
            std::fs::write(records.join(format!("{id}.json")), record.to_string()).unwrap();
            id
        })
        .collect()
}

/// The close code a websocket gets before any setup.
async fn close_code_of(url: &str) -> u16 {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

fn health(server: &TestServer) -> serde_json::Value {
    let health = server.http("GET", "/health", "");
    assert_eq!(health.status, 200, "{}", health.body);
    health.json()
}

#[test]
fn a_server_with_many_records_answers_while_it_reconciles() {
    docker_ready();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = socket_dir.path().join("docker.sock");
    let lists = HeldLists::new(&socket);
    let docker_host = format!("unix://{}", socket.display());
    let mut server = TestServer::start_with_env(&[], &[("DOCKER_HOST", &docker_host)]);
    let spec = server.demo_spec("live");
    let id = server.instance(&spec);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("kept=before-restart").await;
    });
    assert!(server.terminate().success());
    let records = server.state_dir().join("instances");
    let live = server.records().pop().expect("the live instance's record");
    let vanished = write_vanished(&records, &live, VANISHED);

    // Up again with every container listing held: the reconcile cannot end.
    lists.hold();
    let settled = server.spawn_reconciling();
    let first = health(&server);
    assert_eq!(first["records"], "reconciling", "{first}");
    assert_eq!(first["instances"], VANISHED + 1, "{first}");

    // A new spec waits for the reconcile (bounded), then hears 503.
    let new_spec = server.demo_spec("new-while-reconciling");
    let port = server.port;
    let waiting = std::thread::spawn(move || http(port, "POST", "/spec", &[], new_spec.as_bytes()));
    // So does `ua list` (which containers run is not known yet); `ua status` answers.
    let admin = |verb: &str| {
        std::process::Command::new(BINARY)
            .args([verb, "--json", "--state-dir"])
            .arg(server.state_dir())
            .output()
            .unwrap()
    };
    let listing = std::thread::spawn({
        let state_dir = server.state_dir();
        move || {
            std::process::Command::new(BINARY)
                .args(["list", "--state-dir"])
                .arg(state_dir)
                .output()
                .unwrap()
        }
    });
    let status: serde_json::Value = serde_json::from_slice(&admin("status").stdout).unwrap();
    assert_eq!(status["records"], "reconciling", "{status}");

    // The live instance: its spec, its page and its very shell.
    assert_eq!(server.instance(&spec), id, "the same instance at once");
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo \"var=$kept\"").await;
        assert!(
            out.contains("var=before-restart"),
            "not the same shell: {out}"
        );
    });
    // A record whose container is gone answers as a vanished one: 4003.
    let url = server.ws_url(&vanished[0]);
    assert_eq!(rt.block_on(close_code_of(&url)), 4003);
    let refused = waiting.join().unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("reconciling"),
        "{}",
        refused.body
    );
    let listed = listing.join().unwrap();
    assert!(
        !listed.status.success(),
        "ua list answered while reconciling"
    );
    let said = String::from_utf8_lossy(&listed.stderr);
    assert!(said.contains("reconciling"), "{said}");
    assert_eq!(health(&server)["records"], "reconciling");
    assert!(settled.try_recv().is_err(), "reconciled while held");

    lists.release();
    settled
        .recv_timeout(Duration::from_secs(120))
        .expect("the reconcile ends once Docker lists");
    assert_eq!(health(&server)["records"], "ok");
    let status: serde_json::Value = serde_json::from_slice(&admin("status").stdout).unwrap();
    assert_eq!(status["records"], "ok", "{status}");
    let left: Vec<String> = server
        .records()
        .iter()
        .map(|r| r["instanceID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![id.clone()], "only the live instance is left");
    assert_eq!(health(&server)["instances"], 1);
    let made = server.instance(&server.demo_spec("new-after-reconciling"));
    assert_ne!(made, id);
}
