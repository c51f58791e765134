//! An assignment's hidden check (docs/API.md, "Checks"): `check.sh.tmpl`,
//! rendered with the spec when a check runs, never when an instance is made.

use std::fs;
use std::io;
use std::time::Duration;

use crate::assignment::find::Assignment;
use crate::assignment::settings::AssignmentError;
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
