//! The warm pool (`--warm N`) against a real server process and Docker: it
//! fills with running containers once the assignment's image exists, a new
//! spec takes one of them (files copied in, setup run, terminal works), it
//! refills, a restart adopts it, and an edit of the assignment drains it.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;

const FILL: Duration = Duration::from_secs(60);

/// `version` also keeps the two tests' images apart: an assignment image's
/// tag is its content hash, the same for any server on the daemon.
fn write_lab(dir: &Path, version: &str) {
    write(
        &dir.join("Dockerfile"),
        &format!(
            "FROM ua-busybox:latest\n\
             RUN echo {version} > /version.txt\n\
             USER student\n\
             WORKDIR /home/student\n\
             CMD [\"/bin/sh\", \"-c\", \"cat /etc/setup-proof; exec /bin/sh\"]\n"
        ),
    );
    write(
        &dir.join("instance/home/student/notes.txt.tmpl"),
        "secret={{ data.secret }}\n",
    );
    write(
        &dir.join("setup.sh.tmpl"),
        "echo \"setup-ran-as-$(id -u)\" > /etc/setup-proof\n",
    );
}

fn spec(server: &TestServer, spec_id: &str, secret: &str) -> String {
    server.seal(&format!(
        r#"{{"specID":"{spec_id}","assignmentName":"lab.pool","data":{{"secret":"{secret}"}}}}"#
    ))
}

/// Free pool containers of this server, as (full ID, image, state).
fn pool(server: &TestServer) -> Vec<(String, String, String)> {
    let state = server.state_dir().canonicalize().unwrap();
    let out = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=ua.state-dir={}", state.display()),
        "--filter",
        "label=ua.kind=pool",
        "--filter",
        "name=ua_pool-",
        "--format",
        "{{.ID}} {{.Image}} {{.State}}",
    ]);
    out.lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (parts[0].into(), parts[1].into(), parts[2].into())
        })
        .collect()
}

fn ids(pool: &[(String, String, String)]) -> BTreeSet<String> {
    pool.iter().map(|(id, _, _)| id.clone()).collect()
}

/// Waits until the pool holds `n` running containers, and returns them.
fn full_pool(server: &TestServer, n: usize) -> Vec<(String, String, String)> {
    let mut last = Vec::new();
    eventually(FILL, &format!("{n} running pool containers"), || {
        last = pool(server);
        last.len() == n && last.iter().all(|(_, _, state)| state == "running")
    });
    last
}

fn health_pool(server: &TestServer) -> u64 {
    server.http("GET", "/health", "").json()["pool"]
        .as_u64()
        .unwrap()
}

fn record_container(server: &TestServer, instance: &str) -> String {
    let records = server.records();
    let record = records
        .iter()
        .find(|r| r["instanceID"] == instance)
        .unwrap_or_else(|| panic!("no record of {instance} in {records:?}"));
    record["containerId"].as_str().unwrap().to_string()
}

#[test]
fn a_warm_pool_is_claimed_refilled_adopted_after_a_restart_and_drained_on_edit() {
    let mut server = TestServer::start_with(&["--warm", "3"]);
    let dir = server.assignments().join("lab/pool");
    write_lab(&dir, "v1");

    // No image yet, no pool: the first spec builds the image and creates
    // its own container; then the pool fills.
    assert!(pool(&server).is_empty());
    let first = server.instance(&spec(&server, "first", "alpha-1111"));
    let warm = full_pool(&server, 3);
    let image = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &record_container(&server, &first),
    ]);
    assert!(image.starts_with("ua-assignment/lab.pool:"), "{image}");
    assert!(
        warm.iter().all(|(_, i, _)| *i == image),
        "{warm:?} vs {image}"
    );
    assert_eq!(health_pool(&server), 3);
    let metrics = server.http("GET", "/metrics", "").body;
    assert!(
        metrics.contains("ua_pool_containers{assignment=\"lab.pool\"} 3\n"),
        "{metrics}"
    );
    let status = std::process::Command::new(BINARY)
        .args(["status", "--json", "--state-dir"])
        .arg(server.state_dir())
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["pool"]["lab.pool"], 3, "{status}");
    assert_eq!(status["limits"]["warm"], 3, "{status}");

    // A new spec takes a container that ran before it was posted.
    let before = ids(&warm);
    let second = server.instance(&spec(&server, "second", "bravo-2222"));
    let claimed = record_container(&server, &second);
    assert!(before.contains(&claimed), "{claimed} not in {before:?}");
    let name = docker(&["inspect", "-f", "{{.Name}}", &claimed]);
    assert_eq!(name, format!("/ua-{second}"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&second)).await;
        term.wait_for_from(0, "setup-ran-as-0", Duration::from_secs(20))
            .await;
        let out = term.run("id -un; cat notes.txt; cat /version.txt").await;
        assert!(
            out.contains("student\r\nsecret=bravo-2222\r\nv1\r\n"),
            "{out}"
        );
        term.close().await;
    });

    // It refills, without the claimed one.
    let refilled = full_pool(&server, 3);
    assert!(!ids(&refilled).contains(&claimed));
    assert_eq!(ids(&refilled).intersection(&before).count(), 2);

    // A restart adopts the pool as it is, and removes none of it.
    let status = server.terminate();
    assert!(status.success());
    let kept = pool(&server);
    assert_eq!(ids(&kept), ids(&refilled), "the pool outlives ua");
    server.spawn();
    let deadline = std::time::Instant::now() + FILL;
    while health_pool(&server) != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool was not adopted; the log:\n{}\nimages: {}",
            server.log(),
            docker(&[
                "images",
                "-a",
                "--filter",
                &format!(
                    "label=ua.state-dir={}",
                    server.state_dir().canonicalize().unwrap().display()
                ),
                "--format",
                "{{.Repository}}:{{.Tag}} {{.ID}} {{.Labels}}"
            ])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.log().contains("warm pool: 3 containers adopted"),
        "{}",
        server.log()
    );
    assert_eq!(ids(&full_pool(&server, 3)), ids(&refilled));
    for id in ids(&refilled) {
        assert!(!server.log().contains(&format!("removing container {id}")));
    }
    // The claimed container is the instance's still, with its files.
    let third = server.instance(&spec(&server, "second", "bravo-2222"));
    assert_eq!(third, second);
    assert_eq!(record_container(&server, &second), claimed);

    // Editing the assignment: the next spec builds the new image, the old
    // pool drains and a new one fills from the new image.
    write_lab(&dir, "v2");
    let fourth = server.instance(&spec(&server, "fourth", "charlie-3333"));
    let new_image = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &record_container(&server, &fourth),
    ]);
    assert_ne!(new_image, image);
    let mut fresh = Vec::new();
    eventually(FILL, "a pool of the new image only", || {
        fresh = pool(&server);
        fresh.len() == 3
            && fresh
                .iter()
                .all(|(_, i, state)| *i == new_image && state == "running")
    });
    assert!(ids(&fresh).is_disjoint(&ids(&refilled)));
    let fifth = server.instance(&spec(&server, "fifth", "delta-4444"));
    assert!(ids(&fresh).contains(&record_container(&server, &fifth)));

    assert!(!server.log().contains("bravo-2222"), "spec data in the log");
}

#[test]
fn without_warm_there_is_no_pool_and_leftovers_are_removed_at_start() {
    let mut server = TestServer::start_with(&["--warm", "2"]);
    write_lab(&server.assignments().join("lab/pool"), "plain-v1");
    server.instance(&spec(&server, "first", "alpha-1111"));
    let warm = full_pool(&server, 2);
    assert_eq!(server.terminate().code(), Some(0));
    assert_eq!(ids(&pool(&server)), ids(&warm));
    // The same state directory without --warm: the leftovers go.
    server.set_args(&[]);
    server.spawn();
    eventually(FILL, "the old pool removed", || pool(&server).is_empty());
    assert_eq!(health_pool(&server), 0);
    // And a new spec creates its own container.
    let id = server.instance(&spec(&server, "second", "bravo-2222"));
    assert!(!ids(&warm).contains(&record_container(&server, &id)));
    assert!(pool(&server).is_empty());
}
