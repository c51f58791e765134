//! `POST /spec` and `POST /spec/clean` (docs/API.md): the body read within
//! its limits, the sealed spec opened, get-or-create with `?progress`, a
//! failed build's output sealed, the cleaning of one spec.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::crypto::seal::Purpose;
use crate::instance::registry::CreateError;
use crate::protocol::spec::Spec;
use crate::support::time::unix_now;
use crate::telemetry::metrics;

use crate::server::http::app::App;
use crate::server::http::respond::{capitalise, error, json_response, Body};

/// How long `POST /spec?progress` waits for a phase change at most.
pub(super) const PROGRESS_WAIT: Duration = Duration::from_secs(10);

/// How long it gives a create before answering with a phase.
pub(super) const PROGRESS_SETTLE: Duration = Duration::from_millis(300);

/// Largest request body accepted (a sealed spec is far smaller).
pub const MAX_BODY: usize = 1 << 20;

/// A client must send its request body within this time.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads, opens and validates the sealed spec of a request; a refusal is
/// counted in the metrics.
pub(super) async fn read_spec(
    app: &App,
    request: Request<Incoming>,
) -> Result<Spec, Response<Body>> {
    let result = open_spec(app, request).await;
    if let Err(response) = &result {
        let kind = match response.status() {
            StatusCode::GONE => "expired_spec",
            _ => "bad_request",
        };
        metrics::ERRORS.add(kind, 1);
    }
    result
}

pub(super) async fn open_spec(
    app: &App,
    request: Request<Incoming>,
) -> Result<Spec, Response<Body>> {
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is over the 1 MiB limit; send only the sealed spec",
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    let reading = Limited::new(request.into_body(), MAX_BODY).collect();
    let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, reading).await else {
        return Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ));
    };
    let body = match read {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_big()),
        Err(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ))
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the sealed spec is not base64 text",
        ));
    };
    let plaintext = app
        .keys
        .load()
        .open(text)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    let mut spec =
        Spec::parse(&plaintext).map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    spec.sealed = Some(text.trim().to_string());
    if spec.expired_at(unix_now()) {
        return Err(error(
            StatusCode::GONE,
            "this spec is past its notAfter time; ask for a fresh one",
        ));
    }
    Ok(spec)
}

pub(super) async fn post_spec(app: &App, request: Request<Incoming>) -> Response<Body> {
    let observe = query_has(&request, "mode=observe");
    let progress = query_has(&request, "progress");
    let spec = match read_spec(app, request).await {
        Ok(spec) => spec,
        Err(response) => return response,
    };
    let spec_id = spec.spec_id.clone();
    if observe {
        return match app.registry.instance_of_spec(&spec) {
            Ok(Some(id)) => json_response(StatusCode::OK, json!({ "instanceID": id })),
            Ok(None) => error(StatusCode::NOT_FOUND, "this spec has no instance"),
            Err(e) => conflict(e),
        };
    }
    let assignment = spec.assignment.to_string();
    let assignment_name = spec.assignment.clone();
    let answer = if progress {
        match with_progress(app, spec).await {
            Ok(answer) => answer,
            Err(phase) => return json_response(StatusCode::ACCEPTED, phase),
        }
    } else {
        app.registry.get_or_create(spec).await
    };
    match answer {
        Ok(instance_id) => {
            let mut body = json!({ "instanceID": instance_id });
            // `?progress` also names the assignment (the start page's title).
            if progress {
                body["assignment"] = json!(assignment);
                body["expiry"] = expiry(app, &instance_id);
            }
            let notes = app.registry.notes_of(&assignment_name).await;
            if !notes.capped.is_empty() {
                body["capped"] = json!(notes.capped);
            }
            if notes.check {
                body["check"] = json!(true);
            }
            json_response(StatusCode::OK, body)
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            metrics::ERRORS.add(e.metric_kind(), 1);
            if status.is_server_error() {
                log::warn!(ua_spec = spec_id; "spec {spec_id:?}: {e}");
            }
            let mut body = json!({ "error": capitalise(&e.to_string()) });
            if let Some(limit) = e.limit() {
                body["limit"] = json!(limit);
            }
            if let Some((tail, what)) = failure_output(&e).filter(|(tail, _)| !tail.is_empty()) {
                // Output can hold spec data in any form: only key holders read it.
                let sealed = app
                    .keys
                    .load()
                    .seal_as(Purpose::Output, tail.join("\n").as_bytes());
                log::warn!(
                    ua_spec = spec_id;
                    "spec {spec_id:?}: {e}; its sealed output (ua open shows it): {sealed}"
                );
                body["error"] = json!(format!(
                    "{}; {what} is in sealedOutput, for the assignment's author",
                    capitalise(&e.to_string())
                ));
                body["sealedOutput"] = json!(sealed);
            }
            json_response(status, body)
        }
    }
}

/// When an instance goes: `idleSeconds` after its last session ends, but
/// not before `keepUntil` (Unix seconds, or null).
pub(super) fn expiry(app: &App, instance_id: &str) -> serde_json::Value {
    let keep_until = app
        .registry
        .lookup(instance_id)
        .and_then(|instance| instance.record().keep_until);
    let idle = app.registry.settings().instance_expiry.as_secs();
    json!({ "idleSeconds": idle, "keepUntil": keep_until })
}

/// The last output lines of a failed build or setup, or a render error's
/// detail (raw: they leave the server only sealed), and what they are.
pub(super) fn failure_output(e: &CreateError) -> Option<(&[String], &'static str)> {
    match e {
        CreateError::Build { tail, .. } | CreateError::Setup { tail, .. } => {
            Some((tail, "its last output"))
        }
        CreateError::Template { detail, .. } => Some((detail, "the detail")),
        _ => None,
    }
}

pub(super) fn query_has(request: &Request<Incoming>, pair: &str) -> bool {
    request.uri().query().is_some_and(|q| has_pair(q, pair))
}

pub(super) fn has_pair(query: &str, pair: &str) -> bool {
    query.split('&').any(|kv| kv == pair)
}

/// `POST /spec?progress`: the create's answer if it comes within
/// [`PROGRESS_WAIT`] or before its phase changes; else (`Err`) the phase
/// it is in. The create goes on either way (it runs in its own task).
pub(super) async fn with_progress(
    app: &App,
    spec: Spec,
) -> Result<Result<String, CreateError>, serde_json::Value> {
    let watch = crate::telemetry::progress::Watch::of(&spec.spec_id);
    let mut phases = watch.subscribe();
    let seen = *phases.borrow_and_update();
    let create = app.registry.get_or_create(spec);
    tokio::pin!(create);
    // A moment for a create that is quick (an instance that exists).
    let settle = tokio::time::sleep(PROGRESS_SETTLE);
    tokio::select! {
        answer = &mut create => return Ok(answer),
        () = settle => {}
    }
    let now = *phases.borrow();
    if now == seen {
        tokio::select! {
            answer = &mut create => return Ok(answer),
            _ = phases.changed() => {}
            () = tokio::time::sleep(PROGRESS_WAIT) => {}
        }
    }
    let phase = *phases.borrow();
    Err(phase.to_json())
}

pub(super) async fn clean_spec(app: &App, request: Request<Incoming>) -> Response<Body> {
    let wait = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "async=false" || kv == "async=0")
    });
    let spec = match read_spec(app, request).await {
        Ok(spec) => spec,
        Err(response) => return response,
    };
    if wait {
        match app
            .registry
            .clean_of(&spec.spec_id, Some(&spec.assignment))
            .await
        {
            Ok(cleaned) => json_response(StatusCode::OK, json!({ "cleaned": cleaned })),
            Err(e) => conflict(e),
        }
    } else {
        // Refused at once when it conflicts now; checked again as it cleans.
        if let Err(e) = app.registry.check_assignment(&spec) {
            return conflict(e);
        }
        let registry = app.registry.clone();
        tokio::spawn(async move {
            let _ = registry
                .clean_of(&spec.spec_id, Some(&spec.assignment))
                .await;
        });
        json_response(StatusCode::ACCEPTED, json!({ "cleaned": null }))
    }
}

/// `409`: the spec's specID is another assignment's (counted as `conflict`).
pub(super) fn conflict(e: CreateError) -> Response<Body> {
    metrics::ERRORS.add(e.metric_kind(), 1);
    error(StatusCode::CONFLICT, &e.to_string())
}
