//! The image's USER (`name`, `uid`, `name:group`, `uid:gid`) resolved the
//! way Docker does, from the container's /etc/passwd and /etc/group read
//! directly: no NSS, so the binary can be static. Resolved anew for each
//! use, since the setup script may add the user.

use std::ffi::CString;
use std::io;

/// Who the terminals and file operations run as.
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the primary one and those listing the user.
    pub groups: Vec<u32>,
    pub home: String,
}

impl User {
    /// Resolves `spec` (empty: root).
    pub fn resolve(spec: &str) -> io::Result<User> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let (name, group_spec) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (if spec.is_empty() { "0" } else { spec }, None),
        };
        let entry = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 7 && (f[0] == name || f[2] == name));
        let (uid, mut gid, home, login) = match (entry, name.parse::<u32>()) {
            (Some(f), _) => (number(f[2])?, number(f[3])?, f[5].to_string(), f[0]),
            (None, Ok(uid)) => (uid, 0, "/".to_string(), ""),
            (None, Err(_)) => return Err(not_found("user", name)),
        };
        let groups: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect()).collect();
        if let Some(g) = group_spec {
            let by_name = groups.iter().find(|f| f.len() >= 3 && f[0] == g);
            gid = match (by_name, g.parse::<u32>()) {
                (_, Ok(n)) => n,
                (Some(f), _) => number(f[2])?,
                (None, _) => return Err(not_found("group", g)),
            };
        }
        let mut supplementary = vec![gid];
        for f in groups.iter().filter(|f| f.len() >= 4 && !login.is_empty()) {
            if f[3].split(',').any(|m| m == login) {
                supplementary.push(number(f[2])?);
            }
        }
        supplementary.dedup();
        Ok(User { uid, gid, groups: supplementary, home })
    }
}

/// Becomes `user` (groups, then gid, then uid): called in a forked child,
/// so raw system calls only (no allocation, this thread alone).
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    // SAFETY: plain system calls on valid memory.
    let failed = unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setgid, gid) != 0
            || libc::syscall(libc::SYS_setuid, uid) != 0
    };
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unblocks every signal: the agent blocks the termination signals for
/// sigwait, and a child inherits that mask through exec (std leaves it).
pub fn unblock_signals() -> io::Result<()> {
    // SAFETY: an empty set on the stack, then this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::other("pthread_sigmask"));
        }
    }
    Ok(())
}

/// A path for a system call (no NUL inside).
pub fn c_path(path: &[u8]) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn number(field: &str) -> io::Result<u32> {
    field.parse().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, "bad id in /etc/passwd or /etc/group")
    })
}

fn not_found(what: &str, name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no {what} {name:?} in /etc/passwd or /etc/group"),
    )
}
