//! `GET /instance/{id}/files`: graded files streamed as the container
//! reads them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::crypto::handle;
use crate::crypto::ids::is_instance_id;
use crate::instance::files::{self, FilesError};

use crate::server::http::app::App;
use crate::server::http::respond::{error, Body};

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

/// `GET /instance/{id}/files?path=…`: graded files out of the container.
pub(super) async fn graded_files(app: &App, instance_id: &str, query: &str) -> Response<Body> {
    let instance = is_instance_id(instance_id)
        .then(|| app.registry.lookup(instance_id))
        .flatten();
    let Some(instance) = instance else {
        return error(
            StatusCode::NOT_FOUND,
            "there is no such instance (it may have expired or been cleaned); send the spec again",
        );
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
        Err(FilesError::Gone) => error(
            StatusCode::NOT_FOUND,
            "there is no such instance (it may have expired or been cleaned); send the spec again",
        ),
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
