//! What an operator meets during a class (issue 25): the admin tools'
//! output and hints, the log's words about the pool, capped settings and
//! shutdown, trouble inside instances, bulk clean.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Runs `ua ARGS` with its standard output a pipe whose reader is gone, as
/// under `ua list | head` once head has exited.
fn with_closed_stdout(args: &[&str], state_dir: &Path) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BINARY)
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Runs `ua ARGS` in `cwd` with no `--state-dir` and no `UA_STATE_DIR`.
fn without_state_dir(args: &[&str], cwd: &Path) -> Output {
    Command::new(BINARY)
        .args(args)
        .current_dir(cwd)
        .env_remove("UA_STATE_DIR")
        .output()
        .unwrap()
}

/// Issue 25, item 6: a closed pipe ends `ua list` and `ua status` quietly.
#[test]
fn the_admin_tools_end_quietly_on_a_closed_pipe() {
    let server = TestServer::start();
    server.instance(&server.demo_spec("pipe-1"));
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["status"],
        &["status", "--json"],
    ] {
        let out = with_closed_stdout(args, &server.state_dir());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "ua {args:?}: {:?} {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "ua {args:?} wrote: {stderr}");
    }
}

/// Issue 25, item 6: without `--state-dir` the tools say how to reach a
/// demo server (scripts/demo keeps its state in demo/state).
#[test]
fn the_admin_tools_point_at_a_demo_server() {
    if Path::new("/var/lib/ua/admin.sock").exists() {
        panic!("a packaged ua runs on this machine: this test needs /var/lib/ua without one");
    }
    let server = TestServer::start();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = without_state_dir(&["status"], elsewhere.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pass its --state-dir") && stderr.contains("demo/state"),
        "{stderr}"
    );
    // In a checkout where scripts/demo runs a server.
    std::fs::create_dir(elsewhere.path().join("demo")).unwrap();
    std::os::unix::fs::symlink(server.state_dir(), elsewhere.path().join("demo/state")).unwrap();
    let out = without_state_dir(&["list"], elsewhere.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a server started by scripts/demo is here: pass --state-dir demo/state"),
        "{stderr}"
    );
}

/// Issue 25, item 6: `--warm 0` logs no pool; a setting above the
/// server's cap is logged once; shutdown says containers keep running.
#[test]
fn the_log_says_what_the_server_does_with_pool_caps_and_shutdown() {
    let mut server = TestServer::start_with(&["--max-memory-mb", "256"]);
    let dir = server.assignments().join("greedy");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    write(&dir.join("assignment.json"), r#"{"memoryMB": 100000}"#);
    let ids: Vec<String> = (0..2)
        .map(|n| {
            server.instance(&server.seal(&format!(
                r#"{{"specID":"greedy-{n}","assignmentName":"greedy"}}"#
            )))
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let term = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&ids[0])).await;
        term.run("echo attached").await;
        term
    });
    let capped =
        "assignment greedy: memoryMB 100000 is above the server's --max-memory-mb 256: 256 is used";
    eventually(Duration::from_secs(10), "the cap is logged", || {
        server.log().contains(capped)
    });
    let status = server.terminate();
    assert!(status.success());
    let log = server.log();
    assert_eq!(log.matches(capped).count(), 1, "{log}");
    assert!(log.contains(" WARN  assignment greedy: memoryMB"), "{log}");
    assert!(!log.to_lowercase().contains("warm pool"), "{log}");
    assert!(
        log.contains("running containers are left running for the next start"),
        "{log}"
    );
    drop(term);
    let live = format!("ua-{} running", ids[0]);
    assert!(
        server.containers().contains(&live),
        "{:?}",
        server.containers()
    );
}

/// The value of a `/metrics` series, if present.
fn metric(server: &TestServer, series: &str) -> Option<u64> {
    let page = server.http("GET", "/metrics", "").body;
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Issue 25, item 2: an OOM kill and a fork refused at the process limit
/// are logged at warning with the handle and counted by assignment; the
/// container carries the handle and assignment as labels; the create's log
/// line splits its phases.
#[test]
fn trouble_inside_an_instance_is_logged_and_counted() {
    let server = TestServer::start_with(&["--memory-mb", "32", "--pids-limit", "24"]);
    let id = server.instance(&server.demo_spec("trouble-1"));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&{
        let out = Command::new(BINARY)
            .args(["list", "--json", "--state-dir"])
            .arg(server.state_dir())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    })
    .unwrap();
    let handle = listed[0]["handle"].as_str().unwrap().to_string();
    let label = |name: &str| {
        docker(&[
            "inspect",
            "-f",
            &format!("{{{{index .Config.Labels \"{name}\"}}}}"),
            &format!("ua-{id}"),
        ])
    };
    assert_eq!(label("ua.handle").trim(), handle);
    assert_eq!(label("ua.assignment").trim(), "demo.busybox");
    let created =
        format!("instance {handle} created for spec \"trouble-1\" (assignment demo/busybox) in ");
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains(&created))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("(queue ") && line.contains(" build ") && line.contains(" create "),
        "{line}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo attached").await;
        let out = term
            .run("sh -c 'x=a; while :; do x=$x$x; done'; echo \"status $?\"")
            .await;
        assert!(out.contains("status 137"), "{out}");
        let out = term
            .run("sh -c 'for i in $(seq 40); do sleep 2 & done; wait' 2>&1 | tail -1; echo forked")
            .await;
        assert!(out.contains("forked"), "{out}");
        eventually(Duration::from_secs(20), "both are counted", || {
            metric(&server, "ua_oom_kills_total{assignment=\"demo.busybox\"}") == Some(1)
                && metric(
                    &server,
                    "ua_pids_limit_hits_total{assignment=\"demo.busybox\"}",
                )
                .is_some_and(|n| n >= 1)
        });
        term.close().await;
    });
    let log = server.log();
    assert!(
        log.contains(&format!(
            " WARN  instance {handle}: a process was killed for lack of memory"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(" WARN  instance {handle}: "))
            && log.contains("fork(s) refused at its process limit"),
        "{log}"
    );
    assert!(!log.contains(&id), "the instance ID is in the log");
}

/// Runs `ua clean ARGS` against `server` with `stdin` as its input.
fn clean_with_input(server: &TestServer, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(BINARY)
        .arg("clean")
        .args(args)
        .arg("--state-dir")
        .arg(server.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 25, item 3: `ua clean --assignment` (with `--dry-run`) and
/// `--idle-for`, asking y/N for more than one instance unless `--yes`.
#[test]
fn an_assignment_is_cleaned_at_once_after_a_yes() {
    let server = TestServer::start();
    write(
        &server.assignments().join("other/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    server.instance(&server.demo_spec("bulk-1"));
    server.instance(&server.demo_spec("bulk-2"));
    server.instance(&server.seal(r#"{"specID":"bulk-other","assignmentName":"other"}"#));
    assert_eq!(server.records().len(), 3);

    let (ok, out, _) =
        clean_with_input(&server, &["--assignment", "demo.busybox", "--dry-run"], "");
    assert!(ok && out.contains("would clean 2 instance(s)"), "{out}");
    assert!(
        out.contains("bulk-1") && out.contains("bulk-2") && !out.contains("bulk-other"),
        "{out}"
    );
    assert_eq!(server.records().len(), 3, "a dry run removes nothing");

    let (ok, out, err) = clean_with_input(&server, &["--assignment", "demo/busybox"], "n\n");
    assert!(ok && out.contains("nothing cleaned"), "{out}");
    assert!(err.contains("clean these 2 instances? [y/N]"), "{err}");
    assert_eq!(server.records().len(), 3);
    // End of input is a no too.
    let (ok, out, _) = clean_with_input(&server, &["--assignment", "demo.busybox"], "");
    assert!(ok && out.contains("nothing cleaned"), "{out}");

    let (ok, out, _) = clean_with_input(&server, &["--assignment", "demo.busybox"], "y\n");
    assert!(ok && out.contains("cleaned 2 instance(s)"), "{out}");
    let left = server.records();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["specID"], "bulk-other");

    let (ok, out, _) = clean_with_input(&server, &["--idle-for", "2h", "--yes"], "");
    assert!(ok && out.contains("no instance matches"), "{out}");
    // One instance: no question asked.
    let (ok, out, err) = clean_with_input(&server, &["--idle-for", "0s"], "");
    assert!(ok && out.contains("cleaned 1 instance(s)"), "{out} {err}");
    assert!(!err.contains("[y/N]"), "{err}");
    assert!(server.records().is_empty());
    eventually(Duration::from_secs(10), "the containers are gone", || {
        server.containers().is_empty()
    });
}
