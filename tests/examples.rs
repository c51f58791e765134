//! The example assignments in templates/ (shared-image mode, on the Debian
//! base image of scripts/build-debian-base), end to end: a sealed spec, the
//! websocket terminal, the commands a student would type to solve the task,
//! and the per-student answer that only the spec carries — each student sees
//! their own and never another's.

mod common;

use std::time::Duration;

use common::*;

/// A server with the example groups installed, on the Debian base image.
fn examples_server() -> TestServer {
    debian_base_ready();
    let server = TestServer::start();
    for group in ["c", "unix", "git", "archive"] {
        server.add_templates(group);
    }
    server
}

/// A student's terminal: seal a spec, get an instance, wait for the prompt.
async fn student(server: &TestServer, assignment: &str, data: serde_json::Value) -> Term {
    student_of(server, assignment, data).await.0
}

/// [`student`], and the instance's ID.
async fn student_of(
    server: &TestServer,
    assignment: &str,
    data: serde_json::Value,
) -> (Term, String) {
    let spec = serde_json::json!({
        "specID": format!("examples/{assignment}/{}", rand_tag()),
        "assignmentName": assignment,
        "data": data,
    });
    let id = server.instance(&server.seal(&spec.to_string()));
    let mut term = Term::connect(&server.ws_url(&id)).await;
    // The first instance of an assignment may wait for its image build.
    term.wait_for_from(0, "$ ", Duration::from_secs(60)).await;
    (term, id)
}

/// Runs the instance's check while the student polls every process's
/// arguments and environment in `/proc`, and returns the answer. Asserts
/// that neither the poll nor the answer (but for its sealed result) holds
/// `secret`, and that the poll saw the check's processes.
async fn check_unseen(
    server: &TestServer,
    term: &mut Term,
    id: &str,
    secret: &str,
) -> serde_json::Value {
    // One `cat` a round, so that a round is quicker than a check.
    let poll = "rm -f /tmp/stop; (while [ ! -e /tmp/stop ]; do \
                cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ; echo; done > /tmp/seen 2>/dev/null &)";
    term.run(poll).await;
    let from = term.screen.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = server.http("POST", &format!("/instance/{id}/check"), "");
    term.run("touch /tmp/stop; sleep 0.5").await;
    let seen = docker(&["exec", &format!("ua-{id}"), "cat", "/tmp/seen"]);
    let head: String = seen.chars().take(400).collect();
    // The check's outer shell, or the inner one that holds the script.
    let saw = seen.contains("exec 3>&2 2>&1") || seen.contains("ua_check=$(cat)");
    assert!(
        saw,
        "the poll saw no check run ({}): {head}",
        response.status
    );
    assert!(
        !seen.contains(secret),
        "a student polling /proc saw the answer"
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let mut answer = response.json();
    answer.as_object_mut().unwrap().remove("result");
    assert!(!answer.to_string().contains(secret), "{answer}");
    assert!(!term.screen[from..].contains(secret), "{}", term.screen);
    answer
}

/// The test names and messages of a check's answer, one line each.
fn tests_of(answer: &serde_json::Value) -> String {
    let tests = answer["tests"].as_array().unwrap();
    let line = |t: &serde_json::Value| format!("{} {} {}", t["passed"], t["name"], t["message"]);
    tests.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// What the student's home and working directory look like to them: the
/// per-instance files must not take the home away from its owner.
async fn assert_home_is_the_students(term: &mut Term) {
    let out = term
        .run("echo \"user=$(id -un)\"; stat -c 'home=%U' ~; touch ~/.probe && echo 'touch=ok'")
        .await;
    assert!(out.contains("user=student"), "{out}");
    assert!(out.contains("home=student"), "{out}");
    assert!(out.contains("touch=ok"), "{out}");
}

#[tokio::test]
async fn c_fix_bug_prints_the_students_token_once_the_bug_is_fixed() {
    let server = examples_server();
    let tag = rand_tag();
    let (token_a, token_b) = (format!("tok-A-{tag}"), format!("tok-B-{tag}"));
    let (mut a, a_id) =
        student_of(&server, "c.fix_bug", serde_json::json!({"token": token_a})).await;
    assert!(
        a.screen.contains("Task:"),
        "the task is shown: {}",
        a.screen
    );
    assert_home_is_the_students(&mut a).await;

    // Unfixed: it builds and runs, and the token does not decode.
    let out = a.run("make && ./stats").await;
    assert!(out.contains("total 48"), "{out}");
    assert!(out.contains("not right yet"), "{out}");
    // The token is in no file in plain text.
    let out = a.run("grep -rlF \"tok-A-\" ~; echo \"grep=$?\"").await;
    assert!(out.contains("grep=1"), "{out}");

    let fix = "sed -i 's/int i = 1;/int i = 0;/' stats.c && make && ./stats";
    let out = a.run(fix).await;
    assert!(out.contains("total 60"), "{out}");
    assert!(out.contains(&format!("Your token: {token_a}")), "{out}");

    let (mut b, b_id) =
        student_of(&server, "c.fix_bug", serde_json::json!({"token": token_b})).await;
    // Checked before the fix: builds, wrong total, a hint, no token.
    let wrong = check_unseen(&server, &mut b, &b_id, &token_b).await;
    assert_eq!(wrong["score"], 0.5, "{}", tests_of(&wrong));
    assert!(
        tests_of(&wrong).contains("where the loop in stats.c starts"),
        "{}",
        tests_of(&wrong)
    );
    assert!(
        wrong["output"].as_str().unwrap().contains("not right yet"),
        "{wrong}"
    );
    let out = b.run(fix).await;
    assert!(out.contains(&format!("Your token: {token_b}")), "{out}");
    // One check per instance within checkInterval: the fixed one is a's.
    let right = check_unseen(&server, &mut a, &a_id, &token_a).await;
    assert_eq!(right["score"], 1.0, "{}", tests_of(&right));
    assert!(!b.screen.contains(&token_a), "{}", b.screen);
    assert!(!a.screen.contains(&token_b), "{}", a.screen);
}

#[tokio::test]
async fn unix_permissions_shows_the_secret_when_the_modes_are_right() {
    let server = examples_server();
    let tag = rand_tag();
    let (secret_a, secret_b) = (format!("perm-A-{tag}"), format!("perm-B-{tag}"));
    let (mut a, a_id) = student_of(
        &server,
        "unix.permissions",
        serde_json::json!({"secret": secret_a}),
    )
    .await;
    assert_home_is_the_students(&mut a).await;

    // Locked away at first: not readable, the checker not executable.
    let out = a.run("cat vault/secret.txt; ./check").await;
    assert!(out.matches("Permission denied").count() >= 2, "{out}");
    assert!(!out.contains(&secret_a), "{out}");
    let out = a.run("stat -c '%U %a %n' vault check").await;
    assert!(out.contains("student 0 vault"), "{out}");
    assert!(out.contains("student 644 check"), "{out}");

    // Executable, but the modes are still wrong: it says which.
    let out = a.run("chmod u+x check && chmod 755 vault && ./check").await;
    assert!(out.contains("vault is mode 755"), "{out}");
    assert!(!out.contains(&secret_a), "{out}");

    let solve = "chmod u+x check && chmod 700 vault && chmod 600 vault/secret.txt && ./check";
    let out = a.run(solve).await;
    assert!(out.contains(&format!("Your answer: {secret_a}")), "{out}");

    let (mut b, b_id) = student_of(
        &server,
        "unix.permissions",
        serde_json::json!({"secret": secret_b}),
    )
    .await;
    // Half done: the check says which modes are still wrong.
    b.run("chmod u+x check && chmod 755 vault").await;
    let wrong = check_unseen(&server, &mut b, &b_id, &secret_b).await;
    let tests = tests_of(&wrong);
    assert_eq!(wrong["score"], 0.33, "{tests}");
    assert!(tests.contains("its mode is 755, not 700"), "{tests}");
    assert!(tests.contains("its mode is 0"), "{tests}");
    let out = b.run(solve).await;
    assert!(out.contains(&format!("Your answer: {secret_b}")), "{out}");
    let right = check_unseen(&server, &mut a, &a_id, &secret_a).await;
    assert_eq!(right["score"], 1.0, "{}", tests_of(&right));
    assert!(!b.screen.contains(&secret_a), "{}", b.screen);
}

#[tokio::test]
async fn git_recover_finds_the_deleted_token_in_history() {
    let server = examples_server();
    let tag = rand_tag();
    let (token_a, token_b) = (format!("git-A-{tag}"), format!("git-B-{tag}"));
    let (mut a, a_id) = student_of(
        &server,
        "git.recover",
        serde_json::json!({"token": token_a}),
    )
    .await;
    assert_home_is_the_students(&mut a).await;

    // The file is gone from the working tree, and the history is the student's.
    let out = a
        .run("cat config/api-token.txt; git status --short; stat -c 'git=%U' .git")
        .await;
    assert!(out.contains("No such file"), "{out}");
    assert!(out.contains("git=student"), "{out}");
    assert!(!out.contains(&token_a), "{out}");
    let out = a
        .run("git --no-pager log --format='%an: %s' | tail -1")
        .await;
    assert!(
        out.contains("Alex Developer: Start the weather app"),
        "{out}"
    );

    let solve = "git --no-pager show \
                 \"$(git rev-list -n 1 HEAD -- config/api-token.txt)^:config/api-token.txt\"";
    let out = a.run(solve).await;
    assert!(out.contains(&token_a), "{out}");

    let (mut b, b_id) = student_of(
        &server,
        "git.recover",
        serde_json::json!({"token": token_b}),
    )
    .await;
    // A wrong file in place: the check says so without showing the token.
    b.run("mkdir -p config && echo guess > config/api-token.txt")
        .await;
    let wrong = check_unseen(&server, &mut b, &b_id, &token_b).await;
    let tests = tests_of(&wrong);
    assert_eq!(wrong["score"], 0.66, "{tests}");
    assert!(tests.contains("not the deleted token"), "{tests}");
    let restore = "git checkout \"$(git rev-list -n 1 HEAD -- config/api-token.txt)^\" \
                   -- config/api-token.txt && git status --short";
    a.run(restore).await;
    let right = check_unseen(&server, &mut a, &a_id, &token_a).await;
    assert_eq!(right["score"], 1.0, "{}", tests_of(&right));
    assert!(!b.screen.contains(&token_a), "{}", b.screen);
}

#[tokio::test]
async fn archive_unpack_reaches_the_answer_through_the_nested_archives() {
    let server = examples_server();
    let tag = rand_tag();
    let (answer_a, answer_b) = (format!("zip-A-{tag}"), format!("zip-B-{tag}"));
    let (mut a, a_id) = student_of(
        &server,
        "archive.unpack",
        serde_json::json!({"answer": answer_a}),
    )
    .await;
    assert_home_is_the_students(&mut a).await;

    // Packed per student: an xz stream under a misleading name, the student's own.
    let out = a
        .run("file delivery.bin; stat -c 'owner=%U' delivery.bin")
        .await;
    assert!(out.contains("XZ compressed data"), "{out}");
    assert!(out.contains("owner=student"), "{out}");
    let out = a.run("echo \"count=$(grep -c zip-A delivery.bin)\"").await;
    assert!(
        out.contains("count=0"),
        "the answer is not readable as it is: {out}"
    );

    let solve = "tar -xf delivery.bin && cd box && file inner.zip && unzip -o inner.zip \
                 && cat answer.txt; cd ~";
    let out = a.run(solve).await;
    assert!(out.contains("Zip archive data"), "{out}");
    assert!(out.contains(&answer_a), "{out}");

    let (mut b, b_id) = student_of(
        &server,
        "archive.unpack",
        serde_json::json!({"answer": answer_b}),
    )
    .await;
    // Only the outer archive unpacked: the check names the next step.
    b.run("tar -xf delivery.bin").await;
    let wrong = check_unseen(&server, &mut b, &b_id, &answer_b).await;
    let tests = tests_of(&wrong);
    assert_eq!(wrong["score"], 0.33, "{tests}");
    assert!(tests.contains("unzip it inside box"), "{tests}");
    let right = check_unseen(&server, &mut a, &a_id, &answer_a).await;
    assert_eq!(right["score"], 1.0, "{}", tests_of(&right));
    assert!(!b.screen.contains(&answer_a), "{}", b.screen);
}

/// The base image has what courses ask for beyond the examples, and gdb
/// runs a program under Docker's seccomp profile without the ASLR error.
#[tokio::test]
async fn the_base_image_has_the_course_tools_and_gdb_runs_programs() {
    let server = examples_server();
    let mut term = student(&server, "c.fix_bug", serde_json::json!({"token": "t"})).await;
    let tools = "python3 -c 'print(6*7)'; strace -f -o /dev/null true && echo strace-ok; \
                 valgrind -q true && echo valgrind-ok; nc -h 2>&1 | grep -q OpenBSD && echo nc-ok; \
                 tmux -V; man -w ls";
    let out = term.run(tools).await;
    for expected in [
        "42",
        "strace-ok",
        "valgrind-ok",
        "nc-ok",
        "tmux 3",
        "/usr/share/man/man1/ls.1",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    let out = term
        .run("make -s && gdb -q -batch -ex run -ex 'info inferiors' ./stats 2>&1")
        .await;
    assert!(out.contains("total 48"), "the program ran under gdb: {out}");
    assert!(
        !out.contains("disabling address space randomization"),
        "{out}"
    );
}
