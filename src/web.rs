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
