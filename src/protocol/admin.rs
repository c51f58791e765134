//! The admin socket's wire types (docs/API.md, "Admin socket"): one JSON
//! request line, one JSON answer line, over `<state-dir>/admin.sock`.

use serde::{Deserialize, Serialize};

/// The socket's name in the state directory.
pub const SOCKET: &str = "admin.sock";
/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Headline counts, Docker, limits.
    Status,
    /// Every instance, by handle.
    List,
    /// Remove one instance, by spec ID or handle.
    Clean {
        /// The spec whose instance goes.
        #[serde(rename = "specID", default, skip_serializing_if = "Option::is_none")]
        spec_id: Option<String>,
        /// The handle of the instance that goes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
}

/// One instance as `ua list` shows it: never its ID (a credential).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The short non-secret handle.
    pub handle: String,
    /// The spec it was made for.
    #[serde(rename = "specID")]
    pub spec_id: String,
    /// The assignment's name.
    pub assignment: String,
    /// `running` (a terminal runs or waits out its grace) or `stopped`.
    pub state: String,
    /// Unix seconds of the last terminal's end (or of creation).
    pub last_used: i64,
    /// Unix seconds when it expires if unused; none while running.
    pub expires: Option<i64>,
}
