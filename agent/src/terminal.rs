//! One terminal: a program in a pty of its own, its last [`REPLAY`] bytes
//! of output, and at most one attach connection. The pump thread reads the
//! pty and writes to the connection while holding the lock: when ua stops
//! reading, the pump stops reading the pty and the program blocks, so
//! memory stays bounded. A terminal outlives its connections.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use ua_agent::proto::{self, kind, Message};

use crate::user::{become_user, User};

/// Output kept for a reattach (Coder's reconnectingpty keeps the same).
pub const REPLAY: usize = 64 * 1024;
/// Largest read from the pty, and so largest OUTPUT frame.
const CHUNK: usize = 32 * 1024;

/// What the agent starts terminals with.
pub struct Program<'a> {
    pub user: &'a User,
    pub workdir: &'a str,
    pub command: &'a [String],
}

pub struct Terminal {
    pub pid: u32,
    master: File,
    out: Mutex<Out>,
    /// The connection being attached or attached, to cut it on takeover.
    current: Mutex<Option<UnixStream>>,
}

struct Out {
    replay: VecDeque<u8>,
    sink: Option<UnixStream>,
    exit: Option<i32>,
}

impl Terminal {
    /// Starts `program` in a new pty of `rows` × `cols`.
    pub fn start(program: &Program, rows: u16, cols: u16) -> io::Result<Arc<Terminal>> {
        let (master, slave) = open_pty(rows, cols)?;
        let user = program.user;
        // The pty belongs to the user, as runc makes it for `docker exec -t`.
        // SAFETY: fchown on an open descriptor.
        if unsafe { libc::fchown(slave.as_raw_fd(), user.uid, u32::MAX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (first, args) = program.command.split_first().ok_or(io::ErrorKind::InvalidInput)?;
        let mut command = Command::new(first);
        command
            .args(args)
            .env("HOME", &user.home)
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
        let workdir = CString::new(program.workdir)?;
        // SAFETY: the closure makes system calls only (async-signal-safe).
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                crate::user::unblock_signals()?;
                become_user(uid, gid, &groups)?;
                if libc::chdir(workdir.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(command); // the parent's copies of the pty's slave side
        let terminal = Arc::new(Terminal {
            pid: child.id(),
            master,
            out: Mutex::new(Out { replay: VecDeque::new(), sink: None, exit: None }),
            current: Mutex::new(None),
        });
        let pump = terminal.clone();
        std::thread::spawn(move || pump.pump(child));
        Ok(terminal)
    }

    pub fn running(&self) -> bool {
        self.out().exit.is_none()
    }

    /// SIGHUP to the program's process group (it leads its own session).
    pub fn hang_up(&self) {
        // SAFETY: a signal to a process group.
        unsafe { libc::killpg(self.pid as i32, libc::SIGHUP) };
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        let _ = set_size(&self.master, rows, cols);
    }

    /// Takes `conn` as the terminal's connection: cuts the previous one,
    /// sends the replay (and EXIT if the program has ended), then feeds
    /// INPUT and RESIZE from `conn` to the pty until it closes.
    pub fn attach(&self, conn: UnixStream) -> io::Result<()> {
        let mut input = conn.try_clone()?;
        if let Some(old) = self.current.lock().expect("lock").replace(conn.try_clone()?) {
            let _ = old.shutdown(Shutdown::Both); // wakes a pump blocked on it
        }
        {
            let mut out = self.out();
            let mut sink = conn;
            let replay: Vec<u8> = out.replay.iter().copied().collect();
            proto::write_message(&mut sink, &Message::Replay(replay))?;
            if let Some(status) = out.exit {
                proto::write_message(&mut sink, &Message::Exit { status })?;
                return sink.shutdown(Shutdown::Both);
            }
            out.sink = Some(sink);
        }
        let result = self.feed(&mut input);
        let _ = input.shutdown(Shutdown::Both); // the pump drops it at its next write
        result
    }

    fn feed(&self, conn: &mut UnixStream) -> io::Result<()> {
        loop {
            match proto::read_message(conn) {
                Ok(Some(Message::Input(bytes))) => (&self.master).write_all(&bytes)?,
                Ok(Some(Message::Resize { rows, cols })) => self.resize(rows, cols),
                Ok(None) => return Ok(()),
                Ok(Some(_)) => {
                    return Err(io::Error::other("unexpected frame on an attach connection"))
                }
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    }

    /// Reads the pty until the program and everything holding the pty end,
    /// then reaps the program and sends EXIT.
    fn pump(&self, mut child: Child) {
        let mut frame = vec![0u8; proto::HEADER_LEN + CHUNK];
        loop {
            let n = match (&self.master).read(&mut frame[proto::HEADER_LEN..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // EIO: no process holds the pty any more
            };
            frame[..proto::HEADER_LEN].copy_from_slice(&proto::header(kind::OUTPUT, n));
            let mut out = self.out();
            let data = &frame[proto::HEADER_LEN..proto::HEADER_LEN + n];
            out.replay.extend(data);
            let excess = out.replay.len().saturating_sub(REPLAY);
            out.replay.drain(..excess);
            if let Some(sink) = out.sink.as_mut() {
                if sink.write_all(&frame[..proto::HEADER_LEN + n]).is_err() {
                    out.sink = None;
                }
            }
        }
        let status = child.wait().map_or(-1, exit_code);
        let mut out = self.out();
        out.exit = Some(status);
        if let Some(mut sink) = out.sink.take() {
            let _ = proto::write_message(&mut sink, &Message::Exit { status });
            let _ = sink.shutdown(Shutdown::Both);
        }
    }

    fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().expect("a terminal's lock is never poisoned")
    }
}

/// An exit status as a shell shows it: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A new pty pair, both ends close-on-exec (no other child inherits them).
fn open_pty(rows: u16, cols: u16) -> io::Result<(File, File)> {
    // SAFETY: plain calls; every descriptor is owned by a File at once.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = File::from_raw_fd(fd);
        let mut name = [0 as libc::c_char; 128];
        if libc::grantpt(fd) != 0
            || libc::unlockpt(fd) != 0
            || libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if slave < 0 {
            return Err(io::Error::last_os_error());
        }
        let slave = File::from_raw_fd(slave);
        set_size(&master, rows, cols)?;
        Ok((master, slave))
    }
}

fn set_size(master: &File, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
