//! `ua serve --listen unix:PATH` (the socket a reverse proxy on the same
//! host connects to; ua.socket's /run/ua/http.sock is the same socket made
//! by systemd): HTTP and a terminal websocket on it, its mode, a stale
//! socket file replaced, a live one or a plain file left alone, and the
//! file removed when ua stops.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Types a line into the instance's terminal over a websocket on the unix
/// socket and waits for `expect` in its output.
async fn terminal_over_unix_socket(socket: &Path, instance_id: &str, line: &str, expect: &str) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let url = format!("ws://localhost/instance/{instance_id}/ws");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("the websocket upgrade on the unix socket");
    let stdin = ClientMessage::Stdin(format!("{line}\r")).encode();
    ws.send(Message::text(stdin)).await.unwrap();
    let mut screen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message.expect("a frame") {
                if let Some(ServerMessage::Stdout(out)) = ServerMessage::decode(&text) {
                    screen.push_str(&out);
                    if screen.contains(expect) {
                        return true;
                    }
                }
            }
        }
        false
    })
    .await;
    assert_eq!(read, Ok(true), "{expect:?} not on the screen:\n{screen}");
    let _ = ws.close(None).await;
}

/// `ua serve` with `--listen unix:<socket>` on fresh directories, expected
/// to refuse to start: its stderr.
fn refused_start(server: &TestServer, socket: &Path) -> String {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(BINARY)
        .arg("serve")
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--key-file")
        .arg(server.key_file())
        .arg("--assignments")
        .arg(server.assignments())
        .arg("--state-dir")
        .arg(state.path())
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "ua started on {socket:?}:\n{stderr}");
    stderr
}

#[test]
fn ua_serves_http_and_a_terminal_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("http.sock");
    let listen = format!("unix:{}", socket.display());
    let web = repo().join("target/web");
    assert!(
        web.join("index.html").is_file(),
        "{} is missing: run scripts/build-web (scripts/test does)",
        web.display()
    );
    let mut server = TestServer::start_with(&[
        "--listen",
        &listen,
        "--web-dir",
        &web.display().to_string(),
        "--allowed-origins",
        "https://pl.example",
    ]);
    // Behind a proxy ua cannot know its public origin, and a unix socket
    // gives no default: ua says so when that leaves its own pages out.
    let listening = format!("listening on the unix socket {}", socket.display());
    let has_start_lines =
        |log: &str| log.contains(&listening) && log.contains("set --public-origin");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_start_lines(&server.log()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(has_start_lines(&server.log()), "{}", server.log());

    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);

    let health = http_unix(&socket, "GET", "/health", &[], b"");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["docker"], "ok", "{}", health.body);
    let metrics = http_unix(&socket, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("ua_"), "{}", metrics.body);

    let spec = server.demo_spec("unix-listen");
    let created = http_unix(&socket, "POST", "/spec", &[], spec.as_bytes());
    assert_eq!(created.status, 200, "POST /spec: {}", created.body);
    let instance_id = created.json()["instanceID"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(terminal_over_unix_socket(
        &socket,
        &instance_id,
        "echo unix-$((6*7))",
        "unix-42",
    ));

    // A clean stop takes the socket file away.
    let status = server.terminate();
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(
        !socket.exists(),
        "the socket file outlived the server:\n{}",
        server.log()
    );
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("http.sock");
    // What a killed server leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let listen = format!("unix:{}", socket.display());
    let server = TestServer::start_with(&["--listen", &listen]);
    assert_eq!(http_unix(&socket, "GET", "/health", &[], b"").status, 200);

    // A second server on the same socket is refused, and the first keeps it.
    let stderr = refused_start(&server, &socket);
    assert!(stderr.contains("another server listens"), "{stderr}");
    assert_eq!(http_unix(&socket, "GET", "/health", &[], b"").status, 200);

    // A file that is not a socket is never removed.
    let file = dir.path().join("notes.txt");
    write(&file, "keep me");
    let stderr = refused_start(&server, &file);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn listen_refuses_what_is_neither_an_address_nor_a_path() {
    for value in ["unix:relative.sock", "localhost:8000"] {
        let out = Command::new(BINARY)
            .args(["serve", "--listen", value])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}: {stderr}");
        assert!(
            stderr.contains("unix:/PATH") || stderr.contains("absolute path"),
            "{stderr}"
        );
    }
}
