//! The connection loop: accept on every listener (a cap on them all), one
//! hyper connection each with header and write deadlines, graceful
//! shutdown; each request routed, a panic in a handler answered 500.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use crate::transport::write_deadline::WithWriteDeadline;
use crate::transport::Listener;

use crate::server::http::app::App;
use crate::server::http::check::post_check;
use crate::server::http::cors::{add_cors, preflight};
use crate::server::http::files::{graded_files, put_file};
use crate::server::http::pages::{health, metrics_page, start_page, static_file, terminal_page};
use crate::server::http::respond::{error, Body};
use crate::server::http::router::{route, Route};
use crate::server::http::spec::{clean_spec, post_spec};
use crate::server::http::terminals::{close_terminal, list_terminals};
use crate::server::http::websocket::websocket;

/// A client must send its request headers within this time.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections on every listener until `shutdown`, then lets open
/// requests finish. `--max-connections` counts all listeners together.
pub async fn serve(listeners: Vec<Listener>, app: Arc<App>) {
    let connections = TaskTracker::new();
    // At the cap, new connections wait in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(
        app.config.load().max_connections.max(1),
    ));
    loop {
        let accepted = tokio::select! {
            () = app.shutdown.cancelled() => break,
            accepted = async {
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                (slot, accept_any(&listeners).await)
            } => accepted,
        };
        match accepted {
            (slot, Ok(Some(stream))) => {
                let app = app.clone();
                connections.spawn(async move {
                    serve_connection(stream, app).await;
                    drop(slot);
                });
            }
            (_, Ok(None)) => {}
            (_, Err(e)) => {
                // Usually EMFILE: back off instead of spinning.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    connections.close();
    connections.wait().await;
}

pub(super) trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

pub(super) async fn accept_any(
    listeners: &[Listener],
) -> std::io::Result<Option<Box<dyn Connection>>> {
    if let [listener] = listeners {
        return accept(listener).await;
    }
    // Accepting is cancel-safe: the listeners not picked lose nothing.
    let accepts = listeners.iter().map(|l| Box::pin(accept(l)));
    futures_util::future::select_all(accepts).await.0
}

pub(super) async fn accept(listener: &Listener) -> std::io::Result<Option<Box<dyn Connection>>> {
    Ok(Some(match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Box::new(stream)
        }
        Listener::Unix(l) => Box::new(l.accept().await?.0),
    }))
}

pub(super) async fn serve_connection(stream: Box<dyn Connection>, app: Arc<App>) {
    // Every answer has a write deadline; a websocket, once upgraded, keeps its own.
    let upgraded = Arc::new(AtomicBool::new(false));
    let service = hyper::service::service_fn({
        let (app, upgraded) = (app.clone(), upgraded.clone());
        move |request| {
            let upgraded = upgraded.clone();
            let handled = handle(app.clone(), request);
            async move {
                let response = handled.await?;
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    upgraded.store(true, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(response)
            }
        }
    });
    let stream = WithWriteDeadline::new(stream, upgraded);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                log::debug!("connection ended: {e}");
            }
        }
        () = app.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

pub(super) async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let origin = request.headers().get(header::ORIGIN).cloned();
    let wants_html = crate::server::web::wants_html(request.method(), request.headers());
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or(""));
    if !app.hosts.load().allows(host) {
        return Ok(error(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that Host name (see --allowed-hosts)",
        ));
    }
    // A bug in a handler answers 500 instead of dropping the connection;
    // the panic hook (crate::telemetry::panics) has logged and counted it.
    let handled = AssertUnwindSafe(route_request(&app, request, &path))
        .catch_unwind()
        .await;
    let mut response = handled.unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server hit an internal error; it has been logged",
        )
    });
    if takes_cors(&path) {
        add_cors(&app, origin.as_ref(), &mut response);
    }
    if wants_html && response.status() == StatusCode::NOT_FOUND {
        response = crate::server::web::html_not_found(response)
            .await
            .map(|b| b.map_err(|never| match never {}).boxed_unsync());
    }
    Ok(response)
}

/// The paths a page of another origin (PrairieLearn's) calls with fetch:
/// the spec, an instance's files, check and terminals.
fn takes_cors(path: &str) -> bool {
    path.starts_with("/spec")
        || path.ends_with("/files")
        || path.ends_with("/check")
        || path.ends_with("/terminals")
        || (path.starts_with("/instance/") && path.contains("/terminals/"))
}

pub(super) async fn route_request(
    app: &Arc<App>,
    request: Request<Incoming>,
    path: &str,
) -> Response<Body> {
    match route(request.method(), path) {
        Route::PostSpec => post_spec(app, request).await,
        Route::CleanSpec => clean_spec(app, request).await,
        Route::Preflight => preflight(),
        Route::Health => health(app).await,
        Route::Metrics => metrics_page(app),
        Route::Static(name) => static_file(app, name),
        Route::TerminalPage(id) => terminal_page(app, id),
        Route::StartPage => start_page(app),
        Route::Websocket(id) => websocket(app, request, id.to_string()).await,
        Route::Files(id) => {
            let query = request.uri().query().unwrap_or("").to_string();
            graded_files(app, id, &query).await
        }
        Route::Check(id) => post_check(app, id).await,
        Route::Upload(id) => put_file(app, id, request).await,
        Route::Terminals(id) => list_terminals(app, id).await,
        Route::CloseTerminal(id, name) => close_terminal(app, id, name).await,
        Route::WrongMethod => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "this path does not take that method",
        ),
        Route::NotFound => error(
            StatusCode::NOT_FOUND,
            "there is no such path on this server",
        ),
    }
}
