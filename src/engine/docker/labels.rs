//! The labels on everything ua makes in Docker (owned, instance, state
//! directory, kind, assignment, pool) and listing what this server owns.

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};

use crate::engine::docker::container::Limits;
use crate::engine::docker::daemon::Docker;
use crate::engine::docker::errors::DockerError;

/// Label on everything ua makes in Docker: `ua.owned=true`.
pub const LABEL_OWNED: &str = "ua.owned";

/// Label naming the instance a container or image belongs to, on objects of
/// earlier versions only (read, never written).
pub const LABEL_INSTANCE: &str = "ua.instance";

/// Which server (by state directory) made an object: two servers sharing a
/// daemon never reconcile away each other's instances.
pub const LABEL_STATE_DIR: &str = "ua.state-dir";

/// `instance` (per-instance container or image; also when missing, as older
/// versions made them) or `assignment` (an image shared by an assignment's instances).
pub const LABEL_KIND: &str = "ua.kind";

/// The assignment (dotted name) an assignment image, a warm-pool container
/// or an instance's container belongs to.
pub const LABEL_ASSIGNMENT: &str = "ua.assignment";

/// The handle (`crate::crypto::handle`) of the instance a container belongs to:
/// `docker ps` and Docker's events name the student without the ID.
pub const LABEL_HANDLE: &str = "ua.handle";

/// The content hash an assignment image was built from.
pub const LABEL_ASSIGNMENT_HASH: &str = "ua.assignment-hash";

/// The [`LABEL_KIND`] of an assignment image.
pub const KIND_ASSIGNMENT: &str = "assignment";

pub(super) const KIND_INSTANCE: &str = "instance";

/// The [`LABEL_KIND`] of a warm-pool container (`crate::instance::pool`).
pub const KIND_POOL: &str = "pool";

/// The limits a warm-pool container was made with, as `Limits::label` writes them.
pub const LABEL_POOL_LIMITS: &str = "ua.pool-limits";

/// Name prefix of a free warm-pool container; a claimed one is renamed
/// `ua-<instance>` (instance names never start with this).
pub const POOL_NAME_PREFIX: &str = "ua_pool-";

/// What ua owns in Docker, found by label.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Docker's ID of the object.
    pub id: String,
    /// Its `ua.instance` label, if any; for a claimed warm-pool container,
    /// the instance its name (`ua-<instance>`) says.
    pub instance_id: Option<String>,
    /// Whether it runs (containers only).
    pub running: bool,
    /// Set on a free (unclaimed) warm-pool container.
    pub pool: Option<Pooled>,
}

/// A free warm-pool container's labels and image.
#[derive(Debug, Clone)]
pub struct Pooled {
    /// Its name (`ua_pool-…`).
    pub name: String,
    /// The assignment (dotted) it was made for.
    pub assignment: String,
    /// The image it was created from, as given at creation (the tag).
    pub image: String,
    /// Its limits, as `Limits::label` wrote them.
    pub limits: String,
}

/// An image ua made, found by label.
#[derive(Debug, Clone)]
pub struct OwnedImage {
    /// The image's ID.
    pub id: String,
    /// The image's tags.
    pub tags: Vec<String>,
    /// Set on per-instance images.
    pub instance_id: Option<String>,
    /// Set on assignment images: the assignment's name and content hash.
    pub assignment: Option<(String, String)>,
}

impl Docker {
    /// The labels of everything made for the instance of `handle`: never
    /// its ID, the terminal's credential (the name says it to ua:
    /// `ua-<ID>`, `ua/<ID>`).
    pub fn labels(&self, handle: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_OWNED.to_string(), "true".to_string()),
            (LABEL_HANDLE.to_string(), handle.to_string()),
            (LABEL_STATE_DIR.to_string(), self.state_dir.clone()),
            (LABEL_KIND.to_string(), KIND_INSTANCE.to_string()),
        ])
    }

    /// The `LABEL` line every build stage gets: the classic builder's step
    /// images then carry this server's labels, so the step images of a build
    /// cut short by a killed server are found (and removed) at the next start.
    pub fn stage_label(&self) -> String {
        label_instruction(&[(LABEL_OWNED, "true"), (LABEL_STATE_DIR, &self.state_dir)])
    }

    /// The labels of an assignment image.
    pub fn assignment_labels(&self, assignment: &str, hash: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_OWNED.to_string(), "true".to_string()),
            (LABEL_STATE_DIR.to_string(), self.state_dir.clone()),
            (LABEL_KIND.to_string(), KIND_ASSIGNMENT.to_string()),
            (LABEL_ASSIGNMENT.to_string(), assignment.to_string()),
            (LABEL_ASSIGNMENT_HASH.to_string(), hash.to_string()),
        ])
    }

    /// The labels of a warm-pool container of `assignment` made with `limits`.
    pub fn pool_labels(&self, assignment: &str, limits: &Limits) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_OWNED.to_string(), "true".to_string()),
            (LABEL_STATE_DIR.to_string(), self.state_dir.clone()),
            (LABEL_KIND.to_string(), KIND_POOL.to_string()),
            (LABEL_ASSIGNMENT.to_string(), assignment.to_string()),
            (LABEL_POOL_LIMITS.to_string(), limits.label()),
        ])
    }

    pub(super) fn owned_filter(&self) -> HashMap<String, Vec<String>> {
        let labels = vec![
            format!("{LABEL_OWNED}=true"),
            format!("{LABEL_STATE_DIR}={}", self.state_dir),
        ];
        HashMap::from([("label".to_string(), labels)])
    }

    /// The `ua.state-dir` label value of this server's objects.
    pub(crate) fn state_dir_label(&self) -> &str {
        &self.state_dir
    }

    /// Every container of this server (by label), running or not.
    pub async fn owned_containers(&self) -> Result<Vec<Owned>, DockerError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&self.owned_filter())
            .build();
        let list = self.client().await?.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let mut labels = c.labels.unwrap_or_default();
                // Docker lists names with a leading slash.
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string();
                // Older versions labelled the ID; now the name `ua-<ID>` says it.
                let mut instance_id = labels
                    .remove(LABEL_INSTANCE)
                    .or_else(|| name.strip_prefix("ua-").map(str::to_string));
                let mut pool = None;
                if labels.get(LABEL_KIND).map(String::as_str) == Some(KIND_POOL) {
                    if name.starts_with(POOL_NAME_PREFIX) {
                        pool = Some(Pooled {
                            name: name.clone(),
                            assignment: labels.remove(LABEL_ASSIGNMENT).unwrap_or_default(),
                            image: c.image.unwrap_or_default(),
                            limits: labels.remove(LABEL_POOL_LIMITS).unwrap_or_default(),
                        });
                    } else {
                        instance_id = name.strip_prefix("ua-").map(str::to_string);
                    }
                }
                Owned {
                    id: c.id.unwrap_or_default(),
                    instance_id,
                    running: c.state.is_some_and(|s| s.to_string() == "running"),
                    pool,
                }
            })
            .collect())
    }

    /// Every image of this server (by label).
    pub async fn owned_images(&self) -> Result<Vec<OwnedImage>, DockerError> {
        let options = ListImagesOptionsBuilder::new()
            .filters(&self.owned_filter())
            .build();
        let list = self.client().await?.list_images(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|mut i| {
                let assignment = match i.labels.get(LABEL_KIND).map(String::as_str) {
                    Some(KIND_ASSIGNMENT) => Some((
                        i.labels.remove(LABEL_ASSIGNMENT).unwrap_or_default(),
                        i.labels.remove(LABEL_ASSIGNMENT_HASH).unwrap_or_default(),
                    )),
                    _ => None,
                };
                // Older versions labelled the ID; the tag `ua/<ID>` says it.
                let instance_id = i.labels.remove(LABEL_INSTANCE).or_else(|| {
                    let tagged = assignment.is_none().then_some(&i.repo_tags)?;
                    tagged.iter().find_map(|tag| {
                        let id = tag.strip_prefix("ua/")?;
                        Some(id.strip_suffix(":latest").unwrap_or(id).to_string())
                    })
                });
                OwnedImage {
                    id: i.id,
                    tags: i.repo_tags,
                    instance_id,
                    assignment,
                }
            })
            .collect())
    }
}

/// A `LABEL` instruction setting each label, values double-quoted with
/// `\`, `"` and `$` escaped (Docker substitutes variables in labels).
fn label_instruction(labels: &[(&str, &str)]) -> String {
    let mut line = String::from("LABEL");
    for (key, value) in labels {
        let mut quoted = String::with_capacity(value.len() + 2);
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '$') {
                quoted.push('\\');
            }
            if c != '\n' && c != '\r' {
                quoted.push(c);
            }
        }
        line.push_str(&format!(" {key}=\"{quoted}\""));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::label_instruction;

    #[test]
    fn label_values_are_quoted_against_substitution() {
        assert_eq!(
            label_instruction(&[("ua.owned", "true"), ("ua.state-dir", "/var/$x \"a\\b\"")]),
            r#"LABEL ua.owned="true" ua.state-dir="/var/\$x \"a\\b\"""#
        );
    }
}
