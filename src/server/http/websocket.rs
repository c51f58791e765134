//! `GET /instance/{id}/ws`: the origin check, the upgrade, and a session or
//! an observer on the terminal.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self};
use hyper::{Request, Response, StatusCode};
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::crypto::ids::is_instance_id;
use crate::instance::terminals::MAIN;
use crate::server::observe;
use crate::server::session::{self, SessionSettings};

use crate::server::http::app::App;
use crate::server::http::cors::{is_same_origin, origin_allowed};
use crate::server::http::respond::{error, Body};
use crate::server::http::spec::query_has;

/// Largest websocket message or frame accepted; bigger ones close with 1009.
pub const MAX_FRAME: usize = 1 << 20;

/// Read buffer of a websocket; clients send keystrokes, and pastes arrive in pieces.
pub(super) const WS_READ_BUFFER: usize = 8 * 1024;

/// The terminal a websocket asks for: `?terminal=NAME`, else `main`.
fn terminal_name(request: &Request<Incoming>) -> Result<String, String> {
    let query = request.uri().query().unwrap_or("");
    let mut names = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("terminal="));
    let name = names.next().unwrap_or(MAIN);
    if names.next().is_some() || !ua_agent::proto::valid_name(name) {
        return Err("terminal names are 1 to 16 of a-z, 0-9 and -, given once".into());
    }
    Ok(name.to_string())
}

pub(super) async fn websocket(
    app: &App,
    mut request: Request<Incoming>,
    instance_id: String,
) -> Response<Body> {
    let observe = query_has(&request, "mode=observe");
    let name = match terminal_name(&request) {
        Ok(name) => name,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let same_origin = is_same_origin(app, &request);
    if !same_origin && !origin_allowed(app, request.headers().get(header::ORIGIN)) {
        return error(
            StatusCode::FORBIDDEN,
            "this page's origin may not open terminals here",
        );
    }
    let instance = is_instance_id(&instance_id)
        .then(|| app.registry.lookup(&instance_id))
        .flatten();
    let Some(instance) = instance else {
        return error(
            StatusCode::NOT_FOUND,
            "there is no such instance (it may have expired or been cleaned); send the spec again",
        );
    };
    if !hyper_tungstenite::is_upgrade_request(&request) {
        return error(
            StatusCode::BAD_REQUEST,
            "this path takes a websocket upgrade",
        );
    }
    if !observe {
        if let Err(e) = app.registry.may_open(&instance, &name).await {
            return error(StatusCode::CONFLICT, &e);
        }
    }
    // tungstenite zero-fills its whole read buffer before each read: the
    // default 128 KiB would cost every idle session that much memory.
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let (response, websocket) = match hyper_tungstenite::upgrade(&mut request, Some(config)) {
        Ok((response, websocket)) => (
            response.map(|b| b.map_err(|never| match never {}).boxed_unsync()),
            websocket,
        ),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the websocket upgrade request is malformed",
            )
        }
    };
    let settings = SessionSettings {
        idle_timeout: app.config.load().idle_timeout,
    };
    if observe {
        app.sessions.spawn(observe::run(
            websocket,
            app.registry.clone(),
            instance,
            name,
            settings,
            app.shutdown.clone(),
        ));
        return response;
    }
    app.sessions.spawn(session::run(
        websocket,
        app.registry.clone(),
        instance,
        name,
        settings,
        app.shutdown.clone(),
    ));
    response
}
