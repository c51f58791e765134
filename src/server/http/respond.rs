//! Response bodies: full, boxed, JSON, and the JSON error every route
//! answers with.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

/// An answer's body: whole, or streamed (graded files).
pub(super) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of `bytes`, all at once.
pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON answer; a 503 also says when to retry, in the `Retry-After`
/// header and (for browsers, which may not see the header) in `retryAfter`.
pub(super) fn json_response(status: StatusCode, mut value: serde_json::Value) -> Response<Body> {
    let retry = status == StatusCode::SERVICE_UNAVAILABLE && value.get("error").is_some();
    if retry {
        value["retryAfter"] = json!(RETRY_AFTER_SECS);
    }
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, json!({ "error": capitalise(message) }))
}

/// Seconds a client told "503" should wait.
pub(super) const RETRY_AFTER_SECS: u32 = 5;

pub(super) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}
