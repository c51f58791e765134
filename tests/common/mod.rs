//! The test fixture: a real `ua serve` process on a loopback port, a real
//! Docker daemon, the offline busybox base image, a plain HTTP client and a
//! real websocket client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
pub use ua::protocol::terminado::{ClientMessage, ServerMessage};

pub const BINARY: &str = env!("CARGO_BIN_EXE_ua");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails loudly when there is no Docker daemon, and builds the base image once.
pub fn docker_ready() {
    static READY: Once = Once::new();
    READY.call_once(|| {
        let info = Command::new("docker").arg("info").output();
        match info {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "these tests need a running Docker daemon; `docker info` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("these tests need the docker CLI and daemon: {e}"),
        }
        let status = Command::new(repo().join("scripts/build-busybox-base"))
            .status()
            .expect("scripts/build-busybox-base runs");
        assert!(status.success(), "the busybox base image did not build");
    });
    agent();
}

/// The static agent every server of the tests puts into its containers
/// (`UA_AGENT`, else built once with scripts/build-agent and set as
/// `UA_AGENT` for every server this process starts).
pub fn agent() -> PathBuf {
    static AGENT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    AGENT
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("UA_AGENT") {
                return PathBuf::from(path);
            }
            let out = Command::new(repo().join("scripts/build-agent"))
                .output()
                .expect("scripts/build-agent runs");
            assert!(
                out.status.success(),
                "scripts/build-agent: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            std::env::set_var("UA_AGENT", &path);
            path
        })
        .clone()
}

/// Builds the Debian base image of the examples once per test process
/// (scripts/build-debian-base: a no-op when `ua-debian:bookworm` exists, so
/// a cached image is reused), failing loudly when it cannot be built.
pub fn debian_base_ready() {
    static READY: Once = Once::new();
    READY.call_once(|| {
        docker_ready();
        let out = Command::new(repo().join("scripts/build-debian-base"))
            .output()
            .expect("scripts/build-debian-base runs");
        assert!(
            out.status.success(),
            "the Debian base image ua-debian:bookworm did not build (it needs mmdebstrap \
             and Debian's archive):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Runs `ua VERB --key-file KEY` with `input` on its standard input.
pub fn ua_with_input(verb: &str, key: &Path, input: &str) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args([verb, "--key-file"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses early (a bad key file) exits without reading.
    match child.stdin.take().unwrap().write_all(input.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// A new key file (mode 0600) at `path`.
pub fn write_key_file(path: &Path) {
    let out = Command::new(BINARY).arg("keygen").output().unwrap();
    std::fs::write(path, &out.stdout).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes a file, creating its directories.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub struct ServerOptions {
    pub args: Vec<String>,
}

/// A `ua serve` process with its own key, state directory and assignments.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server; `args` are extra flags such as `--reattach-grace 2s`.
    pub fn start_with(args: &[&str]) -> TestServer {
        TestServer::start_with_env(args, &[])
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::start_keyed(args, env, None)
    }

    /// Starts a server that uses a copy of another's key file (several nodes
    /// share their keys).
    pub fn start_sharing_key(args: &[&str], key_file: &Path) -> TestServer {
        TestServer::start_keyed(args, &[], Some(key_file))
    }

    fn start_keyed(args: &[&str], env: &[(&str, &str)], key_from: Option<&Path>) -> TestServer {
        docker_ready();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        match key_from {
            Some(from) => {
                std::fs::copy(from, &key).unwrap();
            }
            None => {
                let out = Command::new(BINARY).arg("keygen").output().unwrap();
                std::fs::write(&key, &out.stdout).unwrap();
            }
        }
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let assignments = dir.path().join("assignments");
        copy_dir(&repo().join("templates/demo"), &assignments.join("demo"));
        let mut server = TestServer {
            dir,
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        server.spawn();
        server
    }

    /// Copies `templates/<group>` of the repository into the assignments.
    pub fn add_templates(&self, group: &str) {
        copy_dir(
            &repo().join("templates").join(group),
            &self.assignments().join(group),
        );
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn assignments(&self) -> PathBuf {
        self.dir.path().join("assignments")
    }

    /// Replaces the extra flags of the next `spawn`.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
    }

    /// Starts the process (again) on the same directories.
    /// Starts the server and waits until it listens and has reconciled its
    /// records with Docker (or found Docker away): what a test finds after
    /// it is settled.
    pub fn spawn(&mut self) {
        let settled = self.spawn_reconciling();
        if settled.recv_timeout(Duration::from_secs(90)).is_err() {
            panic!("ua serve did not reconcile; its log:\n{}", self.log());
        }
    }

    /// Starts the server and waits only until it listens: it may still be
    /// reconciling its records with Docker. The receiver hears when that is
    /// done (or Docker was found away).
    pub fn spawn_reconciling(&mut self) -> std::sync::mpsc::Receiver<()> {
        let mut child = self.command().spawn().expect("ua serve starts");
        let stderr = child.stderr.take().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (settled_tx, settled_rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("reconciled with Docker")
                    || line.contains("could not reconcile with Docker at start")
                {
                    let _ = settled_tx.send(());
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let port = rest
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .trim()
                        .parse::<u16>()
                        .unwrap();
                    let _ = port_tx.send(port);
                }
                // `--listen unix:PATH` (no port: reach it with `http_unix`).
                if line.contains("listening on the unix socket ") {
                    let _ = port_tx.send(0);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => self.port = port,
            Err(_) => {
                let _ = child.kill();
                panic!("ua serve did not start; its log:\n{}", self.log());
            }
        }
        self.child = Some(child);
        settled_rx
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(BINARY);
        command.arg("serve").env("UA_AGENT", agent());
        if !self.args.iter().any(|arg| arg == "--listen") {
            command.arg("--listen").arg(if self.port == 0 {
                "127.0.0.1:0".to_string()
            } else {
                format!("127.0.0.1:{}", self.port)
            });
        }
        command
            .arg("--key-file")
            .arg(self.key_file())
            .arg("--assignments")
            .arg(self.assignments())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--log-level")
            .arg("debug")
            .args(&self.args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            // After the removals: a test may set NOTIFY_SOCKET itself.
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "ua did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let out = ua_with_input("seal", &self.key_file(), plaintext);
        assert!(out.status.success(), "ua seal failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Seals a spec of the demo assignment.
    pub fn demo_spec(&self, spec_id: &str) -> String {
        self.seal(&format!(
            r#"{{"specID":"{spec_id}","assignmentName":"demo.busybox","data":{{"greeting":"hi {spec_id}"}}}}"#
        ))
    }

    pub fn http(&self, method: &str, path: &str, body: &str) -> Response {
        http(self.port, method, path, &[], body.as_bytes())
    }

    /// `POST /spec`, expecting an instance.
    pub fn instance(&self, sealed: &str) -> String {
        let response = self.http("POST", "/spec", sealed);
        if response.status != 200 {
            // A failed build's or setup's output, opened, says why.
            let output = response.json()["sealedOutput"]
                .as_str()
                .map(|sealed| ua_with_input("open", &self.key_file(), sealed).stdout)
                .unwrap_or_default();
            panic!(
                "POST /spec: {} {}\n{}",
                response.status,
                response.body,
                String::from_utf8_lossy(&output)
            );
        }
        response.json()["instanceID"].as_str().unwrap().to_string()
    }

    pub fn ws_url(&self, instance_id: &str) -> String {
        format!("ws://127.0.0.1:{}/instance/{instance_id}/ws", self.port)
    }

    pub fn records(&self) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.state_dir().join("instances")) else {
            return records;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                records.push(
                    serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{path:?} is corrupt: {e}: {text:?}")),
                );
            }
        }
        records
    }

    /// Containers this server made, as `name state` lines.
    pub fn containers(&self) -> Vec<String> {
        let filter = format!(
            "label=ua.state-dir={}",
            self.state_dir().canonicalize().unwrap().display()
        );
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        out.lines().map(str::to_string).collect()
    }

    pub fn images(&self) -> Vec<String> {
        let filter = format!(
            "label=ua.state-dir={}",
            self.state_dir().canonicalize().unwrap().display()
        );
        let out = docker(&["images", "--filter", &filter, "--format", "{{.Repository}}"]);
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        // Leave the daemon as we found it.
        if let Ok(state) = self.state_dir().canonicalize() {
            let filter = format!("label=ua.state-dir={}", state.display());
            let containers = docker(&["ps", "-aq", "--filter", &filter]);
            for id in containers.lines() {
                docker(&["rm", "-f", id]);
            }
            let images = docker(&["images", "-q", "--filter", &filter]);
            for id in images.lines() {
                docker(&["rmi", "-f", id]);
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    exchange(stream, method, path, headers, body)
}

/// [`http`] to a server on a unix socket (`--listen unix:PATH`).
pub fn http_unix(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    exchange(stream, method, path, headers, body)
}

/// One request on `stream`, read to its end.
fn exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        let start = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |p| p + 4);
        String::from_utf8_lossy(&dechunk(&raw[start..])).into_owned()
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a chunked answer; a cut-off answer gives what came (and no
/// valid JSON).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|line| usize::from_str_radix(line.split(';').next()?.trim(), 16).ok());
        let Some(size) = size else { return body };
        raw = &raw[eol + 2..];
        if size == 0 {
            return body;
        }
        let take = size.min(raw.len());
        body.extend_from_slice(&raw[..take]);
        if take < size || raw.len() < size + 2 {
            return body;
        }
        raw = &raw[size + 2..];
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A terminado client over a real websocket.
pub struct Term {
    pub socket: Socket,
    /// Everything received as `stdout`, in order.
    pub screen: String,
}

/// How a websocket ended, as seen by the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Term {
    pub async fn connect(url: &str) -> Term {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let first = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("setup in time")
            .expect("a first frame")
            .expect("a first frame");
        assert_eq!(first.to_text().unwrap(), ServerMessage::Setup.encode());
        Term {
            socket,
            screen: String::new(),
        }
    }

    pub async fn send(&mut self, frame: &str) {
        self.socket.send(Message::text(frame)).await.unwrap();
    }

    pub async fn send_message(&mut self, message: ClientMessage) {
        self.send(&message.encode()).await;
    }

    /// Sends keys as typed, in one `stdin` frame.
    pub async fn send_keys(&mut self, keys: &str) {
        self.send_message(ClientMessage::Stdin(keys.to_string()))
            .await;
    }

    pub async fn type_line(&mut self, line: &str) {
        self.send_keys(&format!("{line}\r")).await;
    }

    /// Reads until `needle` has appeared in the output since `from`.
    pub async fn wait_for_from(&mut self, from: usize, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.screen[from..].find(needle) {
                return self.screen[from..from + at + needle.len()].to_string();
            }
            let frame = tokio::time::timeout_at(deadline, self.socket.next()).await;
            match frame {
                Err(_) => panic!(
                    "{needle:?} did not appear within {within:?}; screen:\n{}",
                    self.screen
                ),
                Ok(None) => panic!(
                    "socket ended waiting for {needle:?}; screen:\n{}",
                    self.screen
                ),
                Ok(Some(Err(e))) => panic!(
                    "socket error waiting for {needle:?}: {e}; screen:\n{}",
                    self.screen
                ),
                Ok(Some(Ok(message))) => self.take(message),
            }
        }
    }

    pub async fn wait_for(&mut self, needle: &str) -> String {
        let from = self.screen.len();
        self.wait_for_from(from, needle, Duration::from_secs(20))
            .await
    }

    /// Types a command and waits for a marker it prints, so output is settled.
    pub async fn run(&mut self, command: &str) -> String {
        let tag = rand_tag();
        let from = self.screen.len();
        // Quoted apart in the typed line, so only the output matches the marker.
        self.type_line(&format!("{command}; echo \"done\"-\"{tag}\""))
            .await;
        self.wait_for_from(from, &format!("done-{tag}"), Duration::from_secs(20))
            .await
    }

    fn take(&mut self, message: Message) {
        if let Message::Text(text) = message {
            if let Some(ServerMessage::Stdout(output)) = ServerMessage::decode(&text) {
                self.screen.push_str(&output);
            }
        }
    }

    /// Reads until the socket ends; returns how, and any `disconnect` message seen.
    pub async fn until_closed(&mut self, within: Duration) -> (Ended, bool) {
        let deadline = tokio::time::Instant::now() + within;
        let mut disconnect = false;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => panic!(
                    "the socket did not close within {within:?}; screen:\n{}",
                    self.screen
                ),
                Ok(None) | Ok(Some(Err(_))) => return (Ended::Dropped, disconnect),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    return (Ended::Closed(code), disconnect);
                }
                Ok(Some(Ok(message))) => {
                    if message
                        .to_text()
                        .is_ok_and(|t| t == ServerMessage::Disconnect.encode())
                    {
                        disconnect = true;
                    }
                    self.take(message);
                }
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

pub fn close_code(code: u16) -> CloseCode {
    CloseCode::from(code)
}

pub fn rand_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:08x}")
}

/// Polls `check` until it holds or `within` passes.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Docker registry (Debian's `docker-registry`) on a loopback port, with
/// its storage in a temporary directory. The engine trusts a registry on
/// 127.0.0.1 without TLS. Local images of its repositories are removed on drop.
pub struct LocalRegistry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        docker_ready();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::create_dir_all(dir.path().join("storage")).unwrap();
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("these tests need Debian's docker-registry (apt-get install docker-registry)");
        let registry = LocalRegistry {
            port,
            child,
            _dir: dir,
        };
        eventually(Duration::from_secs(20), "the registry answers", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(port, "GET", "/v2/", &[], b"").status == 200
        });
        registry
    }

    /// `127.0.0.1:PORT/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("127.0.0.1:{}/{path}", self.port)
    }

    /// Builds `dockerfile` (no context, no network) as `reference`, pushes
    /// it, and removes it from the local daemon.
    pub fn push_built(&self, reference: &str, dockerfile: &str) {
        let mut build = Command::new("docker")
            .args(["build", "-q", "--network", "none", "-t", reference, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        let out = build.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let push = Command::new("docker")
            .args(["push", reference])
            .output()
            .unwrap();
        assert!(
            push.status.success(),
            "docker push failed: {}",
            String::from_utf8_lossy(&push.stderr)
        );
        docker(&["rmi", reference]);
        assert!(!image_present(reference), "{reference} still local");
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let prefix = format!("127.0.0.1:{}/", self.port);
        let images = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        for image in images.lines().filter(|i| i.starts_with(&prefix)) {
            docker(&["rmi", "-f", image]);
        }
    }
}

/// Whether the local daemon has `reference`.
pub fn image_present(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}
