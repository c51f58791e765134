//! The setup script (as root) and files read and written as the user: a
//! forked child becomes the user and opens the path, so the kernel's own
//! permission checks, on every component and every symbolic link, decide.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use ua_agent::proto::{ErrorCode, MAX_DATA};

use crate::terminal::exit_code;
use crate::user::{become_user, c_path, User};

/// The child's exit code for "not a regular file" (errno values are lower).
const NOT_REGULAR: i32 = 200;

/// The script is read whole before it runs (what it runs cannot read the
/// rest of it) and lives only in the shell's memory: never on disk, in
/// argv or in the environment.
const SETUP: &str = "ua_setup=$(cat) && eval \"$ua_setup\"";

/// Runs `script` as root: its exit status and the last [`MAX_DATA`] bytes
/// of its standard output and error, interleaved as written.
pub fn setup(script: Vec<u8>, workdir: &str) -> io::Result<(i32, Vec<u8>)> {
    let (mut reader, writer) = io::pipe()?;
    let dir = if std::path::Path::new(workdir).is_dir() { workdir } else { "/" };
    let mut command = Command::new("/bin/sh");
    // SAFETY: the closure makes one system call.
    unsafe { command.pre_exec(crate::user::unblock_signals) };
    command
        .args(["-c", SETUP])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = command.spawn()?;
    drop(command); // our copies of the pipe's write end
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || stdin.write_all(&script));
    let mut output = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => output.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let excess = output.len().saturating_sub(MAX_DATA);
        output.drain(..excess);
    }
    let _ = feeder.join(); // a script that exits early need not read it all
    Ok((exit_code(child.wait()?), output))
}

/// Reads at most `limit` bytes of regular file `path` from `offset`, as
/// `user` in `workdir`: the file's size and the bytes.
pub fn read(
    user: &User,
    workdir: &str,
    path: &[u8],
    offset: u64,
    limit: u32,
) -> Result<(u64, Vec<u8>), (ErrorCode, String)> {
    let path = c_path(path).map_err(bad)?;
    let limit = (limit as usize).min(MAX_DATA);
    let out = as_user(user, workdir, |pipe| unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        let size = regular_size(fd)?;
        write_all(pipe, &size.to_be_bytes())?;
        let mut buf = [0u8; 16 * 1024];
        let (mut at, mut left) = (offset as libc::off_t, limit);
        while left > 0 {
            let n = libc::pread(fd, buf.as_mut_ptr().cast(), left.min(buf.len()), at);
            match n {
                0 => break,
                n if n < 0 => return Err(errno()),
                n => write_all(pipe, &buf[..n as usize])?,
            }
            at += n as libc::off_t;
            left -= n as usize;
        }
        Ok(())
    })?;
    let size = u64::from_be_bytes(out[..8].try_into().map_err(|_| failed("no size"))?);
    Ok((size, out[8..].to_vec()))
}

/// What a write asks besides the path and the bytes.
pub struct WriteOptions {
    pub mode: Option<u32>,
    pub parents: bool,
    pub append: bool,
}

/// Writes regular file `path` as `user` in `workdir` (replacing its
/// content, or appended to), its missing parents made first if asked.
pub fn write(
    user: &User,
    workdir: &str,
    path: &[u8],
    options: &WriteOptions,
    data: &[u8],
) -> Result<(), (ErrorCode, String)> {
    if options.mode.is_some_and(|m| m > 0o777) {
        return Err((ErrorCode::BadRequest, "mode above 0777".into()));
    }
    let parents: Vec<CString> = match options.parents {
        true => parent_prefixes(path).map_err(bad)?,
        false => Vec::new(),
    };
    let path = c_path(path).map_err(bad)?;
    let append = if options.append { libc::O_APPEND } else { 0 };
    let flags = libc::O_WRONLY
        | libc::O_CREAT
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | libc::O_CLOEXEC
        | append;
    as_user(user, workdir, |_| unsafe {
        for dir in &parents {
            if libc::mkdir(dir.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                return Err(errno());
            }
        }
        let fd = libc::open(path.as_ptr(), flags, options.mode.unwrap_or(0o644));
        regular_size(fd)?;
        if append == 0 && libc::ftruncate(fd, 0) != 0 {
            return Err(errno());
        }
        write_all(fd, data)?;
        if options.mode.is_some_and(|m| libc::fchmod(fd, m) != 0) || libc::close(fd) != 0 {
            return Err(errno());
        }
        Ok(())
    })?;
    Ok(())
}

/// `a`, `a/b` for `a/b/c` (and `/a`, `/a/b` for `/a/b/c`).
fn parent_prefixes(path: &[u8]) -> io::Result<Vec<CString>> {
    let ends = path.iter().enumerate().filter(|(i, b)| **b == b'/' && *i > 0).map(|(i, _)| i);
    ends.map(|end| c_path(&path[..end])).collect()
}

/// Forks a child that becomes `user`, enters `workdir` and runs `body`
/// with the write end of a pipe: what it wrote, or its errno as an error.
/// The child makes system calls only: this process has other threads.
fn as_user(
    user: &User,
    workdir: &str,
    body: impl FnOnce(RawFd) -> Result<(), i32>,
) -> Result<Vec<u8>, (ErrorCode, String)> {
    let workdir = CString::new(workdir).map_err(bad)?;
    let (mut reader, writer) = io::pipe().map_err(|e| failed(&e.to_string()))?;
    // SAFETY: the child only makes system calls, then _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match become_user(user.uid, user.gid, &user.groups) {
            Err(e) => e.raw_os_error().unwrap_or(libc::EPERM),
            Ok(()) if unsafe { libc::chdir(workdir.as_ptr()) } != 0 => errno(),
            Ok(()) => body(writer.as_raw_fd()).err().unwrap_or(0),
        };
        unsafe { libc::_exit(code) };
    }
    drop(writer);
    if pid < 0 {
        return Err(failed("fork failed"));
    }
    let mut out = Vec::new();
    let read = reader.read_to_end(&mut out);
    let mut status = 0;
    // SAFETY: waits for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
    read.map_err(|e| failed(&e.to_string()))?;
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(out),
        Some(code) => Err(error(code)),
        None => Err(failed("the file operation was killed")),
    }
}

/// The size of `fd` (an open's result) if it is a regular file.
unsafe fn regular_size(fd: RawFd) -> Result<u64, i32> {
    let mut st: libc::stat = std::mem::zeroed();
    if fd < 0 || libc::fstat(fd, &mut st) != 0 {
        return Err(errno());
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Ok(st.st_size as u64),
        libc::S_IFDIR => Err(libc::EISDIR),
        _ => Err(NOT_REGULAR),
    }
}

unsafe fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        if n < 0 && errno() != libc::EINTR {
            return Err(errno());
        }
        bytes = &bytes[n.max(0) as usize..];
    }
    Ok(())
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A clear code for what the child's open, mkdir or write said.
fn error(code: i32) -> (ErrorCode, String) {
    let kind = match code {
        libc::ENOENT => ErrorCode::NotFound,
        libc::EACCES | libc::EPERM | libc::EROFS => ErrorCode::PermissionDenied,
        libc::ENOTDIR => ErrorCode::NotADirectory,
        libc::ENAMETOOLONG => ErrorCode::NameTooLong,
        libc::ELOOP => ErrorCode::SymbolicLink,
        libc::EISDIR => ErrorCode::IsADirectory,
        NOT_REGULAR | libc::ENXIO => ErrorCode::NotRegular,
        libc::EFBIG => ErrorCode::TooLarge,
        libc::ENOSPC | libc::EDQUOT => ErrorCode::NoSpace,
        _ => ErrorCode::Failed,
    };
    let text = match code {
        NOT_REGULAR => "not a regular file".to_string(),
        libc::ELOOP => "a symbolic link (or too many)".to_string(),
        _ => io::Error::from_raw_os_error(code).to_string(),
    };
    (kind, text)
}

fn bad(e: impl std::fmt::Display) -> (ErrorCode, String) {
    (ErrorCode::BadRequest, e.to_string())
}

fn failed(what: &str) -> (ErrorCode, String) {
    (ErrorCode::Failed, what.to_string())
}
