//! The pages and probes: the browser terminal's files, the start page,
//! `/metrics`, `/health`.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::crypto::ids::is_instance_id;
use crate::telemetry::metrics;

use crate::server::http::app::App;
use crate::server::http::respond::{error, full, json_response, Body};

pub(super) fn asset(kind: &'static str, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) fn static_file(app: &App, name: &str) -> Response<Body> {
    match app.web.as_ref().and_then(|web| web.file(name)) {
        Some((kind, bytes)) => asset(kind, bytes),
        None => error(
            StatusCode::NOT_FOUND,
            "there is no such file on this server",
        ),
    }
}

/// The browser terminal for an instance.
pub(super) fn terminal_page(app: &App, instance_id: &str) -> Response<Body> {
    let Some(web) = app.web.as_ref() else {
        return error(
            StatusCode::NOT_FOUND,
            "the browser terminal is turned off on this server",
        );
    };
    let instance = is_instance_id(instance_id)
        .then(|| app.registry.lookup(instance_id))
        .flatten();
    let Some(instance) = instance else {
        return error(
            StatusCode::NOT_FOUND,
            "there is no such instance (it may have expired or been cleaned); send the spec again",
        );
    };
    let (kind, page) = web.page();
    if app.registry.has_check(&instance) {
        return page_with_policy((kind, with_check_button(&page)));
    }
    page_with_policy((kind, page))
}

/// The page with its check button turned on (docs/API.md, "HTTP API").
fn with_check_button(page: &Bytes) -> Bytes {
    const OFF: &str = r#"<meta name="ua-check" content="false">"#;
    const ON: &str = r#"<meta name="ua-check" content="true">"#;
    let text = String::from_utf8_lossy(page);
    Bytes::from(text.replacen(OFF, ON, 1))
}

/// `GET /start`: the page reads the sealed spec from its fragment (which no
/// request line carries) and posts it.
pub(super) fn start_page(app: &App) -> Response<Body> {
    match app.web.as_ref().and_then(|web| web.file("start.html")) {
        Some(page) => page_with_policy(page),
        None => error(
            StatusCode::NOT_FOUND,
            "the browser terminal is turned off on this server",
        ),
    }
}

pub(super) fn page_with_policy((kind, bytes): (&'static str, Bytes)) -> Response<Body> {
    let mut response = asset(kind, bytes);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'",
        ),
    );
    response
}

pub(super) fn metrics_page(app: &App) -> Response<Body> {
    let mut snapshot = app.registry.snapshot();
    snapshot.sessions = app.sessions.len();
    let mut text = metrics::render(&snapshot);
    crate::telemetry::metrics::render_node(&mut text, app.config.load().node_id.as_deref());
    let mut response = Response::new(full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

pub(super) async fn health(app: &App) -> Response<Body> {
    let probe = app.health.probe().await;
    let now = app.registry.snapshot();
    let (instances, building) = (now.running + now.stopped, now.building);
    let ok = probe.ok();
    let describe = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "node": app.config.load().node_id,
            "docker": describe(&probe.docker),
            "stateDir": describe(&probe.state_dir),
            "diskQuota": describe(&probe.disk_quota),
            "records": app.registry.records_state(),
            "instances": instances,
            "building": building,
            "sessions": app.sessions.len(),
            "pool": app.registry.pool_total(),
        }),
    )
}
