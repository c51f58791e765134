//! No key a student can type detaches the terminal from its program, and an
//! attach that ends while the program runs is attached again (issue 20, item 4).

mod common;

use std::time::Duration;

use common::*;

/// The shell's PID, and a variable set in it, as hex bytes of what it reads.
async fn shell_pid(term: &mut Term) -> String {
    let out = term.run("echo pid-$$-$KEPT-end").await;
    let start = out.rfind("pid-").expect("the pid line");
    out[start..].split("-end").next().unwrap().to_string()
}

/// Reads one line in the shell and shows its bytes, so the test sees what
/// the program got (the TTY's echo shows control keys as `^^` either way).
async fn bytes_read(term: &mut Term, keys: &[&str]) -> String {
    let tag = rand_tag();
    term.type_line(&format!(
        "IFS= read -r L; printf %s \"$L\" | od -An -tx1; echo \"od\"-\"{tag}\""
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for k in keys {
        term.send_keys(k).await;
    }
    let out = term.wait_for(&format!("od-{tag}")).await;
    out.split_whitespace()
        .filter(|w| w.len() == 2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Three Ctrl-^ typed one by one, and a paste holding them, reach the
/// program; the shell (same PID, its variable) lives on. On the old detach
/// keys (`ctrl-^` three times) the terminal closed with 1011.
#[test]
fn typed_and_pasted_ctrl_caret_reach_the_program() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("caret"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("export KEPT=still-here").await;
        let before = shell_pid(&mut term).await;
        assert!(before.ends_with("-still-here"), "{before}");
        let typed = bytes_read(&mut term, &["\x1e", "\x1e", "\x1e", "z\r"]).await;
        assert!(typed.contains("1e 1e 1e 7a"), "typed: {typed}");
        let pasted = bytes_read(&mut term, &["a\x1e\x1e\x1eb\x1e\x1e\x1e\x1e\r"]).await;
        assert!(
            pasted.contains("61 1e 1e 1e 62 1e 1e 1e 1e"),
            "pasted: {pasted}"
        );
        assert_eq!(shell_pid(&mut term).await, before);
        term.close().await;
    });
}

/// A proxy in front of the daemon that can cut every attach stream at once.
struct AttachCutter {
    cut: std::sync::Arc<tokio::sync::Notify>,
    attaches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    runtime: tokio::runtime::Runtime,
}

impl AttachCutter {
    fn new(path: &std::path::Path) -> AttachCutter {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let attaches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let _guard = runtime.enter();
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let (cut_all, count) = (cut.clone(), attaches.clone());
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (cut_all, count) = (cut_all.clone(), count.clone());
                tokio::spawn(async move {
                    let daemon = tokio::net::UnixStream::connect("/var/run/docker.sock")
                        .await
                        .unwrap();
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_daemon, mut to_daemon) = daemon.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_daemon, &mut to_client).await;
                    });
                    let mut buffer = vec![0; 64 * 1024];
                    let mut attach = false;
                    loop {
                        let n = tokio::select! {
                            n = from_client.read(&mut buffer) => n,
                            () = cut_all.notified(), if attach => break,
                        };
                        let Ok(n) = n else { break };
                        if n == 0 {
                            break;
                        }
                        if !attach && buffer[..n].windows(7).any(|w| w == b"/attach") {
                            attach = true;
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        if to_daemon.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    back.abort();
                });
            }
        });
        drop(_guard);
        AttachCutter {
            cut,
            attaches,
            runtime,
        }
    }

    fn attaches(&self) -> usize {
        self.attaches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The attach stream to Docker breaks while the shell runs: ua attaches
/// again, the websocket stays open, and the same shell answers (no 1011, no
/// stop of the container). A container from the warm pool has its terminal
/// on Docker's attach (the gate, docs/API.md "Containers"); the agent's
/// terminals do not pass through Docker at all.
#[test]
fn a_cut_attach_is_attached_again() {
    docker_ready();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("docker.sock");
    let cutter = AttachCutter::new(&socket);
    let docker_host = format!("unix://{}", socket.display());
    let server = TestServer::start_with_env(&["--warm", "1"], &[("DOCKER_HOST", &docker_host)]);
    write(
        &server.assignments().join("lab/detach/Dockerfile"),
        "FROM ua-busybox:latest\nRUN echo detach > /version.txt\nCMD [\"/bin/sh\"]\n",
    );
    let spec = |n: &str| {
        server.seal(&format!(
            r#"{{"specID":"{n}","assignmentName":"lab.detach"}}"#
        ))
    };
    // The first builds the image; the pool then fills and the second takes it.
    server.instance(&spec("reattach-0"));
    let mine = format!(
        "label=ua.state-dir={}",
        server.state_dir().canonicalize().unwrap().display()
    );
    eventually(Duration::from_secs(60), "a warm container", || {
        let ps = [
            "ps",
            "-q",
            "--filter",
            "label=ua.kind=pool",
            "--filter",
            &mine,
        ];
        docker(&ps).lines().count() >= 1
    });
    let id = server.instance(&spec("reattach"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("export KEPT=across-the-cut").await;
        let before = shell_pid(&mut term).await;
        assert_eq!(cutter.attaches(), 1);
        for round in 2..=3 {
            let _enter = cutter.runtime.enter();
            cutter.cut.notify_waiters();
            eventually(Duration::from_secs(10), "ua attaches again", || {
                cutter.attaches() >= round
            });
            assert_eq!(shell_pid(&mut term).await, before, "round {round}");
        }
        term.close().await;
    });
}
