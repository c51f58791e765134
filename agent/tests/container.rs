//! The static agent (scripts/build-agent) as the main process of a real
//! busybox container under Docker's init, its socket directory mounted
//! read-only, as ua will run it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{peer_uid, Ua};
use ua_agent::proto::{self, Message};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Fails loudly without Docker; builds the base image and the static agent.
fn ready() -> PathBuf {
    let info = run("docker", &["info"]);
    assert!(
        info.status.success(),
        "these tests need a running Docker daemon; `docker info` failed:\n{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let base = run(repo().join("scripts/build-busybox-base").to_str().unwrap(), &[]);
    assert!(base.status.success(), "ua-busybox:latest: {}", String::from_utf8_lossy(&base.stderr));
    let built = run(repo().join("scripts/build-agent").to_str().unwrap(), &[]);
    assert!(
        built.status.success(),
        "scripts/build-agent: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let agent = PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());
    let ldd = run("ldd", &[agent.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "ldd: {said}"
    );
    agent
}

/// A container of this test, removed on drop.
struct Container(String);

impl Container {
    fn start(socket_dir: &Path, agent: &Path) -> Container {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name =
            format!("ua-agent-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let run_mount = format!("{}:/.ua/run:ro", socket_dir.display());
        let agent_mount = format!("{}:/.ua/agent:ro", agent.display());
        let out = run(
            "docker",
            &[
                "run",
                "-d",
                "--init",
                "--network",
                "none",
                "--name",
                &name,
                "-v",
                &run_mount,
                "-v",
                &agent_mount,
                "ua-busybox:latest",
                "/.ua/agent",
                "--user",
                "student",
                "--workdir",
                "/home/student",
                "--",
                "/bin/sh",
            ],
        );
        assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
        Container(name)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = run("docker", &["logs", &self.0]);
            eprintln!("the agent said:\n{}", String::from_utf8_lossy(&logs.stderr));
        }
        let _ = run("docker", &["rm", "-f", &self.0]);
    }
}

fn setup(ua: &mut Ua, script: &str) -> (i32, String) {
    let id = ua.id();
    match ua.request(Message::Setup { id, script: script.into() }) {
        Message::SetupDone { status, output, .. } => (status, String::from_utf8(output).unwrap()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_static_agent_serves_a_busybox_container_through_a_read_only_mount() {
    let agent = ready();
    let dir = tempfile::tempdir().unwrap(); // 0700, root's: ua's own directory
    let listener = Ua::listen(dir.path());
    let container = Container::start(dir.path(), &agent);
    let mut ua = Ua::accept_control(listener, dir.path().join(proto::SOCKET_NAME));
    assert_eq!(peer_uid(&ua.control), 0, "the agent is root in the container");

    // Root in the container can neither plant a file nor a link there.
    let (status, output) = setup(
        &mut ua,
        "touch /.ua/run/planted; echo touch=$?; ln -s / /.ua/run/link; echo ln=$?\n\
         echo 'extra:x:2000:student' >> /etc/group\n\
         echo grp > /srv-g && chown 0:2000 /srv-g && chmod 0640 /srv-g\n\
         grep SigBlk /proc/$$/status\nid -u",
    );
    assert_eq!(status, 0, "{output}");
    // busybox's sh keeps the signal mask it gets: the agent's must not leak.
    assert!(output.contains("SigBlk:\t0000000000000000"), "{output}");
    assert!(output.contains("Read-only file system"), "{output}");
    assert!(
        output.contains("touch=1") && output.contains("ln=1") && output.ends_with("0\n"),
        "{output}"
    );
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [proto::SOCKET_NAME]);

    // A terminal as the image's user, with the group the setup added.
    let (_, started, mut main) = ua.open("main", 24, 80);
    assert!(started);
    main.send("grep SigBlk /proc/$$/status\n");
    main.expect("SigBlk:\t0000000000000000");
    main.send("echo hi-$((6*7)) $(id -u) $(id -G) $HOME $PWD\n");
    main.expect("hi-42 1000 1000 2000 /home/student /home/student");
    let id = ua.id();
    let read = ua.request(Message::ReadFile { id, path: b"/srv-g".to_vec(), offset: 0, limit: 64 });
    assert_eq!(read, Message::FileData { id, size: 4, data: b"grp\n".to_vec() });

    // The student's user cannot reach the socket: a real connect(2), by the
    // agent itself run as uid 1000, is refused at the 0700 directory.
    let probe = run(
        "docker",
        &[
            "exec",
            "-u",
            "1000",
            &container.0,
            "timeout",
            "2",
            "/.ua/agent",
            "--user",
            "1000",
            "--",
            "/bin/true",
        ],
    );
    let said = String::from_utf8_lossy(&probe.stderr);
    assert!(said.contains("cannot connect to /.ua/run/ua.sock: Permission denied"), "{said}");
    assert!(!ua.pending_connection(), "no connection came from uid 1000");

    // docker stop: SIGTERM through docker-init; the agent hangs up and exits 0.
    let stop = run("docker", &["stop", "-t", "30", &container.0]);
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert_eq!(main.expect_exit(), 128 + libc::SIGHUP);
    let code = run("docker", &["inspect", "-f", "{{.State.ExitCode}}", &container.0]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0", "the agent's own exit");
}
