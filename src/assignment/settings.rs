//! What an assignment is on disk (docs/API.md, "Assignments"): its file
//! names, `assignment.json` ([`Settings`]), its two modes, and what can be
//! wrong with it.

use std::io;

pub(super) const DOCKERFILE_TEMPLATE: &str = "Dockerfile.tmpl";

/// A plain Dockerfile marks a shared-image assignment (see `assignment_image`).
pub const DOCKERFILE: &str = "Dockerfile";

/// Optional settings of an assignment (limits, build timeout).
pub const SETTINGS_FILE: &str = "assignment.json";

/// The directory of an assignment that holds its build context.
pub const CONTEXT_DIR: &str = "context";

/// Suffix of a file rendered with the spec (and saved without it).
pub const TEMPLATE_SUFFIX: &str = ".tmpl";

/// Name of the rendered Dockerfile inside the context; the daemon drops it
/// (and `.dockerignore`) from the context because our `.dockerignore` lists it.
pub const DOCKERFILE_IN_CONTEXT: &str = ".ua-Dockerfile";

/// Why an assignment could not be used; messages never hold spec data.
#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    /// No usable assignment of this name under the root.
    #[error("there is no assignment named `{0}` on this server")]
    NotFound(String),
    /// A template is unusable (a symlink out of the root); no spec data.
    #[error("the assignment's template did not render: {0}")]
    Render(String),
    /// A template failed to render with this spec.
    #[error("{summary}")]
    Template {
        /// The template's name, line and the error's kind: never a value.
        summary: String,
        /// MiniJinja's full message, raw (it can quote data): it leaves the
        /// server only sealed.
        detail: String,
    },
    /// `assignment.json` is not valid.
    #[error("the assignment's assignment.json is invalid: {0}")]
    Settings(String),
    /// Reading the assignment's files failed.
    #[error("the assignment `{name}` could not be read: {cause}")]
    Io {
        /// The assignment's name.
        name: String,
        /// What the file system said.
        cause: io::Error,
    },
    /// Both `Dockerfile` and `Dockerfile.tmpl` are present.
    #[error("the assignment `{0}` has both a Dockerfile and a Dockerfile.tmpl; keep one (Dockerfile: one image shared by all its instances; Dockerfile.tmpl: an image per instance)")]
    BothModes(String),
}

/// How an assignment's instances get their image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Dockerfile.tmpl`: rendered with each spec and built per instance.
    PerInstance,
    /// `Dockerfile`: built once into an assignment image; per-instance parts
    /// come from `instance/` and `setup.sh.tmpl`.
    Shared,
}

/// Per-assignment overrides from the optional `assignment.json`; the server
/// caps each at its operator's maximum.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Memory limit in MiB (swap is limited to the same).
    #[serde(rename = "memoryMB")]
    pub memory_mb: Option<i64>,
    /// Process limit.
    pub pids_limit: Option<i64>,
    /// CPU limit, in CPUs.
    pub cpus: Option<f64>,
    /// Size limit of the container's writable layer, in MiB (0: none).
    #[serde(rename = "diskMB")]
    pub disk_mb: Option<i64>,
    /// Docker runtime of its containers (`runsc`); default: the server's.
    pub runtime: Option<String>,
    /// Longest the build may take, written like `90s` or `5m`.
    #[serde(default, deserialize_with = "duration_text")]
    pub build_timeout: Option<std::time::Duration>,
    /// Longest a check (`check.sh.tmpl`) may run, written like `30s`.
    #[serde(default, deserialize_with = "duration_text")]
    pub check_timeout: Option<std::time::Duration>,
    /// Least time between the end of one check of an instance and the next.
    #[serde(default, deserialize_with = "duration_text")]
    pub check_interval: Option<std::time::Duration>,
    /// Whether spec data is blanked in a check's feedback.
    #[serde(default)]
    pub check_output: CheckOutput,
    /// Terminals an instance may run at once (default 4).
    pub max_terminals: Option<u32>,
}

/// `checkOutput`: what the student sees of a check's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutput {
    /// Every long enough string of the spec's data blanked.
    #[default]
    Redacted,
    /// As the check printed it.
    Verbatim,
}

pub(super) fn duration_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(d)?;
    text.map(|t| crate::support::time::parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}
