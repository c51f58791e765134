//! Restarts of ua lose nothing (issue 13 item 2, docs/API.md "Lifecycle"):
//! the terminal is its container's main process, so SIGTERM or `kill -9`
//! of the server leaves it running, and a client that comes back within the
//! reattach grace lands in the same program. Real server processes, a real
//! Docker daemon, real websockets.

mod common;

use std::time::Duration;

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// How the server goes down.
#[derive(Clone, Copy, Debug)]
enum Down {
    Terminate,
    Kill,
}

impl Down {
    fn apply(self, server: &mut TestServer) {
        match self {
            Down::Terminate => assert!(server.terminate().success()),
            Down::Kill => server.kill(),
        }
    }
}

/// Sets a shell variable and notes the shell's PID, takes the server down
/// and up again, reconnects: same shell, same variable.
fn survives(server: &mut TestServer, sealed: &str, down: Down) {
    let id = server.instance(sealed);
    let rt = runtime();
    let (pid, mut old) = rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("kept=\"v-$((6*7))\"; echo pid=$$.").await;
        let pid = out
            .rsplit("pid=")
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        (pid.to_string(), term)
    });
    down.apply(server);
    let container = format!("ua-{id}");
    assert_eq!(
        server.containers(),
        vec![format!("{container} running")],
        "{down:?}: the container runs on without the server"
    );
    // The old connection ends (1001 on SIGTERM, dropped on kill -9).
    let (ended, _) = rt.block_on(old.until_closed(Duration::from_secs(10)));
    if let Down::Terminate = down {
        assert_eq!(ended, Ended::Closed(1001));
    }
    server.spawn();
    assert_eq!(server.instance(sealed), id, "{down:?}: same instance");
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo \"pid=$$ var=$kept\"").await;
        assert!(
            out.contains(&format!("pid={pid} var=v-42")),
            "{down:?}: not the same shell: {out}"
        );
        term.close().await;
    });
}

#[test]
fn sigterm_and_kill_9_keep_the_shell_of_a_per_instance_image() {
    let mut server = TestServer::start_with(&["--reattach-grace", "60s"]);
    let sealed = server.demo_spec("restart-template");
    survives(&mut server, &sealed, Down::Terminate);
    survives(&mut server, &sealed, Down::Kill);
}

#[test]
fn a_shared_image_terminal_with_setup_runs_as_the_user_and_survives_restarts() {
    let mut server = TestServer::start_with(&["--reattach-grace", "60s"]);
    let sealed = server.seal(
        r#"{"specID":"restart-shared","assignmentName":"demo.bench_shared","data":{"variant":"v7"}}"#,
    );
    let id = server.instance(&sealed);
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        // Setup ran as root before the terminal, which runs as the image's USER.
        let out = term
            .run("echo \"user=$(id -un) home=$HOME dir=$(pwd) variant=$(cat /etc/variant)\"")
            .await;
        assert!(
            out.contains("user=student home=/home/student dir=/home/student variant=v7"),
            "{out}"
        );
        // The container runs as root, the student's program with no capabilities.
        let out = term.run("grep CapEff /proc/$$/status").await;
        assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
        term.close().await;
    });
    survives(&mut server, &sealed, Down::Kill);
    survives(&mut server, &sealed, Down::Terminate);
}

#[test]
fn a_full_screen_program_keeps_its_state_and_repaints_after_a_restart() {
    let mut server = TestServer::start_with(&["--reattach-grace", "60s"]);
    let id = server.instance(&server.demo_spec("restart-vi"));
    let rt = runtime();
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.send_message(ClientMessage::SetSize { rows: 24, cols: 80 })
            .await;
        term.run("echo ready").await;
        // busybox vi, with unsaved text in its buffer.
        term.type_line("vi notes-in-progress.txt").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        term.send_keys("iunsaved-line-one\x1b").await;
        term.wait_for("unsaved-line-one").await;
        term.close().await;
    });
    server.kill();
    server.spawn();
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.send_message(ClientMessage::SetSize { rows: 24, cols: 80 })
            .await;
        // The lost screen is painted again: the buffer is still there.
        term.wait_for("unsaved-line-one").await;
        // Save and quit: the text was never written before.
        term.send_keys(":wq\r").await;
        let out = term.run("cat notes-in-progress.txt").await;
        assert!(out.contains("unsaved-line-one"), "{out}");
    });
}

#[test]
fn after_a_restart_a_terminal_nobody_comes_back_to_stops_after_the_grace() {
    let mut server = TestServer::start_with(&["--reattach-grace", "2s"]);
    let id = server.instance(&server.demo_spec("restart-abandoned"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo here").await;
        term.close().await;
    });
    server.kill();
    server.spawn();
    let container = format!("ua-{id}");
    eventually(
        Duration::from_secs(60),
        "the abandoned terminal's container is stopped",
        || server.containers() == vec![format!("{container} exited")],
    );
    // Files are kept; a new connection gets a new shell.
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo again").await;
        assert!(out.contains("again"), "{out}");
    });
}

#[test]
fn a_container_of_an_earlier_version_keeps_its_files_and_gets_an_exec_terminal() {
    let mut server = TestServer::start_with(&["--reattach-grace", "60s"]);
    let id = server.instance(&server.demo_spec("restart-legacy"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo from-before > kept.txt").await;
        term.close().await;
    });
    server.kill();
    // Made over as an earlier ua made it: an idle main process as the
    // image's USER, the files of the old container, a record without `gate`.
    let name = format!("ua-{id}");
    docker(&["stop", "-t", "0", &name]);
    docker(&["commit", &name, &format!("ua-legacy-test:{id}")]);
    let state = server.state_dir().canonicalize().unwrap();
    let labels = [
        "ua.owned=true".to_string(),
        format!("ua.state-dir={}", state.display()),
        format!("ua.instance={id}"),
    ];
    docker(&["rm", "-f", &name]);
    let mut create = vec!["create", "--init", "--network", "none", "--name", &name];
    for label in &labels {
        create.extend(["--label", label]);
    }
    let image = format!("ua-legacy-test:{id}");
    create.extend(["--entrypoint", "/bin/sh", &image, "-c"]);
    create.push("trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done");
    let container_id = docker(&create).trim().to_string();
    let record_path = server
        .state_dir()
        .join("instances")
        .join(format!("{id}.json"));
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record_path).unwrap()).unwrap();
    record["containerId"] = container_id.clone().into();
    record.as_object_mut().unwrap().remove("gate");
    std::fs::write(&record_path, record.to_string()).unwrap();

    server.spawn();
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo \"$(cat kept.txt) as $(id -un)\"").await;
        assert!(out.contains("from-before as student"), "{out}");
        term.close().await;
    });
    // Its terminal dies with the server: a shutdown stops it, as before.
    assert!(server.terminate().success());
    assert_eq!(server.containers(), vec![format!("{name} exited")]);
    docker(&["rm", "-f", &name]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &image])
        .output();
}

/// A server killed in the middle of a build leaves the classic builder's
/// step images, which hold the rendered context (here an answer). Every
/// build stage carries the server's labels, so the next start finds them
/// and removes them.
#[test]
fn the_step_images_of_a_build_cut_short_by_kill_9_are_removed_at_the_next_start() {
    let mut server = TestServer::start();
    write(
        &server.assignments().join("slow/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo {{ data.answer | shell }} > /answer\nRUN sleep 120\n",
    );
    let sealed =
        server.seal(r#"{"specID":"slow-1","assignmentName":"slow","data":{"answer":"42"}}"#);
    let port = server.port;
    let posting = std::thread::spawn(move || http(port, "POST", "/spec", &[], sealed.as_bytes()));
    let state = server.state_dir().canonicalize().unwrap();
    let filter = format!("label=ua.state-dir={}", state.display());
    let step_images = || docker(&["images", "-aq", "--filter", &filter]);
    // The `LABEL` step's image, then the `RUN echo` step's.
    eventually(Duration::from_secs(60), "two step images are made", || {
        step_images().lines().count() >= 2
    });
    server.kill();
    let _ = posting.join();
    let left = step_images();
    let holds_answer = left.lines().any(|image| {
        let cat = ["run", "--rm", "--network", "none", image, "cat", "/answer"];
        docker(&cat).trim() == "42"
    });
    assert!(
        holds_answer,
        "no step image holds the rendered context: {left}"
    );

    server.spawn();
    eventually(
        Duration::from_secs(30),
        "the step images are removed",
        || step_images().trim().is_empty(),
    );
    assert!(
        server.log().contains("that no record owns"),
        "{}",
        server.log()
    );
}
