//! Making the parts of an instance that are not the registry's bookkeeping:
//! base images by the `--pull` policy, build slots, the assignment image of
//! a shared-image assignment (built once however many ask at once), the
//! instance's files and its setup script, and the collection of assignment
//! images no longer needed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore, SemaphorePermit};

use crate::assignment::base_images::{base_images, PullPolicy};
use crate::assignment::image::HashCache;
use crate::assignment::instance_files::{self, Entry, Owner};
use crate::assignment::{Assignment, AssignmentError, Renderer, TemplateVars};
use crate::engine::docker::{Docker, DockerError};
use crate::instance::errors::CreateError;
use crate::instance::settings::Settings;
use crate::protocol::spec::Spec;
use crate::telemetry::metrics::PHASE_SECONDS;

/// Longest a pull of one base image may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// The setup script arrives on standard input and is read whole before it
/// runs: it never lies in the container's files, and what it runs does not
/// eat the rest of it. Its errors go to standard output, to keep the order
/// of the lines (Docker sends the two streams apart).
const SETUP_COMMAND: [&str; 3] = [
    "/bin/sh",
    "-c",
    "exec 2>&1; ua_setup=$(cat) && eval \"$ua_setup\"",
];

/// `--max-builds` slots, and how many wait for one.
pub struct BuildSlots {
    pub(super) semaphore: Semaphore,
    pub(super) queued: AtomicUsize,
}

impl BuildSlots {
    /// At most `slots` builds at once (at least one).
    pub fn new(slots: usize) -> BuildSlots {
        BuildSlots {
            semaphore: Semaphore::new(slots.max(1)),
            queued: AtomicUsize::new(0),
        }
    }

    /// Waits for a slot, counted as queued meanwhile (and timed as the
    /// `queue` phase of `instance_id`).
    pub async fn acquire(&self, instance_id: &str) -> SemaphorePermit<'_> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let waited = std::time::Instant::now();
        let permit = self.semaphore.acquire().await;
        PHASE_SECONDS.record("queue", instance_id, waited);
        self.queued.fetch_sub(1, Ordering::Relaxed);
        permit.expect("the build semaphore is never closed")
    }

    /// How many wait for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

pub(super) type ImageResult = Option<Result<String, CreateError>>;

/// The rendered per-instance parts of a shared-image assignment.
pub struct Prepared {
    pub(super) files: Vec<Entry>,
    /// The rendered setup script, if the assignment has one.
    pub setup: Option<String>,
}

/// Makes instances' images, files and setup, and collects unused assignment images.
pub struct Provisioner {
    pub(super) config: Arc<Settings>,
    pub(super) docker: Arc<Docker>,
    /// The `--max-builds` slots of every build.
    pub slots: BuildSlots,
    pub(super) hashes: Arc<HashCache>,
    /// Assignment-image builds in flight, by tag: later requests wait on the first.
    pub(super) building: Mutex<HashMap<String, watch::Receiver<ImageResult>>>,
    pub(super) pins: Mutex<HashMap<String, usize>>,
    /// Read once per image: the owner of instance files, and which
    /// directories the image already has.
    pub(super) owners: Mutex<HashMap<String, Owner>>,
    pub(super) directories: Mutex<HashMap<(String, PathBuf), bool>>,
}

impl Provisioner {
    /// A provisioner for `config` (as at start), talking to `docker`.
    pub fn new(config: Arc<Settings>, docker: Arc<Docker>) -> Arc<Provisioner> {
        Arc::new(Provisioner {
            slots: BuildSlots::new(config.caps.max_builds),
            config,
            docker,
            hashes: Arc::new(HashCache::default()),
            building: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            directories: Mutex::new(HashMap::new()),
        })
    }

    /// The content hashes of assignments, cached by their files' metadata.
    pub fn hashes(&self) -> Arc<HashCache> {
        self.hashes.clone()
    }

    /// The build time limit of `assignment`.
    pub fn build_timeout(&self, assignment: &Assignment) -> Duration {
        assignment
            .settings
            .build_timeout
            .unwrap_or(self.config.build_timeout)
            .min(self.config.build_timeout)
    }

    /// Fetches or checks the base images of `dockerfile` as `--pull` says.
    /// `shown`: the names an error may show (`None`: all; a per-instance
    /// Dockerfile's `FROM` may be rendered from spec data, and a name with
    /// data goes only into the sealed output).
    pub async fn base_images(
        &self,
        dockerfile: &str,
        shown: Option<&[String]>,
        instance_id: &str,
    ) -> Result<(), CreateError> {
        for image in base_images(dockerfile) {
            let base = Base {
                shown: match shown {
                    Some(names) if !names.contains(&image) => None,
                    _ => Some(image.clone()),
                },
                image,
            };
            self.base_image(&base, instance_id).await?;
        }
        Ok(())
    }

    /// One base image as `--pull` says: present, pulled, or a 422.
    async fn base_image(&self, base: &Base, instance_id: &str) -> Result<(), CreateError> {
        let policy = self.config.pull;
        let present = match policy {
            PullPolicy::Always => false,
            PullPolicy::Never | PullPolicy::Missing => {
                match self.docker.image_exists(&base.image).await {
                    Ok(present) => present,
                    Err(DockerError::Api { message, .. }) if base.shown.is_none() => {
                        return Err(base.build_error("is not a valid image name", message));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if present {
            return Ok(());
        }
        if policy == PullPolicy::Never {
            return Err(base.build_error(
                "is not on this Docker host (ua runs with --pull never): load or pull it there, \
                 or run ua with --pull missing",
                String::new(),
            ));
        }
        crate::telemetry::progress::set(crate::telemetry::progress::Phase::Pulling);
        let started = Instant::now();
        let pulled = tokio::time::timeout(PULL_TIMEOUT, self.docker.pull(&base.image)).await;
        PHASE_SECONDS.record("pull", instance_id, started);
        let why = match pulled {
            Ok(Ok(())) => {
                log::info!("pulled base image {}", base.name());
                return Ok(());
            }
            Ok(Err(DockerError::Unreachable(_))) => return Err(CreateError::DockerDown),
            // Docker's words repeat the name.
            Ok(Err(_)) if base.shown.is_none() => "the daemon could not pull it".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(PULL_TIMEOUT)
            ),
        };
        log::warn!("base image {} not pulled: {why}", base.name());
        Err(CreateError::Pull {
            image: base.name(),
            why,
        })
    }

    /// Renders `instance/` and `setup.sh.tmpl` with the spec.
    pub async fn prepare(
        &self,
        assignment: &Assignment,
        spec: &Spec,
        instance_id: &str,
    ) -> Result<Prepared, CreateError> {
        let started = Instant::now();
        let (assignment, spec, id) = (assignment.clone(), spec.clone(), instance_id.to_string());
        let prepared = tokio::task::spawn_blocking(move || {
            let renderer = Renderer::new(&TemplateVars {
                data: &spec.data,
                spec_id: &spec.spec_id,
                instance_id: &id,
            });
            Ok::<_, AssignmentError>(Prepared {
                files: instance_files::read_tree(&assignment, &renderer)?,
                setup: instance_files::read_setup(&assignment, &renderer)?,
            })
        })
        .await
        .map_err(|e| CreateError::Internal(e.to_string()))?
        .map_err(assignment_error)?;
        PHASE_SECONDS.record("render", instance_id, started);
        Ok(prepared)
    }

    /// Puts the instance's files into its created container and runs its
    /// setup (which starts the container). Returns whether the container
    /// runs now.
    pub async fn provision(
        &self,
        container: &str,
        image: &str,
        prepared: Prepared,
        setup_timeout: Duration,
        instance_id: &str,
    ) -> Result<bool, CreateError> {
        if !prepared.files.is_empty() {
            crate::telemetry::progress::set(crate::telemetry::progress::Phase::Copying);
            let started = Instant::now();
            let owner = self.owner(container, image).await?;
            let mut exists = HashMap::new();
            for dir in instance_files::directories(&prepared.files) {
                let known = self
                    .directories
                    .lock()
                    .unwrap()
                    .get(&(image.to_string(), dir.clone()))
                    .copied();
                let present = match known {
                    Some(present) => present,
                    None => {
                        let present = self
                            .docker
                            .path_exists(container, &dir.to_string_lossy())
                            .await?;
                        self.directories
                            .lock()
                            .unwrap()
                            .insert((image.to_string(), dir.clone()), present);
                        present
                    }
                };
                exists.insert(dir, present);
            }
            let tar = instance_files::pack(&prepared.files, &owner, |p| {
                exists.get(p).copied().unwrap_or(false)
            })
            .map_err(|e| {
                CreateError::Internal(format!("the instance files were not packed: {e}"))
            })?;
            self.docker.upload(container, tar).await?;
            PHASE_SECONDS.record("copy", instance_id, started);
        }
        let Some(script) = prepared.setup else {
            return Ok(false);
        };
        crate::telemetry::progress::set(crate::telemetry::progress::Phase::Setup);
        let started = Instant::now();
        self.docker.start(container).await?;
        PHASE_SECONDS.record("start", instance_id, started);
        let started = Instant::now();
        let command = SETUP_COMMAND.iter().map(|s| s.to_string()).collect();
        let ran = tokio::time::timeout(
            setup_timeout,
            self.docker
                .run_as_root(container, command, script.into_bytes()),
        )
        .await;
        PHASE_SECONDS.record("setup", instance_id, started);
        match ran {
            Ok(Ok(outcome)) if outcome.status == 0 => Ok(true),
            Ok(Ok(outcome)) => Err(CreateError::Setup {
                status: outcome.status,
                tail: outcome.tail,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(CreateError::Setup {
                status: -1,
                tail: vec![format!(
                    "setup.sh took longer than {} and was stopped",
                    humantime::format_duration(setup_timeout)
                )],
            }),
        }
    }

    /// Who owns instance files of `image`: its USER inside their home.
    pub(super) async fn owner(&self, container: &str, image: &str) -> Result<Owner, CreateError> {
        if let Some(owner) = self.owners.lock().unwrap().get(image) {
            return Ok(owner.clone());
        }
        let user = self.docker.image_user(image).await?;
        let owner = if user.is_empty() || user == "root" || user == "0" || user == "0:0" {
            Owner::ROOT
        } else {
            let read = |path| self.docker.read_file(container, path);
            let passwd = read("/etc/passwd").await?.unwrap_or_default();
            let group = read("/etc/group").await?.unwrap_or_default();
            instance_files::resolve_user(
                &user,
                &String::from_utf8_lossy(&passwd),
                &String::from_utf8_lossy(&group),
            )
            .map_err(CreateError::Invalid)?
        };
        self.owners
            .lock()
            .unwrap()
            .insert(image.to_string(), owner.clone());
        Ok(owner)
    }
}

/// An assignment problem as the client hears of it.
pub fn assignment_error(e: AssignmentError) -> CreateError {
    match e {
        AssignmentError::NotFound(name) => CreateError::NoAssignment(name),
        AssignmentError::Render(message) => CreateError::Render(message),
        AssignmentError::Template { summary, detail } => CreateError::Template {
            summary,
            detail: detail.lines().map(str::to_owned).collect(),
        },
        AssignmentError::Settings(message) => {
            CreateError::Render(format!("assignment.json is invalid: {message}"))
        }
        both @ AssignmentError::BothModes(_) => CreateError::Invalid(both.to_string()),
        io @ AssignmentError::Io { .. } => CreateError::Internal(io.to_string()),
    }
}

/// A base image of a Dockerfile, and whether errors may name it.
struct Base {
    image: String,
    /// `None` when the name was rendered from spec data.
    shown: Option<String>,
}

impl Base {
    /// The name for messages: itself, or words with no spec data.
    fn name(&self) -> String {
        self.shown
            .clone()
            .unwrap_or_else(|| "(a name rendered from the spec)".to_string())
    }

    /// A 422 about it; a rendered name and Docker's detail go only into
    /// the sealed output.
    fn build_error(&self, what: &str, detail: String) -> CreateError {
        let mut tail = Vec::new();
        if self.shown.is_none() {
            tail.push(format!("base image: {}", self.image));
        }
        if !detail.is_empty() {
            tail.push(detail);
        }
        let reason = match &self.shown {
            Some(name) => format!("the base image `{name}` {what}"),
            None => format!(
                "a base image of the rendered Dockerfile {what} (its name is in sealedOutput)"
            ),
        };
        CreateError::Build { reason, tail }
    }
}
