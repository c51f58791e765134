//! What needs no Docker, tested on the server in-process
//! (`ua::server::serve` on 127.0.0.1:0): routing, CORS, body limits, the
//! header and body timers (on tokio's paused clock, so no test waits out
//! real seconds), and shutdown. No assignment is ever built here: Docker,
//! if present, only sees an empty state directory's reconcile.

mod common;

use std::time::Duration;

use common::http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use ua::config::ServeConfig;
use ua::crypto::seal::Keyring;
use ua::instance::store::Store;
use ua::transport::Listener;

/// How long a client may take to send its headers (docs/USING.md: a slow client
/// cannot pin a connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take (docs/USING.md, "HTTP API in brief": `408`).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A config on fresh temporary directories.
fn config(dir: &tempfile::TempDir, extra: &[&str]) -> ServeConfig {
    let state = dir.path().join("state");
    let assignments = dir.path().join("assignments");
    std::fs::create_dir_all(&assignments).unwrap();
    let mut args = vec![
        "--state-dir",
        state.to_str().unwrap(),
        "--assignments",
        assignments.to_str().unwrap(),
        "--browser-terminal",
        "false",
    ];
    args.extend_from_slice(extra);
    ServeConfig::from_args(&args).unwrap()
}

fn keys() -> Keyring {
    Keyring::parse(&ua::crypto::seal::keygen()).unwrap()
}

/// The server on its own runtime, for the blocking test client.
struct InProcess {
    port: u16,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start(extra: &[&str]) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir, extra);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let store = Store::open(&config.state_dir).unwrap();
        let served = runtime.spawn(ua::server::serve(
            vec![Listener::Tcp(listener)],
            config,
            keys(),
            store,
            shutdown.clone(),
        ));
        InProcess {
            port,
            shutdown,
            served: Some(served),
            runtime,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> common::Response {
        http(self.port, "GET", path, &[], b"")
    }

    /// Cancels the token and waits for `serve` to return.
    fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = self.served.take().expect("stopped once");
        self.runtime.block_on(served).expect("serve did not panic")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if self.served.is_some() {
            let _ = self.stop();
        }
    }
}

/// The server in the test's own (paused-clock) runtime.
async fn serve_here(dir: &tempfile::TempDir) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = config(dir, &[]);
    let store = Store::open(&config.state_dir).unwrap();
    tokio::spawn(ua::server::serve(
        vec![Listener::Tcp(listener)],
        config,
        keys(),
        store,
        CancellationToken::new(),
    ));
    port
}

/// Reads until the server closes: the answer's status, or 0 for
/// a close with no answer.
async fn exchange(stream: &mut TcpStream) -> u16 {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn unknown_routes_and_methods_get_404_and_405() {
    let server = InProcess::start(&[]);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.get("/spec").status, 405);
    assert_eq!(server.get("/instance/0123/ws").status, 404);
    let put = http(server.port, "PUT", "/spec", &[], b"");
    assert_eq!(put.status, 405);
    assert!(put.json()["error"].is_string(), "{}", put.body);
}

/// Requests whose paths once panicked a handler (a slice out of bounds)
/// get a plain answer, and no panic is counted.
#[test]
fn odd_instance_paths_answer_without_a_panic() {
    let server = InProcess::start(&[]);
    for path in [
        "/instance/ws",
        "/instance/",
        "/instance//ws",
        "/instance/x/ws",
    ] {
        let response = server.get(path);
        assert!(
            matches!(response.status, 400 | 404),
            "{path}: {} {}",
            response.status,
            response.body
        );
    }
    let metrics = server.get("/metrics").body;
    assert!(metrics.contains("\nua_panics_total 0\n"), "{metrics}");
}

#[test]
fn cors_preflight_answers_allowed_origins_only() {
    let server = InProcess::start(&["--allowed-origins", "https://pl.example.edu"]);
    let preflight = http(
        server.port,
        "OPTIONS",
        "/spec",
        &[("Origin", "https://pl.example.edu")],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://pl.example.edu")
    );
    let foreign = http(
        server.port,
        "POST",
        "/spec",
        &[("Origin", "https://evil.example")],
        b"x",
    );
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    // The terminals' list and close (the browser's tabs) answer the page too.
    let gone = "0".repeat(32);
    for (method, path) in [
        ("GET", format!("/instance/{gone}/terminals")),
        ("DELETE", format!("/instance/{gone}/terminals/2")),
    ] {
        let answer = http(
            server.port,
            method,
            &path,
            &[("Origin", "https://pl.example.edu")],
            b"",
        );
        assert_eq!(answer.status, 404, "{method} {path}");
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some("https://pl.example.edu"),
            "{method} {path}"
        );
    }
}

#[test]
fn a_body_over_one_mebibyte_gets_413() {
    let server = InProcess::start(&[]);
    let response = http(server.port, "POST", "/spec", &[], &[b'A'; 2 << 20]);
    assert_eq!(response.status, 413);
    // Under the limit the body is read (and is no sealed spec): 400.
    let small = http(server.port, "POST", "/spec", &[], b"this is not base64!");
    assert_eq!(small.status, 400, "{}", small.body);
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_cannot_pin_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = serve_here(&dir).await;
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Half a request line, then nothing: the server gives up on the headers.
    slow.write_all(b"POST /spec HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    // Meanwhile others are served.
    let mut other = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    other
        .write_all(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(exchange(&mut other).await, 404);

    // Well before hyper's own default (30 s): ua's limit is the one that acts.
    let closed = tokio::time::timeout(HEADER_TIMEOUT * 2, exchange(&mut slow)).await;
    assert!(closed.is_ok(), "the server held a header-less connection");
    assert!(
        started.elapsed() >= HEADER_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_coming_gets_408() {
    let dir = tempfile::tempdir().unwrap();
    let port = serve_here(&dir).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            b"POST /spec HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nonly ten..",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let status = tokio::time::timeout(BODY_TIMEOUT * 4, exchange(&mut stream)).await;
    assert_eq!(status.ok(), Some(408));
    assert!(started.elapsed() >= BODY_TIMEOUT, "{:?}", started.elapsed());
}

#[test]
fn serve_returns_on_shutdown_and_stops_listening() {
    let mut server = InProcess::start(&[]);
    assert_eq!(server.get("/nope").status, 404);
    server.stop().expect("serve ends cleanly");
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err());
}

/// Every HTTP answer has a write deadline (issue 20, item 2): a client that
/// pipelines requests and never reads its answers (a 4 KiB receive buffer)
/// is dropped once ua's writes have waited 30 s, instead of holding the
/// connection, its buffers and its slot for as long as it likes.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_answers_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let port = serve_here(&dir).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    const REQUESTS: usize = 3000;
    tokio::spawn(async move {
        let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(REQUESTS);
        // The server stops reading once its answers back up, then drops us.
        let _ = writer.write_all(&request).await;
    });
    tokio::time::sleep(ua::transport::write_deadline::WRITE_DEADLINE * 3).await;
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answers.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), read_all)
        .await
        .expect("the server ended the connection");
    let answered = String::from_utf8_lossy(&answers)
        .matches("HTTP/1.1 200")
        .count();
    // Without the deadline all but the last are answered once it reads.
    assert!(
        answered < REQUESTS / 2,
        "all {answered} answers were kept waiting for the client"
    );
}
