//! Files in (docs/API.md, "Files in"): `PUT /instance/{id}/files` writes a
//! file as the image's USER, so the student owns it and ua writes nowhere
//! they could not; `ua cp` copies in and out. Real server, real Docker.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;

/// A server with a shared-image busybox assignment `up.<name>` whose
/// student is `student`. Each test names its own: servers running at once
/// must not share an assignment image's tag (each removes its own images).
fn upload_server(name: &str, args: &[&str]) -> TestServer {
    let server = TestServer::start_with(args);
    write(
        &server.assignments().join(format!("up/{name}/Dockerfile")),
        "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n",
    );
    server
}

/// The instance of spec `spec_id` of `up.<spec_id>`.
fn instance_of(server: &TestServer, spec_id: &str) -> String {
    let spec = format!(r#"{{"specID":"{spec_id}","assignmentName":"up.{spec_id}"}}"#);
    server.instance(&server.seal(&spec))
}

/// `PUT` of raw bytes.
fn put(server: &TestServer, id: &str, query: &str, body: &[u8]) -> Response {
    let path = format!("/instance/{id}/files?{query}");
    http(server.port, "PUT", &path, &[], body)
}

fn is_running(id: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", &format!("ua-{id}")]).trim() == "true"
}

#[tokio::test]
async fn a_file_put_as_the_student_is_theirs_and_reads_back_byte_for_byte() {
    let server = upload_server("up-1", &[]);
    let id = instance_of(&server, "up-1");
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let response = put(&server, &id, "path=sub/dir/tool.sh&mode=0750", &content);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json(),
        serde_json::json!({"path": "sub/dir/tool.sh", "size": 70000})
    );

    let mut term = Term::connect(&server.ws_url(&id)).await;
    term.wait_for_from(0, "$ ", Duration::from_secs(30)).await;
    let out = term
        .run("stat -c '%U %a %s %n' sub sub/dir sub/dir/tool.sh")
        .await;
    assert!(
        out.contains("student 755 "),
        "parents made as the student: {out}"
    );
    assert!(out.contains("student 750 70000 sub/dir/tool.sh"), "{out}");

    let read = server.http(
        "GET",
        &format!("/instance/{id}/files?path=sub/dir/tool.sh"),
        "",
    );
    let contents = read.json()["files"][0]["contents"]
        .as_str()
        .unwrap()
        .to_string();
    let back = base64::engine::general_purpose::STANDARD
        .decode(contents)
        .unwrap();
    assert_eq!(back, content);

    // Replaced in place, the mode kept without ?mode.
    let response = put(
        &server,
        &id,
        "path=%2Fhome%2Fstudent%2Fsub%2Fdir%2Ftool.sh",
        b"v2",
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let out = term
        .run("stat -c '%a %s' sub/dir/tool.sh; cat sub/dir/tool.sh")
        .await;
    assert!(out.contains("750 2") && out.contains("v2"), "{out}");
}

#[tokio::test]
async fn where_the_student_cannot_write_the_put_is_refused() {
    let server = upload_server("up-2", &["--max-upload-mb", "1"]);
    let id = instance_of(&server, "up-2");
    let mut term = Term::connect(&server.ws_url(&id)).await;
    term.wait_for_from(0, "$ ", Duration::from_secs(30)).await;
    term.run("ln -s /root toroot; ln -s /etc/passwd pw; mkdir d; echo x > plain")
        .await;
    let refused = [
        ("path=/root/answer", 403),
        ("path=toroot/answer", 403),
        ("path=/etc/passwd", 403),
        ("path=/etc/new-file", 403),
        ("path=/proc/1/comm", 403),
        ("path=/dev/null", 403),
        ("path=pw", 409),
        ("path=d", 409),
        ("path=plain/x", 400),
        ("path=x&mode=8", 400),
        ("path=x&mode=1777", 400),
        ("path=a&path=b", 400),
        ("", 400),
    ];
    for (query, status) in refused {
        let response = put(&server, &id, query, b"forged");
        assert_eq!(response.status, status, "{query}: {}", response.body);
        assert!(response.json()["error"].is_string(), "{query}");
    }
    let out = term
        .run("grep -c forged /etc/passwd; ls /etc/new-file")
        .await;
    assert!(
        out.contains("0\r\n") && out.contains("No such file"),
        "{out}"
    );
    let big = vec![b'x'; (1 << 20) + 1];
    let response = put(&server, &id, "path=big", &big);
    assert_eq!(response.status, 413, "{}", response.body);
    let unknown = put(&server, &"0".repeat(32), "path=x", b"x");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[test]
fn a_put_into_a_stopped_container_starts_it_and_stops_it_again() {
    let server = upload_server("up-3", &[]);
    let id = instance_of(&server, "up-3");
    assert!(
        !is_running(&id),
        "a new shared-image instance without setup is stopped"
    );
    let response = put(&server, &id, "path=notes.txt", b"from the platform\n");
    assert_eq!(response.status, 200, "{}", response.body);
    eventually(
        Duration::from_secs(20),
        "the container stopped again",
        || !is_running(&id),
    );
    let read = server.http("GET", &format!("/instance/{id}/files?path=notes.txt"), "");
    assert!(
        read.body
            .contains(&base64::engine::general_purpose::STANDARD.encode("from the platform\n")),
        "{}",
        read.body
    );
}

#[test]
fn ua_cp_copies_into_and_out_of_an_instance() {
    let server = upload_server("up-4", &[]);
    let id = instance_of(&server, "up-4");
    let local = server.dir.path().join("hello.c");
    std::fs::write(&local, "int main(void) { return 0; }\n").unwrap();
    let url = format!("http://127.0.0.1:{}", server.port);
    let ua_cp = |from: &str, to: &str, extra: &[&str]| {
        std::process::Command::new(BINARY)
            .args(["cp", "--server", &url, from, to])
            .args(extra)
            .output()
            .unwrap()
    };
    let into = ua_cp(
        local.to_str().unwrap(),
        &format!("{id}:src/hello.c"),
        &["--mode", "0600"],
    );
    assert!(
        into.status.success(),
        "{}",
        String::from_utf8_lossy(&into.stderr)
    );
    let out_dir = server.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let back = ua_cp(&format!("{id}:src/hello.c"), out_dir.to_str().unwrap(), &[]);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("hello.c")).unwrap(),
        "int main(void) { return 0; }\n"
    );
    let denied = ua_cp(local.to_str().unwrap(), &format!("{id}:/root/x"), &[]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("403"),
        "{denied:?}"
    );
    let missing = ua_cp(
        &format!("{id}:/root/secret"),
        out_dir.to_str().unwrap(),
        &[],
    );
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn a_browser_on_an_allowed_origin_may_put_after_a_preflight() {
    let server = upload_server("up-5", &["--allowed-origins", "https://pl.example"]);
    let id = instance_of(&server, "up-5");
    let origin = [("Origin", "https://pl.example")];
    let path = format!("/instance/{id}/files");
    let preflight = http(server.port, "OPTIONS", &path, &origin, b"");
    assert_eq!(preflight.status, 204);
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or("");
    assert!(methods.contains("PUT"), "{methods}");
    let response = http(server.port, "PUT", &format!("{path}?path=x"), &origin, b"x");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://pl.example")
    );
}

/// A client that sends the whole of an upload over the limit before it
/// reads gets the 413, not a broken pipe: ua reads the rest and discards it.
#[test]
fn an_upload_over_the_limit_is_answered_413_after_the_client_has_sent_it() {
    use std::io::{Read, Write};
    let server = upload_server("up-6", &["--max-upload-mb", "1"]);
    let id = instance_of(&server, "up-6");
    let body = vec![b'y'; 8 << 20];
    for chunked in [false, true] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", body.len())
        };
        let head = format!(
            "PUT /instance/{id}/files?path=big HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        for piece in body.chunks(64 << 10) {
            if chunked {
                write!(stream, "{:x}\r\n", piece.len()).unwrap();
            }
            stream.write_all(piece).expect("ua read the whole upload");
            if chunked {
                stream.write_all(b"\r\n").unwrap();
            }
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n").unwrap();
        }
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).expect("an answer, not a reset");
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "chunked {chunked}: {text}"
        );
        assert!(text.contains("1 MiB upload limit"), "{text}");
    }
    let listing = docker(&["exec", &format!("ua-{id}"), "ls", "/home/student"]);
    assert_eq!(listing.trim(), "", "nothing was written");
}
