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

/// Item 8: a render error's answer gives the kind and place only. An
/// `include` of a data value once answered "non-existing template 'qzx'"
/// (too short for redaction), and `| upper` defeated redaction of any
/// length. The key holder opens the detail from sealedOutput.
#[test]
fn render_errors_show_no_form_of_the_data() {
    let server = TestServer::start();
    let dir = server.assignments().join("lab/include");
    write(&dir.join("Dockerfile"), "FROM ua-busybox:latest\n");
    let cases = [
        ("data.answer", "qzx"),
        ("data.answer | upper", "zulu-answer-seven"),
    ];
    for (i, (pick, answer)) in cases.iter().enumerate() {
        let source = format!("#!/bin/sh\n# the answer\n{{% include {pick} %}}\n");
        write(&dir.join("setup.sh.tmpl"), &source);
        let spec = serde_json::json!({
            "specID": format!("render-{i}"), "assignmentName": "lab.include",
            "data": {"answer": answer},
        });
        let response = server.http("POST", "/spec", &server.seal(&spec.to_string()));
        assert_eq!(response.status, 422, "{}", response.body);
        let body = response.json();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.starts_with("The template setup.sh.tmpl failed to render at line 3: "),
            "{error}"
        );
        let lower = answer.to_lowercase();
        let headers = format!("{:?}", response.headers).to_lowercase();
        assert!(
            !response.body.to_lowercase().contains(&lower),
            "{}",
            response.body
        );
        assert!(!headers.contains(&lower), "{headers}");
        let sealed = body["sealedOutput"].as_str().expect("sealedOutput");
        // The log line may land just after the answer.
        eventually(
            std::time::Duration::from_secs(10),
            "the log has the sealed detail",
            || server.log().contains(sealed),
        );
        assert!(
            !server.log().to_lowercase().contains(&lower),
            "the answer in the log"
        );
        let opened = ua_with_input("open", &server.key_file(), sealed);
        let detail = String::from_utf8_lossy(&opened.stdout).to_lowercase();
        assert!(
            detail.contains(&lower),
            "the author sees the detail: {detail}"
        );
    }
    assert!(server.containers().is_empty() && server.records().is_empty());
}

/// Item 7: a spec with student A's specID and another assignment (another
/// course) once returned A's instance. It is refused with 409 at every
/// door (create, observe, clean), and A's instance is untouched; a record
/// that names the assignment in the dotted form still matches after a
/// restart (records of earlier versions load).
#[test]
fn a_spec_id_does_not_cross_assignments() {
    let mut server = TestServer::start();
    write(
        &server.assignments().join("other/course/Dockerfile"),
        "FROM ua-busybox:latest\n",
    );
    let victim = server.instance(&server.demo_spec("student-a"));
    let crossing = server.seal(r#"{"specID":"student-a","assignmentName":"other.course"}"#);
    for path in [
        "/spec",
        "/spec?mode=observe",
        "/spec/clean?async=false",
        "/spec/clean",
    ] {
        let response = server.http("POST", path, &crossing);
        assert_eq!(response.status, 409, "{path}: {}", response.body);
        assert!(
            !response.body.contains(&victim),
            "{path}: {}",
            response.body
        );
        assert!(response.json()["error"]
            .as_str()
            .unwrap()
            .contains("another assignment"));
    }
    assert_eq!(server.records().len(), 1);

    // Rewrite the record as `demo.busybox`, restart: the same spec finds it.
    server.terminate();
    let dir = server.state_dir().join("instances");
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let mut record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            record["assignment"] = "demo.busybox".into();
            std::fs::write(entry.path(), record.to_string()).unwrap();
        }
    }
    server.spawn();
    assert_eq!(server.instance(&server.demo_spec("student-a")), victim);
    let response = server.http("POST", "/spec", &crossing);
    assert_eq!(response.status, 409, "{}", response.body);
    let metrics = server.http("GET", "/metrics", "").body;
    assert!(
        metrics.contains("ua_errors_total{kind=\"conflict\"} 1"),
        "{metrics}"
    );
}
