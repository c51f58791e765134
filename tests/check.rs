//! Checks (issue 24; docs/API.md, "Checks"): `POST /instance/{id}/check`
//! runs the assignment's hidden `check.sh.tmpl` in the instance's own
//! container and answers the feedback and a sealed result. Real server,
//! real Docker, assignments written on the fly on the busybox base. What the
//! student cannot see, CORS and the page are in tests/check_hidden.rs; the
//! errors in tests/check_errors.rs.

#[path = "common/checks.rs"]
mod checks;
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        r#"echo "for {{ spec_id }} in {{ instance_id }}"
printf '%s' '{"score": 0.5, "tests": [{"name": "half", "passed": false, "message": "half done", "points": 2}], "extra": {"k": 1}, "specID": "forged", "assignmentName": "forged", "checkedAt": 1, "instance": "forged"}' > "$UA_RESULT"
"#,
        None,
    );
    let id = server.instance(&check_spec(&server, "result-1", "check-result"));
    let start = now();
    let answer = checked(&server, &id);
    let end = now();
    assert_eq!(answer["score"], 0.5, "{answer}");
    assert_eq!(answer["output"], format!("for result-1 in {id}\n"));
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
            .filter(|l| !l.contains("/.ua/agent"))
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

/// After a key rotation (a new key first, the old one kept) the stored spec
/// still opens, and the result is sealed with the new key's subkey; the
/// result names the assignment as the spec wrote it.
#[test]
fn a_check_after_a_key_rotation_seals_with_the_new_key() {
    let mut server = TestServer::start();
    add_check_assignment(&server, "check/rotate", DONE_CHECK, None);
    let id = server.instance(&check_spec(&server, "rotate-1", "check/rotate"));
    server.kill();
    let old = std::fs::read_to_string(server.key_file()).unwrap();
    let new = std::process::Command::new(BINARY)
        .arg("keygen")
        .output()
        .unwrap();
    let new = String::from_utf8(new.stdout).unwrap();
    std::fs::write(server.key_file(), format!("{new}{old}")).unwrap();
    server.spawn();
    let body = checked(&server, &id);
    let sealed = body["result"].as_str().unwrap();
    let only_old = ua::crypto::seal::Keyring::parse(&old).unwrap();
    assert!(
        only_old.open_as(Purpose::Result, sealed).is_err(),
        "sealed with the old key"
    );
    let only_new = ua::crypto::seal::Keyring::parse(&new).unwrap();
    let plain = only_new
        .open_as(Purpose::Result, sealed)
        .expect("opens with the new key");
    let result: serde_json::Value =
        serde_json::from_slice(String::from_utf8_lossy(&plain).trim_end().as_bytes()).unwrap();
    assert_eq!(result["assignmentName"], "check/rotate", "{result}");
    assert_eq!(result["specID"], "rotate-1");
}
