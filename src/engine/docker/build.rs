//! Images: building (with step-image cleanup and the last lines of a
//! failed build), pulling, inspecting, removing.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;

use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::{ignore_missing, BuildError, DockerError};

/// Lines of build output kept for the error a failed build reports.
pub(super) const BUILD_TAIL_LINES: usize = 20;

/// Longest build output line kept.
pub(super) const BUILD_LINE_CHARS: usize = 500;

/// How long a failed build's step image in use by its stopping step
/// container is tried again: 40 × 250 ms.
const STEP_REMOVAL_TRIES: u32 = 40;
const STEP_REMOVAL_PAUSE: Duration = Duration::from_millis(250);

/// Reads the classic builder's progress lines for the images it makes:
/// `Step n/m : …` then ` ---> <id>` for the step's image, where the `FROM`
/// step's image and ` ---> Using cache` ones are not the build's own.
#[derive(Default)]
pub(super) struct StepImages {
    not_ours: bool,
}

impl StepImages {
    fn made_in(&mut self, text: &str) -> Vec<String> {
        let mut made = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(step) = line.strip_prefix("Step ") {
                let instruction = step.split_once(" : ").map_or("", |(_, i)| i);
                self.not_ours = instruction
                    .get(..5)
                    .is_some_and(|word| word.eq_ignore_ascii_case("FROM "));
            } else if let Some(rest) = line.strip_prefix("---> ") {
                if rest == "Using cache" {
                    self.not_ours = true;
                } else if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()) {
                    if !self.not_ours {
                        made.push(rest.to_string());
                    }
                    self.not_ours = false;
                }
            }
        }
        made
    }
}

/// The last lines of a build's or an exec's output, each cut at
/// [`BUILD_LINE_CHARS`].
#[derive(Default)]
pub(super) struct Tail(std::collections::VecDeque<String>);

impl Tail {
    pub(super) fn keep(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if self.0.len() == BUILD_TAIL_LINES {
                self.0.pop_front();
            }
            // Bounded: output of megabytes in one line stays small here.
            let mut line = line.to_string();
            if line.len() > BUILD_LINE_CHARS {
                let cut = line.floor_char_boundary(BUILD_LINE_CHARS);
                line.truncate(cut);
                line.push('…');
            }
            self.0.push_back(line);
        }
    }
}

impl From<Tail> for Vec<String> {
    fn from(tail: Tail) -> Vec<String> {
        tail.0.into()
    }
}

/// `name[:tag]` or `name@digest` as the pull API takes it: the image and
/// the tag apart (a colon in the registry's host:port is not a tag).
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&reference[..at], Some(&reference[at + 1..]))
        }
        None => (reference, Some("latest")),
    }
}

impl Docker {
    /// Builds `context` into `tag` within `limit`. A build that fails or runs
    /// out of time leaves nothing: the step images it made are removed (the
    /// classic builder keeps them, and they hold whatever the rendered
    /// context put into them). A build that fails in the daemon
    /// rather than in one of its steps is tried once more.
    pub async fn build_within(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        labels: &HashMap<String, String>,
        network: bool,
        limit: Duration,
    ) -> Result<(), BuildError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut tried = false;
        loop {
            let mut steps = Vec::new();
            let building = self.build(
                context.clone(),
                dockerfile,
                tag,
                labels,
                network,
                &mut steps,
            );
            // Dropping the build request makes the daemon cancel the build.
            let result = match tokio::time::timeout_at(deadline, building).await {
                Ok(result) => result,
                Err(_) => Err(BuildError::TimedOut(limit)),
            };
            if result.is_ok() {
                return result;
            }
            self.remove_failed_build(tag, &steps).await;
            match result {
                Err(BuildError::Failed { tail }) if !tried && !failed_in_a_step(&tail) => {
                    // The daemon's words may quote the context: not logged.
                    log::warn!(
                        "a build failed in the Docker daemon, not in a step; trying once more"
                    );
                    tried = true;
                }
                result => return result,
            }
        }
    }

    /// Removes what a failed build left: its tag and its step images. The
    /// last one can still be the parent of the step container the daemon is
    /// tearing down after a stopped build (409): tried again for a while.
    async fn remove_failed_build(&self, tag: &str, steps: &[String]) {
        let _ = self.remove_image(tag).await;
        for step in steps.iter().rev() {
            let mut tries = 0;
            loop {
                match self.remove_step_image(step).await {
                    Ok(()) => break,
                    Err(DockerError::Api { status: 409, .. }) if tries < STEP_REMOVAL_TRIES => {
                        tries += 1;
                        tokio::time::sleep(STEP_REMOVAL_PAUSE).await;
                    }
                    Err(e) => {
                        log::warn!("step image {step} of a failed build not removed: {e}");
                        break;
                    }
                }
            }
        }
    }

    /// Removes one image left by a failed build, leaving its parents alone.
    pub(super) async fn remove_step_image(&self, image: &str) -> Result<(), DockerError> {
        self.remove_image_with(image, RemoveImageOptionsBuilder::new().noprune(true))
            .await
    }

    /// Builds `context` into `tag`, never pulling, with the labels; the IDs
    /// of the step images it makes (not those taken from the cache, nor the
    /// `FROM` image) are added to `steps` as they appear.
    pub(super) async fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        labels: &HashMap<String, String>,
        network: bool,
        steps: &mut Vec<String>,
    ) -> Result<(), BuildError> {
        let client = self.client().await?;
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(tag)
            .labels(labels)
            .networkmode(if network { "default" } else { "none" })
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            client.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut tail = Tail::default();
        let mut step_images = StepImages::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        tail.keep(text);
                        crate::telemetry::progress::build_line(text);
                        steps.extend(step_images.made_in(text));
                    }
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        tail.keep(&detail);
                        return Err(BuildError::Failed { tail: tail.into() });
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    tail.keep(&error);
                    return Err(BuildError::Failed { tail: tail.into() });
                }
                Err(BollardError::DockerResponseServerError { message, .. }) => {
                    tail.keep(&message);
                    return Err(BuildError::Failed { tail: tail.into() });
                }
                Err(e) => return Err(BuildError::Docker(e.into())),
            }
        }
        Ok(())
    }

    /// Whether the daemon has `image` (a name or an ID).
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.client().await?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match DockerError::from(e) {
                DockerError::NotFound => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The image's `USER` (empty for root).
    pub async fn image_user(&self, image: &str) -> Result<String, DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        Ok(config.and_then(|c| c.user).unwrap_or_default())
    }

    /// Pulls `reference` from its registry; the error is the daemon's
    /// sentence. The caller bounds the time.
    pub async fn pull(&self, reference: &str) -> Result<(), DockerError> {
        let (from_image, tag) = split_reference(reference);
        let mut options = CreateImageOptionsBuilder::new().from_image(from_image);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let client = self.client().await?;
        let mut stream = client.create_image(Some(options.build()), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => {}
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(DockerError::Api {
                        status: 500,
                        message: error,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The image's own command (ENTRYPOINT followed by CMD) and USER.
    pub async fn image_command(&self, image: &str) -> Result<(Vec<String>, String), DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        let config = config.unwrap_or_default();
        let mut command = config.entrypoint.unwrap_or_default();
        command.extend(config.cmd.unwrap_or_default());
        Ok((command, config.user.unwrap_or_default()))
    }

    /// Removes an image that no container uses; a missing one is fine.
    /// Docker refuses (an error) while a container uses it.
    pub async fn remove_unused_image(&self, image: &str) -> Result<(), DockerError> {
        self.remove_image_with(image, RemoveImageOptionsBuilder::new().force(false))
            .await
    }

    /// Removes an image; a missing one is fine.
    pub async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        self.remove_image_with(image, RemoveImageOptionsBuilder::new().force(true))
            .await
    }

    pub(super) async fn remove_image_with(
        &self,
        image: &str,
        options: RemoveImageOptionsBuilder,
    ) -> Result<(), DockerError> {
        let result = self
            .client()
            .await?
            .remove_image(image, Some(options.build()), None)
            .await;
        ignore_missing(result)
    }

    /// The image's working directory (`/` when it sets none).
    pub async fn image_workdir(&self, image: &str) -> Result<String, DockerError> {
        let config = self.client().await?.inspect_image(image).await?.config;
        let dir = config.and_then(|c| c.working_dir).unwrap_or_default();
        Ok(if dir.is_empty() { "/".into() } else { dir })
    }
}

/// Whether a failed build's last line is the failure of one of the
/// Dockerfile's own steps (a command's exit status, a `COPY`/`ADD` of
/// nothing, a Dockerfile error), which a second try would only repeat.
/// Anything else (a container that did not start, an image or layer gone
/// under a concurrent removal) is the daemon's and may pass on a retry.
pub(super) fn failed_in_a_step(tail: &[String]) -> bool {
    let Some(last) = tail.last() else {
        return false;
    };
    // Lowercase: the daemon's capitals vary between versions.
    const STEP_FAILURES: [&str; 6] = [
        "returned a non-zero code",
        "copy failed",
        "add failed",
        "dockerfile parse error",
        "unknown instruction",
        "failed to process",
    ];
    let last = last.to_ascii_lowercase();
    STEP_FAILURES.iter().any(|failure| last.contains(failure))
}

#[cfg(test)]
mod tests {
    use super::failed_in_a_step;

    fn tail(last: &str) -> Vec<String> {
        vec!["Step 2/2 : RUN x".to_string(), last.to_string()]
    }

    #[test]
    fn a_step_of_the_dockerfile_failing_is_not_tried_again() {
        for last in [
            "The command '/bin/sh -c false' returned a non-zero code: 1",
            "COPY failed: file not found in build context or excluded by .dockerignore",
            "ADD failed: file not found in build context",
            "dockerfile parse error line 3: unknown instruction: RUNN",
        ] {
            assert!(failed_in_a_step(&tail(last)), "{last}");
        }
    }

    #[test]
    fn a_failure_of_the_daemon_is_tried_again() {
        for last in [
            "OCI runtime create failed: container_linux.go:380: starting container process caused: read init-p: connection reset by peer: unknown",
            "No such image: sha256:0123",
            "failed to get layer sha256:0123: layer does not exist",
        ] {
            assert!(!failed_in_a_step(&tail(last)), "{last}");
        }
        assert!(!failed_in_a_step(&[]));
    }
}
