//! Running an assignment's check in an instance's own container (docs/API.md,
//! "Checks"): one at a time per instance and not too often, the container
//! started for it when stopped, the rendered script on standard input, the
//! feedback and the verdict read from the run's two streams, the feedback
//! redacted. Sealing the result is the server's (it holds the keys).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::assignment::base_images::last_stage_user;
use crate::assignment::check;
use crate::assignment::image::dotted_name;
use crate::assignment::{Assignment, AssignmentError, CheckOutput, Renderer, TemplateVars};
use crate::engine::docker::{bounded, DockerError, SplitOutcome};
use crate::instance::check_script::{self, Fault, Report, CHECK_COMMAND};
use crate::instance::entry::Instance;
use crate::instance::registry::Registry;
use crate::protocol::check::{Verdict, CUT_LINE, MAX_OUTPUT};
use crate::protocol::spec::Spec;
use crate::support::redact::Redactor;

/// How long past its own limit ua waits for a check before giving up on it
/// (the container's watchdog should have ended it).
const BACKSTOP: Duration = Duration::from_secs(15);

/// Why a check gave no verdict; the words never hold spec data.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The assignment has no `check.sh.tmpl` (or is gone).
    #[error("this assignment has no check")]
    NoCheck,
    /// The instance or its container is gone.
    #[error(
        "there is no such instance (it may have expired or been cleaned); send the spec again"
    )]
    Gone,
    /// A check of the instance runs.
    #[error("a check of this instance is running; wait for its answer")]
    Running,
    /// Within the interval of the last check; try again after this long.
    #[error("this instance was checked moments ago; try again in {} s", retry_seconds(*.0))]
    TooSoon(Duration),
    /// The check did not give a verdict: `why` in words, `tail` for the author.
    #[error("{why}")]
    Failed {
        /// What failed, without spec data.
        why: String,
        /// The last output lines and the verdict's fault (raw: sealed before
        /// they leave the server).
        tail: Vec<String>,
    },
    /// The container is starting or stopping.
    #[error("the container is stopping or starting; try again shortly")]
    Busy,
    /// Docker failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl From<Fault> for CheckError {
    fn from(fault: Fault) -> CheckError {
        CheckError::Failed {
            why: fault.why,
            tail: fault.tail,
        }
    }
}

/// A check that gave a verdict.
pub struct Checked {
    /// The student's feedback (redacted unless the assignment says otherwise).
    pub output: String,
    /// The verdict, its tests redacted like the output.
    pub verdict: Verdict,
}

/// Assignments already warned of for checking as root.
static WARNED_ROOT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

impl Registry {
    /// Runs the assignment's check for `spec` in `instance`'s container.
    pub async fn check(
        self: &Arc<Self>,
        instance: &Arc<Instance>,
        spec: &Spec,
    ) -> Result<Checked, CheckError> {
        let config = self.settings.load();
        let assignment = Assignment::find(&config.assignments, &spec.assignment)
            .map_err(|_| CheckError::NoCheck)?;
        if !assignment.has_check() {
            return Err(CheckError::NoCheck);
        }
        let _running = CheckTurn::take(instance, assignment.check_interval())?;
        let script = render(&assignment, spec, &instance.id).await?;
        let limit = assignment.check_timeout(config.build_timeout);
        let record = instance.record();
        self.warn_if_root(&assignment, &record.image).await;
        let started = Instant::now();
        match self.running_for_use(instance, &record.container_id).await {
            Err(DockerError::NotFound) => return Err(CheckError::Gone),
            Err(DockerError::Api { status: 409, .. }) => return Err(CheckError::Busy),
            other => other?,
        }
        let ran = self.run_check(&record.container_id, &script, limit).await;
        crate::telemetry::metrics::CHECK_SECONDS.observe(started.elapsed().as_secs_f64());
        drop(_running);
        // Stopped after the answer: a stop can take the container's stop timeout.
        let (registry, stopping) = (self.clone(), instance.clone());
        tokio::spawn(async move { registry.stop_after_reading(&stopping).await });
        let ran = ran?;
        let outcome = Report::read(&ran).verdict(limit);
        let h = crate::crypto::handle::of(&instance.id);
        let took = started.elapsed().as_millis();
        let (output, mut verdict) = match outcome {
            Ok((output, verdict)) => (output, verdict),
            Err(fault) => {
                let why = &fault.why;
                log::info!(ua_instance = h; "instance {h}: check failed in {took} ms: {why}");
                return Err(fault.into());
            }
        };
        log::info!(ua_instance = h; "instance {h}: checked in {took} ms: score {}", verdict.score);
        let output = match assignment.settings.check_output {
            CheckOutput::Verbatim => output,
            CheckOutput::Redacted => {
                let redactor = Redactor::new(&spec.data);
                verdict.redact(|text| redactor.redact(text));
                redact_feedback(&redactor, &output)
            }
        };
        Ok(Checked { output, verdict })
    }

    /// The check's run, bounded past its own limit.
    async fn run_check(
        &self,
        container: &str,
        script: &str,
        limit: Duration,
    ) -> Result<SplitOutcome, CheckError> {
        let command = CHECK_COMMAND.iter().map(|s| s.to_string()).collect();
        let stdin = check_script::stdin(script, limit);
        let run = self.docker.run_split_as_root(
            container,
            command,
            stdin,
            MAX_OUTPUT + check_script::HEADER_ROOM,
            check_script::is_complete,
        );
        match tokio::time::timeout(limit + BACKSTOP, run).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(DockerError::Api { status: 409, .. })) => Err(CheckError::Busy),
            Ok(Err(DockerError::NotFound)) => Err(CheckError::Gone),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(check_script::over_time(limit, Vec::new()).into()),
        }
    }

    /// At start-up: warns of each assignment with a check whose students
    /// are root, as far as its Dockerfile and the images at hand tell.
    pub async fn warn_of_root_checks(&self) {
        let root = self.settings.load().assignments.clone();
        let found = tokio::task::spawn_blocking(move || check::with_checks(&root))
            .await
            .unwrap_or_default();
        for (name, dockerfile) in found {
            let user = match last_stage_user(&dockerfile) {
                Ok(user) => user,
                // A rendered base name is not known before a spec.
                Err(Some(base)) if !base.contains("{{") => {
                    match bounded(self.docker.image_exists(&base)).await {
                        Ok(true) => match bounded(self.docker.image_user(&base)).await {
                            Ok(user) => user,
                            Err(_) => continue,
                        },
                        _ => continue,
                    }
                }
                Err(_) => continue,
            };
            if is_root(&user) {
                warn_once(&name);
            }
        }
    }

    /// Logs once per assignment that its check hides nothing: the student is root.
    async fn warn_if_root(&self, assignment: &Assignment, image: &str) {
        let Ok(user) = bounded(self.docker.image_user(image)).await else {
            return;
        };
        if is_root(&user) {
            warn_once(&dotted_name(&assignment.name));
        }
    }
}

/// Whether a Docker `USER` is root.
fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default();
    matches!(name, "" | "root" | "0")
}

/// Logs [`root_warning`] once per assignment.
fn warn_once(assignment: &str) {
    let mut warned = WARNED_ROOT.lock().unwrap();
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(assignment.to_string())
    {
        log::warn!("{}", root_warning(assignment));
    }
}

impl Registry {
    /// Whether `instance`'s assignment has a check (blocking: a stat).
    pub fn has_check(&self, instance: &Instance) -> bool {
        let config = self.settings.load();
        let assignment = instance.record().assignment;
        crate::protocol::spec::AssignmentName::parse(&assignment)
            .ok()
            .and_then(|name| Assignment::find(&config.assignments, &name).ok())
            .is_some_and(|found| found.has_check())
    }
}

/// The warning for an assignment with a check whose students are root.
pub fn root_warning(assignment: &str) -> String {
    format!(
        "assignment {assignment} has a check, but its image's USER is root: its students \
         can read everything the check holds (set a USER in its Dockerfile)"
    )
}

/// The feedback redacted; when it was cut, the text before the cut line
/// must not end in the first part of a secret either.
fn redact_feedback(redactor: &Redactor, output: &str) -> String {
    let cut_line = format!("{CUT_LINE}\n");
    let Some(body) = output.strip_suffix(&cut_line) else {
        return redactor.redact(output);
    };
    let (body, newline) = match body.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (body, ""),
    };
    format!("{}{newline}{cut_line}", redactor.redact_cut(body))
}

/// The check rendered with the spec, off the async threads.
async fn render(
    assignment: &Assignment,
    spec: &Spec,
    instance_id: &str,
) -> Result<String, CheckError> {
    let (assignment, spec, id) = (assignment.clone(), spec.clone(), instance_id.to_string());
    let rendered = tokio::task::spawn_blocking(move || {
        let renderer = Renderer::new(&TemplateVars {
            data: &spec.data,
            spec_id: &spec.spec_id,
            instance_id: &id,
        });
        assignment.render_check(&renderer)
    })
    .await
    .map_err(|e| CheckError::Failed {
        why: "the check could not be rendered".into(),
        tail: vec![e.to_string()],
    })?;
    match rendered {
        Ok(Some(script)) => Ok(script),
        Ok(None) => Err(CheckError::NoCheck),
        Err(AssignmentError::Template { summary, detail }) => Err(CheckError::Failed {
            why: summary,
            tail: detail.lines().map(str::to_owned).collect(),
        }),
        Err(e) => Err(CheckError::Failed {
            why: e.to_string(),
            tail: Vec::new(),
        }),
    }
}

/// An instance's one running check; dropping it records the check's end.
struct CheckTurn<'a>(&'a Instance);

impl<'a> CheckTurn<'a> {
    /// The instance's turn, unless a check runs or the last ended within `interval`.
    fn take(instance: &'a Instance, interval: Duration) -> Result<CheckTurn<'a>, CheckError> {
        let mut state = instance.check.lock().unwrap();
        if state.running {
            return Err(CheckError::Running);
        }
        if let Some(left) = state
            .last_end
            .and_then(|end| interval.checked_sub(end.elapsed()))
            .filter(|left| !left.is_zero())
        {
            return Err(CheckError::TooSoon(left));
        }
        state.running = true;
        Ok(CheckTurn(instance))
    }
}

impl Drop for CheckTurn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.check.lock().unwrap();
        state.running = false;
        state.last_end = Some(Instant::now());
    }
}

/// Whole seconds to wait, rounded up, at least one.
pub fn retry_seconds(left: Duration) -> u64 {
    left.as_secs_f64().ceil().max(1.0) as u64
}
