//! The browser terminal's files (page, script, xterm.js), read once at start
//! from the web directory that `scripts/build-web` assembles.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

/// The browser terminal's files by name, with their content types.
pub struct WebAssets {
    files: HashMap<String, (&'static str, Bytes)>,
}

fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit('.').next()? {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        _ => return None,
    })
}

impl WebAssets {
    /// Loads the page and its assets; `None` (logged) when the directory
    /// lacks the page, so the rest of the server runs without it.
    pub fn load(dir: &Path) -> Option<WebAssets> {
        let mut files = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!(
                    "browser terminal off: cannot read {} ({e}); run scripts/build-web",
                    dir.display()
                );
                return None;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(kind) = content_type(&name) else {
                continue;
            };
            match std::fs::read(entry.path()) {
                Ok(bytes) => {
                    files.insert(name, (kind, Bytes::from(bytes)));
                }
                Err(e) => log::warn!("browser terminal: cannot read {name}: {e}"),
            }
        }
        if !files.contains_key("index.html") {
            log::warn!(
                "browser terminal off: {} has no index.html; run scripts/build-web",
                dir.display()
            );
            return None;
        }
        log::info!("browser terminal on, from {}", dir.display());
        Some(WebAssets { files })
    }

    /// The terminal page (`index.html`).
    pub fn page(&self) -> (&'static str, Bytes) {
        self.files["index.html"].clone()
    }

    /// A static file by name; nothing outside the loaded set is reachable.
    pub fn file(&self, name: &str) -> Option<(&'static str, Bytes)> {
        self.files.get(name).cloned()
    }
}

/// Whether a request comes from a browser asking for a page: a `GET` whose
/// `Accept` puts `text/html` first (API clients send JSON or nothing).
pub fn wants_html(method: &hyper::Method, headers: &hyper::HeaderMap) -> bool {
    let accept = headers
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    method == hyper::Method::GET && accept.trim_start().starts_with("text/html")
}

/// A 404's JSON error as a short HTML page in words, for a browser.
pub async fn html_not_found<B>(
    response: hyper::Response<B>,
) -> hyper::Response<http_body_util::Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let said = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "There is nothing here.".to_string());
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Not here</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em\">\
         <h1>This page is not here</h1><p>{}</p>\
         <p>If you came from a link for an assignment, open that link again: \
         it gives you your terminal back, or a fresh one.</p></body></html>",
        escape(&said)
    );
    parts.headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    hyper::Response::from_parts(parts, http_body_util::Full::new(Bytes::from(page)))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
