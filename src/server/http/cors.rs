//! CORS and the origin check: which origins may call, the preflight, the
//! headers on every answer.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::server::http::app::App;
use crate::server::http::respond::{full, Body};

pub(super) fn origin_allowed(app: &App, origin: Option<&HeaderValue>) -> bool {
    match (&*app.origins.load(), origin) {
        // No Origin: not a browser page (ua connect, a platform's server).
        (None, _) | (_, None) => true,
        (Some(list), Some(origin)) => origin.to_str().is_ok_and(|o| {
            list.iter()
                .any(|allowed| allowed == o.trim_end_matches('/'))
        }),
    }
}

/// Whether `Origin` is one of this server's public origins (its own
/// browser terminal page). Never decided from `Host`, which the client sets.
pub(super) fn is_same_origin(app: &App, request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| {
            let o = o.trim_end_matches('/');
            app.public_origins.load().iter().any(|public| public == o)
        })
}

pub(super) fn preflight() -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

pub(super) fn add_cors(app: &App, origin: Option<&HeaderValue>, response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
    match (&*app.origins.load(), origin) {
        (None, _) => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        (Some(_), Some(origin)) if origin_allowed(app, Some(origin)) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        _ => {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}
