//! `GET /instance/{id}/terminals` and `DELETE /instance/{id}/terminals/{name}`.

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::crypto::ids::is_instance_id;
use crate::instance::entry::Instance;
use crate::instance::named::CloseRefusal;
use crate::server::http::app::App;
use crate::server::http::respond::{error, json_response, Body};

const GONE: &str =
    "there is no such instance (it may have expired or been cleaned); send the spec again";

fn instance(app: &App, instance_id: &str) -> Option<std::sync::Arc<Instance>> {
    is_instance_id(instance_id)
        .then(|| app.registry.lookup(instance_id))
        .flatten()
}

/// The instance's terminals; never starts anything.
pub(super) async fn list_terminals(app: &App, instance_id: &str) -> Response<Body> {
    let Some(instance) = instance(app, instance_id) else {
        return error(StatusCode::NOT_FOUND, GONE);
    };
    let terminals = app.registry.terminals(&instance).await;
    json_response(StatusCode::OK, json!({ "terminals": terminals }))
}

/// Hangs terminal `name` up: its program gets SIGHUP.
pub(super) async fn close_terminal(app: &App, instance_id: &str, name: &str) -> Response<Body> {
    let Some(instance) = instance(app, instance_id) else {
        return error(StatusCode::NOT_FOUND, GONE);
    };
    if !ua_agent::proto::valid_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "terminal names are 1 to 16 of a-z, 0-9 and -",
        );
    }
    match app.registry.close_terminal(&instance, name).await {
        Ok(()) => json_response(StatusCode::OK, json!({ "closed": name })),
        Err(CloseRefusal::NotRunning) => error(StatusCode::NOT_FOUND, "no such terminal runs"),
        Err(CloseRefusal::OnlyMain) => {
            error(StatusCode::CONFLICT, crate::instance::named::ONLY_MAIN)
        }
        Err(CloseRefusal::Agent(e)) => {
            let h = crate::crypto::handle::of(&instance.id);
            log::warn!(ua_instance = h; "instance {h}: terminal {name} not closed: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the terminal could not be closed; try again shortly",
            )
        }
    }
}
