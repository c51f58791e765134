//! `ua bench` runs end to end on tiny sizes (it proves the tool works; the
//! numbers themselves belong in BENCHMARKS.md, never in an assertion).

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_bench_tool_measures_a_real_server_and_cleans_up() {
    let server = TestServer::start();
    let out = Command::new(BINARY)
        .arg("bench")
        .args(["--server", &format!("http://127.0.0.1:{}", server.port)])
        .arg("--key-file")
        .arg(server.key_file())
        .args([
            "--bytes",
            "200000",
            "--rounds",
            "1",
            "--echoes",
            "5",
            "--sessions",
            "2",
            "--typing",
            "2s",
        ])
        .args(["--server-pid", &server.pid().to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "spec → first prompt, cold build",
        "output throughput",
        "echo p50",
        "echo p99",
        "2 sessions typing",
    ] {
        assert!(table.contains(row), "no {row:?} row in\n{table}");
    }
    assert!(table.contains("KiB per idle session"), "{table}");
    assert!(
        server.records().is_empty(),
        "the bench cleaned its instances"
    );
}

#[test]
fn the_startup_bench_compares_with_the_docker_cli_and_counts_images() {
    let server = TestServer::start();
    let table = bench_table(
        &server,
        &[
            "--startup",
            "--rounds",
            "1",
            "--class-size",
            "3",
            "--class-clients",
            "2",
        ],
    );
    for row in [
        "shared image: first spec",
        "spec → first prompt, shared image, median of 1",
        "spec → first prompt, Dockerfile.tmpl, median of 1",
        "class start: 3 students from 2 clients",
        "images behind the class's 3 containers",
        "made during the class start",
    ] {
        assert!(table.contains(row), "no {row:?} row in\n{table}");
    }
    // Shared-image mode makes no image per instance: one image behind all.
    assert!(
        table.contains("| images behind the class's 3 containers | 1 |"),
        "{table}"
    );
    assert!(
        server.records().is_empty(),
        "the bench cleaned its instances"
    );
    let leftovers = docker(&["ps", "-a", "--filter", "name=ua-bench-cli-", "-q"]);
    assert!(leftovers.is_empty(), "the CLI side removed its containers");
}

#[test]
fn the_check_bench_compares_with_the_docker_cli_and_cleans_up() {
    let server = TestServer::start_with(&["--reattach-grace", "1s"]);
    let table = bench_table(&server, &["--check", "--checks", "3"]);
    for row in [
        "| check, container running (3 rounds), p50 |",
        "| check, container running, p90 |",
        "| check, container stopped (5 rounds; start + check), p50 |",
    ] {
        assert!(table.contains(row), "no {row:?} row in\n{table}");
    }
    assert!(
        server.records().is_empty(),
        "the bench cleaned its instance"
    );
}

/// The table `ua bench ARGS` prints against `server` (with its key and
/// assignments); the run must succeed.
fn bench_table(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(BINARY)
        .arg("bench")
        .args(args)
        .args(["--server", &format!("http://127.0.0.1:{}", server.port)])
        .arg("--key-file")
        .arg(server.key_file())
        .arg("--assignments")
        .arg(server.assignments())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{table}\n{errors}");
    table
}

#[test]
fn the_restart_bench_starts_its_own_server_and_leaves_nothing() {
    docker_ready();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    write_key_file(&key);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(BINARY)
        .args(["bench", "--restart", "--records", "20"])
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .arg("--key-file")
        .arg(&key)
        .arg("--assignments")
        .arg(repo().join("templates"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "after a start with 20 records",
        "first `/health` answer",
        "live instance's shell echoes",
        "records settled",
    ] {
        assert!(table.contains(row), "no {row:?} row in\n{table}");
    }
    let leftovers = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=ua.owned",
        "--format",
        "{{.Labels}}",
    ]);
    assert!(
        !leftovers.contains("ua-bench-restart-"),
        "the bench removed its instance: {leftovers}"
    );
}
