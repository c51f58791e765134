//! The core slice against a real server, real Docker and a real websocket:
//! sealed specs, `POST /spec` and its errors, the terminal, takeover, clean.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn keygen_seal_and_open_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    let out = Command::new(BINARY).arg("keygen").output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.trim().len(), 44, "{line:?}");
    std::fs::write(&key, format!("# ua key\n{line}")).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let spec = r#"{"specID":"s1","assignmentName":"a.b","data":{"x":1}}"#;
    let run = |verb: &str, input: &str| ua_with_input(verb, &key, input);
    let sealed = run("seal", spec);
    assert!(sealed.status.success());
    let sealed = String::from_utf8(sealed.stdout).unwrap();
    assert_ne!(
        run("seal", spec).stdout,
        sealed.as_bytes(),
        "a fresh nonce per seal"
    );
    let opened = run("open", &sealed);
    assert_eq!(String::from_utf8(opened.stdout).unwrap().trim(), spec);

    // A group-readable key file is refused, naming the file and the fix.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let refused = run("open", &sealed);
    assert!(!refused.status.success());
    let message = String::from_utf8(refused.stderr).unwrap();
    assert!(
        message.contains(&key.display().to_string()) && message.contains("chmod 600"),
        "{message}"
    );
}

#[test]
fn a_spec_becomes_a_terminal_in_its_container() {
    let server = TestServer::start();
    let sealed = server.demo_spec("terminal");
    let id = server.instance(&sealed);
    assert_eq!(id.len(), 32);
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["instanceID"], id.as_str());
    assert_eq!(records[0]["specID"], "terminal");
    assert!(
        !serde_json::to_string(&records[0])
            .unwrap()
            .contains("hi terminal"),
        "no spec data in records"
    );
    assert_eq!(server.containers(), vec![format!("ua-{id} created")]);
    // Labels name the student by handle, never by the ID (the credential).
    let labels = docker(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        &format!("ua-{id}"),
    ]);
    let labels: serde_json::Value = serde_json::from_str(labels.trim()).unwrap();
    assert_eq!(labels["ua.owned"], "true", "{labels}");
    assert_eq!(labels["ua.assignment"], "demo.busybox", "{labels}");
    let handle = labels["ua.handle"].as_str().expect("a handle label");
    assert_eq!(handle.len(), 8, "{labels}");
    assert!(!labels.to_string().contains(&id), "the ID in {labels}");
    let image = docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        &format!("ua/{id}"),
    ]);
    assert!(image.contains(handle) && !image.contains(&id), "{image}");

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        // The image's CMD runs: it prints the rendered motd first.
        term.wait_for("hi terminal").await;
        // USER, WORKDIR and ENV of the image; the rendered context file.
        let out = term
            .run("id -un; pwd; echo $ASSIGNMENT; cat notes.txt")
            .await;
        assert!(
            out.contains("student\r\n/home/student\r\ndemo.busybox"),
            "{out}"
        );
        assert!(
            out.contains(&format!("instance {id} of spec terminal")),
            "{out}"
        );
        // Junk frames are ignored and the session goes on.
        for junk in [
            "not json",
            "{}",
            "[]",
            "[\"stdin\"]",
            "[\"set_size\",0,0]",
            "[\"bogus\",1]",
            "[42]",
        ] {
            term.send(junk).await;
        }
        term.send(r#"["set_size",33,101,800,600]"#).await;
        let out = term.run("stty size").await;
        assert!(out.contains("33 101"), "{out}");
        // UTF-8 arrives whole, even when written a byte at a time.
        let out = term
            .run(r"printf '\303'; sleep 0.2; printf '\251\342\202'; sleep 0.2; printf '\254 ok\n'")
            .await;
        assert!(out.contains("é€ ok"), "{out}");
        // No network in the container.
        let out = term.run("ls /sys/class/net").await;
        assert!(out.contains("lo") && !out.contains("eth0"), "{out}");
        // The command exiting sends disconnect and closes with 1000.
        term.type_line("exit").await;
        let (ended, disconnect) = term.until_closed(Duration::from_secs(10)).await;
        assert_eq!(ended, Ended::Closed(1000));
        assert!(disconnect, "[\"disconnect\", 1] before the close");
    });
    // The last session ended: the container is stopped, its files kept.
    eventually(Duration::from_secs(15), "the container is stopped", || {
        server.containers() == vec![format!("ua-{id} exited")]
    });
    assert!(
        !server.log().contains("hi terminal"),
        "spec data in the log:\n{}",
        server.log()
    );
}

#[test]
fn the_same_spec_reuses_its_instance_and_builds_once() {
    let server = TestServer::start();
    let sealed = server.demo_spec("reuse");
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| server.instance(&sealed)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(server.images().len(), 1);
    // Sealed again (new nonce, same specID): the same instance.
    assert_eq!(server.instance(&server.demo_spec("reuse")), ids[0]);
    // A different spec is a different instance.
    assert_ne!(server.instance(&server.demo_spec("other")), ids[0]);
    assert_eq!(server.records().len(), 2);
}

#[test]
fn different_specs_build_in_parallel_up_to_the_limit() {
    let server = TestServer::start_with(&["--max-builds", "2"]);
    // Each build sleeps a second: with 2 at a time, 4 builds take at least 2 s.
    let slow = server.assignments().join("slow");
    write(
        &slow.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo {{ spec_id }} > /id && sleep 1\n",
    );
    let started = std::time::Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    server.instance(&server.seal(&format!(
                        r#"{{"specID":"slow-{i}","assignmentName":"slow"}}"#
                    )))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4);
    // Not a timing benchmark: only that the limit holds (2 rounds of 1 s at least).
    assert!(
        elapsed >= Duration::from_secs(2),
        "4 builds of 1 s with --max-builds 2 took {elapsed:?}"
    );
}

#[test]
fn bad_specs_get_clear_errors_without_spec_data() {
    let server = TestServer::start();
    let secret = "hunter2-secret";
    let status_and_error = |body: &str| {
        let response = server.http("POST", "/spec", body);
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{} {} for {body:.60}", response.status, response.body))
            .to_string();
        assert!(!error.contains(secret), "{error}");
        (response.status, error)
    };

    let (status, error) = status_and_error("this is not base64!");
    assert_eq!((status, error.contains("base64")), (400, true), "{error}");

    let other_key = tempfile::tempdir().unwrap();
    let other_key = other_key.path().join("key");
    write_key_file(&other_key);
    let plaintext =
        format!(r#"{{"specID":"x","assignmentName":"demo.busybox","data":{{"s":"{secret}"}}}}"#);
    let wrong_key =
        String::from_utf8(ua_with_input("seal", &other_key, &plaintext).stdout).unwrap();
    let (status, error) = status_and_error(&wrong_key);
    assert_eq!(status, 400);
    assert!(error.contains("key"), "{error}");

    let cases = [
        (
            format!(r#"{{"specID":"x","data":"{secret}"}}"#),
            400,
            "assignmentName",
        ),
        (
            format!(r#"{{"specID":"","assignmentName":"demo.busybox","data":"{secret}"}}"#),
            400,
            "specID",
        ),
        (
            format!(r#"{{"specID":"x","assignmentName":"../etc","data":"{secret}"}}"#),
            400,
            "assignmentName",
        ),
        (
            format!(r#"{{"specID":"x","assignmentName":"no.such.thing","data":"{secret}"}}"#),
            404,
            "no.such.thing",
        ),
        (
            format!(
                r#"{{"specID":"x","assignmentName":"demo.busybox","notAfter":1000,"data":"{secret}"}}"#
            ),
            410,
            "notAfter",
        ),
        // The demo needs data.greeting: rendering fails strictly.
        (
            format!(
                r#"{{"specID":"x","assignmentName":"demo.busybox","data":{{"other":"{secret}"}}}}"#
            ),
            422,
            "undefined",
        ),
    ];
    for (plaintext, want_status, want_word) in cases {
        // `ua seal` refuses invalid specs, so seal through a raw key holder: the server must refuse too.
        let sealed = seal_raw(&server, &plaintext);
        let (status, error) = status_and_error(&sealed);
        assert_eq!(status, want_status, "{plaintext}: {error}");
        let want_word = want_word.replace("no.such.thing", "no/such/thing");
        assert!(error.contains(&want_word), "{plaintext}: {error}");
    }
    let (status, _) = status_and_error(&seal_raw(&server, "[1,2]"));
    assert_eq!(status, 400);

    // Too big a body (413): tests/in_process.rs.

    // A build that fails: 422 with its last lines of output sealed.
    let broken = server.assignments().join("broken");
    write(
        &broken.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo 'about to fail with {{ data.answer }}' && exit 3\n",
    );
    let sealed = server.seal(&format!(
        r#"{{"specID":"b","assignmentName":"broken","data":{{"answer":"{secret}"}}}}"#
    ));
    let response = server.http("POST", "/spec", &sealed);
    assert_eq!(response.status, 422, "{}", response.body);
    let sealed_output = response.json()["sealedOutput"]
        .as_str()
        .unwrap()
        .to_string();
    let opened = ua_with_input("open", &server.key_file(), &sealed_output);
    let opened = String::from_utf8_lossy(&opened.stdout);
    assert!(
        opened.contains(&format!("about to fail with {secret}")),
        "{opened}"
    );
    assert!(!response.body.contains(secret), "{}", response.body);
    assert!(
        server.containers().is_empty() && server.records().is_empty(),
        "nothing half-built is left"
    );
    assert!(
        !server.log().contains(secret),
        "spec data in the log:\n{}",
        server.log()
    );
}

/// Seals without validating, as a hostile or buggy client could.
fn seal_raw(server: &TestServer, plaintext: &str) -> String {
    let script = r#"
import base64, sys, nacl.secret
key = [l for l in open(sys.argv[1]).read().split() if not l.startswith('#')][0]
box = nacl.secret.SecretBox(base64.b64decode(key))
print(base64.b64encode(bytes(box.encrypt(sys.stdin.buffer.read()))).decode())
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(server.key_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyNaCl (pip install pynacl)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sealing with PyNaCl failed: is PyNaCl installed?"
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_newer_connection_takes_over_and_a_new_post_closes_the_session() {
    let server = TestServer::start();
    let sealed = server.demo_spec("takeover");
    let id = server.instance(&sealed);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut first = Term::connect(&server.ws_url(&id)).await;
        first.run("export MARK=kept").await;
        let mut second = Term::connect(&server.ws_url(&id)).await;
        assert_eq!(
            first.until_closed(Duration::from_secs(10)).await.0,
            Ended::Closed(4001)
        );
        // The newer connection has the same shell.
        let out = second.run("echo mark=$MARK").await;
        assert!(out.contains("mark=kept"), "{out}");
        // Posting the spec again hands the instance to the new client: 4001.
        let again = server.instance(&sealed);
        assert_eq!(again, id);
        assert_eq!(
            second.until_closed(Duration::from_secs(10)).await.0,
            Ended::Closed(4001)
        );
    });
}

#[test]
fn clean_removes_everything_sync_and_async() {
    let server = TestServer::start();
    let sealed = server.demo_spec("clean-sync");
    let id = server.instance(&sealed);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.wait_for("$").await;
        let response = server.http("POST", "/spec/clean?async=false", &sealed);
        assert_eq!(
            (response.status, response.json()["cleaned"].as_u64()),
            (200, Some(1))
        );
        assert_eq!(
            term.until_closed(Duration::from_secs(10)).await.0,
            Ended::Closed(4003)
        );
    });
    assert!(
        server.containers().is_empty() && server.images().is_empty() && server.records().is_empty()
    );
    let response = server.http("GET", &format!("/instance/{id}/ws"), "");
    assert_eq!(response.status, 404);
    assert!(response.json()["error"]
        .as_str()
        .unwrap()
        .contains("no such instance"));
    // Cleaning what is not there: 0.
    let response = server.http("POST", "/spec/clean?async=false", &sealed);
    assert_eq!(response.json()["cleaned"], 0);
    // The spec again: a new instance.
    let new_id = server.instance(&sealed);
    assert_ne!(new_id, id);

    // Async: 202 at once, gone soon after.
    let response = server.http("POST", "/spec/clean", &sealed);
    assert_eq!(response.status, 202);
    assert_eq!(response.json()["cleaned"], serde_json::Value::Null);
    eventually(Duration::from_secs(20), "the async clean finished", || {
        server.containers().is_empty() && server.images().is_empty() && server.records().is_empty()
    });
}

#[test]
fn health_and_the_websocket_origin_check() {
    let server = TestServer::start_with(&["--allowed-origins", "https://pl.example.edu"]);
    let health = server.http("GET", "/health", "");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["docker"], "ok");
    assert_eq!(health.json()["stateDir"], "ok");

    // CORS preflight and unknown routes: tests/in_process.rs.
    let id = server.instance(&server.demo_spec("origin"));
    let ws_headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let mut evil = ws_headers.to_vec();
    evil.push(("Origin", "https://evil.example"));
    assert_eq!(
        http(
            server.port,
            "GET",
            &format!("/instance/{id}/ws"),
            &evil,
            b""
        )
        .status,
        403
    );
    let mut good = ws_headers.to_vec();
    good.push(("Origin", "https://pl.example.edu"));
    // 101 then the connection stays open: read only the status line.
    assert_eq!(
        upgrade_status(server.port, &format!("/instance/{id}/ws"), &good),
        101
    );
}

fn upgrade_status(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn oversized_frames_close_with_1009() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("big-frame"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.wait_for("$").await;
        let huge = ua::protocol::terminado::ClientMessage::Stdin("x".repeat(2 << 20)).encode();
        let _ = futures_util::SinkExt::send(
            &mut term.socket,
            tokio_tungstenite::tungstenite::Message::text(huge),
        )
        .await;
        assert_eq!(
            term.until_closed(Duration::from_secs(10)).await.0,
            Ended::Closed(1009)
        );
    });
}

#[test]
fn ctrl_p_and_ctrl_q_reach_the_program_at_once() {
    // Docker's default detach keys would hold Ctrl-P back and end the
    // terminal on Ctrl-P Ctrl-Q.
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("detach-keys"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo ready").await;
        term.type_line("stty raw -echo; dd bs=1 count=2 2>/dev/null | od -An -tx1; stty sane")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        term.send_keys("\x10\x11").await;
        term.wait_for("10 11").await;
        let out = term.run("echo still-attached").await;
        assert!(out.contains("still-attached"), "{out}");
    });
}
