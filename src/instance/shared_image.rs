//! An assignment's shared image: built once per content hash (others wait
//! for the one build), pinned against the collector while an instance is
//! made from it, and old versions collected when no record uses them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::assignment::image::{self as assignment_image, Candidate, HashCache};
use crate::assignment::{Assignment, AssignmentError, Mode};
use crate::engine::docker::DockerError;
use crate::instance::errors::CreateError;
use crate::instance::provision::{assignment_error, Provisioner};
use crate::protocol::spec::AssignmentName;
use crate::telemetry::metrics::{self, PHASE_SECONDS};

/// Keeps an assignment image from the garbage collector while an instance
/// is being made from it (until its record is in the registry).
pub struct Pinned {
    provisioner: Arc<Provisioner>,
    tag: String,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut pins = self.provisioner.pins.lock().unwrap();
        if let Some(count) = pins.get_mut(&self.tag) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.tag);
            }
        }
    }
}

/// The current content hash of each named assignment that exists in
/// shared-image mode, and the names whose state could not be read (their
/// images are left alone). Blocking.
pub(super) fn current_hashes(
    root: &std::path::Path,
    names: &HashSet<String>,
    hashes: &HashCache,
) -> (HashMap<String, String>, HashSet<String>) {
    let (mut current, mut unknown) = (HashMap::new(), HashSet::new());
    for name in names {
        let Ok(parsed) = AssignmentName::parse(name) else {
            continue;
        };
        match Assignment::find(root, &parsed) {
            Ok(assignment) if assignment.mode == Mode::Shared => match hashes.hash(&assignment) {
                Ok(hash) => {
                    current.insert(name.clone(), hash);
                }
                Err(_) => {
                    unknown.insert(name.clone());
                }
            },
            Ok(_) | Err(AssignmentError::NotFound(_)) => {}
            Err(_) => {
                unknown.insert(name.clone());
            }
        }
    }
    (current, unknown)
}

impl Provisioner {
    /// The tag of the assignment's current image, built if needed (once,
    /// however many ask at once), pinned until the caller drops the pin.
    pub async fn assignment_image(
        self: &Arc<Self>,
        assignment: &Assignment,
        instance_id: &str,
    ) -> Result<(String, Pinned), CreateError> {
        let hash = {
            let (hashes, assignment) = (self.hashes.clone(), assignment.clone());
            tokio::task::spawn_blocking(move || hashes.hash(&assignment))
                .await
                .map_err(|e| CreateError::Internal(e.to_string()))?
                .map_err(assignment_error)?
        };
        let tag = assignment_image::image_tag(&assignment.name, &hash);
        let pin = self.pin(&tag);
        if self.docker.image_exists(&tag).await? {
            return Ok((tag, pin));
        }
        let (mut waiting, leader) = {
            let mut building = self.building.lock().unwrap();
            match building.get(&tag) {
                Some(waiting) => (waiting.clone(), None),
                None => {
                    let (done, waiting) = watch::channel(None);
                    building.insert(tag.clone(), waiting.clone());
                    (waiting, Some(done))
                }
            }
        };
        let built = match leader {
            Some(done) => {
                let result = self
                    .build_assignment_image(assignment, &tag, instance_id)
                    .await;
                self.building.lock().unwrap().remove(&tag);
                done.send_replace(Some(result.clone()));
                result
            }
            None => waiting
                .wait_for(Option::is_some)
                .await
                .map_err(|_| CreateError::Internal("the build was abandoned".into()))?
                .clone()
                .expect("waited for a result"),
        }?;
        // The context may have changed since it was hashed: the build says which it made.
        let pin = if built == tag { pin } else { self.pin(&built) };
        Ok((built, pin))
    }

    pub(super) fn pin(self: &Arc<Self>, tag: &str) -> Pinned {
        *self
            .pins
            .lock()
            .unwrap()
            .entry(tag.to_string())
            .or_default() += 1;
        Pinned {
            provisioner: self.clone(),
            tag: tag.to_string(),
        }
    }

    pub(super) async fn build_assignment_image(
        &self,
        assignment: &Assignment,
        tag: &str,
        instance_id: &str,
    ) -> Result<String, CreateError> {
        let _slot = self.slots.acquire(instance_id).await;
        // Built by another request between our look and our turn.
        if self.docker.image_exists(tag).await? {
            return Ok(tag.to_string());
        }
        let started = Instant::now();
        let context = {
            let (hashes, assignment) = (self.hashes.clone(), assignment.clone());
            let stage_label = self.docker.stage_label();
            tokio::task::spawn_blocking(move || hashes.pack(&assignment, &stage_label))
                .await
                .map_err(|e| CreateError::Internal(e.to_string()))?
                .map_err(assignment_error)?
        };
        let tag = assignment_image::image_tag(&assignment.name, &context.hash);
        if self.docker.image_exists(&tag).await? {
            return Ok(tag);
        }
        // Rendered with no spec: every name may be shown.
        self.base_images(&context.dockerfile, None, instance_id)
            .await?;
        let name = assignment_image::dotted_name(&assignment.name);
        log::info!("building assignment image {tag}");
        let labels = self.docker.assignment_labels(&name, &context.hash);
        let timeout = self.build_timeout(assignment);
        let built = self
            .docker
            .build_within(
                context.tar,
                crate::assignment::DOCKERFILE_IN_CONTEXT,
                &tag,
                &labels,
                self.config.build_network,
                timeout,
            )
            .await;
        metrics::BUILD_SECONDS.observe(started.elapsed().as_secs_f64());
        PHASE_SECONDS.record("build", instance_id, started);
        match built {
            Ok(()) => {
                log::info!(
                    "assignment image {tag} built in {} ms",
                    started.elapsed().as_millis()
                );
                Ok(tag)
            }
            Err(e) => {
                log::warn!("assignment image {tag} did not build: {e}");
                Err(crate::instance::errors::build_failure(e))
            }
        }
    }

    /// Removes assignment images that no instance uses (`in_use`: tags of
    /// live records), no create has pinned, and that are not their
    /// assignment's current version.
    pub async fn collect_garbage(&self, in_use: HashSet<String>) -> Result<(), DockerError> {
        let candidates: Vec<Candidate> = self
            .docker
            .owned_images()
            .await?
            .into_iter()
            .filter_map(|image| {
                let (assignment, hash) = image.assignment?;
                let tag = image
                    .tags
                    .into_iter()
                    .find(|t| t.starts_with(assignment_image::REPOSITORY))?;
                Some(Candidate {
                    tag,
                    assignment,
                    hash,
                })
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let names: HashSet<String> = candidates.iter().map(|c| c.assignment.clone()).collect();
        let (current, unknown) = {
            let (root, hashes) = (self.config.assignments.clone(), self.hashes.clone());
            tokio::task::spawn_blocking(move || current_hashes(&root, &names, &hashes))
                .await
                .map_err(|e| DockerError::Unreachable(e.to_string()))?
        };
        let candidates: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| !unknown.contains(&c.assignment))
            .collect();
        for tag in assignment_image::unused_old_images(&candidates, &in_use, &current) {
            if self.pins.lock().unwrap().contains_key(&tag) {
                continue;
            }
            match self.docker.remove_unused_image(&tag).await {
                Ok(()) => {
                    log::info!(
                        "removed assignment image {tag}: no instance uses it and it is not current"
                    );
                    self.owners.lock().unwrap().remove(&tag);
                    self.directories
                        .lock()
                        .unwrap()
                        .retain(|(image, _), _| *image != tag);
                }
                Err(e) => log::debug!("assignment image {tag} not removed: {e}"),
            }
        }
        Ok(())
    }
}
