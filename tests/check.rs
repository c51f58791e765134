//! Checks (issue 24; docs/API.md, "Checks"): `POST /instance/{id}/check`
//! runs the assignment's hidden `check.sh.tmpl` in the instance's own
//! container and answers the feedback and a sealed result. Real server,
//! real Docker, assignments written on the fly on the busybox base. What the
//! student cannot see, CORS and the page are in tests/check_hidden.rs.

#[path = "common/checks.rs"]
mod checks;
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checks::*;
use common::*;
use serde_json::json;
use ua::crypto::seal::Purpose;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Passes when the student wrote `finished` to done.txt; says where and as
/// whom it ran.
const DONE_CHECK: &str = r#"if [ -f done.txt ] && [ "$(cat done.txt)" = finished ]; then s=1; p=true; else s=0; p=false; fi
echo "checked in $(pwd) as $(id -u)"
printf '{"score": %s, "tests": [{"name": "done.txt says finished", "passed": %s}]}' "$s" "$p" > "$UA_RESULT"
"#;

/// A per-instance assignment (Dockerfile.tmpl): the check sees what the
/// student did in the terminal, runs as root in the WORKDIR, and the answer
/// is exactly `output`, `score`, `tests`, `result`.
#[test]
fn a_check_scores_what_the_student_did_in_the_terminal() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-done",
        DONE_CHECK,
        Some(r#"{"checkInterval": "1s"}"#),
    );
    let dir = server.assignments().join("check-done");
    std::fs::rename(dir.join("Dockerfile"), dir.join("Dockerfile.tmpl")).unwrap();
    let id = server.instance(&check_spec(&server, "done-1", "check-done"));
    let before = checked(&server, &id);
    assert_eq!(
        keys_of(&before),
        ["output", "result", "score", "tests"],
        "{before}"
    );
    assert_eq!(before["output"], "checked in /home/student as 0\n");
    assert_eq!(before["score"].as_f64(), Some(0.0));
    assert_eq!(
        before["tests"],
        json!([{"name": "done.txt says finished", "passed": false}])
    );
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo finished > done.txt").await;
        std::thread::sleep(Duration::from_millis(1500));
        let after = checked(&server, &id);
        assert_eq!(keys_of(&after), ["output", "result", "score", "tests"]);
        assert_eq!(after["score"].as_f64(), Some(1.0), "{after}");
        assert_eq!(
            after["tests"],
            json!([{"name": "done.txt says finished", "passed": true}])
        );
        // The terminal is untouched by the check.
        assert!(term.run("echo still-$((40+2))").await.contains("still-42"));
        term.close().await;
    });
}

/// `result` opens with the `result` subkey only, never as a spec nor as
/// output, and holds what the platform needs; ua's own fields win over the
/// verdict's, the verdict's other fields are kept.
#[test]
fn the_result_is_sealed_with_the_result_subkey_and_says_whose_it_is() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-result",
        r#"printf '%s' '{"score": 0.5, "tests": [{"name": "half", "passed": false, "message": "half done", "points": 2}], "extra": {"k": 1}, "specID": "forged", "assignmentName": "forged", "checkedAt": 1, "instance": "forged"}' > "$UA_RESULT"
"#,
        None,
    );
    let id = server.instance(&check_spec(&server, "result-1", "check-result"));
    let start = now();
    let answer = checked(&server, &id);
    let end = now();
    assert_eq!(answer["score"], 0.5, "{answer}");
    assert_eq!(answer["tests"][0]["message"], "half done");
    let sealed = answer["result"].as_str().expect("a result");
    assert!(
        keys(&server).open(sealed).is_err(),
        "a result opened as a spec"
    );
    assert!(open_as(&server, Purpose::Output, sealed).is_none());
    let plain = open_as(&server, Purpose::Result, sealed).expect("opens as a result");
    assert_eq!(plain.len() % 256, 0, "not padded: {plain:?}");
    let result: serde_json::Value = serde_json::from_str(plain.trim_end()).unwrap();
    assert_eq!(result["specID"], "result-1", "{result}");
    assert_eq!(result["assignmentName"], "check-result");
    assert_eq!(result["score"], 0.5);
    assert_eq!(
        result["tests"],
        json!([{"name": "half", "passed": false, "message": "half done", "points": 2}])
    );
    assert_eq!(result["extra"], json!({"k": 1}));
    let checked_at = result["checkedAt"].as_u64().expect("checkedAt in seconds");
    assert!(
        (start..=end).contains(&checked_at),
        "{checked_at} not in {start}..={end}"
    );
    let handle = handle(&id);
    assert_eq!(handle.len(), 8);
    assert_eq!(result["instance"], handle.as_str());
    assert!(!plain.contains(&id), "the instance ID is in the result");
    // The server refuses a result sent as a spec.
    assert_eq!(server.http("POST", "/spec", sealed).status, 400);
    // The log names the check by handle, never by ID, and without its verdict.
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&handle) && l.contains("check")),
        "no log line of the check:\n{log}"
    );
    assert!(!log.contains(&id) && !log.contains("half done"), "{log}");
}

/// Prints the answer plainly, in base64 and as a JSON string, a number and
/// a 3-character value, and puts the answer in the tests too.
const LEAKY_CHECK: &str = r#"a={{ data.answer | shell }}
echo "answer=$a short={{ data.short }} number={{ data.number }}"
echo "b64={{ data.answer | b64 }}"
cat <<'EOF'
json={{ data.quoted | json }}
EOF
printf '{"score": 0, "tests": [{"name": "is %s", "passed": false, "message": "expected %s, short %s"}]}' "$a" "$a" {{ data.short | shell }} > "$UA_RESULT"
"#;

const QUOTED: &str = r#","quoted":"say \"hi\" now""#;

/// By default spec data of 4 characters or more is `[redacted]` in the
/// output and the tests; a 3-character value is left.
#[test]
fn spec_data_is_redacted_in_the_feedback_by_default() {
    let server = TestServer::start();
    add_check_assignment(&server, "check-leaky", LEAKY_CHECK, None);
    let id = server.instance(&check_spec_with(&server, "leaky-1", "check-leaky", QUOTED));
    let response = post_check(&server, &id);
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    let output = body["output"].as_str().unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "answer=[redacted] short=abc number=[redacted]",
            "b64=[redacted]"
        ],
        "{output}"
    );
    assert!(
        lines[2].starts_with("json=") && lines[2].contains("[redacted]"),
        "{output}"
    );
    assert!(
        !lines[2].contains("say") && !lines[2].contains("hi"),
        "{output}"
    );
    assert_eq!(
        body["tests"],
        json!([{"name": "is [redacted]", "passed": false, "message": "expected [redacted], short abc"}])
    );
    let plain = response.body.replace(body["result"].as_str().unwrap(), "");
    for secret in [ANSWER, "c3dvcmRmaXNoLTQy", "7654321"] {
        assert!(!plain.contains(secret), "{secret} in {plain}");
        assert!(!server.log().contains(secret), "{secret} in the log");
    }
}

/// `"checkOutput": "verbatim"` gives the output and tests as printed.
#[test]
fn verbatim_check_output_keeps_the_spec_data() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-verbatim",
        LEAKY_CHECK,
        Some(r#"{"checkOutput": "verbatim"}"#),
    );
    let id = server.instance(&check_spec_with(
        &server,
        "verbatim-1",
        "check-verbatim",
        QUOTED,
    ));
    let body = checked(&server, &id);
    assert_eq!(
        body["output"],
        "answer=swordfish-42 short=abc number=7654321\nb64=c3dvcmRmaXNoLTQy\n\
         json=\"say \\\"hi\\\" now\"\n"
    );
    assert_eq!(
        body["tests"],
        json!([{"name": "is swordfish-42", "passed": false,
                "message": "expected swordfish-42, short abc"}])
    );
    // Never logged, verbatim or not.
    assert!(!server.log().contains(ANSWER), "the answer is in the log");
}

/// `POST /spec` says `"check": true` for an assignment with a check and
/// has no `check` field without one.
#[test]
fn post_spec_says_whether_the_assignment_has_a_check() {
    let server = TestServer::start();
    add_check_assignment(&server, "check-flag", DONE_CHECK, None);
    let with = server.http(
        "POST",
        "/spec",
        &check_spec(&server, "flag-1", "check-flag"),
    );
    assert_eq!(with.status, 200, "{}", with.body);
    assert_eq!(with.json()["check"], true, "{}", with.body);
    let without = server.http("POST", "/spec", &server.demo_spec("flag-2"));
    assert_eq!(without.status, 200, "{}", without.body);
    assert!(without.json().get("check").is_none(), "{}", without.body);
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

/// The output is cut at 64 KiB, with a line that says so.
#[test]
fn long_output_is_cut_at_64_kib() {
    let server = TestServer::start();
    let row = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq";
    add_check_assignment(
        &server,
        "check-long",
        &format!(
            "i=0\nwhile [ $i -lt 2000 ]; do printf 'line %05d {row}\\n' $i; i=$((i+1)); done\n\
             printf '{{\"score\": 1, \"tests\": []}}' > \"$UA_RESULT\"\n"
        ),
        None,
    );
    let id = server.instance(&check_spec(&server, "long-1", "check-long"));
    let body = checked(&server, &id);
    let output = body["output"].as_str().unwrap();
    let full: String = (0..2000).map(|i| format!("line {i:05} {row}\n")).collect();
    let marker = "[ua: the check's output was cut at 64 KiB]";
    let at = output.find(marker).unwrap_or_else(|| panic!("no marker"));
    assert!(
        output[at + marker.len()..].trim().is_empty(),
        "after the marker"
    );
    let kept = output[..at].trim_end_matches('\n');
    assert!(full.starts_with(kept), "not the output's start");
    assert!(
        (65536 - 70..=65536).contains(&kept.len()),
        "{} bytes kept",
        kept.len()
    );
    assert_eq!(body["score"].as_f64(), Some(1.0));
}

/// A stopped container is started for the check and stopped after it.
#[test]
fn a_check_runs_in_a_stopped_container_and_stops_it_again() {
    let server = TestServer::start_with(&["--reattach-grace", "1s"]);
    add_check_assignment(
        &server,
        "check-stopped",
        "if [ -f work.txt ]; then s=1; else s=0; fi\n\
         printf '{\"score\": %s, \"tests\": []}' \"$s\" > \"$UA_RESULT\"\n",
        None,
    );
    let id = server.instance(&check_spec(&server, "stopped-1", "check-stopped"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        term.run("echo mine > work.txt").await;
        term.close().await;
    });
    let stopped = vec![format!("ua-{id} exited")];
    eventually(Duration::from_secs(20), "the container stopped", || {
        server.containers() == stopped
    });
    let body = checked(&server, &id);
    assert_eq!(body["score"].as_f64(), Some(1.0), "{body}");
    eventually(Duration::from_secs(20), "stopped again", || {
        server.containers() == stopped
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

/// A check that ends leaves none of its processes, nor ua's, behind: a
/// background process it started is killed, and so is ua's time keeper.
#[test]
fn a_check_that_ends_leaves_no_process_behind() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-tidy",
        "sleep 1000 >/dev/null 2>&1 &\nprintf '{\"score\": 1, \"tests\": []}' > \"$UA_RESULT\"\n",
        None,
    );
    let id = server.instance(&check_spec(&server, "tidy-1", "check-tidy"));
    runtime().block_on(async {
        let term = Term::connect(&server.ws_url(&id)).await;
        checked(&server, &id);
        let ps = exec(&id, "ps -o pid,user,args", "");
        let root: Vec<&str> = ps
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("root"))
            .filter(|l| !l.contains("docker-init") && !l.contains("ps -o"))
            .collect();
        assert!(root.is_empty(), "left behind:\n{ps}");
        term.close().await;
    });
}

/// The verdict's other fields reach the platform in the sealed result, but
/// not the student in plaintext: the answer is the four fields, and a
/// test's own fields are redacted like its name.
#[test]
fn a_verdicts_other_fields_do_not_reach_the_student() {
    let server = TestServer::start();
    add_check_assignment(
        &server,
        "check-extra",
        r#"a={{ data.answer | shell }}
printf '{"score": 1, "tests": [{"name": "t", "passed": true, "expected": "%s"}], "answerKey": "%s"}' "$a" "$a" > "$UA_RESULT"
"#,
        None,
    );
    let id = server.instance(&check_spec(&server, "extra-1", "check-extra"));
    let response = post_check(&server, &id);
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    assert_eq!(
        keys_of(&body),
        ["output", "result", "score", "tests"],
        "{body}"
    );
    let sealed = body["result"].as_str().unwrap();
    let plain = response.body.replace(sealed, "");
    assert!(
        !plain.contains(ANSWER),
        "the student got the answer: {plain}"
    );
    let result = open_as(&server, Purpose::Result, sealed).unwrap();
    let result: serde_json::Value = serde_json::from_str(result.trim_end()).unwrap();
    assert_eq!(result["answerKey"], ANSWER, "{result}");
}

/// An answer cut in two by the 64 KiB limit leaves no part of it behind.
#[test]
fn an_answer_at_the_cut_is_not_shown_in_part() {
    let server = TestServer::start();
    let line = "x".repeat(63);
    let tail = "y".repeat(58);
    add_check_assignment(
        &server,
        "check-cut",
        &format!(
            "a={{{{ data.answer | shell }}}}\ni=0\n\
             while [ $i -lt 1023 ]; do echo {line}; i=$((i+1)); done\n\
             printf '%s%s\\n' {tail} \"$a\"\n\
             printf '{{\"score\": 1, \"tests\": []}}' > \"$UA_RESULT\"\n"
        ),
        None,
    );
    let id = server.instance(&check_spec(&server, "cut-1", "check-cut"));
    let body = checked(&server, &id);
    let output = body["output"].as_str().unwrap();
    let at = output.find("[ua: the check's output was cut").expect("cut");
    let kept = output[..at].trim_end_matches('\n');
    assert!(kept.len() > 65000, "{} bytes kept", kept.len());
    for end in 2..ANSWER.len() {
        assert!(
            !kept.ends_with(&ANSWER[..end]),
            "the output ends with {:?}",
            &ANSWER[..end]
        );
    }
}
