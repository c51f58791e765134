//! Assignment images (shared-image mode): an assignment with a plain
//! `Dockerfile` is built once, tagged by a content hash of its Dockerfile,
//! `context/` and `assignment.json`, and shared by all its instances. Here:
//! the hash, the build context, the tag, and which old images may go.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::assignment::find::{append_bytes, walk, Assignment, DockerIgnore};
use crate::assignment::settings::{
    AssignmentError, CONTEXT_DIR, DOCKERFILE, DOCKERFILE_IN_CONTEXT, SETTINGS_FILE,
};
use crate::protocol::spec::AssignmentName;

/// Repository of every assignment image: `ua-assignment/<name>:<hash>`.
pub const REPOSITORY: &str = "ua-assignment";
/// Hex digits of the content hash in a tag.
const HASH_HEX: usize = 16;

/// An assignment's build context, packed, with its content hash.
pub struct SharedContext {
    /// The packed context.
    pub tar: Vec<u8>,
    /// The content hash, as the tag writes it.
    pub hash: String,
    /// The Dockerfile, as packed.
    pub dockerfile: String,
}

/// The assignment's name as labels and tags write it: segments joined by dots.
pub fn dotted_name(name: &AssignmentName) -> String {
    name.to_string().replace('/', ".")
}

/// The tag of an assignment image. Docker repository names are lowercase
/// alphanumerics separated by single `.`, `_`, `__` or dashes; a name that
/// is not (or has capitals) gets a readable form plus a hash of the name, so
/// two assignments never share a tag.
pub fn image_tag(name: &AssignmentName, hash: &str) -> String {
    let dotted = dotted_name(name);
    let component = if is_repository_component(&dotted) {
        dotted
    } else {
        let readable: Vec<String> = dotted
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let digest = hex(&Sha256::digest(dotted.as_bytes()));
        format!("{}-{}", readable.join("."), &digest[..8])
            .trim_start_matches('-')
            .to_string()
    };
    format!("{REPOSITORY}/{component}:{hash}")
}

fn is_repository_component(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators: one `.`, one or two `_`, or any number of `-`.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &text[start..i];
        let ok = run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Packs the Dockerfile (at [`DOCKERFILE_IN_CONTEXT`]) and `context/` into
/// a tar, and hashes what makes the image: the Dockerfile, the names, kinds,
/// modes and contents of the context (after `.dockerignore`) and
/// `assignment.json`. Times and owners are not hashed, nor `stage_label`
/// (a `LABEL` line, or empty), packed after each `FROM`. Blocking.
pub fn pack(assignment: &Assignment, stage_label: &str) -> Result<SharedContext, AssignmentError> {
    let io_error = |cause| AssignmentError::Io {
        name: assignment.name.to_string(),
        cause,
    };
    let mut hasher = Sha256::new();
    let mut feed = |part: &[u8]| {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    };
    let dockerfile_bytes = fs::read(assignment.dir().join(DOCKERFILE)).map_err(io_error)?;
    let dockerfile = String::from_utf8_lossy(&dockerfile_bytes).into_owned();
    feed(b"Dockerfile");
    feed(&dockerfile_bytes);
    feed(SETTINGS_FILE.as_bytes());
    match fs::read(assignment.dir().join(SETTINGS_FILE)) {
        Ok(bytes) => feed(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => feed(b"\0absent"),
        Err(e) => return Err(io_error(e)),
    }

    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let packed = crate::assignment::stage_label::label_every_stage(&dockerfile, stage_label);
    append_bytes(&mut tar, DOCKERFILE_IN_CONTEXT, packed.as_bytes(), 0o644).map_err(io_error)?;
    let ignore = format!("{DOCKERFILE_IN_CONTEXT}\n.dockerignore\n");
    append_bytes(&mut tar, ".dockerignore", ignore.as_bytes(), 0o644).map_err(io_error)?;
    for (relative, path) in context_entries(assignment.dir()).map_err(io_error)? {
        let meta = fs::symlink_metadata(&path).map_err(io_error)?;
        feed(relative.as_os_str().as_encoded_bytes());
        feed(&meta.mode().to_le_bytes());
        if meta.is_file() {
            feed(&fs::read(&path).map_err(io_error)?);
        } else if meta.is_symlink() {
            feed(
                fs::read_link(&path)
                    .map_err(io_error)?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        }
        tar.append_path_with_name(&path, &relative)
            .map_err(io_error)?;
    }
    let hash = hex(&hasher.finalize())[..HASH_HEX].to_string();
    Ok(SharedContext {
        tar: tar.into_inner().map_err(io_error)?,
        hash,
        dockerfile,
    })
}

/// The context's entries that go into the build, sorted: relative and full paths.
fn context_entries(dir: &Path) -> io::Result<Vec<(PathBuf, PathBuf)>> {
    let context_dir = dir.join(CONTEXT_DIR);
    if !context_dir.is_dir() {
        return Ok(Vec::new());
    }
    let ignore = DockerIgnore::read(&context_dir)?;
    Ok(walk(&context_dir)?
        .into_iter()
        .filter(|relative| {
            let name = relative.to_string_lossy();
            name != ".dockerignore" && !ignore.excludes(&name)
        })
        .map(|relative| {
            let full = context_dir.join(&relative);
            (relative, full)
        })
        .collect())
}

/// Content hashes by assignment directory, recomputed only when a stat of
/// the files (sizes, times, inodes, modes) changed: each `POST /spec` and
/// each sweep needs the current hash, and reading a big context each time
/// would cost more than the rest of making an instance.
#[derive(Default)]
pub struct HashCache {
    known: Mutex<HashMap<PathBuf, ([u8; 32], String)>>,
}

impl HashCache {
    /// The assignment's current content hash. Blocking.
    pub fn hash(&self, assignment: &Assignment) -> Result<String, AssignmentError> {
        let io_error = |cause| AssignmentError::Io {
            name: assignment.name.to_string(),
            cause,
        };
        let stamp = stamp(assignment.dir()).map_err(io_error)?;
        if let Some((known, hash)) = self.known.lock().unwrap().get(assignment.dir()) {
            if *known == stamp {
                return Ok(hash.clone());
            }
        }
        let hash = pack(assignment, "")?.hash;
        self.remember(assignment, stamp, &hash);
        Ok(hash)
    }

    /// Packs the context for a build, and remembers its hash.
    pub fn pack(
        &self,
        assignment: &Assignment,
        stage_label: &str,
    ) -> Result<SharedContext, AssignmentError> {
        let stamp = stamp(assignment.dir()).map_err(|cause| AssignmentError::Io {
            name: assignment.name.to_string(),
            cause,
        })?;
        let context = pack(assignment, stage_label)?;
        self.remember(assignment, stamp, &context.hash);
        Ok(context)
    }

    fn remember(&self, assignment: &Assignment, stamp: [u8; 32], hash: &str) {
        self.known
            .lock()
            .unwrap()
            .insert(assignment.dir().to_owned(), (stamp, hash.to_string()));
    }
}

/// A digest of the metadata of everything the content hash reads.
fn stamp(dir: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut add = |name: &[u8], path: &Path| -> io::Result<()> {
        hasher.update(name);
        match fs::symlink_metadata(path) {
            Ok(m) => {
                for n in [
                    m.size(),
                    m.mode().into(),
                    m.ino(),
                    m.mtime() as u64,
                    m.mtime_nsec() as u64,
                    m.ctime() as u64,
                    m.ctime_nsec() as u64,
                ] {
                    hasher.update(n.to_le_bytes());
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                hasher.update(b"\0absent");
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    add(DOCKERFILE.as_bytes(), &dir.join(DOCKERFILE))?;
    add(SETTINGS_FILE.as_bytes(), &dir.join(SETTINGS_FILE))?;
    add(
        b".dockerignore",
        &dir.join(CONTEXT_DIR).join(".dockerignore"),
    )?;
    for (relative, path) in context_entries(dir)? {
        add(relative.as_os_str().as_encoded_bytes(), &path)?;
    }
    Ok(hasher.finalize().into())
}

/// An assignment image as the garbage collector sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The image's `ua-assignment/` tag.
    pub tag: String,
    /// The assignment's name, from the image's label.
    pub assignment: String,
    /// The content hash, from the image's label.
    pub hash: String,
}

/// The assignment images to remove: those no instance uses (`in_use` holds
/// image tags) that are not their assignment's current version (`current`:
/// the hash by assignment name; a missing entry means the assignment is
/// gone or no longer shared-image).
pub fn unused_old_images(
    candidates: &[Candidate],
    in_use: &HashSet<String>,
    current: &HashMap<String, String>,
) -> Vec<String> {
    candidates
        .iter()
        .filter(|c| !in_use.contains(&c.tag))
        .filter(|c| current.get(&c.assignment) != Some(&c.hash))
        .map(|c| c.tag.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::settings::Mode;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn find(root: &Path) -> Assignment {
        let assignment =
            Assignment::find(root, &AssignmentName::parse("course.Lab-1").unwrap()).unwrap();
        assert_eq!(assignment.mode, Mode::Shared);
        assignment
    }

    #[test]
    fn the_hash_follows_content_and_ignores_what_docker_ignores() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("course/Lab-1");
        write(&dir.join("Dockerfile"), "FROM base\n");
        write(&dir.join("context/a.txt"), "a");
        write(&dir.join("context/skip.log"), "x");
        write(&dir.join("context/.dockerignore"), "*.log\n");
        let cache = HashCache::default();
        let first = cache.hash(&find(root.path())).unwrap();
        assert_eq!(first.len(), HASH_HEX);
        assert_eq!(pack(&find(root.path()), "").unwrap().hash, first);

        write(&dir.join("context/skip.log"), "changed");
        assert_eq!(cache.hash(&find(root.path())).unwrap(), first);
        write(&dir.join("context/a.txt"), "b");
        let second = cache.hash(&find(root.path())).unwrap();
        assert_ne!(second, first);
        write(&dir.join("assignment.json"), r#"{"cpus": 0.5}"#);
        let third = cache.hash(&find(root.path())).unwrap();
        assert_ne!(third, second);
        let mode: fs::Permissions = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        fs::set_permissions(dir.join("context/a.txt"), mode).unwrap();
        assert_ne!(cache.hash(&find(root.path())).unwrap(), third);
    }

    #[test]
    fn tags_are_valid_docker_names() {
        let name = |n: &str| AssignmentName::parse(n).unwrap();
        assert_eq!(
            image_tag(&name("demo.busybox"), "0123"),
            "ua-assignment/demo.busybox:0123"
        );
        assert_eq!(
            image_tag(&name("c/lab_1"), "0123"),
            "ua-assignment/c.lab_1:0123"
        );
        let odd = image_tag(&name("Course/_x"), "0123");
        assert!(odd.starts_with("ua-assignment/course.x-"), "{odd}");
        assert_ne!(odd, image_tag(&name("course/x"), "0123"));
        assert!(is_repository_component("a--b.c__d"));
        assert!(!is_repository_component("a___b") && !is_repository_component("-a"));
    }

    #[test]
    fn only_unused_old_versions_are_collected() {
        let candidate = |tag: &str, assignment: &str, hash: &str| Candidate {
            tag: tag.into(),
            assignment: assignment.into(),
            hash: hash.into(),
        };
        let candidates = [
            candidate("t/a:1", "a", "1"),
            candidate("t/a:2", "a", "2"),
            candidate("t/a:3", "a", "3"),
            candidate("t/gone:1", "gone", "1"),
        ];
        let in_use = HashSet::from(["t/a:1".to_string()]);
        let current = HashMap::from([("a".to_string(), "3".to_string())]);
        assert_eq!(
            unused_old_images(&candidates, &in_use, &current),
            vec!["t/a:2".to_string(), "t/gone:1".to_string()]
        );
    }
}
