//! Helpers of the check tests (docs/API.md, "Checks"): assignments with a
//! `check.sh.tmpl` written on the fly, the check request, and opening what
//! the server sealed. Included with `#[path]` by tests/check*.rs, which also
//! declare `mod common`.
#![allow(dead_code)]

use std::process::{Command, Stdio};

use super::common::{docker, write, Response, TestServer};
use ua::crypto::seal::{Keyring, Purpose};

/// The answer every check spec carries: long enough to be redacted.
pub const ANSWER: &str = "swordfish-42";

/// Passes when the student wrote `finished` to done.txt; says where and as
/// whom it ran.
pub const DONE_CHECK: &str = r#"if [ -f done.txt ] && [ "$(cat done.txt)" = finished ]; then s=1; p=true; else s=0; p=false; fi
echo "checked in $(pwd) as $(id -u)"
printf '{"score": %s, "tests": [{"name": "done.txt says finished", "passed": %s}]}' "$s" "$p" > "$UA_RESULT"
"#;

/// A shared-image assignment `name` on the busybox base, as the student
/// user, with `check` as its `check.sh.tmpl` and `settings` (if any) as its
/// `assignment.json`. Each test uses its own name, so that tests running
/// at once never share an assignment image tag.
pub fn add_check_assignment(server: &TestServer, name: &str, check: &str, settings: Option<&str>) {
    let dir = server.assignments().join(name);
    write(
        &dir.join("Dockerfile"),
        "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n",
    );
    write(&dir.join("check.sh.tmpl"), check);
    if let Some(settings) = settings {
        write(&dir.join("assignment.json"), settings);
    }
}

/// A sealed spec of `assignment` with the answer and a few other values.
pub fn check_spec(server: &TestServer, spec_id: &str, assignment: &str) -> String {
    check_spec_with(server, spec_id, assignment, "")
}

/// As [`check_spec`], with `extra` (`"k": v` pairs, each after a comma) in
/// `data`.
pub fn check_spec_with(
    server: &TestServer,
    spec_id: &str,
    assignment: &str,
    extra: &str,
) -> String {
    server.seal(&format!(
        r#"{{"specID":"{spec_id}","assignmentName":"{assignment}",
            "data":{{"answer":"{ANSWER}","short":"abc","number":7654321{extra}}}}}"#
    ))
}

/// `POST /instance/{id}/check` with no body.
pub fn post_check(server: &TestServer, id: &str) -> Response {
    server.http("POST", &format!("/instance/{id}/check"), "")
}

/// A check that answered 200, with its body.
pub fn checked(server: &TestServer, id: &str) -> serde_json::Value {
    let response = post_check(server, id);
    assert_eq!(
        response.status,
        200,
        "{}\nopened: {}\nlog:\n{}",
        response.body,
        opened_output(server, &response),
        server.log()
    );
    response.json()
}

/// The server's key ring, read from its key file.
pub fn keys(server: &TestServer) -> Keyring {
    Keyring::load(&server.key_file()).expect("the server's key file loads")
}

/// Opens `sealed` as `purpose` with the server's keys, as text.
pub fn open_as(server: &TestServer, purpose: Purpose, sealed: &str) -> Option<String> {
    keys(server)
        .open_as(purpose, sealed)
        .ok()
        .map(|plain| String::from_utf8_lossy(&plain).into_owned())
}

/// A 422's `sealedOutput` opened with the output subkey, or "" without one.
pub fn opened_output(server: &TestServer, response: &Response) -> String {
    serde_json::from_str::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|body| body["sealedOutput"].as_str().map(str::to_string))
        .and_then(|sealed| open_as(server, Purpose::Output, &sealed))
        .unwrap_or_default()
}

/// The sorted top-level keys of a JSON object.
pub fn keys_of(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The instance's handle, from its container's `ua.handle` label.
pub fn handle(id: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"ua.handle\"}}",
        &format!("ua-{id}"),
    ])
}

/// `docker exec` as root in the instance's container, with `input` on its
/// standard input; the standard output.
pub fn exec(id: &str, script: &str, input: &str) -> String {
    let mut child = Command::new("docker")
        .args(["exec", "-i", &format!("ua-{id}"), "/bin/sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec runs");
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `path` exists in the instance's container.
pub fn exists_in(id: &str, path: &str) -> bool {
    exec(id, &format!("test -e {path} && echo yes"), "").trim() == "yes"
}

/// Waits until `path` exists in the instance's container.
pub fn wait_for_file(id: &str, path: &str) {
    super::common::eventually(
        std::time::Duration::from_secs(30),
        &format!("{path} appeared"),
        || exists_in(id, path),
    );
}
