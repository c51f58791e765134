//! ua's side of the protocol for the tests: a real listening unix socket,
//! the control connection and attach connections, speaking
//! `ua_agent::proto` to a real agent process.
#![allow(dead_code)]

use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ua_agent::proto::{self, Message, PROTOCOL_VERSION};

/// Longest the tests wait for the agent to do something.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// ua as the agent sees it: the listener and the control connection.
pub struct Ua {
    pub socket: PathBuf,
    listener: UnixListener,
    pub control: UnixStream,
    next_id: u32,
}

impl Ua {
    /// Listens at `dir/ua.sock`; [`Ua::accept_control`] waits for the agent.
    pub fn listen(dir: &Path) -> UnixListener {
        let socket = dir.join(proto::SOCKET_NAME);
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind ua.sock");
        listener.set_nonblocking(true).unwrap();
        listener
    }

    /// Waits for the agent's control connection and its HELLO.
    pub fn accept_control(listener: UnixListener, socket: PathBuf) -> Ua {
        let control = hello(&listener);
        Ua { socket, listener, control, next_id: 1 }
    }

    /// Waits for the agent to connect again (the last control connection
    /// has ended).
    pub fn accept_control_again(&mut self) {
        self.control = hello(&self.listener);
    }

    /// Stops being ua: the listener, its socket and the control connection
    /// go, as when ua exits.
    pub fn stop(self) -> PathBuf {
        let _ = std::fs::remove_file(&self.socket);
        self.socket
    }

    /// Whether a connection is waiting on the listener.
    pub fn pending_connection(&self) -> bool {
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }

    pub fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `request` (with the id from [`Ua::id`]) and reads its reply.
    pub fn request(&mut self, request: Message) -> Message {
        let id = request.id().expect("a request");
        proto::write_message(&mut self.control, &request).unwrap();
        let reply = proto::read_message(&mut self.control).expect("a reply").expect("no EOF");
        assert_eq!(reply.id(), Some(id), "the reply to {id}");
        reply
    }

    /// OPEN `name`: the OPENED reply (pid, started) and the attach connection.
    pub fn open(&mut self, name: &str, rows: u16, cols: u16) -> (u32, bool, Attach) {
        let id = self.id();
        let open = Message::Open { id, name: name.into(), rows, cols };
        proto::write_message(&mut self.control, &open).unwrap();
        let mut conn = accept(&self.listener);
        let attach = proto::read_message(&mut conn).unwrap();
        assert_eq!(attach, Some(Message::Attach { id, name: name.into() }));
        let replay = match proto::read_message(&mut conn).unwrap() {
            Some(Message::Replay(bytes)) => bytes,
            other => panic!("expected REPLAY, got {other:?}"),
        };
        match proto::read_message(&mut self.control).unwrap() {
            Some(Message::Opened { id: got, pid, started }) if got == id => {
                (pid, started, Attach { conn, replay, seen: Vec::new() })
            }
            other => panic!("expected OPENED {id}, got {other:?}"),
        }
    }

    pub fn list(&mut self) -> Vec<proto::TerminalInfo> {
        let id = self.id();
        match self.request(Message::List { id }) {
            Message::Terminals { terminals, .. } => terminals,
            other => panic!("expected TERMINALS, got {other:?}"),
        }
    }
}

fn hello(listener: &UnixListener) -> UnixStream {
    let mut control = accept(listener);
    match proto::read_message(&mut control).expect("HELLO") {
        Some(Message::Hello { version, agent }) => {
            assert_eq!(version, PROTOCOL_VERSION);
            assert_eq!(agent, env!("CARGO_PKG_VERSION"));
        }
        other => panic!("expected HELLO, got {other:?}"),
    }
    control
}

/// Accepts one connection within [`PATIENCE`], blocking with a timeout.
pub fn accept(listener: &UnixListener) -> UnixStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(PATIENCE)).unwrap();
                return conn;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no connection from the agent: {e}"),
        }
    }
}

/// The uid of the process at the other end of `conn` (SO_PEERCRED).
pub fn peer_uid(conn: &UnixStream) -> u32 {
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of that length.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_PEERCRED");
    cred.uid
}

/// One attached terminal.
pub struct Attach {
    pub conn: UnixStream,
    pub replay: Vec<u8>,
    /// Everything read since the attach.
    pub seen: Vec<u8>,
}

impl Attach {
    pub fn send(&mut self, input: &str) {
        proto::write_message(&mut self.conn, &Message::Input(input.as_bytes().to_vec())).unwrap();
    }

    pub fn resize(&mut self, rows: u16, cols: u16) {
        proto::write_message(&mut self.conn, &Message::Resize { rows, cols }).unwrap();
    }

    /// Reads output until `needle` has been seen.
    pub fn expect(&mut self, needle: &str) {
        let mut from = 0;
        while !contains(&self.seen[from..], needle) {
            from = self.seen.len().saturating_sub(needle.len());
            match proto::read_message(&mut self.conn) {
                Ok(Some(Message::Output(bytes))) => self.seen.extend_from_slice(&bytes),
                other => panic!(
                    "waiting for {needle:?}, got {other:?} after {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// Reads `bytes` more of output without keeping them.
    pub fn drain(&mut self, bytes: usize) {
        let mut got = 0;
        while got < bytes {
            match proto::read_message(&mut self.conn) {
                Ok(Some(Message::Output(out))) => got += out.len(),
                other => panic!("draining output, got {other:?}"),
            }
        }
    }

    /// Reads until EXIT, and the end of the connection after it.
    pub fn expect_exit(&mut self) -> i32 {
        loop {
            match proto::read_message(&mut self.conn) {
                Ok(Some(Message::Output(bytes))) => self.seen.extend_from_slice(&bytes),
                Ok(Some(Message::Exit { status })) => {
                    let after = proto::read_message(&mut self.conn);
                    assert!(matches!(after, Ok(None)), "the connection ends after EXIT: {after:?}");
                    return status;
                }
                other => panic!("waiting for EXIT, got {other:?}"),
            }
        }
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).unwrap();
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}
