//! Staff views and graded files (issue 12): the read-only observer websocket
//! (`?mode=observe`), `POST /spec?mode=observe`, and `GET /instance/{id}/files`.
//! Real server, real Docker, real websockets.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn observe_url(server: &TestServer, id: &str) -> String {
    format!("{}?mode=observe", server.ws_url(id))
}

/// Connects and returns the close code the server answers with before any `setup`.
async fn refused_with(url: &str) -> u16 {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("an answer in time");
        match frame {
            Some(Ok(Message::Close(frame))) => return frame.map_or(1005, |f| u16::from(f.code)),
            Some(Ok(Message::Text(text))) => panic!("expected a close, got {text}"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[test]
fn an_observer_sees_replay_and_live_output_and_cannot_type_or_take_over() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("observe"));
    runtime().block_on(async {
        let mut student = Term::connect(&server.ws_url(&id)).await;
        student.run("echo before-$((6*7))").await;
        let mut observer = Term::connect(&observe_url(&server, &id)).await;
        observer.wait_for("before-42").await;
        // The observer's keystrokes and sizes go nowhere.
        observer
            .send_keys("touch observer-was-here; echo typed-$((2*3))\r")
            .await;
        observer
            .send_message(ClientMessage::SetSize { rows: 5, cols: 20 })
            .await;
        let out = student.run("echo live-$((7*8)); ls").await;
        assert!(out.contains("live-56"), "{out}");
        assert!(!out.contains("observer-was-here"), "{out}");
        observer.wait_for("live-56").await;
        assert!(!observer.screen.contains("typed-6"), "{}", observer.screen);
        let size = student.run("stty size").await;
        assert!(!size.contains("5 20"), "the observer resized: {size}");
        // The observer leaving leaves the student's session alone.
        observer.close().await;
        let out = student.run("echo still-$((3*3))").await;
        assert!(out.contains("still-9"), "{out}");
        // POST /spec?mode=observe finds the instance without taking over.
        let sealed = server.demo_spec("observe");
        let found = server.http("POST", "/spec?mode=observe", &sealed);
        assert_eq!(found.status, 200, "{}", found.body);
        assert_eq!(found.json()["instanceID"], id);
        let out = student.run("echo after-peek-$((4*4))").await;
        assert!(out.contains("after-peek-16"), "{out}");
        student.close().await;
    });
}

#[test]
fn observe_never_starts_a_stopped_container_and_ends_with_the_terminal() {
    let server = TestServer::start_with(&["--reattach-grace", "1s"]);
    let sealed = server.demo_spec("observe-stopped");
    let unknown = server.http("POST", "/spec?mode=observe", &sealed);
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(server.containers().is_empty(), "peeking built something");
    let id = server.instance(&sealed);
    runtime().block_on(async {
        assert_eq!(refused_with(&observe_url(&server, &id)).await, 4004);
    });
    assert_eq!(server.containers(), vec![format!("ua-{id} created")]);
    runtime().block_on(async {
        let mut student = Term::connect(&server.ws_url(&id)).await;
        student.run("echo hi").await;
        let mut observer = Term::connect(&observe_url(&server, &id)).await;
        student.close().await;
        // No one comes back within the grace: the terminal stops, and so does the view.
        let (ended, _) = observer.until_closed(Duration::from_secs(30)).await;
        assert_eq!(ended, Ended::Closed(4004));
    });
    eventually(Duration::from_secs(15), "the container stopped", || {
        server.containers() == vec![format!("ua-{id} exited")]
    });
}

#[test]
fn observers_are_bounded_per_instance() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("observe-many"));
    runtime().block_on(async {
        let mut student = Term::connect(&server.ws_url(&id)).await;
        student.run("echo hi").await;
        let mut observers = Vec::new();
        for _ in 0..8 {
            observers.push(Term::connect(&observe_url(&server, &id)).await);
        }
        assert_eq!(refused_with(&observe_url(&server, &id)).await, 1013);
        // One leaves: there is room again.
        observers.pop().unwrap().close().await;
        let mut again = Term::connect(&observe_url(&server, &id)).await;
        student.run("echo seen-$((5*5))").await;
        again.wait_for("seen-25").await;
        // The student is taken over by a new student connection; observers stay.
        let mut newer = Term::connect(&server.ws_url(&id)).await;
        let (ended, _) = student.until_closed(Duration::from_secs(15)).await;
        assert_eq!(ended, Ended::Closed(4001));
        newer.run("echo newer-$((9*9))").await;
        again.wait_for("newer-81").await;
    });
}

fn files(server: &TestServer, id: &str, query: &str) -> Response {
    server.http("GET", &format!("/instance/{id}/files?{query}"), "")
}

fn decoded(body: &serde_json::Value) -> Vec<(String, String)> {
    body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f["contents"].as_str().unwrap())
                .unwrap();
            (
                f["name"].as_str().unwrap().to_string(),
                String::from_utf8(bytes).unwrap(),
            )
        })
        .collect()
}

#[test]
fn graded_files_come_out_of_running_and_stopped_containers() {
    let server = TestServer::start_with(&[
        "--reattach-grace",
        "1s",
        "--allowed-origins",
        "https://pl.example.edu",
    ]);
    let id = server.instance(&server.demo_spec("files"));
    // Never started: the image's files are there already (WORKDIR /home/student).
    let before = files(&server, &id, "path=notes.txt&path=hello.c");
    assert_eq!(before.status, 200, "{}", before.body);
    let body = before.json();
    assert_eq!(body["missing"], serde_json::json!(["hello.c"]));
    assert_eq!(decoded(&body)[0].0, "notes.txt");
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run(concat!(
            "printf 'int main(void) { return 0; }\\n' > hello.c; ",
            "mkdir -p sub; echo deep > sub/a.txt; ln -s /etc/motd link; ",
            "ln -s ../../../../../../etc/passwd escape; ",
            "head -c 1100000 /dev/zero > big.bin; ",
            "head -c 900000 /dev/zero | tr '\\0' a > part1; cp part1 part2; cp part1 part3; ",
            "cp part1 part4; cp part1 part5; cp part1 part6"
        ))
        .await;
        // While it runs.
        let running = files(&server, &id, "path=hello.c&path=sub%2Fa.txt");
        assert_eq!(running.status, 200, "{}", running.body);
        assert_eq!(
            decoded(&running.json()),
            vec![
                ("hello.c".into(), "int main(void) { return 0; }\n".into()),
                ("sub/a.txt".into(), "deep\n".into())
            ]
        );
        term.close().await;
    });
    eventually(Duration::from_secs(15), "the container stopped", || {
        server.containers() == vec![format!("ua-{id} exited")]
    });
    let stopped = files(
        &server,
        &id,
        "path=hello.c&path=%2Fetc%2Fmotd&path=link&path=escape&path=sub&path=%2Fdev%2Fnull&path=nope.txt",
    );
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let body = stopped.json();
    let got = decoded(&body);
    assert_eq!(got[0].1, "int main(void) { return 0; }\n");
    assert_eq!(got[1], ("/etc/motd".into(), "hi files\n".into()));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        body["missing"],
        serde_json::json!(["link", "escape", "sub", "/dev/null", "nope.txt"])
    );
    // Limits: 1 MiB per file, 5 MiB in all.
    let big = files(&server, &id, "path=big.bin");
    assert_eq!(big.status, 413, "{}", big.body);
    assert!(big.json()["error"].as_str().unwrap().contains("1 MiB"));
    let five = files(
        &server,
        &id,
        "path=part1&path=part2&path=part3&path=part4&path=part5",
    );
    assert_eq!(five.status, 200);
    let six = files(
        &server,
        &id,
        "path=part1&path=part2&path=part3&path=part4&path=part5&path=part6",
    );
    assert_eq!(six.status, 413, "{}", six.body);
    assert!(six.json()["error"].as_str().unwrap().contains("5 MiB"));
    // Bad requests and unknown instances.
    assert_eq!(files(&server, &id, "x=1").status, 400);
    let unknown = server.http(
        "GET",
        "/instance/0123456789abcdef0123456789abcdef/files?path=a",
        "",
    );
    assert_eq!(unknown.status, 404);
    // Pages of the allowed origins may read the files (CORS, like /spec).
    let path = format!("/instance/{id}/files?path=hello.c");
    let origin = [("Origin", "https://pl.example.edu")];
    let cors = http(server.port, "GET", &path, &origin, b"");
    assert_eq!(
        cors.header("access-control-allow-origin"),
        Some("https://pl.example.edu")
    );
}
