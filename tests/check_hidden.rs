//! Checks as the student meets them (issue 24; docs/API.md, "Checks"):
//! a student polling /proc while a check holds the answer finds nothing,
//! the check's script is on no disk, `$UA_RESULT`'s directory is root's;
//! the check answers browsers by CORS; the page shows the button's meta.

#[path = "common/checks.rs"]
mod checks;
mod common;

use base64::Engine;
use checks::*;
use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Holds the answer in a shell variable and in a file under `$UA_RESULT`'s
/// directory (named in /tmp/result-dir), runs `sleep 1` until /tmp/check-go.
const HOLDING_CHECK: &str = r#"ans={{ data.answer | shell }}
d=$(dirname "$UA_RESULT")
echo "$d" > /tmp/result-dir
chmod 644 /tmp/result-dir
printf '%s\n' "$ans" > "$d/answer"
i=0
while [ ! -f /tmp/check-go ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
if [ "$ans" = "$(cat "$d/answer")" ]; then s=1; else s=0; fi
printf '{"score": %s, "tests": []}' "$s" > "$UA_RESULT"
"#;

/// The student's poller: every process's cmdline and environ, one a line,
/// until /tmp/stop.
const POLLER: &str = r#"(while [ ! -f /tmp/stop ]; do for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do tr '\0' ' ' < "$f"; echo; done; done > /tmp/raw 2>/dev/null) & :"#;

/// Run as root in the container with the answer on standard input (never
/// in an argument): every regular file on the container's file systems
/// that holds it, but /proc and /sys (and the poller's own file, whose
/// contents are judged after the check).
const DISK_SCAN: &str = r#"read -r pat; d=$(cat /tmp/result-dir)
find / /tmp /dev/shm "$d" -xdev -type f 2>/dev/null | while read -r f; do
  [ "$f" = /tmp/raw ] && continue
  case "$(cat "$f" 2>/dev/null)" in *"$pat"*) echo "found $f";; esac
done"#;

/// The student cannot see the answer while the check runs: not in any
/// process's arguments or environment, not on the disk (but in the file the
/// check put in its root-only directory), not in that directory.
#[test]
fn the_student_cannot_see_the_answer_while_a_check_runs() {
    let server = TestServer::start();
    add_check_assignment(&server, "check-hold", HOLDING_CHECK, None);
    let id = server.instance(&check_spec(&server, "hold-1", "check-hold"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        assert!(term.run("id -u").await.contains("1000"), "not the student");
        term.run(POLLER).await;
        let (port, path) = (server.port, format!("/instance/{id}/check"));
        let check = std::thread::spawn(move || http(port, "POST", &path, &[], b""));
        wait_for_file(&id, "/tmp/result-dir");
        let dir = exec(&id, "cat /tmp/result-dir", "").trim().to_string();
        wait_for_file(&id, &format!("{dir}/answer"));
        assert_eq!(
            exec(&id, &format!("stat -c '%a %u' {dir}"), "").trim(),
            "700 0"
        );
        let found = exec(&id, DISK_SCAN, &format!("{ANSWER}\n"));
        let mut found: Vec<&str> = found.lines().collect();
        found.sort_unstable();
        found.dedup();
        assert_eq!(found, [format!("found {dir}/answer")], "on the disk");
        // The student tries the directory from the terminal.
        let tried = term.run(&format!("ls {dir}; cat {dir}/answer")).await;
        assert_eq!(tried.matches("Permission denied").count(), 2, "{tried}");
        exec(&id, "touch /tmp/check-go", "");
        let answer = check.join().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.json()["score"].as_f64(),
            Some(1.0),
            "{}",
            answer.body
        );
        assert!(!exists_in(&id, &dir), "{dir} is left after the check");
        term.run("touch /tmp/stop; wait; sort -u /tmp/raw > /tmp/seen")
            .await;
        assert!(
            !term.screen.contains(ANSWER),
            "the terminal showed the answer"
        );
        term.close().await;
    });
    let seen = server.http(
        "GET",
        &format!("/instance/{id}/files?path=%2Ftmp%2Fseen"),
        "",
    );
    assert_eq!(seen.status, 200, "{}", seen.body);
    let contents = seen.json()["files"][0]["contents"]
        .as_str()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        .expect("the poller's file");
    let seen = String::from_utf8_lossy(&contents);
    // The poller saw the check's processes, so it looked while they ran.
    assert!(
        seen.lines().any(|l| l == "sleep 1 "),
        "the poller never saw the check:\n{seen}"
    );
    assert!(
        !seen.contains(ANSWER),
        "the student saw the answer:\n{seen}"
    );
}

const ORIGIN: &str = "https://lms.example";

fn post_check_from(server: &TestServer, id: &str, origin: &str) -> Response {
    http(
        server.port,
        "POST",
        &format!("/instance/{id}/check"),
        &[("Origin", origin)],
        b"",
    )
}

/// With `--allowed-origins`, the check's answers (a 200, a 429, a 404)
/// carry `Access-Control-Allow-Origin`, and the preflight is a `204`.
#[test]
fn the_check_answers_browsers_from_allowed_origins() {
    let server = TestServer::start_with(&["--allowed-origins", ORIGIN]);
    add_check_assignment(
        &server,
        "check-cors",
        "printf '{\"score\": 1, \"tests\": []}' > \"$UA_RESULT\"\n",
        None,
    );
    let id = server.instance(&check_spec(&server, "cors-1", "check-cors"));
    let preflight = http(
        server.port,
        "OPTIONS",
        &format!("/instance/{id}/check"),
        &[
            ("Origin", ORIGIN),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.body);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST, PUT, DELETE, OPTIONS")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    let ok = post_check_from(&server, &id, ORIGIN);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let soon = post_check_from(&server, &id, ORIGIN);
    assert_eq!(soon.status, 429, "{}", soon.body);
    let unknown = post_check_from(&server, &"0".repeat(32), ORIGIN);
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    for response in [&ok, &soon, &unknown] {
        assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
        assert!(response
            .header("vary")
            .is_some_and(|v| v.contains("Origin")));
        assert!(response
            .header("access-control-expose-headers")
            .is_some_and(|v| v.contains("Retry-After")));
    }
    let other = post_check_from(&server, &id, "https://elsewhere.example");
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// The page has `<meta name="ua-check" content="true">` for an assignment
/// with a check and `content="false"` otherwise. The page is the
/// repository's web/src/index.html, which is what scripts/build-web copies.
#[test]
fn the_page_says_whether_there_is_a_check() {
    let web = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("web/src/index.html"),
        web.path().join("index.html"),
    )
    .unwrap();
    let web_dir = web.path().display().to_string();
    let server = TestServer::start_with(&["--web-dir", &web_dir]);
    add_check_assignment(
        &server,
        "check-page",
        "printf '{\"score\": 1, \"tests\": []}' > \"$UA_RESULT\"\n",
        None,
    );
    let with = server.instance(&check_spec(&server, "page-1", "check-page"));
    let without = server.instance(&server.demo_spec("page-2"));
    for (id, content) in [(with, "true"), (without, "false")] {
        let page = server.http("GET", &format!("/instance/{id}"), "");
        assert_eq!(page.status, 200, "{}", page.body);
        let meta = format!("<meta name=\"ua-check\" content=\"{content}\">");
        assert!(page.body.contains(&meta), "no {meta} in:\n{}", page.body);
    }
}
