//! ua's browser terminal in Debian's headless Chromium, driven by
//! playwright-core (tests/browser/terminal.mjs): typed output, a resize that
//! reaches `stty size`, and a reload that lands back in the same shell.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_browser_terminal_types_resizes_and_survives_a_reload() {
    let web = repo().join("target/web");
    assert!(
        web.join("index.html").is_file(),
        "{} is missing: run scripts/build-web (scripts/test does)",
        web.display()
    );
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run `npm ci` in tests/browser (scripts/test does)"
    );
    let web_dir = web.display().to_string();
    let server = TestServer::start_with(&[
        "--web-dir",
        &web_dir,
        "--allowed-origins",
        "https://elsewhere.example",
    ]);
    let id = server.instance(&server.demo_spec("browser"));

    let page = server.http("GET", &format!("/instance/{id}"), "");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(server.http("GET", "/static/xterm.js", "").status, 200);
    assert_eq!(server.http("GET", "/static/../key", "").status, 404);
    assert_eq!(
        server
            .http("GET", &format!("/instance/{}", "0".repeat(32)), "")
            .status,
        404
    );

    let out = Command::new("node")
        .arg(repo().join("tests/browser/terminal.mjs"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(&id)
        .output()
        .expect("node runs (Debian's nodejs, or the machine's)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{report}\nserver log:\n{}",
        server.log()
    );
    assert!(report.contains("PASS"), "{report}");
}

#[test]
fn the_browser_terminal_can_be_turned_off() {
    let server = TestServer::start_with(&["--browser-terminal", "false"]);
    let id = server.instance(&server.demo_spec("no-browser"));
    let page = server.http("GET", &format!("/instance/{id}"), "");
    assert_eq!(page.status, 404);
    assert!(page.json()["error"]
        .as_str()
        .unwrap()
        .contains("turned off"));
}

/// Runs tests/browser/features.mjs on `url` with `checks`; panics with its
/// report and the server's log on a failure.
fn features(server: &TestServer, url: &str, checks: &[&str]) -> String {
    features_with(server, url, checks, &[])
}

fn features_with(server: &TestServer, url: &str, checks: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new("node");
    command
        .arg(repo().join("tests/browser/features.mjs"))
        .arg(url)
        .args(checks)
        .envs(env.iter().copied());
    if let Ok(dir) = std::env::var("UA_SCREENSHOTS") {
        command.env("SHOTS", dir);
    }
    let out = command.output().expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.contains("PASS"),
        "the browser checks {checks:?} failed:\n{report}\nserver log:\n{}",
        server.log()
    );
    report
}

fn web_server(extra: &[&str]) -> TestServer {
    let web = repo().join("target/web");
    assert!(
        web.join("ua-terminal.js").is_file(),
        "run scripts/build-web"
    );
    let web_dir = web.display().to_string();
    let mut args = vec!["--web-dir", &web_dir];
    args.extend_from_slice(extra);
    TestServer::start_with(&args)
}

/// The link `ua seal --link` prints for `plaintext`.
fn start_link(server: &TestServer, plaintext: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ua"))
        .args(["seal", "--link", "--server"])
        .arg(format!("http://127.0.0.1:{}/", server.port))
        .arg("--key-file")
        .arg(server.key_file())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let prefix = format!("http://127.0.0.1:{}/start?route=", server.port);
    assert!(link.starts_with(&prefix), "{link}");
    assert!(!link[..link.find('#').unwrap()].contains("data"), "{link}");
    link
}

#[test]
fn the_start_link_shows_a_real_builds_phases_then_desktop_phone_keyboard_reader_clipboard_and_a_2_mib_paste(
) {
    let server = web_server(&[]);
    let link = start_link(
        &server,
        r#"{"specID":"start-link","assignmentName":"demo.busybox","data":{"greeting":"hi"}}"#,
    );
    let report = features_with(
        &server,
        &link,
        &[
            "progress",
            "title",
            "observe",
            "expiry",
            "desktop",
            "phone",
            "keyboard",
            "reader",
            "clipboard",
            "paste",
        ],
        &[("TITLE", "demo/busybox")],
    );
    eprintln!("{report}");
    assert!(report.contains("paste 2097"), "{report}");
}

#[test]
fn the_instance_page_warns_before_the_idle_close_and_says_why() {
    let server = web_server(&["--idle-timeout", "8s"]);
    let id = server.instance(&server.demo_spec("idle-page"));
    let url = format!("http://127.0.0.1:{}/instance/{id}", server.port);
    features(&server, &url, &["idle"]);
}

#[test]
fn a_browser_gets_a_page_in_words_where_an_api_client_gets_json() {
    let server = web_server(&[]);
    let html = [("accept", "text/html,application/xhtml+xml")];
    let gone = format!("/instance/{}", "0".repeat(32));
    for path in ["/", gone.as_str()] {
        let page = http(server.port, "GET", path, &html, b"");
        assert_eq!(page.status, 404);
        assert!(page
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        assert!(page.body.contains("This page is not here"), "{}", page.body);
        let api = server.http("GET", path, "");
        assert!(api.json()["error"].is_string(), "{}", api.body);
    }
    let start = server.http("GET", "/start", "");
    assert_eq!(start.status, 200);
    assert!(start.body.contains("ua-terminal.js"));
}

#[test]
fn an_out_of_memory_kill_is_said_in_the_terminal_with_the_limit() {
    let server = web_server(&[]);
    let dir = server.assignments().join("small");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n",
    );
    write(&dir.join("assignment.json"), r#"{"memoryMB": 48}"#);
    let id = server.instance(&server.seal(r#"{"specID":"oom-page","assignmentName":"small"}"#));
    let url = format!("http://127.0.0.1:{}/instance/{id}", server.port);
    features_with(&server, &url, &["oom"], &[("OOM_MIB", "48")]);
}

#[test]
fn the_instance_page_shows_its_terminals_as_tabs_that_survive_a_reload() {
    let server = web_server(&[]);
    let id = server.instance(&server.demo_spec("tabs-page"));
    let url = format!("http://127.0.0.1:{}/instance/{id}", server.port);
    let report = features(&server, &url, &["tabs"]);
    eprintln!("{report}");
}
