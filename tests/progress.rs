//! `POST /spec?progress` (docs/API.md, "Progress"): a real build's phases
//! while the create goes on, then the answer of plain `POST /spec` plus the
//! assignment's name; plain `POST /spec` answers as before.

mod common;

use common::*;

#[test]
fn progress_polls_show_a_real_builds_phases_then_the_instance() {
    let server = TestServer::start();
    let dir = server.assignments().join("steps");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN sleep 2\nRUN sleep 2\nUSER student\nCMD [\"/bin/sh\"]\n",
    );
    let sealed = server.seal(&format!(
        r#"{{"specID":"progress-{}","assignmentName":"steps"}}"#,
        rand_tag()
    ));
    let mut phases = Vec::new();
    let answer = loop {
        let response = server.http("POST", "/spec?progress", &sealed);
        if response.status != 202 {
            break response;
        }
        let phase = response.json();
        assert!(phase["phase"].is_string(), "{}", response.body);
        phases.push(phase);
        assert!(phases.len() < 200, "no answer after {phases:?}");
    };
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["assignment"], "steps");
    assert!(answer.json()["expiry"]["idleSeconds"].as_u64().unwrap() > 0);
    assert!(answer.json()["expiry"]["keepUntil"].is_null());
    let steps: Vec<_> = phases
        .iter()
        .filter(|p| p["phase"] == "building" && p["steps"].is_u64())
        .map(|p| p["step"].as_u64().unwrap())
        .collect();
    assert!(!steps.is_empty(), "no building step k of n in {phases:?}");
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    // ua's builder adds its own steps (labels): n is the Dockerfile's and more.
    let n = phases.iter().find_map(|p| p["steps"].as_u64()).unwrap();
    assert!(n >= 5, "{phases:?}");
    assert!(
        phases
            .iter()
            .all(|p| p["steps"].is_null() || p["steps"] == n),
        "{phases:?}"
    );
    // The same spec again: at once, the same instance, no phase.
    let again = server.http("POST", "/spec?progress", &sealed);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["instanceID"], answer.json()["instanceID"]);
    let plain = server.http("POST", "/spec", &sealed);
    assert_eq!(
        plain.json(),
        serde_json::json!({ "instanceID": answer.json()["instanceID"] })
    );
}
