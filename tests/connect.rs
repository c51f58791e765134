//! `ua connect` driven under a real pseudo-terminal (tmux): raw mode, typed
//! commands, Ctrl-C passed through, resize, the close reason, and the local
//! terminal restored afterwards.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::process::Command;
use std::time::Duration;

use common::*;
use tmux::Tmux;

#[test]
fn connect_attaches_this_terminal_to_an_instance() {
    let server = TestServer::start();
    let command = format!(
        "{BINARY} connect --key-file {} --server http://127.0.0.1:{} --assignment demo.busybox \
         --data '{{\"greeting\": \"hello from tmux\"}}' --spec-id connect-test; \
         echo exit=$?; stty -a | grep -o -- '-icanon\\|icanon' | head -1; sleep 60",
        server.key_file().display(),
        server.port
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("hello from tmux");
    let screen = tmux.wait_for("~ $");
    // The phases of the first start (POST /spec?progress), as they came.
    assert!(screen.contains("[ua: building the image"), "{screen}");
    tmux.keys(&["echo typed-$((40+2))", "Enter"]);
    tmux.wait_for("typed-42");
    // Ctrl-C reaches the remote shell, not this process.
    tmux.keys(&["sleep 100", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["C-c"]);
    tmux.keys(&["echo still-$((1+1))", "Enter"]);
    tmux.wait_for("still-2");
    // A resize reaches the remote terminal.
    tmux.resize(90, 20);
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["stty size", "Enter"]);
    tmux.wait_for("20 90");
    tmux.keys(&["exit", "Enter"]);
    let screen = tmux.wait_for("exit=0");
    assert!(screen.contains("[ua: the shell exited]"), "{screen}");
    // The local terminal is back in canonical (cooked) mode.
    let screen = tmux.wait_for("icanon");
    assert!(
        !screen.contains("-icanon"),
        "raw mode was not restored:\n{screen}"
    );
}

#[test]
fn connect_reports_a_refused_spec_and_a_takeover() {
    let server = TestServer::start();
    let refused = Command::new(BINARY)
        .args(["connect", "--key-file"])
        .arg(server.key_file())
        .args([
            "--server",
            &format!("http://127.0.0.1:{}", server.port),
            "--assignment",
            "no.such",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("404") && message.contains("no/such"),
        "{message}"
    );

    let id = server.instance(&server.demo_spec("connect-takeover"));
    let command = format!(
        "{BINARY} connect --server http://127.0.0.1:{} --instance {id}; echo exit=$?; sleep 60",
        server.port
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("~ $");
    // A browser takes over: the terminal says so in words.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let _newer = Term::connect(&server.ws_url(&id)).await;
        let screen = tmux.wait_for("exit=0");
        assert!(
            screen.contains("taken over by a newer connection"),
            "{screen}"
        );
    });
}

#[test]
fn connect_comes_back_to_the_same_shell_after_a_server_restart() {
    let mut server = TestServer::start();
    let id = server.instance(&server.demo_spec("connect-restart"));
    let command = format!(
        "{BINARY} connect --server http://127.0.0.1:{} --instance {id}; echo exit=$?; sleep 60",
        server.port
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("~ $");
    tmux.keys(&["mark=kept-$((6*7)); echo pid=$$.", "Enter"]);
    let screen = tmux.wait_for("pid=");
    let pid = screen
        .rsplit("pid=")
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    // A restart (SIGTERM: close 1001), then a kill -9 (the connection drops).
    assert!(server.terminate().success());
    tmux.wait_for("reconnecting");
    server.spawn();
    tmux.keys(&["echo \"after=$$/$mark\"", "Enter"]);
    tmux.wait_for(&format!("after={pid}/kept-42"));
    server.kill();
    server.spawn();
    tmux.keys(&["echo \"again=$$/$mark\"", "Enter"]);
    tmux.wait_for(&format!("again={pid}/kept-42"));
}

/// Issue 25, item 6: an assignment setting above the server's cap is named
/// in `POST /spec`'s answer, and `ua connect` says it before the terminal.
#[test]
fn capped_settings_are_named_to_the_client_and_by_connect() {
    let server = TestServer::start_with(&["--max-memory-mb", "256"]);
    let dir = server.assignments().join("greedy");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    write(&dir.join("assignment.json"), r#"{"memoryMB": 100000}"#);
    let sentence = "memoryMB 100000 is above the server's --max-memory-mb 256: 256 is used";
    let spec = server.seal(r#"{"specID":"greedy-api","assignmentName":"greedy"}"#);
    let answer = server.http("POST", "/spec", &spec);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["capped"], serde_json::json!([sentence]));
    let plain = server.http("POST", "/spec", &server.demo_spec("not-capped"));
    assert!(plain.json().get("capped").is_none(), "{}", plain.body);

    let command = format!(
        "{BINARY} connect --key-file {} --server http://127.0.0.1:{} --assignment greedy; sleep 60",
        server.key_file().display(),
        server.port
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for("built-in shell");
    assert!(
        screen.contains("[ua: memoryMB 100000 is above the server"),
        "{screen}"
    );
}

/// `--terminal NAME` attaches to that terminal of the instance, its own
/// shell beside `main`; a bad name is refused by the flag itself.
#[test]
fn connect_attaches_to_a_named_terminal() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("connect-named"));
    let command = format!(
        "{BINARY} connect --server http://127.0.0.1:{} --instance {id} --terminal srv; echo exit=$?; sleep 60",
        server.port
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("~ $");
    tmux.keys(&["echo in-srv-$((6*7))", "Enter"]);
    tmux.wait_for("in-srv-42");
    let listed = server.http("GET", &format!("/instance/{id}/terminals"), "");
    let names: Vec<_> = listed.json()["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["connected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("srv".to_string(), true)], "{}", listed.body);
    tmux.keys(&["exit", "Enter"]);
    tmux.wait_for("exit=0");
    let bad = std::process::Command::new(BINARY)
        .args(["connect", "--instance", &id, "--terminal", "Bad/Name"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("terminal names are"));
}
