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
