//! Regression tests for issue 20 (ua security III), items 5, 7 and 8: what
//! is sealed for one purpose never opens as another, a specID does not cross
//! assignments, and render errors show no data. Each failed on the server
//! before its fix.

mod common;

use common::*;

/// A shared-image assignment whose setup echoes the student's submission
/// and fails: its output is text the student chose.
fn echoing_setup(server: &TestServer) {
    let dir = server.assignments().join("lab/echo");
    write(&dir.join("Dockerfile"), "FROM ua-busybox:latest\n");
    write(
        &dir.join("setup.sh.tmpl"),
        "printf '%s\\n' {{ data.submission | shell }}\nexit 1\n",
    );
}

/// Item 5: a setup that echoes a forged spec yields a sealedOutput that,
/// posted to /spec, must not open as that spec (it returned the victim's
/// instance: a takeover of their terminal and files).
#[test]
fn a_sealed_output_never_opens_as_a_spec() {
    let server = TestServer::start();
    echoing_setup(&server);
    let victim = server.instance(&server.demo_spec("victim"));
    let forged = r#"{"specID":"victim","assignmentName":"demo.busybox"}"#;
    let spec = serde_json::json!({
        "specID": "attacker", "assignmentName": "lab.echo",
        "data": {"submission": forged},
    });
    let response = server.http("POST", "/spec", &server.seal(&spec.to_string()));
    assert_eq!(response.status, 422, "{}", response.body);
    let sealed = response.json()["sealedOutput"]
        .as_str()
        .expect("sealedOutput")
        .to_string();

    let replayed = server.http("POST", "/spec", &sealed);
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert!(!replayed.body.contains(&victim), "{}", replayed.body);
    assert!(replayed.json().get("instanceID").is_none());
    for path in ["/spec?mode=observe", "/spec/clean?async=false"] {
        let answer = server.http("POST", path, &sealed);
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
    }
    // The victim's instance is untouched, and the author still reads the output.
    assert_eq!(server.instance(&server.demo_spec("victim")), victim);
    let opened = ua_with_input("open", &server.key_file(), &sealed);
    assert!(opened.status.success());
    assert_eq!(
        String::from_utf8_lossy(&opened.stdout),
        format!("{forged}\n")
    );
}

/// Specs sealed with the key itself (by PyNaCl clients, older `ua seal`)
/// still open; the key file's other keys open them too (rotation).
#[test]
fn specs_sealed_with_the_key_itself_still_open_after_a_rotation() {
    let mut server = TestServer::start();
    let old_key = std::fs::read_to_string(server.key_file()).unwrap();
    let sealed_before = server.demo_spec("old-format");
    let first = server.instance(&sealed_before);
    let rotated = std::env::temp_dir().join(format!("ua-rotated-{}", rand_tag()));
    write_key_file(&rotated);
    let new_key = std::fs::read_to_string(&rotated).unwrap();
    std::fs::write(server.key_file(), format!("{new_key}{old_key}")).unwrap();
    server.terminate();
    server.spawn();
    assert_eq!(server.instance(&sealed_before), first);
    // What the rotated server seals as output opens for the holder of the new key.
    echoing_setup(&server);
    let spec = r#"{"specID":"rot","assignmentName":"lab.echo","data":{"submission":"seen"}}"#;
    let response = server.http("POST", "/spec", &server.seal(spec));
    assert_eq!(response.status, 422, "{}", response.body);
    std::fs::write(&rotated, &new_key).unwrap();
    let opened = ua_with_input(
        "open",
        &rotated,
        response.json()["sealedOutput"].as_str().unwrap(),
    );
    assert_eq!(String::from_utf8_lossy(&opened.stdout), "seen\n");
    std::fs::remove_file(&rotated).unwrap();
}
