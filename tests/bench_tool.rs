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
