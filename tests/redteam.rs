//! Regression tests for what the red-team pass broke (issue 15): each one
//! failed on the server before its fix.

mod common;

use common::*;

/// Requests whose paths once panicked a handler (a slice out of bounds)
/// get a plain answer, and the log has no panic in it.
#[test]
fn odd_instance_paths_answer_without_a_panic() {
    let server = TestServer::start();
    for path in [
        "/instance/ws",
        "/instance/",
        "/instance//ws",
        "/instance/x/ws",
    ] {
        let response = server.http("GET", path, "");
        assert!(
            matches!(response.status, 400 | 404),
            "{path}: {} {}",
            response.status,
            response.body
        );
    }
    let metrics = server.http("GET", "/metrics", "").body;
    assert!(metrics.contains("\nua_panics_total 0\n"), "{metrics}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// A failed build's output leaves the server only sealed: whatever form the
/// data takes in it (split by a newline, shell-quoted with a `'`), the 422
/// body and the log hold none of it, and `ua open` shows the author all of it.
#[test]
fn build_output_is_sealed_so_no_form_of_the_data_leaks() {
    let server = TestServer::start();
    write(
        &server.assignments().join("broken/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo {{ data.greeting }}\nRUN echo {{ data.quoted | shell }} && exit 3\n",
    );
    // Each piece would have shown in the 422 body under pattern redaction.
    let cases = [
        (
            r#""Answer-Part-One\nanswer-part-two""#,
            vec!["Answer-Part-One", "ANSWER-PART-TWO", "answer-part-two"],
        ),
        (r#""it's-the-SECRET-ANSWER""#, vec!["SECRET-ANSWER"]),
    ];
    for (i, (value, pieces)) in cases.iter().enumerate() {
        let spec = format!(
            r#"{{"specID":"leak-{i}","assignmentName":"broken","data":{{"greeting":{value},"quoted":{value}}}}}"#
        );
        let response = server.http("POST", "/spec", &server.seal(&spec));
        assert_eq!(response.status, 422, "{}", response.body);
        let body = response.json();
        assert!(body.get("buildOutput").is_none(), "{body}");
        let sealed = body["sealedOutput"].as_str().expect("sealedOutput");
        let opened = ua_with_input("open", &server.key_file(), sealed);
        assert!(opened.status.success());
        let output = String::from_utf8_lossy(&opened.stdout);
        assert!(
            pieces.iter().any(|piece| output.contains(piece)),
            "the author sees the output: {output}"
        );
        for piece in pieces {
            let lower = piece.to_lowercase();
            assert!(
                !response.body.to_lowercase().contains(&lower),
                "{piece} in {}",
                response.body
            );
            assert!(
                !server.log().to_lowercase().contains(&lower),
                "{piece} in the log"
            );
        }
        assert!(
            server.log().contains(sealed),
            "the journal has the sealed tail"
        );
    }
    assert!(server.containers().is_empty() && server.records().is_empty());
}

/// The `shell` filter in a Dockerfile keeps newlines and backslash-newlines
/// exactly (a Dockerfile would otherwise end the instruction or join lines).
#[test]
fn shell_quoting_in_a_dockerfile_is_faithful() {
    let server = TestServer::start();
    write(
        &server.assignments().join("quoted/Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN printf '%s' {{ data.text | shell }} > /quoted\nCMD [\"/bin/sh\"]\n",
    );
    let text = "one\\\ntwo\nthree's";
    let spec =
        serde_json::json!({"specID": "quoted", "assignmentName": "quoted", "data": {"text": text}});
    let id = server.instance(&server.seal(&spec.to_string()));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("od -c /quoted | head -3").await;
        // od -c shows the backslash as `\` and each newline as `\n`.
        let squeezed: String = out.split_whitespace().collect();
        assert!(squeezed.contains(r"one\\ntwo\nthree's"), "{out}");
    });
}
