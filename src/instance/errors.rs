//! Why an instance could not be made or attached: typed errors whose
//! messages never hold spec data (build and setup output stays raw inside
//! and leaves the server only sealed).

use crate::engine::docker::{BuildError, DockerError};

/// Why an instance could not be made. Messages never hold spec data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateError {
    /// No such assignment (404).
    #[error("there is no assignment named `{0}` on this server")]
    NoAssignment(String),
    /// A template or `assignment.json` is unusable (422).
    #[error("the assignment's template did not render: {0}")]
    Render(String),
    /// A template failed to render with this spec (422).
    #[error("{summary}")]
    Template {
        /// Which template, where, and the kind of error: no spec data.
        summary: String,
        /// MiniJinja's message, raw: it leaves the server only sealed.
        detail: Vec<String>,
    },
    /// The spec's `specID` has an instance (or a build) of another
    /// assignment (409): two courses' specs must not share an instance.
    #[error("this specID belongs to an instance of another assignment; give each assignment its own specIDs (or clean the other instance first)")]
    OtherAssignment,
    /// The image did not build (422).
    #[error("{reason}")]
    Build {
        /// What failed, in words with no spec data.
        reason: String,
        /// The build's last output lines, raw: they leave the server only sealed.
        tail: Vec<String>,
    },
    /// `setup.sh` failed (422).
    #[error("the assignment's setup failed with exit status {status}")]
    Setup {
        /// Its exit status.
        status: i64,
        /// Its last output lines, raw: they leave the server only sealed.
        tail: Vec<String>,
    },
    /// A base image could not be pulled (503).
    #[error("the base image `{image}` could not be pulled ({why}); try again shortly")]
    Pull {
        /// The image.
        image: String,
        /// The daemon's or the timeout's words.
        why: String,
    },
    /// The assignment is unusable as it stands (422).
    #[error("{0}")]
    Invalid(String),
    /// At `--max-instances`: stored instances, disk-bound (503).
    #[error("the server is at its limit of {0} stored instances; try again shortly")]
    AtCapacity(usize),
    /// At `--max-running`: running terminals plus builds, memory-bound (503).
    #[error("the server is at its limit of {0} running terminals and builds; try again shortly")]
    AtRunningCapacity(usize),
    /// The build queue is full (503).
    #[error("the server's build queue is full ({0} waiting); try again shortly")]
    QueueFull(usize),
    /// Docker is unreachable (503).
    #[error("Docker is unreachable; try again shortly")]
    DockerDown,
    /// A new spec while the records are reconciled with Docker at start (503).
    #[error(
        "the server is reconciling its instances with Docker after a start; try again shortly"
    )]
    Reconciling,
    /// Anything else (500).
    #[error("the instance could not be created: {0}")]
    Internal(String),
}

impl CreateError {
    /// The HTTP status `POST /spec` answers with (a number: the registry
    /// knows nothing of HTTP types).
    pub fn status(&self) -> u16 {
        match self {
            CreateError::NoAssignment(_) => 404,
            CreateError::OtherAssignment => 409,
            CreateError::Render(_)
            | CreateError::Template { .. }
            | CreateError::Build { .. }
            | CreateError::Setup { .. }
            | CreateError::Invalid(_) => 422,
            CreateError::AtCapacity(_)
            | CreateError::AtRunningCapacity(_)
            | CreateError::QueueFull(_)
            | CreateError::Pull { .. }
            | CreateError::DockerDown
            | CreateError::Reconciling => 503,
            CreateError::Internal(_) => 500,
        }
    }

    /// Its kind in `ua_errors_total{kind=…}`.
    pub fn metric_kind(&self) -> &'static str {
        match self {
            CreateError::NoAssignment(_) => "no_assignment",
            CreateError::OtherAssignment => "conflict",
            CreateError::Render(_) | CreateError::Template { .. } | CreateError::Invalid(_) => {
                "render"
            }
            CreateError::Build { .. } => "build",
            CreateError::Setup { .. } => "setup",
            CreateError::Pull { .. } => "pull",
            CreateError::AtCapacity(_)
            | CreateError::AtRunningCapacity(_)
            | CreateError::QueueFull(_) => "capacity",
            CreateError::DockerDown => "docker",
            CreateError::Reconciling => "reconciling",
            CreateError::Internal(_) => "internal",
        }
    }

    /// Which limit was hit, for the answer's `limit` field: memory-bound
    /// (`running`), disk-bound (`instances`) or the build queue.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            CreateError::AtCapacity(_) => Some("instances"),
            CreateError::AtRunningCapacity(_) => Some("running"),
            CreateError::QueueFull(_) => Some("buildQueue"),
            _ => None,
        }
    }
}

impl CreateError {
    /// This error with `instance_id` (in Docker's words about `ua-<ID>`, say)
    /// replaced by its handle: the answer and the log never carry the ID of
    /// an instance that was not made. The raw output tails stay as they
    /// are: they leave the server only sealed.
    pub fn hiding(self, instance_id: &str) -> CreateError {
        let hide = |text: String| crate::crypto::handle::hide(&text, instance_id);
        match self {
            CreateError::NoAssignment(name) => CreateError::NoAssignment(hide(name)),
            CreateError::Render(why) => CreateError::Render(hide(why)),
            CreateError::Build { reason, tail } => CreateError::Build {
                reason: hide(reason),
                tail,
            },
            CreateError::Pull { image, why } => CreateError::Pull {
                image: hide(image),
                why: hide(why),
            },
            CreateError::Invalid(why) => CreateError::Invalid(hide(why)),
            CreateError::Internal(why) => CreateError::Internal(hide(why)),
            other => other,
        }
    }
}

impl From<DockerError> for CreateError {
    fn from(e: DockerError) -> CreateError {
        match e {
            DockerError::Unreachable(_) => CreateError::DockerDown,
            other => CreateError::Internal(other.to_string()),
        }
    }
}

/// Why a terminal could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The instance was cleaned or expired meanwhile (4003).
    #[error("the instance is gone")]
    Gone,
    /// The terminal cannot be opened (checked before the upgrade: 409).
    #[error("{0}")]
    Refused(String),
    /// Docker failed (1011).
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// A failed build as the client hears of it (its output stays raw here and
/// leaves the server only sealed).
pub fn build_failure(e: BuildError) -> CreateError {
    match e {
        BuildError::Failed { tail } => CreateError::Build {
            reason: "the assignment's image did not build".into(),
            tail,
        },
        BuildError::TimedOut(limit) => CreateError::Build {
            reason: format!(
                "the assignment's image took longer than {} to build and was stopped",
                humantime::format_duration(limit)
            ),
            tail: Vec::new(),
        },
        BuildError::Docker(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics;

    #[test]
    fn create_errors_know_their_status_and_metric_kind() {
        let tail = Vec::new;
        let cases = [
            (CreateError::NoAssignment("a".into()), 404, "no_assignment"),
            (CreateError::Render("r".into()), 422, "render"),
            (CreateError::Invalid("i".into()), 422, "render"),
            (
                CreateError::Build {
                    reason: "b".into(),
                    tail: tail(),
                },
                422,
                "build",
            ),
            (
                CreateError::Setup {
                    status: 1,
                    tail: tail(),
                },
                422,
                "setup",
            ),
            (
                CreateError::Pull {
                    image: "i".into(),
                    why: "w".into(),
                },
                503,
                "pull",
            ),
            (CreateError::AtCapacity(1), 503, "capacity"),
            (CreateError::AtRunningCapacity(1), 503, "capacity"),
            (CreateError::QueueFull(1), 503, "capacity"),
            (CreateError::DockerDown, 503, "docker"),
            (CreateError::Reconciling, 503, "reconciling"),
            (CreateError::Internal("x".into()), 500, "internal"),
        ];
        for (error, status, kind) in cases {
            assert_eq!(
                (error.status(), error.metric_kind()),
                (status, kind),
                "{error:?}"
            );
            assert!(metrics::ERRORS.has(kind), "{kind} is not counted");
        }
        assert_eq!(CreateError::QueueFull(1).limit(), Some("buildQueue"));
        assert_eq!(CreateError::DockerDown.limit(), None);
    }
}
