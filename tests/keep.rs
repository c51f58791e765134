//! Long-lived homework (issue 12): a spec's `keepUntil` outlives
//! `--instance-expiry` (capped by `--max-keep`), and the two capacity limits:
//! `--max-running` (running terminals and builds) and `--max-instances`
//! (stored instances), each named in its 503.

mod common;

use std::time::Duration;

use common::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn spec_keeping(server: &TestServer, spec_id: &str, keep_until: Option<i64>) -> String {
    let keep = keep_until.map_or(String::new(), |t| format!(r#","keepUntil":{t}"#));
    server.seal(&format!(
        r#"{{"specID":"{spec_id}","assignmentName":"demo.busybox","data":{{"greeting":"hi"}}{keep}}}"#
    ))
}

fn has_record(server: &TestServer, id: &str) -> bool {
    server
        .records()
        .iter()
        .any(|r| r["instanceID"].as_str() == Some(id))
}

#[test]
fn keep_until_outlives_the_expiry_and_a_past_one_does_not() {
    let server = TestServer::start_with(&["--instance-expiry", "1s"]);
    let kept = server.instance(&spec_keeping(&server, "keep/long", Some(now() + 3600)));
    let past = server.instance(&spec_keeping(&server, "keep/past", Some(now() - 10)));
    let plain = server.instance(&spec_keeping(&server, "keep/none", None));
    eventually(
        Duration::from_secs(30),
        "the instances without a future keepUntil expired",
        || !has_record(&server, &past) && !has_record(&server, &plain),
    );
    // Expired ones come back as new instances; the kept one is the same.
    let later = server.instance(&spec_keeping(&server, "keep/none", None));
    assert_ne!(later, plain);
    eventually(Duration::from_secs(30), "the new one expired too", || {
        !has_record(&server, &later)
    });
    assert!(has_record(&server, &kept));
    assert_eq!(
        server.instance(&spec_keeping(&server, "keep/long", Some(now() + 3600))),
        kept
    );
    let record = server
        .records()
        .into_iter()
        .find(|r| r["instanceID"] == kept.as_str())
        .unwrap();
    assert!(record["keepUntil"].as_i64().unwrap() > now());
}

#[test]
fn keep_until_is_capped_by_max_keep() {
    let server = TestServer::start_with(&["--instance-expiry", "1s", "--max-keep", "2s"]);
    let id = server.instance(&spec_keeping(&server, "keep/capped", Some(now() + 86400)));
    let record = server.records().pop().unwrap();
    assert!(record["keepUntil"].as_i64().unwrap() <= now() + 2);
    eventually(
        Duration::from_secs(30),
        "the capped instance expired",
        || !has_record(&server, &id),
    );
}

#[test]
fn running_and_stored_limits_are_separate_and_named() {
    let server = TestServer::start_with(&[
        "--max-running",
        "1",
        "--max-instances",
        "3",
        "--reattach-grace",
        "1s",
    ]);
    let first = server.instance(&server.demo_spec("limits-1"));
    // Stopped instances do not count against the running limit.
    server.instance(&server.demo_spec("limits-2"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&first)).await;
        term.run("echo running").await;
        let refused = server.http("POST", "/spec", &server.demo_spec("limits-3"));
        assert_eq!(refused.status, 503, "{}", refused.body);
        let body = refused.json();
        assert_eq!(body["limit"], "running");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("limit of 1 running terminals and builds"),
            "{body}"
        );
        assert_eq!(body["retryAfter"], 5);
        term.close().await;
    });
    // The terminal stops after its grace: room again.
    eventually(Duration::from_secs(30), "the terminal stopped", || {
        server
            .http("POST", "/spec", &server.demo_spec("limits-3"))
            .status
            == 200
    });
    let refused = server.http("POST", "/spec", &server.demo_spec("limits-4"));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["limit"], "instances");
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("limit of 3 stored instances"));
}
