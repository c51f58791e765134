//! Several named terminals per instance (docs/API.md, "Terminals"), held by
//! the container's agent: side by side, each with its own takeover and
//! observers, listed and closed over HTTP, capped by `maxTerminals`, and
//! surviving restarts of ua. Real server, real Docker, real websockets.

mod common;

use std::time::Duration;

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A server with a busybox assignment `tabs.<name>` (USER student) that
/// allows `max` terminals.
fn tabs_server(name: &str, max: u32) -> TestServer {
    let server = TestServer::start();
    let dir = server.assignments().join(format!("tabs/{name}"));
    write(
        &dir.join("Dockerfile"),
        "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n",
    );
    write(
        &dir.join("assignment.json"),
        &format!(r#"{{"maxTerminals": {max}}}"#),
    );
    server
}

fn instance_of(server: &TestServer, name: &str) -> String {
    let spec = format!(r#"{{"specID":"{name}","assignmentName":"tabs.{name}"}}"#);
    server.instance(&server.seal(&spec))
}

fn named(server: &TestServer, id: &str, name: &str) -> String {
    format!("{}?terminal={name}", server.ws_url(id))
}

/// `GET /instance/{id}/terminals`, as name → (running, connected, observers).
fn listed(server: &TestServer, id: &str) -> Vec<(String, bool, bool, u64)> {
    let response = server.http("GET", &format!("/instance/{id}/terminals"), "");
    assert_eq!(response.status, 200, "{}", response.body);
    let json = response.json();
    json["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["running"].as_bool().unwrap(),
                t["connected"].as_bool().unwrap(),
                t["observers"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The HTTP status of a websocket upgrade that is refused.
async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
        Ok(_) => panic!("{url}: upgraded"),
    }
}

/// The shell's PID as it says it.
async fn pid(term: &mut Term) -> String {
    let out = term.run("echo pid=$$.").await;
    out.rsplit("pid=")
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn two_terminals_run_a_server_and_its_client_side_by_side() {
    let server = tabs_server("side", 3);
    let id = instance_of(&server, "side");
    runtime().block_on(async {
        let mut main = Term::connect(&server.ws_url(&id)).await;
        let mut srv = Term::connect(&named(&server, &id, "srv")).await;
        assert_ne!(pid(&mut main).await, pid(&mut srv).await, "two shells");
        // A server in one terminal, its client in the other.
        srv.run("mkfifo pipe").await;
        srv.type_line("cat pipe | sed 's/^/served: /'").await;
        main.run("echo hello-$((6*7)) > pipe").await;
        srv.wait_for("served: hello-42").await;
        let whoami = srv.run("id -un").await;
        assert!(whoami.contains("student"), "{whoami}");

        let names: Vec<_> = listed(&server, &id)
            .into_iter()
            .map(|t| (t.0, t.2))
            .collect();
        assert_eq!(names, [("main".into(), true), ("srv".into(), true)]);

        // A newer connection to srv takes srv over, and only srv.
        let mut srv2 = Term::connect(&named(&server, &id, "srv")).await;
        let (ended, _) = srv.until_closed(Duration::from_secs(10)).await;
        assert_eq!(ended, Ended::Closed(4001));
        let out = main.run("echo main-still-$((2+3))").await;
        assert!(out.contains("main-still-5"), "{out}");
        let out = srv2.run("echo srv-again").await;
        assert!(out.contains("srv-again"), "{out}");

        // An observer of srv is counted there, not on main.
        let mut watcher =
            Term::connect(&format!("{}&mode=observe", named(&server, &id, "srv"))).await;
        eventually(Duration::from_secs(5), "the observer is listed", || {
            listed(&server, &id)
                .iter()
                .any(|t| t.0 == "srv" && t.3 == 1)
        });
        srv2.run("echo watched-$((3*3))").await;
        watcher.wait_for("watched-9").await;
        assert!(listed(&server, &id)
            .iter()
            .any(|t| t.0 == "main" && t.3 == 0));
        watcher.close().await;
        srv2.close().await;
        main.close().await;
    });
}

#[test]
fn one_terminal_past_max_terminals_is_refused_before_the_upgrade_and_delete_closes_one() {
    let server = tabs_server("cap", 2);
    let id = instance_of(&server, "cap");
    runtime().block_on(async {
        let mut main = Term::connect(&server.ws_url(&id)).await;
        let mut two = Term::connect(&named(&server, &id, "two")).await;
        two.run("echo two-up").await;
        assert_eq!(refused_status(&named(&server, &id, "three")).await, 409);
        let body = server.http("GET", &format!("/instance/{id}/ws?terminal=three"), "");
        assert_eq!(body.status, 400, "not an upgrade: {}", body.body);
        for bad in ["Main", "a_b", "x%2Fy", "seventeen-chars-x", "a&terminal=b"] {
            assert_eq!(
                refused_status(&named(&server, &id, bad)).await,
                400,
                "{bad}"
            );
        }
        // Reconnecting to a running terminal is not one more.
        let mut two_again = Term::connect(&named(&server, &id, "two")).await;
        two.until_closed(Duration::from_secs(10)).await;

        let closed = server.http("DELETE", &format!("/instance/{id}/terminals/two"), "");
        assert_eq!(closed.status, 200, "{}", closed.body);
        assert_eq!(closed.json()["closed"], "two");
        let (ended, disconnect) = two_again.until_closed(Duration::from_secs(10)).await;
        assert_eq!((ended, disconnect), (Ended::Closed(1000), true));
        let gone = server.http("DELETE", &format!("/instance/{id}/terminals/two"), "");
        assert_eq!(gone.status, 404, "{}", gone.body);
        let bad = server.http("DELETE", &format!("/instance/{id}/terminals/No"), "");
        assert_eq!(bad.status, 400, "{}", bad.body);
        // main went on, and there is room for another now.
        let out = main.run("echo main-fine").await;
        assert!(out.contains("main-fine"), "{out}");
        let mut three = Term::connect(&named(&server, &id, "three")).await;
        three.run("echo three-up").await;
        assert!(
            docker(&["inspect", "-f", "{{.State.Running}}", &format!("ua-{id}")]).contains("true")
        );
        three.close().await;
        main.close().await;
    });
    let unknown = server.http(
        "GET",
        &format!("/instance/{}/terminals", "0".repeat(32)),
        "",
    );
    assert_eq!(unknown.status, 404);
}

#[test]
fn every_terminal_keeps_its_program_and_replay_across_sigterm_and_kill_9() {
    let mut server = tabs_server("restart", 4);
    let id = instance_of(&server, "restart");
    let rt = runtime();
    let mut pids = Vec::new();
    rt.block_on(async {
        for name in ["main", "logs"] {
            let mut term = Term::connect(&named(&server, &id, name)).await;
            term.run(&format!("kept={name}-v; echo before-{name}"))
                .await;
            pids.push(pid(&mut term).await);
            term.close().await;
        }
    });
    for down in ["terminate", "kill"] {
        if down == "terminate" {
            assert!(server.terminate().success());
        } else {
            server.kill();
        }
        server.spawn();
        assert_eq!(instance_of(&server, "restart"), id, "{down}: same instance");
        rt.block_on(async {
            for (name, pid_before) in ["main", "logs"].iter().zip(&pids) {
                let mut term = Term::connect(&named(&server, &id, name)).await;
                // The agent's replay: what the terminal printed before.
                term.wait_for(&format!("before-{name}")).await;
                let out = term.run("echo \"pid=$$ var=$kept\"").await;
                assert!(
                    out.contains(&format!("pid={pid_before} var={name}-v")),
                    "{down}: {name} is not the same shell: {out}"
                );
                term.close().await;
            }
        });
    }
}

#[test]
fn the_students_user_cannot_reach_the_agents_socket() {
    let server = tabs_server("socket", 2);
    let id = instance_of(&server, "socket");
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term
            .run("ls /.ua/run; echo x > /.ua/run/planted; ls -ld /.ua/run; id -u")
            .await;
        assert!(out.contains("Permission denied"), "{out}");
        assert!(out.contains("drwx------"), "{out}");
        term.close().await;
    });
    // Root in the container sees a read-only directory it cannot plant in.
    let container = format!("ua-{id}");
    let script = "ln -s /etc /.ua/run/evil; touch /.ua/run/x";
    let planted = std::process::Command::new("docker")
        .args(["exec", "-u", "0", &container, "sh", "-c", script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&planted.stderr);
    assert!(said.matches("Read-only file system").count() == 2, "{said}");
    let dir = server.state_dir().join("agents");
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "one socket directory per agent container");
}
