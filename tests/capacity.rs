//! Capacity limits, `/metrics`, and Docker going away and coming back.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

#[test]
fn past_max_instances_post_spec_answers_503_and_leaves_nothing() {
    let server = TestServer::start_with(&["--max-instances", "2"]);
    let first = server.instance(&server.demo_spec("cap-1"));
    server.instance(&server.demo_spec("cap-2"));
    let refused = server.http("POST", "/spec", &server.demo_spec("cap-3"));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("limit of 2 stored instances"),
        "{}",
        refused.body
    );
    assert_eq!(server.records().len(), 2);
    assert_eq!(server.containers().len(), 2);
    // An existing instance is never refused: its spec, and its terminal.
    assert_eq!(server.instance(&server.demo_spec("cap-1")), first);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&first)).await;
        term.run("echo still-served").await;
    });
}

#[test]
fn a_full_build_queue_answers_503_in_arrival_order() {
    let server = TestServer::start_with(&["--max-builds", "1", "--max-build-queue", "1"]);
    let slow = server.assignments().join("slow");
    write(
        &slow.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo {{ spec_id }} > /id && sleep 2\n",
    );
    let sealed: Vec<String> = (0..3)
        .map(|i| {
            server.seal(&format!(
                r#"{{"specID":"queue-{i}","assignmentName":"slow"}}"#
            ))
        })
        .collect();
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = sealed
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let server = &server;
                s.spawn(move || {
                    // Arrive in order, while the first still builds.
                    std::thread::sleep(Duration::from_millis(300 * i as u64));
                    let response = server.http("POST", "/spec", spec);
                    (response.status, response.body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses[0].0, 200, "{statuses:?}");
    assert_eq!(statuses[1].0, 200, "{statuses:?}");
    assert_eq!(statuses[2].0, 503, "{statuses:?}");
    assert!(
        statuses[2].1.contains("build queue is full"),
        "{statuses:?}"
    );
    assert_eq!(server.records().len(), 2);
}

#[test]
fn metrics_count_instances_sessions_builds_bytes_closes_and_errors() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("metrics"));
    assert_eq!(server.http("POST", "/spec", "garbage!").status, 400);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut first = Term::connect(&server.ws_url(&id)).await;
        first.run("echo some-output").await;
        let page = server.http("GET", "/metrics", "");
        assert_eq!(page.status, 200);
        assert!(page
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"));
        assert!(page.body.contains("ua_sessions 1\n"), "{}", page.body);
        assert!(
            page.body.contains("ua_instances{state=\"running\"} 1\n"),
            "{}",
            page.body
        );
        let _second = Term::connect(&server.ws_url(&id)).await;
        assert_eq!(
            first.until_closed(Duration::from_secs(10)).await.0,
            Ended::Closed(4001)
        );
    });
    let page = server.http("GET", "/metrics", "").body;
    let value = |line: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{page}"))
    };
    assert_eq!(value("ua_build_duration_seconds_count"), 1.0);
    assert_eq!(value("ua_spec_ready_duration_seconds_count"), 1.0);
    assert!(value("ua_bytes_proxied_total{direction=\"out\"}") > 0.0);
    assert!(value("ua_bytes_proxied_total{direction=\"in\"}") > 0.0);
    assert_eq!(value("ua_websocket_closes_total{code=\"4001\"}"), 1.0);
    assert_eq!(value("ua_errors_total{kind=\"bad_request\"}"), 1.0);
    assert!(page.contains("ua_builds_queued 0\n"), "{page}");
}

/// A unix socket that forwards to the real Docker socket and can be pulled
/// away (socket file and live connections) and put back.
struct DockerProxy {
    path: PathBuf,
    runtime: tokio::runtime::Runtime,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl DockerProxy {
    fn new(path: &Path) -> DockerProxy {
        let mut proxy = DockerProxy {
            path: path.to_owned(),
            runtime: tokio::runtime::Runtime::new().unwrap(),
            tasks: None,
        };
        proxy.up();
        proxy
    }

    fn up(&mut self) {
        let _guard = self.runtime.enter();
        let listener = tokio::net::UnixListener::bind(&self.path).unwrap();
        self.tasks = Some(self.runtime.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut daemon) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut daemon).await;
                    }
                });
            }
        }));
    }

    /// Docker "goes away": no socket, every open connection cut.
    fn down(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            tasks.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn when_docker_goes_away_ua_says_so_and_recovers_by_itself() {
    docker_ready();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("docker.sock");
    let mut proxy = DockerProxy::new(&socket);
    let docker_host = format!("unix://{}", socket.display());
    let server = TestServer::start_with_env(&[], &[("DOCKER_HOST", &docker_host)]);
    let id = server.instance(&server.demo_spec("docker-trouble"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut term = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo attached").await;
        term
    });

    proxy.down();
    // The live session does not pass through Docker (the agent's socket
    // carries it): it goes on while the daemon is away.
    let out = rt.block_on(term.run("echo still-$((6*7))"));
    assert!(out.contains("still-42"), "{out}");
    let started = std::time::Instant::now();
    let health = server.http("GET", "/health", "");
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "health took {:?}",
        started.elapsed()
    );
    assert!(
        health.json()["docker"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{}",
        health.body
    );
    let refused = server.http("POST", "/spec", &server.demo_spec("while-down"));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.header("retry-after").is_some());

    proxy.up();
    eventually(Duration::from_secs(10), "health recovers", || {
        server.http("GET", "/health", "").status == 200
    });
    assert_eq!(
        server
            .http("POST", "/spec", &server.demo_spec("while-down"))
            .status,
        200
    );
    rt.block_on(async {
        term.close().await;
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo back").await;
    });
    drop(proxy);
}

/// A server that starts while Docker is away keeps every instance: it
/// reconciles once Docker answers, instead of tidying away containers it
/// has not loaded the records of.
#[test]
fn a_start_while_docker_is_away_loses_no_instance() {
    docker_ready();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("docker.sock");
    let mut proxy = DockerProxy::new(&socket);
    let docker_host = format!("unix://{}", socket.display());
    let mut server = TestServer::start_with_env(
        &["--instance-expiry", "1h"],
        &[("DOCKER_HOST", &docker_host)],
    );
    let spec = server.demo_spec("away-at-start");
    let id = server.instance(&spec);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo kept > kept.txt").await;
    });
    server.terminate();
    proxy.down();
    server.spawn();
    let refused = server.http("POST", "/spec", &spec);
    assert_eq!(refused.status, 503, "{}", refused.body);
    proxy.up();
    // Sweeps run every 10 s at most: a few of them with Docker back.
    eventually(Duration::from_secs(30), "the server reconciles", || {
        server.log().contains("reconciled") && server.http("POST", "/spec", &spec).status == 200
    });
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(server.instance(&spec), id, "the same instance");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("cat kept.txt").await;
        assert!(out.contains("kept"), "{out}");
    });
    drop(proxy);
}
