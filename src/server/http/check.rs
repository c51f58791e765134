//! `POST /instance/{id}/check` (docs/API.md, "Checks"): the instance's
//! stored spec opened, the check run by the registry, its result sealed.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::crypto::handle;
use crate::crypto::ids::is_instance_id;
use crate::crypto::seal::Purpose;
use crate::engine::docker::DockerError;
use crate::instance::check::{retry_seconds, CheckError};
use crate::protocol::spec::Spec;
use crate::support::time::unix_now;
use crate::telemetry::metrics;

use crate::server::http::app::App;
use crate::server::http::respond::{capitalise, error, json_response, Body};

const GONE: &str =
    "there is no such instance (it may have expired or been cleaned); send the spec again";

/// Runs the check of instance `instance_id` and answers with its verdict.
pub(super) async fn post_check(app: &App, instance_id: &str) -> Response<Body> {
    let instance = is_instance_id(instance_id)
        .then(|| app.registry.lookup(instance_id))
        .flatten();
    let Some(instance) = instance else {
        return error(StatusCode::NOT_FOUND, GONE);
    };
    // No check is a 404 whatever the record holds.
    if !app.registry.has_check(&instance) {
        metrics::CHECKS.add("no_check", 1);
        return error(StatusCode::NOT_FOUND, &CheckError::NoCheck.to_string());
    }
    let (spec, assignment_name) = match stored_spec(app, instance.record().sealed_spec.as_deref()) {
        Ok(opened) => opened,
        Err(why) => {
            metrics::CHECKS.add("failed", 1);
            return failed(app, instance_id, why, &[]);
        }
    };
    let checked = app.registry.check(&instance, &spec).await;
    metrics::CHECKS.add(outcome(&checked), 1);
    match checked {
        Ok(checked) => {
            let h = handle::of(instance_id);
            let result = checked
                .verdict
                .result(&spec.spec_id, &assignment_name, unix_now(), &h);
            let sealed = app
                .keys
                .load()
                .seal_padded_as(Purpose::Result, result.to_string().as_bytes());
            json_response(
                StatusCode::OK,
                checked.verdict.answer(&checked.output, &sealed),
            )
        }
        Err(e) => refusal(app, instance_id, e),
    }
}

/// The `ua_checks_total` label of a check's end.
fn outcome(checked: &Result<crate::instance::check::Checked, CheckError>) -> &'static str {
    match checked {
        Ok(_) => "verdict",
        Err(CheckError::Failed { .. }) => "failed",
        Err(CheckError::NoCheck) => "no_check",
        Err(CheckError::Running) => "running",
        Err(CheckError::TooSoon(_)) => "too_soon",
        Err(CheckError::Gone | CheckError::Busy | CheckError::Docker(_)) => "error",
    }
}

/// The spec the instance was made from, opened again (keys may have
/// rotated), and its `assignmentName` as written (`a.b` or `a/b`).
fn stored_spec(app: &App, sealed: Option<&str>) -> Result<(Spec, String), &'static str> {
    let sealed = sealed.ok_or(
        "this instance was made by an older ua and keeps no spec to check against; \
         clean it (POST /spec/clean) and send the spec again",
    )?;
    let no_longer = "this instance's spec no longer opens with the server's keys; \
                     clean it and send the spec again";
    let plaintext = app.keys.load().open(sealed).map_err(|_| no_longer)?;
    let mut spec = Spec::parse(&plaintext).map_err(|_| no_longer)?;
    spec.sealed = Some(sealed.to_string());
    let written = serde_json::from_slice::<serde_json::Value>(&plaintext)
        .ok()
        .and_then(|v| v["assignmentName"].as_str().map(str::to_owned))
        .unwrap_or_else(|| spec.assignment.to_string());
    Ok((spec, written))
}

/// The answer to a check that gave no verdict.
fn refusal(app: &App, instance_id: &str, e: CheckError) -> Response<Body> {
    match e {
        CheckError::NoCheck | CheckError::Gone => error(StatusCode::NOT_FOUND, &e.to_string()),
        CheckError::Running => error(StatusCode::CONFLICT, &e.to_string()),
        CheckError::TooSoon(left) => {
            let seconds = retry_seconds(left);
            let body = json!({ "error": capitalise(&e.to_string()), "retryAfter": seconds });
            let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        CheckError::Failed { ref why, ref tail } => failed(app, instance_id, why, tail),
        CheckError::Busy => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        CheckError::Docker(DockerError::Unreachable(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Docker is unreachable; try again shortly",
        ),
        CheckError::Docker(d) => {
            let h = handle::of(instance_id);
            let d = handle::hide(&d, instance_id);
            log::warn!(ua_instance = h; "instance {h}: check not run: {d}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the check could not be run in the container",
            )
        }
    }
}

/// `422`: `why` in words, the output for the author sealed.
fn failed(app: &App, instance_id: &str, why: &str, tail: &[String]) -> Response<Body> {
    let mut body = json!({ "error": capitalise(why) });
    if !tail.is_empty() {
        let sealed = app
            .keys
            .load()
            .seal_as(Purpose::Output, tail.join("\n").as_bytes());
        let h = handle::of(instance_id);
        log::info!(ua_instance = h; "instance {h}: its check's sealed output (ua open shows it): {sealed}");
        body["error"] = json!(format!(
            "{}; its last output is in sealedOutput, for the assignment's author",
            capitalise(why)
        ));
        body["sealedOutput"] = json!(sealed);
    }
    json_response(StatusCode::UNPROCESSABLE_ENTITY, body)
}
