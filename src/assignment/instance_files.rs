//! The per-instance files of a shared-image assignment: `instance/` read and
//! rendered with the spec, and packed as a tar that Docker unpacks at `/` in
//! the new container, with the image user owning what lies in their home.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::assignment::find::{walk, Assignment};
use crate::assignment::settings::{AssignmentError, TEMPLATE_SUFFIX};
use crate::assignment::template::Renderer;

/// The directory whose files (templates rendered) go into each new container.
pub const INSTANCE_DIR: &str = "instance";
/// The setup script, rendered with the spec and run as root in each new container.
pub const SETUP_TEMPLATE: &str = "setup.sh.tmpl";

/// One entry of `instance/`, its path relative to `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry goes, relative to `/`.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: Kind,
}

/// What an entry of `instance/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A file with its (rendered) contents.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// Who owns what: the image user's IDs and home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The user's ID.
    pub uid: u64,
    /// The user's group ID.
    pub gid: u64,
    /// The user's home, when it is neither missing nor `/`; only files under it are theirs.
    pub home: Option<PathBuf>,
}

impl Owner {
    /// Root, with no home: every file belongs to root.
    pub const ROOT: Owner = Owner {
        uid: 0,
        gid: 0,
        home: None,
    };
}

/// Reads `instance/`, rendering `*.tmpl` files (saved without the suffix).
/// Blocking.
pub fn read_tree(
    assignment: &Assignment,
    renderer: &Renderer,
) -> Result<Vec<Entry>, AssignmentError> {
    let io_error = |cause| AssignmentError::Io {
        name: assignment.name.to_string(),
        cause,
    };
    let dir = assignment.dir().join(INSTANCE_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for relative in walk(&dir).map_err(io_error)? {
        let path = dir.join(&relative);
        let meta = fs::symlink_metadata(&path).map_err(io_error)?;
        let name = relative.to_string_lossy().into_owned();
        let mode = meta.permissions().mode() & 0o7777;
        let entry = match name.strip_suffix(TEMPLATE_SUFFIX) {
            Some(rendered) if meta.is_file() || meta.is_symlink() => {
                // A symlinked template is read through the link: only within the root.
                let source = path.canonicalize().map_err(io_error)?;
                if !source.starts_with(assignment.root()) {
                    return Err(AssignmentError::Render(format!(
                        "{INSTANCE_DIR}/{name} links outside the assignments root"
                    )));
                }
                let text = fs::read_to_string(&source).map_err(io_error)?;
                let text = renderer.render(&format!("{INSTANCE_DIR}/{name}"), &text)?;
                let mode = fs::metadata(&source)
                    .map_err(io_error)?
                    .permissions()
                    .mode()
                    & 0o7777;
                Entry {
                    path: PathBuf::from(rendered),
                    mode,
                    kind: Kind::File(text.into_bytes()),
                }
            }
            _ if meta.is_dir() => Entry {
                path: relative,
                mode,
                kind: Kind::Dir,
            },
            _ if meta.is_symlink() => Entry {
                path: relative,
                mode: 0o777,
                kind: Kind::Symlink(fs::read_link(&path).map_err(io_error)?),
            },
            _ => Entry {
                path: relative,
                mode,
                kind: Kind::File(fs::read(&path).map_err(io_error)?),
            },
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// Renders `setup.sh.tmpl`, when the assignment has one. Blocking.
pub fn read_setup(
    assignment: &Assignment,
    renderer: &Renderer,
) -> Result<Option<String>, AssignmentError> {
    match fs::read_to_string(assignment.dir().join(SETUP_TEMPLATE)) {
        Ok(text) => renderer.render(SETUP_TEMPLATE, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(AssignmentError::Io {
            name: assignment.name.to_string(),
            cause,
        }),
    }
}

/// Packs `entries` for an upload at `/`. Directories that already exist in
/// the image (`exists`) are left out, so that their owner and mode stay as
/// the image has them; the ones ua creates, and every file, belong to
/// `owner` inside the owner's home and to root elsewhere.
pub fn pack(
    entries: &[Entry],
    owner: &Owner,
    exists: impl Fn(&Path) -> bool,
) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    // The files are the instance's: they date from its making, not from 1970.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for entry in entries {
        let absolute = Path::new("/").join(&entry.path);
        let (uid, gid) = match &owner.home {
            Some(home) if absolute.starts_with(home) => (owner.uid, owner.gid),
            _ => (0, 0),
        };
        let mut header = tar::Header::new_gnu();
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mode(entry.mode);
        header.set_mtime(now);
        match &entry.kind {
            Kind::Dir if exists(&absolute) => continue,
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &entry.path, io::empty())?;
            }
            Kind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &entry.path, target)?;
            }
            Kind::File(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &entry.path, bytes.as_slice())?;
            }
        }
    }
    tar.into_inner()
}

/// Every directory of `entries`, as absolute paths.
pub fn directories(entries: &[Entry]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .map(|e| Path::new("/").join(&e.path))
        .collect()
}

/// Resolves an image `USER` (`name`, `uid`, `name:group`, `uid:gid`) with
/// the image's `/etc/passwd` and `/etc/group`, as Docker does: a user
/// without a group gets their passwd group, or 0 when not listed.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<Owner, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.is_empty() && group_part.is_none() {
        return Ok(Owner::ROOT);
    }
    let accounts: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let account = match user_part.parse::<u64>() {
        Ok(uid) => accounts.iter().find(|f| f[2].parse() == Ok(uid)),
        Err(_) => accounts.iter().find(|f| f[0] == user_part),
    };
    let uid = match (user_part.parse::<u64>(), account) {
        (Ok(uid), _) => uid,
        (Err(_), Some(fields)) => fields[2]
            .parse()
            .map_err(|_| format!("the image's /etc/passwd has a bad line for `{user_part}`"))?,
        (Err(_), None) => {
            return Err(format!(
                "the image's USER `{user_part}` is not in its /etc/passwd"
            ))
        }
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u64>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("the image's group `{g}` is not in its /etc/group"))?,
        },
        None => account.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let home = account
        .map(|f| PathBuf::from(f[5]))
        .filter(|h| h.is_absolute() && h != Path::new("/"));
    Ok(Owner { uid, gid, home })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nstudent:x:1000:1001:S:/home/student:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\nstudent:x:1001:\n";

    #[test]
    fn users_resolve_like_docker() {
        let student = resolve_user("student", PASSWD, GROUP).unwrap();
        assert_eq!((student.uid, student.gid), (1000, 1001));
        assert_eq!(student.home.as_deref(), Some(Path::new("/home/student")));
        let with_group = resolve_user("student:staff", PASSWD, GROUP).unwrap();
        assert_eq!((with_group.uid, with_group.gid), (1000, 50));
        let numeric = resolve_user("1000:7", "", "").unwrap();
        assert_eq!((numeric.uid, numeric.gid, numeric.home), (1000, 7, None));
        let by_uid = resolve_user("1000", PASSWD, GROUP).unwrap();
        assert_eq!(by_uid, student);
        assert_eq!(resolve_user("", PASSWD, GROUP).unwrap(), Owner::ROOT);
        assert!(resolve_user("nobody", PASSWD, GROUP).is_err());
        assert!(resolve_user("student:wheel", PASSWD, GROUP).is_err());
    }

    /// A tree with a system file, the home, a script and a link in it.
    fn a_tree() -> Vec<Entry> {
        vec![
            Entry {
                path: "etc".into(),
                mode: 0o755,
                kind: Kind::Dir,
            },
            Entry {
                path: "etc/motd".into(),
                mode: 0o644,
                kind: Kind::File(b"hi".to_vec()),
            },
            Entry {
                path: "home/student".into(),
                mode: 0o700,
                kind: Kind::Dir,
            },
            Entry {
                path: "home/student/work".into(),
                mode: 0o750,
                kind: Kind::Dir,
            },
            Entry {
                path: "home/student/work/run.sh".into(),
                mode: 0o755,
                kind: Kind::File(b"echo".to_vec()),
            },
            Entry {
                path: "home/student/link".into(),
                mode: 0o777,
                kind: Kind::Symlink("work/run.sh".into()),
            },
        ]
    }

    /// Each entry of a tar: its type, owner, group, mode and size.
    fn listed(tar: &[u8]) -> BTreeMap<String, (tar::EntryType, u64, u64, u32, u64)> {
        let mut seen = BTreeMap::new();
        for entry in tar::Archive::new(tar).entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            seen.insert(
                entry.path().unwrap().display().to_string(),
                (
                    header.entry_type(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mode().unwrap(),
                    entry.size(),
                ),
            );
        }
        seen
    }

    #[test]
    fn the_tar_gives_the_home_to_the_user_and_skips_existing_dirs() {
        let entries = a_tree();
        let owner = Owner {
            uid: 1000,
            gid: 1001,
            home: Some("/home/student".into()),
        };
        let existing = ["/etc", "/home/student"];
        let tar = pack(&entries, &owner, |p| {
            existing.iter().any(|e| Path::new(e) == p)
        })
        .unwrap();
        let seen = listed(&tar);
        use tar::EntryType::*;
        assert_eq!(
            seen,
            BTreeMap::from([
                ("etc/motd".to_string(), (Regular, 0, 0, 0o644, 2)),
                (
                    "home/student/work".to_string(),
                    (Directory, 1000, 1001, 0o750, 0)
                ),
                (
                    "home/student/work/run.sh".to_string(),
                    (Regular, 1000, 1001, 0o755, 4)
                ),
                (
                    "home/student/link".to_string(),
                    (Symlink, 1000, 1001, 0o777, 0)
                ),
            ])
        );
        assert_eq!(
            directories(&entries),
            vec![
                PathBuf::from("/etc"),
                PathBuf::from("/home/student"),
                PathBuf::from("/home/student/work")
            ]
        );
    }
}
