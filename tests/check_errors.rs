//! Checks that cannot answer a verdict (issue 24; docs/API.md, "Checks",
//! its errors): no check or no instance (404), one running (409), too soon
//! (429), a check that failed to run (422 with sealedOutput), a check over
//! its time limit, an instance with no stored spec; and the warning for an
//! assignment whose student is root.

#[path = "common/checks.rs"]
mod checks;
mod common;

use std::time::{Duration, Instant};

use checks::*;
use common::*;
use ua::crypto::seal::Purpose;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// 404: an assignment without `check.sh.tmpl`, an unknown instance, and a
/// `GET` of the check's path.
#[test]
fn no_check_an_unknown_instance_and_a_get_are_404() {
    let server = TestServer::start();
    add_check_assignment(&server, "check-404", DONE_CHECK, None);
    let demo = server.instance(&server.demo_spec("no-check"));
    let response = post_check(&server, &demo);
    assert_eq!(response.status, 404, "{}", response.body);
    assert_eq!(response.json()["error"], "This assignment has no check");
    let unknown = post_check(&server, &"0".repeat(32));
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(unknown.json()["error"].is_string());
    let id = server.instance(&check_spec(&server, "get-1", "check-404"));
    let get = server.http("GET", &format!("/instance/{id}/check"), "");
    assert_eq!(get.status, 404, "{}", get.body);
}

/// Waits for /tmp/check-go (at most 30 s), then passes.
const WAITING_CHECK: &str = r#"touch /tmp/check-running
i=0
while [ ! -f /tmp/check-go ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
rm -f /tmp/check-running
printf '{"score": 1, "tests": []}' > "$UA_RESULT"
"#;

/// 409 while a check of the instance runs; 429 with `Retry-After` and
/// `retryAfter` within `checkInterval` of its end; a check after it runs.
#[test]
fn a_running_check_is_409_and_a_quick_retry_429() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-busy",
        WAITING_CHECK,
        Some(r#"{"checkInterval": "3s"}"#),
    );
    let id = server.instance(&check_spec(&server, "busy-1", "check-busy"));
    std::thread::scope(|scope| {
        let first = scope.spawn(|| post_check(&server, &id));
        wait_for_file(&id, "/tmp/check-running");
        let busy = post_check(&server, &id);
        assert_eq!(busy.status, 409, "{}", busy.body);
        assert_eq!(
            busy.json()["error"],
            "A check of this instance is running; wait for its answer"
        );
        exec(&id, "touch /tmp/check-go", "");
        let first = first.join().unwrap();
        assert_eq!(first.status, 200, "{}", first.body);
    });
    let soon = post_check(&server, &id);
    assert_eq!(soon.status, 429, "{}", soon.body);
    let header: u64 = soon
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .unwrap();
    assert_eq!(soon.json()["retryAfter"], header, "{}", soon.body);
    assert!((1..=3).contains(&header), "Retry-After {header}");
    assert!(soon.json()["error"].is_string());
    std::thread::sleep(Duration::from_secs(header) + Duration::from_millis(200));
    let later = post_check(&server, &id);
    assert_eq!(later.status, 200, "{}", later.body);
    let metrics = server.http("GET", "/metrics", "").body;
    for line in [
        "ua_checks_total{outcome=\"verdict\"} 2",
        "ua_checks_total{outcome=\"running\"} 1",
        "ua_checks_total{outcome=\"too_soon\"} 1",
        "ua_check_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// What a check that failed to run answers: `422` with exactly `error` and
/// `sealedOutput`, the latter opening with the output subkey only.
fn assert_failed_to_run(server: &TestServer, response: &Response, printed: &str) -> String {
    assert_eq!(response.status, 422, "{}", response.body);
    let body = response.json();
    assert_eq!(keys_of(&body), ["error", "sealedOutput"], "{body}");
    assert!(!response.body.contains(ANSWER));
    let sealed = body["sealedOutput"].as_str().unwrap();
    assert!(keys(server).open(sealed).is_err(), "opened as a spec");
    assert!(open_as(server, Purpose::Result, sealed).is_none());
    let opened = open_as(server, Purpose::Output, sealed).expect("opens as output");
    assert!(opened.contains(printed), "{printed:?} not in {opened:?}");
    opened
}

/// No verdict, a score out of range, a verdict that is not JSON: each a
/// `422` that says which.
#[test]
fn a_check_without_a_valid_verdict_is_422_with_sealed_output() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-broken",
        r#"{% if data.mode == "m-none" %}echo "mode: nothing written"
{% elif data.mode == "m-score" %}echo "mode: out of range"; printf '{"score": 1.5, "tests": []}' > "$UA_RESULT"
{% elif data.mode == "m-text" %}echo "mode: not a verdict"; echo 'this is not JSON' > "$UA_RESULT"
{% endif %}"#,
        None,
    );
    let mut errors = Vec::new();
    for (mode, printed) in [
        ("m-none", "mode: nothing written"),
        ("m-score", "mode: out of range"),
        ("m-text", "mode: not a verdict"),
    ] {
        let extra = format!(r#","mode":"{mode}""#);
        let spec = check_spec_with(&server, &format!("broken-{mode}"), "check-broken", &extra);
        let id = server.instance(&spec);
        let response = post_check(&server, &id);
        let opened = assert_failed_to_run(&server, &response, printed);
        match mode {
            "m-score" => assert!(opened.contains("score"), "{opened}"),
            "m-text" => assert!(opened.to_lowercase().contains("json"), "{opened}"),
            _ => {}
        }
        errors.push(response.json()["error"].as_str().unwrap().to_string());
    }
    assert_ne!(
        errors[0], errors[1],
        "no verdict and a bad score say the same"
    );
    assert_ne!(errors[0], errors[2], "no verdict and not JSON say the same");
}

/// At `checkTimeout` the check is killed, every process of it, and answers
/// `422`; the student's terminal and their own processes keep running.
#[test]
fn a_check_over_its_time_limit_is_killed_and_the_terminal_lives() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-slow",
        "echo started the slow check\nsleep 60\nprintf '{\"score\": 1, \"tests\": []}' > \"$UA_RESULT\"\n",
        Some(r#"{"checkTimeout": "2s", "checkInterval": "1s"}"#),
    );
    let id = server.instance(&check_spec(&server, "slow-1", "check-slow"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("sleep 1000 >/dev/null 2>&1 & :").await;
        let start = Instant::now();
        let response = post_check(&server, &id);
        let took = start.elapsed();
        assert_failed_to_run(&server, &response, "started the slow check");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(15),
            "{took:?}"
        );
        let ps = exec(&id, "ps -o pid,user,args", "");
        assert!(!ps.contains("sleep 60"), "the check's sleep is left:\n{ps}");
        assert!(
            ps.contains("sleep 1000"),
            "the student's sleep is gone:\n{ps}"
        );
        assert!(term.run("echo still-$((40+2))").await.contains("still-42"));
        term.close().await;
    });
}

/// An instance whose record keeps no sealed spec (made by an older ua)
/// cannot render its check: `422`, saying so without spec data.
#[test]
fn an_instance_without_a_stored_spec_is_422() {
    let mut server = TestServer::start();
    add_check_assignment(&server, "check-old", DONE_CHECK, None);
    let id = server.instance(&check_spec(&server, "old-1", "check-old"));
    server.kill();
    let path = server
        .state_dir()
        .join("instances")
        .join(format!("{id}.json"));
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let sealed = record["sealedSpec"].as_str().expect("a stored sealed spec");
    assert!(keys(&server).open(sealed).is_ok(), "not the spec as sent");
    record.as_object_mut().unwrap().remove("sealedSpec");
    std::fs::write(&path, record.to_string()).unwrap();
    server.spawn();
    let response = post_check(&server, &id);
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(response.json()["error"].is_string());
    assert!(!response.body.contains(ANSWER));
}

/// A container removed outside ua: the check is a `404`, as for the
/// terminal.
#[test]
fn a_check_of_a_vanished_container_is_404() {
    let server = TestServer::start();
    add_check_assignment(&server, "check-gone", DONE_CHECK, None);
    let id = server.instance(&check_spec(&server, "gone-1", "check-gone"));
    docker(&["rm", "-f", &format!("ua-{id}")]);
    let response = post_check(&server, &id);
    assert_eq!(response.status, 404, "{}", response.body);
}

/// A `check.sh.tmpl` that does not render is a `422` whose `error` names
/// the kind and place, and whose `sealedOutput` has the detail.
#[test]
fn a_check_that_does_not_render_is_422() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-unrendered",
        "echo {{ data.answer }}\necho {{ data.missing }}\n",
        None,
    );
    let id = server.instance(&check_spec(&server, "unrendered-1", "check-unrendered"));
    let response = post_check(&server, &id);
    assert_eq!(response.status, 422, "{}", response.body);
    let body = response.json();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("check.sh.tmpl") && error.contains("undefined"),
        "{error}"
    );
    assert!(!response.body.contains(ANSWER));
    let opened = opened_output(&server, &response);
    assert!(!opened.is_empty(), "no sealedOutput: {body}");
}

/// Whether the log since `from` has a warning that `name`'s student is root.
fn warned_root(server: &TestServer, from: usize, name: &str) -> bool {
    server.log()[from..]
        .lines()
        .any(|l| l.contains("WARN") && l.contains(name) && l.contains("USER"))
}

/// An assignment with a check whose image's USER is root hides nothing:
/// the log warns at its first check and at every start-up.
#[test]
fn a_check_with_a_root_student_is_warned_of() {
    let mut server = TestServer::start();
    let name = "check-rootuser";
    add_check_assignment(&server, name, DONE_CHECK, None);
    write(
        &server.assignments().join(name).join("Dockerfile"),
        "FROM ua-busybox:latest\nWORKDIR /root\nCMD [\"/bin/sh\"]\n",
    );
    let id = server.instance(&check_spec(&server, "rootuser-1", name));
    checked(&server, &id);
    assert!(
        warned_root(&server, 0, name),
        "no warning at the first check"
    );
    server.kill();
    let from = server.log().len();
    server.spawn();
    // Warned once the records are reconciled, in the background.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !warned_root(&server, from, name) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        warned_root(&server, from, name),
        "no warning at start-up:\n{}",
        &server.log()[from..]
    );
}

/// `checkTimeout` is capped at `--build-timeout`, and `POST /spec` says so
/// in `capped` (docs/API.md, "Assignment settings").
#[test]
fn check_timeout_is_capped_at_the_build_timeout() {
    let server = TestServer::start_with(&["--build-timeout", "4s"]);
    add_check_assignment(
        &server,
        "check-capped",
        "echo started the long check\nsleep 60\n",
        Some(r#"{"checkTimeout": "60s"}"#),
    );
    let spec = check_spec(&server, "capped-1", "check-capped");
    let id = server.instance(&spec);
    let start = Instant::now();
    let response = post_check(&server, &id);
    assert_failed_to_run(&server, &response, "started the long check");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let again = server.http("POST", "/spec", &spec);
    let capped = again.json()["capped"].clone();
    assert!(
        capped.as_array().is_some_and(|c| c
            .iter()
            .any(|s| s.as_str().unwrap().contains("checkTimeout"))),
        "no capped checkTimeout in {}",
        again.body
    );
}

/// `ua check`: the spec flags of `ua connect` reach the instance (made if
/// need be); it prints the feedback, each test and the score, the opened
/// result for a key holder, and exits 3 below a full score, 0 at it, 1
/// with the opened output when the check gives no verdict.
#[test]
fn ua_check_prints_the_tests_and_exits_by_the_score() {
    let server = TestServer::start();
    add_check_assignment(&server, "check-cli", DONE_CHECK, None);
    add_check_assignment(&server, "check-cli-none", "echo 'no verdict here'\n", None);
    let url = format!("http://127.0.0.1:{}", server.port);
    let ua_check = |args: &[&str]| {
        let out = std::process::Command::new(BINARY)
            .args(["check", "--server", &url, "--key-file"])
            .arg(server.key_file())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let spec = ["--assignment", "check-cli", "--spec-id", "cli-1", "--data"];
    let data = format!(r#"{{"answer": "{ANSWER}"}}"#);
    let (code, text) = ua_check(&[&spec[..], &[data.as_str()]].concat());
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("✗ done.txt says finished"), "{text}");
    assert!(text.contains("score: 0"), "{text}");
    assert!(
        text.contains(r#"result (opened): {"#) && text.contains(r#""specID":"cli-1""#),
        "{text}"
    );
    assert!(!text.contains(ANSWER), "{text}");

    let id = server.instance(&server.seal(&format!(
        r#"{{"specID":"cli-1","assignmentName":"check-cli","data":{data}}}"#
    )));
    // Past checkInterval, and past the stop that followed the first check.
    std::thread::sleep(Duration::from_secs(10));
    docker(&["start", &format!("ua-{id}")]);
    exec(&id, "echo finished > /home/student/done.txt", "");
    let (code, text) = ua_check(&["--instance", &id]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("✓ done.txt says finished") && text.contains("score: 1"),
        "{text}"
    );

    let none = ["--assignment", "check-cli-none", "--spec-id", "cli-2"];
    let (code, text) = ua_check(&none);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("422") && text.contains("no verdict here"),
        "{text}"
    );
}
