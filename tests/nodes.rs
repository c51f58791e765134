//! Several ua nodes behind HAProxy (docs/API.md, "Nodes and routing";
//! docs/OPERATING.md, "Running more than one host"): node IDs, the route token, and the
//! shipped HAProxy configuration (packaging/examples/haproxy-cfg) with
//! Debian's `haproxy` in front of three real `ua serve` nodes on one Docker
//! daemon, one of which dies and comes back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// `ua seal --route`: the sealed spec and its route token.
fn seal_routed(key: &Path, plaintext: &str) -> (String, String) {
    let mut child = Command::new(BINARY)
        .args(["seal", "--route", "--key-file"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ua seal --route failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let sealed = lines.next().unwrap().to_string();
    let token = lines
        .next()
        .and_then(|l| l.strip_prefix("route="))
        .expect("a route= line")
        .to_string();
    (sealed, token)
}

fn demo_plaintext(spec_id: &str) -> String {
    format!(
        r#"{{"specID":"{spec_id}","assignmentName":"demo.busybox","data":{{"greeting":"hi {spec_id}"}}}}"#
    )
}

#[test]
fn a_node_id_prefixes_instance_ids_and_is_named_in_health_and_metrics() {
    let server = TestServer::start_with(&["--node-id", "n1"]);
    let (sealed, token) = seal_routed(&server.key_file(), &demo_plaintext("node/one"));
    // The token is the contract's computation with the key file's first key.
    let keys = ua::crypto::seal::Keyring::load(&server.key_file()).unwrap();
    assert_eq!(token, ua::crypto::route::token(&keys, "node/one"));
    assert_eq!(token.len(), 16);
    // The server ignores the route parameter, whatever it says.
    let first = server.http("POST", &format!("/spec?route={token}"), &sealed);
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["instanceID"].as_str().unwrap().to_string();
    assert!(id.starts_with("n1-") && id.len() == 3 + 32, "{id}");
    let again = server.http("POST", "/spec?route=not-a-token&async=1", &sealed);
    assert_eq!(again.json()["instanceID"], id.as_str());
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo node-$((6*7))").await;
        assert!(out.contains("node-42"), "{out}");
        term.close().await;
    });
    let health = server.http("GET", "/health", "").json();
    assert_eq!(health["node"], "n1", "{health}");
    let metrics = server.http("GET", "/metrics", "").body;
    assert!(
        metrics.contains("ua_node_info{node=\"n1\"} 1\n"),
        "{metrics}"
    );
    let cleaned = server.http(
        "POST",
        &format!("/spec/clean?async=false&route={token}"),
        &sealed,
    );
    assert_eq!(cleaned.json()["cleaned"], 1, "{}", cleaned.body);
}

#[test]
fn a_server_without_a_node_id_names_none_and_a_bad_node_id_is_refused() {
    let server = TestServer::start();
    assert!(server.http("GET", "/health", "").json()["node"].is_null());
    let metrics = server.http("GET", "/metrics", "").body;
    assert!(metrics.contains("ua_node_info{node=\"\"} 1\n"), "{metrics}");
    let out = server
        .command()
        .args(["--node-id", "Node-1"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a-z and 0-9"), "{err}");
}

/// Debian's haproxy, installed with apt when missing (as scripts/test does).
fn haproxy_ready() {
    static READY: Once = Once::new();
    READY.call_once(|| {
        let present = || {
            Command::new("haproxy")
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !present() {
            let status = Command::new("sh")
                .arg("-c")
                .arg("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy")
                .status()
                .expect("sh runs");
            assert!(status.success(), "apt-get could not install haproxy");
        }
        assert!(present(), "these tests need Debian's haproxy");
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy on a loopback port, configured by packaging/examples/haproxy-cfg.
struct Haproxy {
    port: u16,
    stats: PathBuf,
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(nodes: &[(&str, u16)]) -> Haproxy {
        Haproxy::start_on(nodes, free_port())
    }

    fn start_on(nodes: &[(&str, u16)], port: u16) -> Haproxy {
        haproxy_ready();
        let dir = tempfile::tempdir().unwrap();
        let stats = dir.path().join("stats.sock");
        let mut generate = Command::new(repo().join("packaging/examples/haproxy-cfg"));
        generate
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--stats-socket")
            .arg(&stats);
        for (name, node_port) in nodes {
            generate.arg(format!("{name}=127.0.0.1:{node_port}"));
        }
        let out = generate.output().unwrap();
        assert!(out.status.success(), "haproxy-cfg failed");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, &out.stdout).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c refused the generated configuration:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        eventually(Duration::from_secs(30), "haproxy answers", || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("haproxy exited ({status}):\n{}", log.lock().unwrap());
            }
            UnixStream::connect(&stats).is_ok()
        });
        let haproxy = Haproxy {
            port,
            stats,
            child,
            log,
            _dir: dir,
        };
        for (name, _) in nodes {
            haproxy.wait_until(name, "UP");
        }
        haproxy
    }

    /// The state HAProxy's health checks give `server` in the spec backend
    /// (`UP`, `DOWN`, or on its way: `UP 1/2`), from the stats socket.
    fn status(&self, server: &str) -> Option<String> {
        let mut socket = UnixStream::connect(&self.stats).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).ok()?;
        csv.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields.len() > 17 && fields[0] == "ua_specs" && fields[1] == server)
                .then(|| fields[17].to_string())
        })
    }

    fn wait_until(&self, server: &str, state: &str) {
        eventually(
            Duration::from_secs(60),
            &format!("haproxy sees node {server} {state}"),
            || self.status(server).as_deref() == Some(state),
        );
    }

    fn post(&self, path: &str, sealed: &str) -> Response {
        http(self.port, "POST", path, &[], sealed.as_bytes())
    }

    fn ws_url(&self, instance_id: &str) -> String {
        format!("ws://127.0.0.1:{}/instance/{instance_id}/ws", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("haproxy's log:\n{}", self.log.lock().unwrap());
        }
    }
}

struct RoutedSpec {
    spec_id: String,
    sealed: String,
    token: String,
}

/// POSTs every spec through HAProxy, a few at a time; their instance IDs.
fn post_all(haproxy: &Haproxy, specs: &[RoutedSpec], key: &std::path::Path) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let ids = Mutex::new(vec![String::new(); specs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let response = haproxy.post(&format!("/spec?route={}", spec.token), &spec.sealed);
                if response.status != 200 {
                    // A failed build's output, opened, says why.
                    let output = response.json()["sealedOutput"]
                        .as_str()
                        .map(|sealed| ua_with_input("open", key, sealed).stdout)
                        .unwrap_or_default();
                    panic!(
                        "POST /spec of {} through haproxy: {} {}\n{}",
                        spec.spec_id,
                        response.status,
                        response.body,
                        String::from_utf8_lossy(&output)
                    );
                }
                let id = response.json()["instanceID"].as_str().unwrap().to_string();
                ids.lock().unwrap()[i] = id;
            });
        }
    });
    ids.into_inner().unwrap()
}

fn node_of(instance_id: &str) -> &str {
    instance_id.split_once('-').expect("a node prefix").0
}

#[test]
fn three_nodes_behind_haproxy_route_by_spec_and_by_instance_and_survive_a_dead_node() {
    let a = TestServer::start_with(&["--node-id", "a"]);
    let b = TestServer::start_sharing_key(&["--node-id", "b"], &a.key_file());
    let mut c = TestServer::start_sharing_key(&["--node-id", "c"], &a.key_file());
    let haproxy = Haproxy::start(&[("a", a.port), ("b", b.port), ("c", c.port)]);

    // 60 specs land on all three nodes, each by its route token.
    let specs: Vec<RoutedSpec> = (0..60)
        .map(|i| {
            let spec_id = format!("nodes/{i}");
            let (sealed, token) = seal_routed(&a.key_file(), &demo_plaintext(&spec_id));
            RoutedSpec {
                spec_id,
                sealed,
                token,
            }
        })
        .collect();
    let first = post_all(&haproxy, &specs, &a.key_file());
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &first {
        *per_node.entry(node_of(id)).or_default() += 1;
    }
    assert_eq!(
        per_node.keys().copied().collect::<Vec<_>>(),
        ["a", "b", "c"],
        "{per_node:?}"
    );
    // Each node made exactly the instances whose IDs name it.
    for (name, node) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_eq!(node.records().len(), per_node[name], "node {name}");
    }
    // Posting each again reaches the same node and the same instance.
    assert_eq!(post_all(&haproxy, &specs, &a.key_file()), first);

    // A websocket through HAProxy reaches the right node's terminal; on c,
    // leave a file behind.
    let on_c: Vec<usize> = (0..specs.len())
        .filter(|&i| node_of(&first[i]) == "c")
        .collect();
    runtime().block_on(async {
        for name in ["a", "b", "c"] {
            let i = (0..specs.len())
                .find(|&i| node_of(&first[i]) == name)
                .unwrap();
            let mut term = Term::connect(&haproxy.ws_url(&first[i])).await;
            term.wait_for(&format!("hi {}", specs[i].spec_id)).await;
            let out = term.run("echo $ASSIGNMENT-$((6*7))").await;
            assert!(out.contains("demo.busybox-42"), "{out}");
            if name == "c" {
                term.run(&format!("echo kept-{i} > kept.txt")).await;
            }
            term.close().await;
        }
    });

    // Node c dies: HAProxy marks it down.
    c.kill();
    haproxy.wait_until("c", "DOWN");
    let dead = &first[on_c[0]];
    let ws = http(
        haproxy.port,
        "GET",
        &format!("/instance/{dead}/ws"),
        &[],
        b"",
    );
    assert_eq!(ws.status, 503, "{}", ws.body);
    assert_eq!(ws.header("Retry-After"), Some("5"));
    assert!(
        ws.json()["error"]
            .as_str()
            .unwrap()
            .contains("unavailable, retrying"),
        "{}",
        ws.body
    );
    let page = http(
        haproxy.port,
        "GET",
        &format!("/instance/{dead}"),
        &[("Accept", "text/html,*/*")],
        b"",
    );
    assert_eq!(page.status, 503);
    assert_eq!(page.header("Refresh"), Some("5"));
    assert!(page.body.contains("unavailable, retrying"), "{}", page.body);
    // /metrics is never exposed through HAProxy.
    assert_eq!(http(haproxy.port, "GET", "/metrics", &[], b"").status, 404);

    // Its specs get new instances on the other nodes; no other spec moves.
    let during = post_all(&haproxy, &specs, &a.key_file());
    for i in 0..specs.len() {
        if node_of(&first[i]) == "c" {
            assert!(["a", "b"].contains(&node_of(&during[i])), "{}", during[i]);
        } else {
            assert_eq!(during[i], first[i], "{} moved", specs[i].spec_id);
        }
    }

    // Node c returns: its specs go back to it and find their old instances,
    // files and all; every other spec stays where it was.
    c.spawn();
    haproxy.wait_until("c", "UP");
    let after = post_all(&haproxy, &specs, &a.key_file());
    assert_eq!(after, first);
    let moved: BTreeSet<&str> = on_c.iter().map(|&i| during[i].as_str()).collect();
    assert!(moved.iter().all(|id| !first.contains(&id.to_string())));
    runtime().block_on(async {
        let i = on_c[0];
        let mut term = Term::connect(&haproxy.ws_url(&first[i])).await;
        let out = term.run("cat kept.txt").await;
        assert!(out.contains(&format!("kept-{i}")), "{out}");
        term.close().await;
    });

    // A clean with the route token reaches the spec's node.
    let i = on_c[0];
    let cleaned = haproxy.post(
        &format!("/spec/clean?async=false&route={}", specs[i].token),
        &specs[i].sealed,
    );
    assert_eq!(cleaned.json()["cleaned"], 1, "{}", cleaned.body);
    assert!(c
        .records()
        .iter()
        .all(|r| r["instanceID"] != first[i].as_str()));
}

#[test]
fn the_browser_terminal_says_the_server_is_unavailable_and_reconnects_by_itself() {
    let web = repo().join("target/web");
    assert!(
        web.join("index.html").is_file() && repo().join("tests/browser/node_modules").is_dir(),
        "run scripts/build-web and `npm ci` in tests/browser (scripts/test does)"
    );
    let web_dir = web.display().to_string();
    // The page comes through HAProxy: that is the origin its operator names.
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let mut a = TestServer::start_with(&[
        "--node-id",
        "a",
        "--web-dir",
        &web_dir,
        "--public-origin",
        &public,
    ]);
    let haproxy = Haproxy::start_on(&[("a", a.port)], port);
    let (sealed, token) = seal_routed(&a.key_file(), &demo_plaintext("nodes/browser"));
    let posted = haproxy.post(&format!("/spec?route={token}"), &sealed);
    assert_eq!(posted.status, 200, "{}", posted.body);
    let id = posted.json()["instanceID"].as_str().unwrap().to_string();

    let mut browser = Command::new("node")
        .arg(repo().join("tests/browser/unavailable.mjs"))
        .arg(format!("http://127.0.0.1:{}", haproxy.port))
        .arg(&id)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut report = String::new();
    let mut next_line = |report: &mut String| {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        report.push_str(&line);
        report.push('\n');
        line
    };
    assert_eq!(next_line(&mut report), "READY", "{report}");
    a.kill();
    haproxy.wait_until("a", "DOWN");
    assert_eq!(next_line(&mut report), "UNAVAILABLE", "{report}");
    a.spawn();
    haproxy.wait_until("a", "UP");
    let last = next_line(&mut report);
    let out = browser.wait_with_output().unwrap();
    assert!(
        out.status.success() && last.starts_with("PASS"),
        "the browser test failed:\n{report}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log()
    );
}

#[test]
fn the_shipped_haproxy_cfg_is_the_generators_output_and_haproxy_accepts_it() {
    haproxy_ready();
    let example = repo().join("packaging/examples/haproxy.cfg");
    let shipped = std::fs::read_to_string(&example).unwrap();
    let out = Command::new(repo().join("packaging/examples/haproxy-cfg"))
        .args([
            "--cert",
            "/etc/haproxy/ua.pem",
            "a=10.0.0.11:8000",
            "b=10.0.0.12:8000",
            "c=10.0.0.13:8000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        shipped,
        "regenerate packaging/examples/haproxy.cfg with the arguments its second line names"
    );
    // With a (self-signed) certificate where it expects one, HAProxy takes it.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ua.pem");
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ua.test \
             -keyout {0}.key -out {0}.crt 2>/dev/null && cat {0}.crt {0}.key > {0}",
            pem.display()
        ))
        .status()
        .unwrap();
    assert!(made.success(), "openssl could not make a test certificate");
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        shipped.replace("/etc/haproxy/ua.pem", &pem.display().to_string()),
    )
    .unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c refused packaging/examples/haproxy.cfg:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Node names must be node IDs, each listed once.
    for bad in [&["A=1.2.3.4:80"][..], &["a=1.2.3.4"], &["a=x:1", "a=y:2"]] {
        let refused = Command::new(repo().join("packaging/examples/haproxy-cfg"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn ua_connect_sends_the_route_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    write_key_file(&key);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A stand-in server that records the request line and refuses the spec.
    let stub = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer = r#"{"error":"Refused by the test"}"#;
        write!(
            stream,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
        request_line
    });
    let out = Command::new(BINARY)
        .args([
            "connect",
            "--assignment",
            "demo.busybox",
            "--spec-id",
            "connect/route",
        ])
        .arg("--key-file")
        .arg(&key)
        .arg("--server")
        .arg(format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Refused by the test"),
        "{stderr}"
    );
    let keys = ua::crypto::seal::Keyring::load(&key).unwrap();
    assert_eq!(
        stub.join().unwrap().trim_end(),
        format!(
            // `progress`: ua connect prints the phases of a first start.
            "POST /spec?route={}&progress HTTP/1.1",
            ua::crypto::route::token(&keys, "connect/route")
        )
    );
}
