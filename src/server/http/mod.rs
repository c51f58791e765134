//! HTTP: routes, CORS and the origin check, body limits, JSON error bodies,
//! and the connection loop with graceful shutdown. Knows nothing of bollard.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeConfig;
use crate::crypto::handle;
use crate::crypto::ids::is_instance_id;
use crate::crypto::seal::{Keyring, Purpose};
use crate::instance::files::{self, FilesError};
use crate::instance::registry::{CreateError, Registry};
use crate::protocol::spec::Spec;
use crate::server::health::Health;
use crate::server::observe;
use crate::server::session::{self, SessionSettings};
use crate::server::web::WebAssets;
use crate::support::live::Swap;
use crate::support::time::unix_now;
use crate::telemetry::metrics;
use crate::transport::write_deadline::WithWriteDeadline;
use crate::transport::Listener;

/// How long `POST /spec?progress` waits for a phase change at most.
const PROGRESS_WAIT: Duration = Duration::from_secs(10);
/// How long it gives a create before answering with a phase.
const PROGRESS_SETTLE: Duration = Duration::from_millis(300);

/// Largest request body accepted (a sealed spec is far smaller).
pub const MAX_BODY: usize = 1 << 20;
/// Largest websocket message or frame accepted; bigger ones close with 1009.
pub const MAX_FRAME: usize = 1 << 20;
/// Read buffer of a websocket; clients send keystrokes, and pastes arrive in pieces.
const WS_READ_BUFFER: usize = 8 * 1024;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send its request body within this time.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds a client told "503" should wait.
const RETRY_AFTER_SECS: u32 = 5;

/// An answer's body: whole, or streamed (graded files).
type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of `bytes`, all at once.
fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The graded files as they stream out of the container; a cut-off answer
/// ends the connection (the client sees it broken, never short).
struct FilesBody(files::Answer);

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

/// Everything a request handler needs.
pub struct App {
    /// The server's settings.
    pub config: Arc<ServeConfig>,
    /// The live instances.
    pub registry: Arc<Registry>,
    /// The cached `/health` probe.
    pub health: Health,
    /// The keys that open specs (swapped by a reload).
    pub keys: Swap<Keyring>,
    /// The allowed origins; `None` allows any (swapped by a reload).
    pub origins: Swap<Option<Vec<String>>>,
    /// Origins of this server's own pages (`--public-origin`; swapped by a reload).
    pub public_origins: Swap<Vec<String>>,
    /// The `Host` names answered (swapped by a reload).
    pub hosts: Swap<crate::transport::host_check::AllowedHosts>,
    /// The websocket session tasks, for shutdown and the gauges.
    pub sessions: TaskTracker,
    /// The browser terminal, when on and built.
    pub web: Option<WebAssets>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

/// Serves connections on every listener until `shutdown`, then lets open
/// requests finish. `--max-connections` counts all listeners together.
pub async fn serve(listeners: Vec<Listener>, app: Arc<App>) {
    let connections = TaskTracker::new();
    // At the cap, new connections wait in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(
        app.config.max_connections.max(1),
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

trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

async fn accept_any(listeners: &[Listener]) -> std::io::Result<Option<Box<dyn Connection>>> {
    if let [listener] = listeners {
        return accept(listener).await;
    }
    // Accepting is cancel-safe: the listeners not picked lose nothing.
    let accepts = listeners.iter().map(|l| Box::pin(accept(l)));
    futures_util::future::select_all(accepts).await.0
}

async fn accept(listener: &Listener) -> std::io::Result<Option<Box<dyn Connection>>> {
    Ok(Some(match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Box::new(stream)
        }
        Listener::Unix(l) => Box::new(l.accept().await?.0),
    }))
}

async fn serve_connection(stream: Box<dyn Connection>, app: Arc<App>) {
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

/// Where a request goes, decided from its method and path alone. Pure, so
/// that it is unit-tested and fuzzed; it never indexes into request text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /spec`: a spec's instance, made when missing (`?mode=observe`: only looked up).
    PostSpec,
    /// `POST /spec/clean`: removes a spec's instance.
    CleanSpec,
    /// `OPTIONS` on `/spec` or `/spec/clean`: a CORS preflight.
    Preflight,
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /static/{name}`: a file of the browser terminal.
    Static(&'a str),
    /// `GET /instance/{id}`: the terminal page.
    TerminalPage(&'a str),
    /// `GET /start`: the page that posts the spec in its URL's fragment.
    StartPage,
    /// `GET /instance/{id}/ws`: the terminal websocket.
    Websocket(&'a str),
    /// `GET /instance/{id}/files`: graded files.
    Files(&'a str),
    /// A known path with a method it does not take: a 405.
    WrongMethod,
    /// Any other request: a 404.
    NotFound,
}

/// The route of `method` and `path`.
pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let get = method == Method::GET;
    match (method, path) {
        (&Method::POST, "/spec") => Route::PostSpec,
        (&Method::POST, "/spec/clean") => Route::CleanSpec,
        (&Method::OPTIONS, "/spec" | "/spec/clean") => Route::Preflight,
        (&Method::GET, "/health") => Route::Health,
        (&Method::GET, "/metrics") => Route::Metrics,
        (&Method::GET, "/start") => Route::StartPage,
        (_, "/spec" | "/spec/clean" | "/health" | "/metrics") => Route::WrongMethod,
        _ => {
            if let Some(name) = path.strip_prefix("/static/").filter(|_| get) {
                return Route::Static(name);
            }
            match path.strip_prefix("/instance/").filter(|_| get) {
                Some(rest) => match (rest.strip_suffix("/ws"), rest.strip_suffix("/files")) {
                    (Some(id), _) => Route::Websocket(id),
                    (None, Some(id)) => Route::Files(id),
                    (None, None) => Route::TerminalPage(rest),
                },
                None => Route::NotFound,
            }
        }
    }
}

async fn handle(app: Arc<App>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
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
    if path.starts_with("/spec") || path.ends_with("/files") {
        add_cors(&app, origin.as_ref(), &mut response);
    }
    if wants_html && response.status() == StatusCode::NOT_FOUND {
        response = crate::server::web::html_not_found(response)
            .await
            .map(|b| b.map_err(|never| match never {}).boxed_unsync());
    }
    Ok(response)
}

async fn route_request(app: &Arc<App>, request: Request<Incoming>, path: &str) -> Response<Body> {
    match route(request.method(), path) {
        Route::PostSpec => post_spec(app, request).await,
        Route::CleanSpec => clean_spec(app, request).await,
        Route::Preflight => preflight(),
        Route::Health => health(app).await,
        Route::Metrics => metrics_page(app),
        Route::Static(name) => static_file(app, name),
        Route::TerminalPage(id) => terminal_page(app, id),
        Route::StartPage => start_page(app),
        Route::Websocket(id) => websocket(app, request, id.to_string()),
        Route::Files(id) => {
            let query = request.uri().query().unwrap_or("").to_string();
            graded_files(app, id, &query).await
        }
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

/// A JSON answer; a 503 also says when to retry, in the `Retry-After`
/// header and (for browsers, which may not see the header) in `retryAfter`.
fn json_response(status: StatusCode, mut value: serde_json::Value) -> Response<Body> {
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

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, json!({ "error": capitalise(message) }))
}

/// Reads, opens and validates the sealed spec of a request; a refusal is
/// counted in the metrics.
async fn read_spec(app: &App, request: Request<Incoming>) -> Result<Spec, Response<Body>> {
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

async fn open_spec(app: &App, request: Request<Incoming>) -> Result<Spec, Response<Body>> {
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
    let spec =
        Spec::parse(&plaintext).map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    if spec.expired_at(unix_now()) {
        return Err(error(
            StatusCode::GONE,
            "this spec is past its notAfter time; ask for a fresh one",
        ));
    }
    Ok(spec)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

async fn post_spec(app: &App, request: Request<Incoming>) -> Response<Body> {
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
    let answer = if progress {
        match with_progress(app, spec).await {
            Ok(answer) => answer,
            Err(phase) => return json_response(StatusCode::ACCEPTED, phase),
        }
    } else {
        app.registry.get_or_create(spec).await
    };
    match answer {
        // `?progress` also names the assignment (the start page's title).
        Ok(instance_id) if progress => {
            let mut body = json!({ "instanceID": instance_id, "assignment": assignment });
            body["expiry"] = expiry(app, &instance_id);
            json_response(StatusCode::OK, body)
        }
        Ok(instance_id) => json_response(StatusCode::OK, json!({ "instanceID": instance_id })),
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
fn expiry(app: &App, instance_id: &str) -> serde_json::Value {
    let keep_until = app
        .registry
        .lookup(instance_id)
        .and_then(|instance| instance.record().keep_until);
    let idle = app.registry.config.load().instance_expiry.as_secs();
    json!({ "idleSeconds": idle, "keepUntil": keep_until })
}

/// The last output lines of a failed build or setup, or a render error's
/// detail (raw: they leave the server only sealed), and what they are.
fn failure_output(e: &CreateError) -> Option<(&[String], &'static str)> {
    match e {
        CreateError::Build { tail, .. } | CreateError::Setup { tail, .. } => {
            Some((tail, "its last output"))
        }
        CreateError::Template { detail, .. } => Some((detail, "the detail")),
        _ => None,
    }
}

fn query_has(request: &Request<Incoming>, pair: &str) -> bool {
    request.uri().query().is_some_and(|q| has_pair(q, pair))
}

fn has_pair(query: &str, pair: &str) -> bool {
    query.split('&').any(|kv| kv == pair)
}

/// `POST /spec?progress`: the create's answer if it comes within
/// [`PROGRESS_WAIT`] or before its phase changes; else (`Err`) the phase
/// it is in. The create goes on either way (it runs in its own task).
async fn with_progress(
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

/// `GET /instance/{id}/files?path=…`: graded files out of the container.
async fn graded_files(app: &App, instance_id: &str, query: &str) -> Response<Body> {
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

async fn clean_spec(app: &App, request: Request<Incoming>) -> Response<Body> {
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
fn conflict(e: CreateError) -> Response<Body> {
    metrics::ERRORS.add(e.metric_kind(), 1);
    error(StatusCode::CONFLICT, &e.to_string())
}

fn asset(kind: &'static str, bytes: Bytes) -> Response<Body> {
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

fn static_file(app: &App, name: &str) -> Response<Body> {
    match app.web.as_ref().and_then(|web| web.file(name)) {
        Some((kind, bytes)) => asset(kind, bytes),
        None => error(
            StatusCode::NOT_FOUND,
            "there is no such file on this server",
        ),
    }
}

/// The browser terminal for an instance.
fn terminal_page(app: &App, instance_id: &str) -> Response<Body> {
    let Some(web) = app.web.as_ref() else {
        return error(
            StatusCode::NOT_FOUND,
            "the browser terminal is turned off on this server",
        );
    };
    let known = is_instance_id(instance_id) && app.registry.lookup(instance_id).is_some();
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            "there is no such instance (it may have expired or been cleaned); send the spec again",
        );
    }
    page_with_policy(web.page())
}

/// `GET /start`: the page reads the sealed spec from its fragment (which no
/// request line carries) and posts it.
fn start_page(app: &App) -> Response<Body> {
    match app.web.as_ref().and_then(|web| web.file("start.html")) {
        Some(page) => page_with_policy(page),
        None => error(
            StatusCode::NOT_FOUND,
            "the browser terminal is turned off on this server",
        ),
    }
}

fn page_with_policy((kind, bytes): (&'static str, Bytes)) -> Response<Body> {
    let mut response = asset(kind, bytes);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'",
        ),
    );
    response
}

fn metrics_page(app: &App) -> Response<Body> {
    let mut snapshot = app.registry.snapshot();
    snapshot.sessions = app.sessions.len();
    let mut text = metrics::render(&snapshot);
    crate::telemetry::metrics::render_node(&mut text, app.config.node_id.as_deref());
    let mut response = Response::new(full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

async fn health(app: &App) -> Response<Body> {
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
            "node": app.config.node_id,
            "docker": describe(&probe.docker),
            "stateDir": describe(&probe.state_dir),
            "diskQuota": describe(&probe.disk_quota),
            "instances": instances,
            "building": building,
            "sessions": app.sessions.len(),
            "pool": app.registry.pool_total(),
        }),
    )
}

fn origin_allowed(app: &App, origin: Option<&HeaderValue>) -> bool {
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
fn is_same_origin(app: &App, request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| {
            let o = o.trim_end_matches('/');
            app.public_origins.load().iter().any(|public| public == o)
        })
}

fn websocket(app: &App, mut request: Request<Incoming>, instance_id: String) -> Response<Body> {
    let observe = query_has(&request, "mode=observe");
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
        idle_timeout: app.registry.config().idle_timeout,
    };
    if observe {
        app.sessions.spawn(observe::run(
            websocket,
            app.registry.clone(),
            instance,
            settings,
            app.shutdown.clone(),
        ));
        return response;
    }
    app.sessions.spawn(session::run(
        websocket,
        app.registry.clone(),
        instance,
        settings,
        app.shutdown.clone(),
    ));
    response
}

fn preflight() -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
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

fn add_cors(app: &App, origin: Option<&HeaderValue>, response: &mut Response<Body>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let id = "0123456789abcdef0123456789abcdef";
        let ws = format!("/instance/{id}/ws");
        let page = format!("/instance/{id}");
        assert_eq!(route(&Method::POST, "/spec"), Route::PostSpec);
        assert_eq!(route(&Method::OPTIONS, "/spec/clean"), Route::Preflight);
        assert_eq!(route(&Method::GET, "/spec"), Route::WrongMethod);
        assert_eq!(route(&Method::GET, &ws), Route::Websocket(id));
        assert_eq!(route(&Method::GET, &page), Route::TerminalPage(id));
        assert_eq!(route(&Method::POST, &ws), Route::NotFound);
        assert_eq!(route(&Method::GET, "/static/a.js"), Route::Static("a.js"));
    }

    #[test]
    fn short_and_odd_paths_do_not_panic() {
        // `/instance/ws` once sliced "/instance/".len()..len-"/ws".len(): 10 > 9.
        let get = |path| route(&Method::GET, path);
        assert_eq!(get("/instance/ws"), Route::TerminalPage("ws"));
        assert_eq!(get("/instance//ws"), Route::Websocket(""));
        assert_eq!(get("/instance/"), Route::TerminalPage(""));
        for path in ["/instance", "/ws", "", "/"] {
            assert_eq!(get(path), Route::NotFound, "{path}");
        }
    }
}
