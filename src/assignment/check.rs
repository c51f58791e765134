//! An assignment's hidden check (docs/API.md, "Checks"): `check.sh.tmpl`,
//! rendered with the spec when a check runs, never when an instance is made.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::assignment::find::Assignment;
use crate::assignment::settings::{AssignmentError, CONTEXT_DIR, DOCKERFILE, DOCKERFILE_TEMPLATE};
use crate::assignment::template::Renderer;

/// The check's template, beside the Dockerfile in both modes.
pub const CHECK_TEMPLATE: &str = "check.sh.tmpl";

/// A check's time limit when `assignment.json` names none.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Least time between two checks of an instance when `assignment.json`
/// names none.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);

impl Assignment {
    /// Whether the assignment has a check.
    pub fn has_check(&self) -> bool {
        self.dir().join(CHECK_TEMPLATE).is_file()
    }

    /// The check rendered with the spec; `None` when the assignment has none.
    /// Blocking.
    pub fn render_check(&self, renderer: &Renderer) -> Result<Option<String>, AssignmentError> {
        match fs::read_to_string(self.dir().join(CHECK_TEMPLATE)) {
            Ok(text) => renderer.render(CHECK_TEMPLATE, &text).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(cause) => Err(AssignmentError::Io {
                name: self.name.to_string(),
                cause,
            }),
        }
    }

    /// The check's time limit, at most `cap` (the server's build timeout).
    pub fn check_timeout(&self, cap: Duration) -> Duration {
        self.settings
            .check_timeout
            .unwrap_or(DEFAULT_CHECK_TIMEOUT)
            .min(cap)
    }

    /// Least time from the end of one check of an instance to the next.
    pub fn check_interval(&self) -> Duration {
        self.settings
            .check_interval
            .unwrap_or(DEFAULT_CHECK_INTERVAL)
    }
}

/// How deep under the root assignments with a check are looked for.
const SEARCH_DEPTH: usize = 4;

/// The assignments under `root` that have a check, each with the text of
/// its `Dockerfile` or `Dockerfile.tmpl` (unrendered), by dotted name.
/// Blocking; unreadable directories are skipped.
pub fn with_checks(root: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        if dir.join(CHECK_TEMPLATE).is_file() {
            let dockerfile = [DOCKERFILE, DOCKERFILE_TEMPLATE]
                .iter()
                .find_map(|name| fs::read_to_string(dir.join(name)).ok());
            if let (Some(text), Ok(name)) = (dockerfile, dir.strip_prefix(root)) {
                let parts: Vec<String> = name
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                found.push((parts.join("."), text));
            }
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let skip = name == CONTEXT_DIR
                || name == "instance"
                || name.to_string_lossy().starts_with('.');
            if depth < SEARCH_DEPTH && !skip && entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    found
}
