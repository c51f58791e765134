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
    /// Every instance, by handle; with `usage`, what each uses now
    /// (absent in requests of earlier versions: false).
    List {
        /// Gather memory, CPU, disk, processes and terminal activity.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        usage: bool,
    },
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
    /// What it uses (all null unless asked for, or where unknown).
    #[serde(flatten, default)]
    pub usage: Usage,
}

/// What one instance uses, as `ua list` and `ua top` show it. Every field
/// is null where unknown: a stopped container, no cgroup found, not asked.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Memory in use, page cache that can be dropped left out (as `docker stats`).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// The container's memory limit; null when it has none.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    /// Percent of one CPU used over the last sample interval (200: two CPUs).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// The size of the container's writable layer (measured rarely).
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// Processes (and threads) in the container now.
    #[serde(default)]
    pub pids: Option<u64>,
    /// The terminal: `attached` (a student's websocket) or `grace` (none,
    /// within the reattach grace); null when no terminal runs.
    #[serde(default)]
    pub terminal: Option<String>,
    /// Seconds since the last keystroke (or since the terminal started).
    #[serde(default)]
    pub idle_seconds: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request of an earlier version, as an earlier server reads them.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "command", rename_all = "lowercase")]
    enum EarlierRequest {
        List,
    }

    #[test]
    fn list_requests_of_either_version_are_understood() {
        let plain = serde_json::to_string(&Request::List { usage: false }).unwrap();
        assert_eq!(plain, r#"{"command":"list"}"#);
        let asked = serde_json::to_string(&Request::List { usage: true }).unwrap();
        assert!(serde_json::from_str::<EarlierRequest>(&asked).is_ok());
        let earlier: Request = serde_json::from_str(r#"{"command":"list"}"#).unwrap();
        assert!(matches!(earlier, Request::List { usage: false }));
    }

    #[test]
    fn a_summary_of_an_earlier_server_has_no_usage() {
        let earlier = r#"{"handle":"0a1b2c3d","specID":"s","assignment":"a",
            "state":"running","lastUsed":1,"expires":null}"#;
        let summary: Summary = serde_json::from_str(earlier).unwrap();
        assert_eq!(summary.usage, Usage::default());
        let text = serde_json::to_value(&summary).unwrap();
        assert!(text["memoryBytes"].is_null() && text.get("pids").is_some());
    }
}
