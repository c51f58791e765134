//! Graded files as a hostile student meets them (issue 20, items 1, 2 and 6):
//! `GET /instance/{id}/files` returns only what the image's USER could read
//! at that moment, through every path component; odd paths are `missing`,
//! never a 500 or a 503; a path a client chose never forges a log line; and
//! readers that never read cannot grow the server's memory. Real server,
//! real Docker, real sockets; each test failed on the server before the fix.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn files(server: &TestServer, id: &str, query: &str) -> Response {
    server.http("GET", &format!("/instance/{id}/files?{query}"), "")
}

/// The files of a 200 answer, `(name, contents)`, in order.
fn decoded(body: &serde_json::Value) -> Vec<(String, String)> {
    body["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files in {body}"))
        .iter()
        .map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f["contents"].as_str().unwrap())
                .unwrap();
            (
                f["name"].as_str().unwrap().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

fn names(body: &serde_json::Value) -> Vec<String> {
    decoded(body).into_iter().map(|(name, _)| name).collect()
}

/// `secret/<user>`: root's answers in the image, where only root reads
/// them: `/root/answer` (0600 in a 0755 `/root`), `/opt/hidden/open.txt`
/// (0644, but in a 0700 directory) and `/root/closed/main.c` (0644 in a
/// 0700 directory); the student's own `mine.txt` and `work/a.txt`.
fn add_secret_assignment(server: &TestServer, name: &str, user: &str) {
    let dockerfile = format!(
        "FROM ua-busybox:latest\n\
         RUN mkdir -p /root/closed /opt/hidden /home/student/work \
         && echo {{{{ data.answer | shell }}}} > /root/answer && chmod 600 /root/answer \
         && chmod 755 /root && echo root-main > /root/closed/main.c \
         && chmod 644 /root/closed/main.c && chmod 700 /root/closed \
         && echo hidden > /opt/hidden/open.txt && chmod 644 /opt/hidden/open.txt \
         && chmod 700 /opt/hidden \
         && echo mine > /home/student/mine.txt && echo deep > /home/student/work/a.txt \
         && chown -R 1000:1000 /home/student\n\
         USER {user}\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n"
    );
    write(
        &server
            .assignments()
            .join(format!("secret/{name}/Dockerfile.tmpl")),
        &dockerfile,
    );
}

fn secret_spec(server: &TestServer, spec_id: &str, name: &str) -> String {
    server.seal(&format!(
        r#"{{"specID":"{spec_id}","assignmentName":"secret.{name}","data":{{"answer":"the-answer-42"}}}}"#
    ))
}

/// What a hostile student asks for: root's files by absolute path, through
/// a symlinked parent they made (`sub -> /root`, `src -> /root/closed` as
/// with `graded-files="src/main.c"`, `opt -> /opt/hidden`), and their own.
const HOSTILE_QUERY: &str = "path=%2Froot%2Fanswer&path=sub%2Fanswer&path=src%2Fmain.c\
    &path=%2Froot%2Fclosed%2Fmain.c&path=%2Fopt%2Fhidden%2Fopen.txt&path=opt%2Fopen.txt\
    &path=mine.txt&path=w%2Fa.txt";

fn assert_only_the_students_files(response: &Response, when: &str) {
    assert_eq!(response.status, 200, "{when}: {}", response.body);
    assert!(
        !response
            .body
            .contains(&base64::engine::general_purpose::STANDARD.encode("the-answer-42\n")),
        "{when}: the answer came out: {}",
        response.body
    );
    let body = response.json();
    assert_eq!(
        decoded(&body),
        vec![
            ("mine.txt".to_string(), "mine\n".to_string()),
            ("w/a.txt".to_string(), "deep\n".to_string())
        ],
        "{when}"
    );
    assert_eq!(
        body["missing"],
        serde_json::json!([
            "/root/answer",
            "sub/answer",
            "src/main.c",
            "/root/closed/main.c",
            "/opt/hidden/open.txt",
            "opt/open.txt"
        ]),
        "{when}"
    );
}

/// Item 1: the archive API read as root. Named (`USER student`) and numeric
/// (`USER 1000`, `USER 1000:1000`) users, running and stopped containers.
#[test]
fn graded_files_are_read_as_the_image_user_through_every_component() {
    let server = TestServer::start_with(&["--reattach-grace", "1s"]);
    for (name, user) in [
        ("named", "student"),
        ("numeric", "1000"),
        ("pair", "1000:1000"),
    ] {
        add_secret_assignment(&server, name, user);
        let id = server.instance(&secret_spec(&server, &format!("s-{name}"), name));
        runtime().block_on(async {
            let mut term = Term::connect(&server.ws_url(&id)).await;
            term.run("ln -s /root sub; ln -s /root/closed src; ln -s /opt/hidden opt; ln -s work w; cat /root/answer")
                .await;
            let running = files(&server, &id, HOSTILE_QUERY);
            assert_only_the_students_files(&running, &format!("{user}, running"));
            term.close().await;
        });
        eventually(Duration::from_secs(15), "the container stopped", || {
            server.containers() == vec![format!("ua-{id} exited")]
        });
        let stopped = files(&server, &id, HOSTILE_QUERY);
        assert_only_the_students_files(&stopped, &format!("{user}, stopped"));
        // Read from a stopped container, which is stopped again after it.
        eventually(Duration::from_secs(15), "stopped again", || {
            server.containers() == vec![format!("ua-{id} exited")]
        });
        let clean = server.http(
            "POST",
            "/spec/clean?async=false",
            &secret_spec(&server, &format!("s-{name}"), name),
        );
        assert_eq!(clean.status, 200, "{}", clean.body);
    }
}

/// Under gVisor a `docker exec -u student` keeps the container's
/// capabilities; the read drops to the USER itself, so the same rules hold.
#[test]
fn graded_files_under_gvisor_are_read_as_the_image_user() {
    let server = TestServer::start_with(&["--runtime", "runsc"]);
    add_secret_assignment(&server, "gvisor", "student");
    let id = server.instance(&secret_spec(&server, "s-gvisor", "gvisor"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let kernel = term
            .run("ln -s /root sub; ln -s /root/closed src; ln -s /opt/hidden opt; ln -s work w; echo k-$(uname -r)-k")
            .await;
        assert!(kernel.contains("k-4.4.0-k"), "not gVisor: {kernel}");
        let running = files(&server, &id, HOSTILE_QUERY);
        assert_only_the_students_files(&running, "gVisor, running");
        term.close().await;
    });
}

/// An image whose USER is root gives root's files: the student is root in
/// the terminal too.
#[test]
fn a_root_image_user_reads_what_root_reads() {
    let server = TestServer::start();
    add_secret_assignment(&server, "root", "root");
    let id = server.instance(&secret_spec(&server, "s-root", "root"));
    let response = files(&server, &id, "path=%2Froot%2Fanswer&path=mine.txt");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(names(&response.json()), ["/root/answer", "mine.txt"]);
}

/// Item 6: paths the kernel refuses (ENOTDIR, ENAMETOOLONG, ELOOP) are
/// missing, not a 500; `/proc` and devices stay missing.
#[test]
fn odd_paths_are_missing_not_errors() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("odd"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("ln -s loop loop; ln -s a b; ln -s b a; mkfifo fifo")
            .await;
        term.close().await;
    });
    let long = "x".repeat(300);
    let deep = format!("{}/y", "d/".repeat(2000));
    let query = format!(
        "path=%2Fetc%2Fpasswd%2Fx&path={long}&path=loop%2Fx&path=a&path=fifo&path=%2Fproc%2Fself%2Fstatus\
         &path=%2Fproc%2F1%2Fenviron&path=%2Fdev%2Fnull&path=%2Fsys%2Fkernel%2Fuevent_seqnum&path={deep}\
         &path=notes.txt"
    );
    let response = files(&server, &id, &query);
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    assert_eq!(names(&body), ["notes.txt"]);
    assert_eq!(
        body["missing"],
        serde_json::json!([
            "/etc/passwd/x",
            long,
            "loop/x",
            "a",
            "fifo",
            "/proc/self/status",
            "/proc/1/environ",
            "/dev/null",
            "/sys/kernel/uevent_seqnum",
            deep
        ])
    );
}

/// Item 6: a symlink swapped back and forth and a file cut short while the
/// files are read give 200 answers (the file as it was or `missing`), never
/// 503 "Docker is unreachable".
#[test]
fn a_symlink_swap_during_reads_never_answers_503() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("swap"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("mkdir -p d1 d2; head -c 200000 /dev/zero > d1/f; echo two > d2/f; ln -s d1 cur")
            .await;
        // The student swaps `cur` as fast as busybox can, in the background.
        term.type_line("(while :; do ln -sfn d2 cur.new && mv -f cur.new cur; ln -sfn d1 cur.new && mv -f cur.new cur; head -c 300000 /dev/zero > g; : > g; done) >/dev/null 2>&1 &")
            .await;
        term.run("sleep 1").await;
        for _ in 0..60 {
            let response = files(&server, &id, "path=cur%2Ff&path=cur&path=g");
            assert_eq!(response.status, 200, "{}", response.body);
            let body = response.json();
            assert!(body["missing"].as_array().unwrap().iter().any(|m| m == "cur"));
        }
        term.close().await;
    });
}

/// Item 6: a path with a newline and a `<0>` prefix stays inside one log
/// line (journald's stream reader would take a line of its own for an
/// entry at emergency priority).
#[test]
fn a_path_cannot_forge_a_log_line() {
    let server = TestServer::start_with_env(&[], &[("JOURNAL_STREAM", "0:0")]);
    let id = server.instance(&server.demo_spec("forge"));
    let forged = "%0A%3C0%3Eua%3A%20forged%20emergency%20entry";
    for query in [
        format!("path=x{forged}"),
        format!("path=%2Fetc%2Fpasswd%2Fx{forged}"),
        format!("path=%2Fproc{forged}"),
    ] {
        let response = files(&server, &id, &query);
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let log = server.log();
    for line in log.lines() {
        assert!(
            !line.starts_with("<0>") && !line.starts_with("ua: forged"),
            "a forged log line: {line:?}\n{log}"
        );
    }
}

/// Item 2: forty connections, each asking for five 1 MiB files with a
/// 4 KiB receive buffer and never reading, grow the server by at most
/// 64 MiB (it was 400 MB), beyond the per-instance bound they get 503 with
/// `Retry-After`, and `/health` keeps answering.
#[test]
fn forty_readers_that_never_read_cannot_grow_the_server() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("flood"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("for i in 1 2 3 4 5; do head -c 1048576 /dev/urandom > big$i; done; echo made")
            .await;
        term.close().await;
    });
    let query = "path=big1&path=big2&path=big3&path=big4&path=big5";
    // Once read whole: the five files come out, 5 MiB in all.
    let whole = files(&server, &id, query);
    assert_eq!(
        whole.status,
        200,
        "{}",
        &whole.body[..200.min(whole.body.len())]
    );
    assert_eq!(names(&whole.json()).len(), 5);
    let pid = server.pid();
    let before = rss_kib(pid);
    let port = server.port;
    let path = format!("/instance/{id}/files?{query}");
    let rt = runtime();
    let (peak, mut sockets) = rt.block_on(async move {
        let mut sockets = Vec::new();
        for _ in 0..40 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
                .await
                .unwrap();
            sockets.push(stream);
        }
        let mut peak = 0;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak = peak.max(rss_kib(pid));
        }
        (peak, sockets)
    });
    let health = server.http("GET", "/health", "");
    assert_eq!(health.status, 200, "{}", health.body);
    let grown_mib = peak.saturating_sub(before) / 1024;
    println!("RSS before {before} KiB, peak {peak} KiB: grew {grown_mib} MiB");
    assert!(grown_mib <= 64, "the server grew by {grown_mib} MiB");
    // Now read the first bytes of each: some are being sent, the rest were
    // told to come back later.
    let statuses: Vec<String> = rt.block_on(async {
        let mut statuses = Vec::new();
        for socket in &mut sockets {
            let mut head = [0u8; 256];
            let n = tokio::time::timeout(
                Duration::from_secs(30),
                tokio::io::AsyncReadExt::read(socket, &mut head),
            )
            .await
            .expect("an answer")
            .unwrap();
            statuses.push(String::from_utf8_lossy(&head[..n]).into_owned());
        }
        statuses
    });
    let busy = statuses
        .iter()
        .filter(|s| s.starts_with("HTTP/1.1 503"))
        .count();
    let sent = statuses
        .iter()
        .filter(|s| s.starts_with("HTTP/1.1 200"))
        .count();
    assert!(
        sent >= 1 && busy >= 30,
        "{sent} sent, {busy} busy: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .filter(|s| s.starts_with("HTTP/1.1 503"))
            .all(|s| s.to_ascii_lowercase().contains("retry-after: ")),
        "{statuses:?}"
    );
    drop(sockets);
    // Once the readers are gone, the instance reads again.
    eventually(Duration::from_secs(60), "the reads were released", || {
        files(&server, &id, "path=big1").status == 200
    });
}

/// The resident set of process `pid`, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A container removed behind ua's back: the files answer 404 (as the
/// terminal does) and the spec gets a new instance.
#[test]
fn a_vanished_container_answers_404_and_the_spec_gets_a_new_instance() {
    let server = TestServer::start();
    let spec = server.demo_spec("vanish");
    let id = server.instance(&spec);
    docker(&["rm", "-f", &format!("ua-{id}")]);
    let response = files(&server, &id, "path=notes.txt");
    assert_eq!(response.status, 404, "{}", response.body);
    let again = server.instance(&spec);
    assert_ne!(again, id);
    let response = files(&server, &again, "path=notes.txt");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(names(&response.json()), ["notes.txt"]);
}
