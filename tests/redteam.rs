//! Regression tests for what the red-team pass broke (issue 15): each one
//! failed on the server before its fix.

mod common;

use common::*;

// Odd instance paths that once panicked a handler: tests/in_process.rs.

/// A failed build's output leaves the server only sealed: whatever form the
/// data takes in it (split by a newline, shell-quoted with a `'`), the 422
/// body and the log hold none of it, and `ua open` shows the author all of it.
#[test]
fn build_output_is_sealed_so_no_form_of_the_data_leaks() {
    let server = TestServer::start();
    write(
        &server.assignments().join("broken/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo {{ data.greeting }}\nRUN echo {{ data.quoted | shell }} && exit 3\n",
    );
    // Each piece would have shown in the 422 body under pattern redaction.
    let cases = [
        (
            r#""Answer-Part-One\nanswer-part-two""#,
            vec!["Answer-Part-One", "ANSWER-PART-TWO", "answer-part-two"],
        ),
        (r#""it's-the-SECRET-ANSWER""#, vec!["SECRET-ANSWER"]),
    ];
    for (i, (value, pieces)) in cases.iter().enumerate() {
        let spec = format!(
            r#"{{"specID":"leak-{i}","assignmentName":"broken","data":{{"greeting":{value},"quoted":{value}}}}}"#
        );
        let response = server.http("POST", "/spec", &server.seal(&spec));
        assert_eq!(response.status, 422, "{}", response.body);
        let body = response.json();
        assert!(body.get("buildOutput").is_none(), "{body}");
        let sealed = body["sealedOutput"].as_str().expect("sealedOutput");
        let opened = ua_with_input("open", &server.key_file(), sealed);
        assert!(opened.status.success());
        let output = String::from_utf8_lossy(&opened.stdout);
        assert!(
            pieces.iter().any(|piece| output.contains(piece)),
            "the author sees the output: {output}"
        );
        for piece in pieces {
            let lower = piece.to_lowercase();
            assert!(
                !response.body.to_lowercase().contains(&lower),
                "{piece} in {}",
                response.body
            );
            assert!(
                !server.log().to_lowercase().contains(&lower),
                "{piece} in the log"
            );
        }
        assert!(
            server.log().contains(sealed),
            "the journal has the sealed tail"
        );
    }
    assert!(server.containers().is_empty() && server.records().is_empty());
}

/// The `shell` filter in a Dockerfile keeps newlines and backslash-newlines
/// exactly (a Dockerfile would otherwise end the instruction or join lines).
#[test]
fn shell_quoting_in_a_dockerfile_is_faithful() {
    let server = TestServer::start();
    write(
        &server.assignments().join("quoted/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN printf '%s' {{ data.text | shell }} > /quoted\nCMD [\"/bin/sh\"]\n",
    );
    let text = "one\\\ntwo\nthree's";
    let spec =
        serde_json::json!({"specID": "quoted", "assignmentName": "quoted", "data": {"text": text}});
    let id = server.instance(&server.seal(&spec.to_string()));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("od -c /quoted | head -3").await;
        // od -c shows the backslash as `\` and each newline as `\n`.
        let squeezed: String = out.split_whitespace().collect();
        assert!(squeezed.contains(r"one\\ntwo\nthree's"), "{out}");
    });
}

/// A unix socket in front of the real Docker socket that counts the Docker
/// API calls going through it whose request line has `needle` in it.
struct CallCounter {
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl CallCounter {
    fn new(path: &std::path::Path, needle: &'static str) -> CallCounter {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let _guard = runtime.enter();
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let counter = pings.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let daemon = tokio::net::UnixStream::connect("/var/run/docker.sock")
                        .await
                        .unwrap();
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_daemon, mut to_daemon) = daemon.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_daemon, &mut to_client).await;
                    });
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n) = from_client.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buffer[..n]);
                        counter.fetch_add(text.matches(needle).count(), Ordering::Relaxed);
                        if to_daemon.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        drop(_guard);
        CallCounter {
            calls: pings,
            _runtime: runtime,
        }
    }

    fn count(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Any rate of `/health` costs Docker at most one ping per probe period.
#[test]
fn health_is_cached_so_it_cannot_load_docker() {
    docker_ready();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("docker.sock");
    let counter = CallCounter::new(&socket, "/_ping");
    let docker_host = format!("unix://{}", socket.display());
    let server = TestServer::start_with_env(&[], &[("DOCKER_HOST", &docker_host)]);
    let before = counter.count();
    let started = std::time::Instant::now();
    let mut answered = 0;
    while answered < 300 {
        let health = server.http("GET", "/health", "");
        assert_eq!(health.status, 200, "{}", health.body);
        assert_eq!(health.json()["docker"], "ok");
        answered += 1;
    }
    let periods = started.elapsed().as_secs() / 2 + 1;
    let pings = counter.count() - before;
    assert!(pings >= 1, "the counter sees the probe's pings");
    assert!(
        pings as u64 <= periods + 1,
        "{pings} pings for {answered} /health requests over {periods} probe periods"
    );
}

/// The status of a websocket upgrade sent with these `Host` and `Origin`.
fn upgrade_with(port: u16, path: &str, host: &str, origin: &str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Same-origin is decided against the server's public origins, never against
/// the `Host` header a client (or a DNS-rebinding page) controls.
#[test]
fn same_origin_ignores_the_host_header() {
    // evil.example is let through the Host check here, to reach the origin check.
    let server = TestServer::start_with(&[
        "--allowed-origins",
        "https://pl.example.edu",
        "--allowed-hosts",
        "evil.example",
    ]);
    let id = server.instance(&server.demo_spec("origin"));
    let path = format!("/instance/{id}/ws");
    let own = format!("http://127.0.0.1:{}", server.port);
    let upgrade = |host: &str, origin: &str| upgrade_with(server.port, &path, host, origin);
    assert_eq!(upgrade("evil.example", "https://evil.example"), 403);
    assert_eq!(upgrade("evil.example", "http://evil.example"), 403);
    assert_eq!(upgrade("127.0.0.1", "https://pl.example.edu"), 101);
    // The default public origin: the address it listens on.
    assert_eq!(upgrade(&own["http://".len()..], &own), 101);

    // Behind a proxy the operator names the public origin; the listening
    // address is then not one.
    let proxied = TestServer::start_with(&[
        "--allowed-origins",
        "https://pl.example.edu",
        "--public-origin",
        "https://ua.example.edu",
    ]);
    let id = proxied.instance(&proxied.demo_spec("origin"));
    let path = format!("/instance/{id}/ws");
    let own = format!("http://127.0.0.1:{}", proxied.port);
    assert_eq!(
        upgrade_with(
            proxied.port,
            &path,
            "ua.example.edu",
            "https://ua.example.edu"
        ),
        101
    );
    assert_eq!(upgrade_with(proxied.port, &path, &own[7..], &own), 403);
}

/// A `FROM` line rendered from spec data: whatever filter shaped the name
/// (`lower` defeats matching the data, `upper` makes it no valid name at
/// all), the answer and the log hold no form of it; `ua open` of the
/// sealed output names the image for the author.
#[test]
fn a_base_image_named_from_spec_data_stays_sealed() {
    let server = TestServer::start();
    let cases = [
        ("lower", "Hunter2x", "ua-busybox-hunter2x:latest"),
        ("upper", "qzx", "ua-busybox-QZX:latest"),
    ];
    for (filter, answer, rendered) in cases {
        write(
            &server
                .assignments()
                .join(format!("from/{filter}/Dockerfile.tmpl")),
            &format!(
                "FROM ua-busybox-{{{{ data.answer | {filter} }}}}:latest\nCMD [\"/bin/sh\"]\n"
            ),
        );
        let spec = format!(
            r#"{{"specID":"from-{filter}","assignmentName":"from.{filter}","data":{{"answer":"{answer}"}}}}"#
        );
        let response = server.http("POST", "/spec", &server.seal(&spec));
        assert_eq!(response.status, 422, "{filter}: {}", response.body);
        let body = response.json();
        let error = body["error"].as_str().unwrap();
        assert!(
            !error.to_lowercase().contains(&answer.to_lowercase()),
            "{filter}: {error}"
        );
        assert!(error.contains("sealedOutput"), "{error}");
        let sealed = body["sealedOutput"].as_str().expect("sealedOutput");
        let opened = ua_with_input("open", &server.key_file(), sealed);
        let output = String::from_utf8_lossy(&opened.stdout);
        assert!(output.contains(rendered), "{filter}: {output}");
        assert!(
            !server.log().to_lowercase().contains(&answer.to_lowercase()),
            "{}",
            server.log()
        );
    }
    // A name written in the template is shown as before.
    write(
        &server.assignments().join("from/plain/Dockerfile.tmpl"),
        "FROM ua-no-such-base:latest\nCMD [\"/bin/sh\"]\n",
    );
    let spec = r#"{"specID":"from-plain","assignmentName":"from.plain","data":{}}"#;
    let response = server.http("POST", "/spec", &server.seal(spec));
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(
        response.body.contains("ua-no-such-base:latest"),
        "{}",
        response.body
    );
}

/// With the default settings a page of another site cannot open a terminal,
/// and a DNS-rebinding page (the attacker's name in `Host`) reads nothing.
#[test]
fn defaults_refuse_other_pages_and_foreign_host_names() {
    let server = TestServer::start();
    let id = server.instance(&server.demo_spec("rebind"));
    let ws = format!("/instance/{id}/ws");
    let own = format!("http://127.0.0.1:{}", server.port);
    let host = &own["http://".len()..];
    assert_eq!(
        upgrade_with(server.port, &ws, host, "http://evil.example"),
        403
    );
    assert_eq!(upgrade_with(server.port, &ws, host, &own), 101);
    for path in ["/metrics", "/health", &ws, &format!("/instance/{id}/files")] {
        let status = status_with_host(server.port, path, "evil.example:8000");
        assert_eq!(status, 421, "{path}");
    }
    for name in [host, "localhost", "[::1]:9", "ua.localhost"] {
        assert_eq!(
            status_with_host(server.port, "/health", name),
            200,
            "{name}"
        );
    }
    // A name the operator adds is answered.
    let named = TestServer::start_with(&["--allowed-hosts", "ua-1.internal"]);
    assert_eq!(
        status_with_host(named.port, "/health", "ua-1.internal:80"),
        200
    );
    assert_eq!(
        status_with_host(named.port, "/health", "ua-2.internal"),
        421
    );
    let spec = server.demo_spec("rebind");
    let origin = [("Origin", "http://evil.example")];
    let cors = http(server.port, "POST", "/spec", &origin, spec.as_bytes());
    assert!(
        !cors
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin")),
        "{:?}",
        cors.headers
    );
}

/// The status of a plain GET sent with this `Host`.
fn status_with_host(port: u16, path: &str, host: &str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// However fast a client sends `set_size`, Docker gets a few resizes a
/// second, and the last size wins.
#[test]
fn resizes_are_coalesced_and_the_last_one_wins() {
    docker_ready();
    let socket_dir = tempfile::tempdir().unwrap();
    let socket = socket_dir.path().join("docker.sock");
    let counter = CallCounter::new(&socket, "/resize");
    let docker_host = format!("unix://{}", socket.display());
    let server = TestServer::start_with_env(&[], &[("DOCKER_HOST", &docker_host)]);
    let id = server.instance(&server.demo_spec("resizes"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.wait_for("hi resizes").await;
        let started = std::time::Instant::now();
        for i in 0..1000u16 {
            term.send_message(ClientMessage::SetSize {
                rows: 20 + i % 30,
                cols: 80 + i % 50,
            })
            .await;
        }
        term.send_message(ClientMessage::SetSize {
            rows: 33,
            cols: 111,
        })
        .await;
        let sent_for = started.elapsed();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let out = term.run("stty size").await;
        assert!(out.contains("33 111"), "{out}");
        let calls = counter.count();
        // One call per 200 ms at most, and the first and the last.
        let most = sent_for.as_millis() as usize / 200 + 3;
        assert!(
            calls <= most,
            "{calls} resize calls for 1001 set_size frames sent in {sent_for:?}"
        );
    });
}

/// CPU ticks (user + system) that `program` has used in the container.
fn cpu_ticks(container: &str, program: &str) -> u64 {
    let pid = docker(&["exec", container, "pidof", program]);
    let stat = docker(&["exec", container, "cat", &format!("/proc/{pid}/stat")]);
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// With no client attached, a program flooding output blocks once the
/// replay buffer is full, instead of being read at full speed all grace long.
#[test]
fn a_flood_with_no_client_blocks_instead_of_spinning() {
    let server = TestServer::start_with(&["--reattach-grace", "60s"]);
    let id = server.instance(&server.demo_spec("flood"));
    let container = format!("ua-{id}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.wait_for("hi flood").await;
        term.type_line("yes").await;
        term.wait_for("y\r\ny\r\ny").await;
        // While a client reads, the program runs.
        let before = cpu_ticks(&container, "yes");
        std::thread::sleep(std::time::Duration::from_secs(1));
        assert!(cpu_ticks(&container, "yes") > before, "yes runs while read");
        term.close().await;
    });
    // Once the session has let go (a loaded machine may take a moment), the
    // program stops using CPU: it is blocked on its output.
    let started = std::time::Instant::now();
    let mut before = cpu_ticks(&container, "yes");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let after = cpu_ticks(&container, "yes");
        if after - before <= 1 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "yes still used {} CPU ticks in 2 s, {:?} after its client left",
            after - before,
            started.elapsed()
        );
        before = after;
    }
}

/// Where the daemon cannot limit a container's disk (overlay2 on ext4 here),
/// ua says so once at start and in /health, and containers still start.
#[test]
fn disk_limits_say_when_the_daemon_cannot_enforce_them() {
    let server = TestServer::start_with(&["--disk-mb", "64"]);
    let health = server.http("GET", "/health", "");
    assert_eq!(health.status, 200, "{}", health.body);
    let quota = health.json()["diskQuota"].as_str().unwrap().to_string();
    let driver = docker(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    if driver.contains("\"xfs\"") {
        assert_eq!(quota, "ok", "{driver}");
    } else {
        assert!(quota.contains("xfs") && quota.contains("pquota"), "{quota}");
        let warnings = server
            .log()
            .lines()
            .filter(|l| l.contains("--disk-mb 64: per-container disk limits are not enforced"))
            .count();
        assert_eq!(warnings, 1, "{}", server.log());
    }
    let id = server.instance(&server.demo_spec("disk"));
    let storage = docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.StorageOpt}}",
        &format!("ua-{id}"),
    ]);
    if quota == "ok" {
        assert!(storage.contains("size"), "{storage}");
    } else {
        assert!(!storage.contains("size"), "{storage}");
    }
}

/// A failed build leaves no image behind, not even the unlabelled step
/// images of its successful steps (which hold what the rendered context
/// put into them).
#[test]
fn a_failed_build_leaves_no_step_images() {
    let server = TestServer::start();
    let marker = format!("step-marker-{}", rand_tag());
    let dir = server.assignments().join("steps");
    write(
        &dir.join("Dockerfile.tmpl"),
        &format!(
            "FROM ua-busybox:latest\nCOPY answer.txt /answer.txt\nRUN echo {marker} > /m\nRUN exit 3\n"
        ),
    );
    write(&dir.join("context/answer.txt.tmpl"), "{{ data.answer }}\n");
    let with_marker = || -> Vec<String> {
        let ids = docker(&["images", "-a", "-q", "--no-trunc"]);
        let ids: Vec<&str> = ids.lines().collect();
        let mut args = vec![
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{json .ContainerConfig.Cmd}}",
        ];
        args.extend(ids.iter().copied());
        docker(&args)
            .lines()
            .filter(|l| l.contains(&marker))
            .map(str::to_string)
            .collect()
    };
    let spec = r#"{"specID":"steps","assignmentName":"steps","data":{"answer":"forty-two"}}"#;
    let response = server.http("POST", "/spec", &server.seal(spec));
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(with_marker().is_empty(), "{:?}", with_marker());
    assert!(server.images().is_empty() && server.containers().is_empty());
}

/// An instance whose container was removed behind ua's back is dropped on
/// attach (4003, not 1011) and on POST, and its spec gets a working terminal.
#[test]
fn a_vanished_container_is_replaced_on_the_next_try() {
    let server = TestServer::start();
    let spec = server.demo_spec("vanished");
    let first = server.instance(&spec);
    docker(&["rm", "-f", &format!("ua-{first}")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url(&first))
            .await
            .unwrap();
        let closed = loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(u16::from(closed.unwrap().code), 4003);
    });
    assert!(
        server.log().contains("removed outside ua"),
        "{}",
        server.log()
    );
    let second = server.instance(&spec);
    assert_ne!(second, first);
    // And straight on POST, with no attach in between.
    docker(&["rm", "-f", &format!("ua-{second}")]);
    let third = server.instance(&spec);
    assert_ne!(third, second);
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&third)).await;
        let out = term.run("echo working-$((6*7))").await;
        assert!(out.contains("working-42"), "{out}");
    });
    assert_eq!(server.records().len(), 1);
}
