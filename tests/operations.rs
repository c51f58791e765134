//! Operations: the watchdog while Docker stalls.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A unix socket in front of the real Docker socket that holds back every
/// `DELETE` request naming a chosen object until released.
struct StallingProxy {
    runtime: tokio::runtime::Runtime,
    stall: Arc<Mutex<Option<String>>>,
    held: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl StallingProxy {
    fn new(path: &Path) -> StallingProxy {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let stall = Arc::new(Mutex::new(None::<String>));
        let held = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(path).unwrap()
        };
        let (stall2, held2) = (stall.clone(), held.clone());
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (stall, held, mut released) = (stall2.clone(), held2.clone(), released.clone());
                tokio::spawn(async move {
                    let Ok(daemon) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_daemon, mut to_daemon) = daemon.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_daemon, &mut to_client).await;
                    });
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let chunk = &buffer[..n];
                        let target = stall.lock().unwrap().clone();
                        let head = String::from_utf8_lossy(&chunk[..n.min(300)]).to_string();
                        if target.is_some_and(|t| head.starts_with("DELETE ") && head.contains(&t))
                        {
                            held.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|r| *r).await;
                            held.fetch_sub(1, Ordering::SeqCst);
                        }
                        if to_daemon.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        StallingProxy {
            runtime,
            stall,
            held,
            release,
        }
    }

    /// From now on, hold back every DELETE whose request line names `what`.
    fn stall(&self, what: &str) {
        *self.stall.lock().unwrap() = Some(what.to_string());
    }

    /// Requests held back right now.
    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets every held request through, and later ones at once.
    fn release(&self) {
        *self.stall.lock().unwrap() = None;
        self.release.send_replace(true);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.release();
        let _ = &self.runtime;
    }
}

/// systemd's side of sd_notify: a datagram socket that keeps every message.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn new(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..n]).to_string();
                kept.lock().unwrap().push(text);
            }
        });
        NotifySocket {
            path: path.to_owned(),
            messages,
        }
    }

    /// How many messages so far carry `line` (e.g. `WATCHDOG=1`).
    fn count(&self, line: &str) -> usize {
        let messages = self.messages.lock().unwrap();
        messages
            .iter()
            .filter(|m| m.lines().any(|l| l.starts_with(line)))
            .count()
    }
}

/// Issue 13, item 1: a Docker that stalls a removal stops neither the
/// watchdog, nor the status line, nor the expiry of other instances.
#[test]
fn a_stalled_docker_starves_neither_the_watchdog_nor_other_instances() {
    docker_ready();
    let dir = tempfile::tempdir().unwrap();
    let proxy = StallingProxy::new(&dir.path().join("docker.sock"));
    let notify = NotifySocket::new(&dir.path().join("notify"));
    let docker_host = format!("unix://{}", dir.path().join("docker.sock").display());
    let notify_path = notify.path.display().to_string();
    let server = TestServer::start_with_env(
        &["--instance-expiry", "4s"],
        &[
            ("DOCKER_HOST", &docker_host),
            ("NOTIFY_SOCKET", &notify_path),
            // Fed every 0.5 s when healthy.
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    eventually(Duration::from_secs(10), "ua says it is ready", || {
        notify.count("READY=1") == 1
    });
    let first = server.instance(&server.demo_spec("stalled"));
    let container = docker(&["inspect", "-f", "{{.Id}}", &format!("ua-{first}")]);
    assert_eq!(container.len(), 64, "{container}");
    proxy.stall(&container);
    eventually(
        Duration::from_secs(30),
        "the expiry's DELETE is held",
        || proxy.held() > 0,
    );

    let fed = notify.count("WATCHDOG=1");
    let statuses = notify.count("STATUS=");
    let second = server.instance(&server.demo_spec("not-held"));
    eventually(
        Duration::from_secs(30),
        "the other instance expires while the first removal is held",
        || {
            !server
                .records()
                .iter()
                .any(|r| r["instanceID"] == second.as_str())
        },
    );
    eventually(
        Duration::from_secs(30),
        "the watchdog and the status line go on while the removal is held",
        || notify.count("WATCHDOG=1") >= fed + 4 && notify.count("STATUS=") > statuses,
    );
    assert!(proxy.held() > 0, "the removal was still held meanwhile");
    assert!(
        !server.containers().iter().any(|c| c.contains(&second)),
        "{:?}",
        server.containers()
    );

    proxy.release();
    eventually(
        Duration::from_secs(30),
        "the held instance goes too",
        || server.records().is_empty() && server.containers().is_empty(),
    );
    assert!(!server.log().contains("hi stalled"), "spec data in the log");
}

/// `GET /instance/{id}/ws` without an upgrade, from `origin`: 403 when the
/// origin is refused, 400 (not an upgrade) when it is allowed.
fn origin_status(server: &TestServer, id: &str, origin: &str) -> u16 {
    http(
        server.port,
        "GET",
        &format!("/instance/{id}/ws"),
        &[("Origin", origin)],
        b"",
    )
    .status
}

fn sighup(server: &TestServer) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Issue 13, item 3: SIGHUP re-reads the key file, the origins and the
/// limits, logs what changed and keeps every session; a bad key file is
/// refused and the old keys stay.
#[test]
fn sighup_reloads_keys_origins_and_limits_and_keeps_sessions() {
    let settings_dir = tempfile::tempdir().unwrap();
    let settings = settings_dir.path().join("default-ua");
    write(
        &settings,
        "# as /etc/default/ua\nUA_ALLOWED_ORIGINS=https://a.example\nUA_MAX_INSTANCES=5\n",
    );
    let server = TestServer::start_with(&["--env-file", settings.to_str().unwrap()]);
    let old_spec = server.demo_spec("reload-1");
    let other = server.demo_spec("reload-3");
    let id = server.instance(&old_spec);
    assert_eq!(origin_status(&server, &id, "https://a.example"), 400);
    assert_eq!(origin_status(&server, &id, "https://b.example"), 403);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut term = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("export MARK=kept-across-reload").await;
        term
    });

    // Rotate: a new key first, the old one below it.
    let new_key = settings_dir.path().join("new-key");
    write_key_file(&new_key);
    let old_line = std::fs::read_to_string(server.key_file()).unwrap();
    let new_line = std::fs::read_to_string(&new_key).unwrap();
    std::fs::write(server.key_file(), format!("{new_line}{old_line}")).unwrap();
    let new_spec = ua_with_input(
        "seal",
        &new_key,
        r#"{"specID":"reload-2","assignmentName":"demo.busybox","data":{"greeting":"x"}}"#,
    );
    let new_spec = String::from_utf8(new_spec.stdout).unwrap();
    assert_eq!(server.http("POST", "/spec", &new_spec).status, 400);
    write(
        &settings,
        "UA_ALLOWED_ORIGINS=https://b.example\nUA_MAX_INSTANCES=1\n",
    );
    sighup(&server);
    eventually(Duration::from_secs(10), "the reload is done", || {
        server.log().contains("settings changed")
    });
    let log = server.log();
    assert!(log.contains("--max-instances: 5 → 1"), "{log}");
    assert!(log.contains("--allowed-origins"), "{log}");
    assert!(log.contains("(2 keys)"), "{log}");
    // The new key opens (the new limit of one instance then answers 503).
    let refused = server.http("POST", "/spec", &new_spec);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("limit of 1 stored instances"),
        "{}",
        refused.body
    );
    assert_eq!(origin_status(&server, &id, "https://b.example"), 400);
    assert_eq!(origin_status(&server, &id, "https://a.example"), 403);
    // The session lives on, in the same shell.
    let out = rt.block_on(term.run("echo \"mark=$MARK\""));
    assert!(out.contains("mark=kept-across-reload"), "{out}");

    // A bad key file is refused; the keys in force stay.
    std::fs::write(server.key_file(), "this is not a key\n").unwrap();
    sighup(&server);
    eventually(Duration::from_secs(10), "the bad reload is refused", || {
        server.log().contains("reload refused")
    });
    // Both keys still open (503 from the limit, not 400 from the seal); a
    // POST of the session's own spec would take the session over.
    assert_eq!(server.http("POST", "/spec", &new_spec).status, 503);
    assert_eq!(server.http("POST", "/spec", &other).status, 503);
    let out = rt.block_on(term.run("echo \"mark=$MARK\""));
    assert!(out.contains("mark=kept-across-reload"), "{out}");
    assert!(
        !server.log().contains("hi reload-1"),
        "spec data in the log"
    );
}

/// Runs `ua VERB ARGS --state-dir <server's>`; stdout, or a panic with stderr.
fn admin(server: &TestServer, args: &[&str]) -> String {
    let out = std::process::Command::new(BINARY)
        .args(args)
        .arg("--state-dir")
        .arg(server.state_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ua {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Issue 13, item 4: `ua status`, `ua list`, `ua clean` over the admin
/// socket, with handles instead of instance IDs.
#[test]
fn the_admin_cli_shows_and_cleans_instances_by_handle() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start_with(&["--node-id", "n7"]);
    let socket = server.state_dir().join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let running = server.instance(&server.demo_spec("admin-running"));
    let stopped = server.instance(&server.demo_spec("admin-stopped"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut term = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&running)).await;
        term.run("echo attached").await;
        term
    });

    let status: serde_json::Value =
        serde_json::from_str(&admin(&server, &["status", "--json"])).unwrap();
    assert_eq!(status["instances"]["running"], 1, "{status}");
    assert_eq!(status["instances"]["stopped"], 1, "{status}");
    assert_eq!(status["sessions"], 1, "{status}");
    assert_eq!(status["docker"], "ok", "{status}");
    assert_eq!(status["node"], "n7", "{status}");
    let text = admin(&server, &["status"]);
    assert!(text.contains("1 running, 1 stopped"), "{text}");
    assert!(text.contains("node n7"), "{text}");

    let listed = admin(&server, &["list", "--json"]);
    let table = admin(&server, &["list"]);
    for out in [&listed, &table] {
        assert!(!out.contains(&running) && !out.contains(&stopped), "{out}");
    }
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(list.len(), 2, "{listed}");
    let entry = |spec: &str| list.iter().find(|e| e["specID"] == spec).unwrap().clone();
    let (a, b) = (entry("admin-running"), entry("admin-stopped"));
    assert_eq!(a["state"], "running");
    assert!(a["expires"].is_null());
    assert_eq!(b["state"], "stopped");
    assert!(b["expires"].as_i64().unwrap() > b["lastUsed"].as_i64().unwrap());
    let handle = a["handle"].as_str().unwrap();
    assert!(
        handle.len() == 8 && handle.bytes().all(|c| c.is_ascii_hexdigit()),
        "{handle}"
    );
    assert_ne!(handle, b["handle"].as_str().unwrap());
    assert!(
        table.contains(handle) && table.contains("admin-stopped"),
        "{table}"
    );

    // By handle: the live session is closed as by POST /spec/clean.
    let out = admin(&server, &["clean", "--instance", handle]);
    assert!(out.contains("cleaned 1"), "{out}");
    let (ended, _) = rt.block_on(term.until_closed(Duration::from_secs(10)));
    assert_eq!(ended, Ended::Closed(4003));
    assert_eq!(
        server
            .http("GET", &format!("/instance/{running}/ws"), "")
            .status,
        404
    );
    // By spec ID.
    let out = admin(&server, &["clean", "--spec-id", "admin-stopped"]);
    assert!(out.contains("cleaned 1"), "{out}");
    assert!(server.records().is_empty());
    eventually(Duration::from_secs(10), "the containers are gone", || {
        server.containers().is_empty()
    });
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&admin(&server, &["list", "--json"])).unwrap();
    assert!(list.is_empty());
    // An unknown handle is an error that says so.
    let out = std::process::Command::new(BINARY)
        .args(["clean", "--instance", "00000000", "--state-dir"])
        .arg(server.state_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no instance has the handle"));
    // The public listener knows nothing of it.
    assert_eq!(server.http("GET", "/admin", "").status, 404);
}

/// A free port on `ip` (bound and let go).
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /health` at `addr`; the status, or a panic when nothing answers.
fn health_status(addr: std::net::SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let mut tries = 0;
    let mut stream = loop {
        // systemd-socket-activate may not have bound its sockets yet.
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(stream) => break stream,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("no answer on {addr}: {e}"));
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
}

/// Issue 13, item 7: every socket systemd passes is served (an operator who
/// adds `ListenStream=[::1]:8000` gets both, not a silent hang).
#[test]
fn every_socket_systemd_passes_is_served() {
    docker_ready();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    write_key_file(&key);
    std::fs::create_dir(dir.path().join("assignments")).unwrap();
    let (v4, v6) = (free_port("127.0.0.1"), free_port("::1"));
    let mut child = std::process::Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{v4}"))
        .arg("-l")
        .arg(format!("[::1]:{v6}"))
        .arg(BINARY)
        .arg("serve")
        // systemd-socket-activate passes no environment (so no UA_AGENT).
        .arg("--agent")
        .arg(agent())
        .arg("--key-file")
        .arg(&key)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--assignments")
        .arg(dir.path().join("assignments"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (package systemd) runs");
    // The first connection starts ua; the second socket must answer too.
    let v6_addr = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6));
    let v4_addr = std::net::SocketAddr::from(([127, 0, 0, 1], v4));
    let first = health_status(v6_addr);
    let second = health_status(v4_addr);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((first, second), (200, 200));
}
