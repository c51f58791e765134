//! Issue 25, item 1: what each instance uses, as an operator finds it during
//! a class — `ua list` with memory, CPU, disk, processes and the terminal,
//! filtered and sorted, and `ua top` under a real terminal.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tmux::Tmux;

/// `ua list ARGS --json` against `server`, parsed.
fn listed(server: &TestServer, args: &[&str]) -> Vec<Value> {
    let out = Command::new(BINARY)
        .arg("list")
        .args(args)
        .arg("--json")
        .arg("--state-dir")
        .arg(server.state_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ua list {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn spec_ids(list: &[Value]) -> Vec<&str> {
    let mut ids: Vec<&str> = list.iter().map(|i| i["specID"].as_str().unwrap()).collect();
    ids.sort();
    ids
}

const MIB: u64 = 1024 * 1024;

/// A class: one student fills memory and spins the CPU, one forks and
/// writes a file, one has gone (the grace), one never came; `ua list`
/// shows each one's use and finds them by sort and filter.
#[test]
fn the_list_shows_who_uses_what() {
    let server = TestServer::start();
    write(
        &server.assignments().join("other/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    let memory = server.instance(&server.demo_spec("use-memory"));
    let forker = server.instance(&server.demo_spec("use-forks"));
    let gone = server.instance(&server.seal(r#"{"specID":"use-gone","assignmentName":"other"}"#));
    server.instance(&server.demo_spec("use-never"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let terms = rt.block_on(async {
        let mut filler = Term::connect(&server.ws_url(&memory)).await;
        filler
            .run("{ (head -c 100m /dev/zero; sleep 600) | tail >/dev/null & }; { while :; do :; done & }")
            .await;
        let mut forks = Term::connect(&server.ws_url(&forker)).await;
        forks
            .run("for i in $(seq 60); do sleep 600 & done; head -c 20m /dev/urandom > big")
            .await;
        let mut leaver = Term::connect(&server.ws_url(&gone)).await;
        leaver.run("echo bye").await;
        leaver.close().await;
        // The filler's buffer fills in the background.
        tokio::time::sleep(Duration::from_secs(2)).await;
        (filler, forks)
    });

    let by_memory = listed(&server, &["--sort", "memory"]);
    assert_eq!(by_memory.len(), 4, "{by_memory:#?}");
    let first = &by_memory[0];
    assert_eq!(first["specID"], "use-memory", "{by_memory:#?}");
    let used = first["memoryBytes"].as_u64().unwrap();
    let limit = first["memoryLimitBytes"].as_u64().unwrap();
    assert!((90 * MIB..limit).contains(&used), "{first:#}");
    assert_eq!(limit, 512 * MIB, "the default --memory-mb");
    assert_eq!(first["terminal"], "attached");
    assert!(first["idleSeconds"].is_u64(), "{first:#}");
    let never = by_memory
        .iter()
        .find(|i| i["specID"] == "use-never")
        .unwrap();
    assert_eq!(never["state"], "stopped");
    assert!(
        never["memoryBytes"].is_null() && never["terminal"].is_null(),
        "{never:#}"
    );
    // A container never started has a writable layer too, an empty one.
    assert_eq!(never["diskBytes"], 0, "{never:#}");

    let by_pids = listed(&server, &["--sort", "pids"]);
    assert_eq!(by_pids[0]["specID"], "use-forks", "{by_pids:#?}");
    assert!(
        by_pids[0]["pids"].as_u64().unwrap() >= 60,
        "{:#}",
        by_pids[0]
    );
    assert!(
        by_pids[0]["diskBytes"].as_u64().unwrap() >= 20 * MIB,
        "{:#}",
        by_pids[0]
    );
    let by_cpu = listed(&server, &["--sort", "cpu"]);
    assert_eq!(by_cpu[0]["specID"], "use-memory", "{by_cpu:#?}");
    assert!(
        by_cpu[0]["cpuPercent"].as_f64().unwrap() > 5.0,
        "{:#}",
        by_cpu[0]
    );
    let left = by_cpu.iter().find(|i| i["specID"] == "use-gone").unwrap();
    assert_eq!(left["terminal"], "grace", "{left:#}");

    let running = listed(&server, &["--state", "running"]);
    assert_eq!(spec_ids(&running), ["use-forks", "use-gone", "use-memory"]);
    let demo = listed(&server, &["--assignment", "demo/busybox"]);
    assert_eq!(spec_ids(&demo), ["use-forks", "use-memory", "use-never"]);
    let both = listed(
        &server,
        &[
            "--assignment",
            "demo.busybox",
            "--state",
            "running",
            "--sort",
            "memory",
        ],
    );
    let order: Vec<&str> = both.iter().map(|i| i["specID"].as_str().unwrap()).collect();
    assert_eq!(order, ["use-memory", "use-forks"]);

    let table = Command::new(BINARY)
        .args(["list", "--sort", "memory", "--state-dir"])
        .arg(server.state_dir())
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("HANDLE") && lines[0].contains("MEMORY"),
        "{table}"
    );
    assert!(
        lines[1].contains(first["handle"].as_str().unwrap()) && lines[1].contains("/512.0M"),
        "{table}"
    );
    rt.block_on(async {
        terms.0.close().await;
        terms.1.close().await;
    });
}

/// `ua top` under a terminal: the table, redrawn, until `q`; the terminal
/// is as it was after. Into a closed pipe it ends quietly.
#[test]
fn top_redraws_until_q_and_puts_the_terminal_back() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("top-1"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let term = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo here").await;
        term
    });
    let handle = listed(&server, &[])[0]["handle"]
        .as_str()
        .unwrap()
        .to_string();
    let command = format!(
        "{} top --interval 1s --state-dir {}; echo \"top ended $?\"; stty -a; echo stty-said; sleep 60",
        BINARY,
        server.state_dir().display()
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for(&handle);
    assert!(
        screen.contains("HANDLE") && screen.contains("attached"),
        "{screen}"
    );
    assert!(
        screen.contains("ua top: 1 instances, 1 running"),
        "{screen}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("stty-said");
    assert!(screen.contains("top ended 0"), "{screen}");
    assert!(
        screen.contains(" icanon") && screen.contains(" echo "),
        "the terminal stayed raw:\n{screen}"
    );

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BINARY)
        .arg("top")
        .arg("--state-dir")
        .arg(server.state_dir())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{:?} {stderr}",
        out.status
    );
    rt.block_on(term.close());
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis: utime is the 12th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn timed_list(server: &TestServer) -> (Duration, Vec<Value>) {
    let start = std::time::Instant::now();
    let list = listed(server, &[]);
    (start.elapsed(), list)
}

/// The cost of one gather for a class of `UA_USAGE_BENCH_N` (300) running
/// instances (BENCHMARKS.md, "Per-instance usage"); a measure, not a test:
/// `cargo test --release --test usage -- --ignored --nocapture`.
#[test]
#[ignore]
fn gather_cost_for_a_class_of_running_instances() {
    let n: usize = std::env::var("UA_USAGE_BENCH_N").map_or(300, |v| v.parse().unwrap());
    let server = TestServer::start();
    write(
        &server.assignments().join("usagebench/Dockerfile"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    let ids: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let server = &server;
                scope.spawn(move || {
                    (w..n)
                        .step_by(8)
                        .map(|i| {
                            server.instance(&server.seal(&format!(
                                r#"{{"specID":"bench-{i}","assignmentName":"usagebench"}}"#
                            )))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let terms = rt.block_on(async {
        let mut terms = Vec::new();
        for id in &ids {
            let mut term = Term::connect(&server.ws_url(id)).await;
            term.run("echo up").await;
            terms.push(term);
        }
        terms
    });
    let (cold, list) = timed_list(&server);
    let live = list.iter().filter(|i| i["pids"].is_u64()).count();
    assert_eq!((list.len(), live), (n, n), "every instance has its usage");
    let rounds = 10;
    let before = cpu_ticks(server.pid());
    let mut warm: Vec<Duration> = (0..rounds).map(|_| timed_list(&server).0).collect();
    let ticks = cpu_ticks(server.pid()) - before;
    warm.sort();
    let filter = format!(
        "label=ua.state-dir={}",
        server.state_dir().canonicalize().unwrap().display()
    );
    let start = std::time::Instant::now();
    let sized = docker(&["ps", "-a", "-s", "-q", "--filter", &filter]);
    let disk = start.elapsed();
    assert_eq!(sized.lines().count(), n);
    let tick_ms = 1000.0 / 100.0;
    println!("| {n} running instances | measured |");
    println!("|---|---|");
    println!(
        "| first `ua list` (CPU over a 0.5 s pause, first disk sizes) | {} ms |",
        cold.as_millis()
    );
    println!(
        "| `ua list` after it, median / max of {rounds} (wall, client included) | {} / {} ms |",
        warm[rounds / 2].as_millis(),
        warm[rounds - 1].as_millis()
    );
    println!(
        "| server CPU per gather (user + system, mean of {rounds}) | {:.0} ms |",
        ticks as f64 * tick_ms / rounds as f64
    );
    println!(
        "| `docker ps -a -s` of the class (the disk sizes, every 2 min) | {} ms |",
        disk.as_millis()
    );
    rt.block_on(async {
        for term in terms {
            term.close().await;
        }
    });
}
