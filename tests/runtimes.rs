//! Per-user kernel limits students share (issue 20, item 3): the `nofile`
//! ulimit under runc, and gVisor (`--runtime runsc`), where each sandbox has
//! its own kernel, so one student's inotify instances and ptys are not the
//! other's. Needs `scripts/ensure-docker` (it registers runsc).

mod common;

use common::*;

fn host_ptys() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/pty/nr")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Every container ua makes has the `nofile` ulimit (1024, soft and hard).
#[test]
fn runc_containers_have_the_nofile_ulimit() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("ulimit"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo n-$(ulimit -n)-$(ulimit -Hn)-n").await;
        assert!(out.contains("n-1024-1024-n"), "{out}");
        term.close().await;
    });
}

/// An unknown runtime stops the server at start with a clear error.
#[test]
fn an_unknown_runtime_is_refused_at_start() {
    docker_ready();
    let mut server = TestServer::start();
    server.terminate();
    let out = server
        .command()
        .args(["--runtime", "no-such-runtime"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("no runtime \"no-such-runtime\""), "{log}");
}

/// Two students under gVisor: one holds 130 inotify instances and 200 ptys;
/// the other still gets an inotify instance and a new pty, and the host's
/// pty count does not carry the first one's.
#[test]
fn gvisor_students_do_not_starve_each_other() {
    docker_ready();
    // The hog runs 330 processes; under gVisor each costs ~9 host tasks,
    // which ua's pids limit for runsc allows for.
    let server = TestServer::start_with(&["--runtime", "runsc", "--pids-limit", "512"]);
    let hog = server.instance(&server.demo_spec("gvisor-hog"));
    let other = server.instance(&server.demo_spec("gvisor-other"));
    let run = std::panic::AssertUnwindSafe(|| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut a = Term::connect(&server.ws_url(&hog)).await;
            let kernel = a.run("echo k-$(uname -r)-k").await;
            assert!(kernel.contains("k-4.4.0-k"), "not gVisor: {kernel}");
            let ptys_before = host_ptys();
            a.run("for i in $(seq 130); do inotifyd - /tmp >/dev/null 2>&1 & done; sleep 1")
                .await;
            a.run("for i in $(seq 200); do sleep 1000 <>/dev/ptmx & done; sleep 1")
                .await;
            let held = a
                .run("echo held-$(ls /proc/*/fd/* -l 2>/dev/null | grep -c ptmx)-h")
                .await;
            assert!(held.contains("held-2"), "the hog holds its ptys: {held}");
            let mut b = Term::connect(&server.ws_url(&other)).await;
            let inotify = b
                .run("inotifyd - /tmp & p=$!; sleep 1; kill -0 $p && echo ino-ok-$p")
                .await;
            assert!(inotify.contains("ino-ok-"), "{inotify}");
            let pty = b.run("sleep 1 <>/dev/ptmx && echo pty-ok").await;
            assert!(pty.contains("pty-ok\r"), "{pty}");
            let moved = host_ptys() - ptys_before;
            assert!(moved < 100, "the host's ptys moved by {moved}");
            a.close().await;
            b.close().await;
        })
    });
    if let Err(panic) = std::panic::catch_unwind(run) {
        eprintln!("server log:\n{}", server.log());
        std::panic::resume_unwind(panic);
    }
}
