//! `GET /instance/{id}/files`: graded files streamed as the container
//! reads them; `PUT /instance/{id}/files`: a file written as the student.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use serde_json::json;

use crate::crypto::handle;
use crate::crypto::ids::is_instance_id;
use crate::engine::docker::DockerError;
use crate::instance::files::{self, FilesError};
use crate::instance::upload::{Upload, UploadError};

use crate::server::http::app::App;
use crate::server::http::respond::{error, json_response, Body};

/// The graded files as they stream out of the container; a cut-off answer
/// ends the connection (the client sees it broken, never short).
pub(super) struct FilesBody(files::Answer);

impl hyper::body::Body for FilesBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_chunk(cx).map(|c| c.map(|c| c.map(Frame::data)))
    }
}

const GONE: &str =
    "there is no such instance (it may have expired or been cleaned); send the spec again";

/// `GET /instance/{id}/files?path=…`: graded files out of the container.
pub(super) async fn graded_files(app: &App, instance_id: &str, query: &str) -> Response<Body> {
    let instance = is_instance_id(instance_id)
        .then(|| app.registry.lookup(instance_id))
        .flatten();
    let Some(instance) = instance else {
        return error(StatusCode::NOT_FOUND, GONE);
    };
    let read = match files::paths_from_query(query) {
        Ok(paths) => app.registry.read_files(&instance, &paths).await,
        Err(e) => Err(e),
    };
    match read {
        Ok(answer) => {
            let mut response = Response::new(FilesBody(answer).boxed_unsync());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(FilesError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, &m),
        Err(FilesError::TooBig(m)) => error(StatusCode::PAYLOAD_TOO_LARGE, &m),
        Err(FilesError::Busy(m)) => error(StatusCode::SERVICE_UNAVAILABLE, &m),
        Err(FilesError::Gone) => error(StatusCode::NOT_FOUND, GONE),
        Err(e) if e.is_unavailable() => {
            let h = handle::of(instance_id);
            let e = handle::hide(&e, instance_id);
            log::warn!(ua_instance = h; "instance {h}: files not read: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Docker is unreachable; try again shortly",
            )
        }
        Err(e) => {
            let h = handle::of(instance_id);
            let e = handle::hide(&e, instance_id);
            log::warn!(ua_instance = h; "instance {h}: files not read: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the files could not be read from the container",
            )
        }
    }
}

/// Longest an upload's body may take to arrive.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// `PUT /instance/{id}/files?path=P[&mode=0755]`: the body written to P as
/// the image's USER.
pub(super) async fn put_file(
    app: &App,
    instance_id: &str,
    request: hyper::Request<hyper::body::Incoming>,
) -> Response<Body> {
    let instance = is_instance_id(instance_id)
        .then(|| app.registry.lookup(instance_id))
        .flatten();
    let Some(instance) = instance else {
        return error(StatusCode::NOT_FOUND, GONE);
    };
    let upload = match Upload::from_query(request.uri().query().unwrap_or("")) {
        Ok(upload) => upload,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let limit_mb = app.config.load().max_upload_mb;
    let limit = (limit_mb as usize) << 20;
    let too_big = || {
        let words = format!("the file is over the {limit_mb} MiB upload limit");
        error(StatusCode::PAYLOAD_TOO_LARGE, &words)
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let reading = read_body(request.into_body(), limit, declared);
    let content = match tokio::time::timeout(UPLOAD_TIMEOUT, reading).await {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the file did not arrive in time",
            )
        }
        Ok(Err(BodyRefusal::TooBig)) => return too_big(),
        Ok(Err(BodyRefusal::Broken)) => {
            return error(StatusCode::BAD_REQUEST, "the file could not be read")
        }
        Ok(Ok(body)) => body,
    };
    match app.registry.write_file(&instance, &upload, content).await {
        Ok(size) => json_response(StatusCode::OK, json!({ "path": upload.path, "size": size })),
        Err(e) => upload_refusal(instance_id, e),
    }
}

fn upload_refusal(instance_id: &str, e: UploadError) -> Response<Body> {
    let status = match &e {
        UploadError::BadRequest(_) => StatusCode::BAD_REQUEST,
        UploadError::Forbidden(_) => StatusCode::FORBIDDEN,
        UploadError::Conflict(_) => StatusCode::CONFLICT,
        UploadError::Failed(_) => StatusCode::INSUFFICIENT_STORAGE,
        UploadError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        UploadError::Gone => return error(StatusCode::NOT_FOUND, GONE),
        UploadError::Docker(DockerError::Unreachable(_)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Docker is unreachable; try again shortly",
            )
        }
        UploadError::Docker(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        let h = handle::of(instance_id);
        let e = handle::hide(&e, instance_id);
        log::warn!(ua_instance = h; "instance {h}: file not written: {e}");
        return error(status, "the file could not be written into the container");
    }
    error(status, &e.to_string())
}

enum BodyRefusal {
    TooBig,
    Broken,
}

/// Most bytes past the limit read and thrown away so that a client still
/// sending gets the 413 instead of a broken pipe (a lingering close).
const DRAIN_PAST_LIMIT: u64 = 64 << 20;

/// The upload's bytes, at most `limit`. An upload over it is read on and
/// discarded up to `DRAIN_PAST_LIMIT` before the refusal is sent.
async fn read_body(
    mut body: hyper::body::Incoming,
    limit: usize,
    declared: Option<u64>,
) -> Result<Vec<u8>, BodyRefusal> {
    let drain_to = limit as u64 + DRAIN_PAST_LIMIT;
    if declared.is_some_and(|n| n > drain_to) {
        return Err(BodyRefusal::TooBig);
    }
    let mut content = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyRefusal::Broken)?.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > drain_to {
            break;
        }
        if seen <= limit as u64 && declared.is_none_or(|n| n <= limit as u64) {
            content.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 || declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyRefusal::TooBig);
    }
    Ok(content)
}
