//! The wire protocol between ua and its agent (agent/PROTOCOL.md): frames
//! of `[type u8][length u32 big-endian][payload]`, the payload at most
//! [`MAX_PAYLOAD`] bytes. Integers are big-endian. A frame of unknown type,
//! an oversize length or a payload that does not parse is a
//! [`ProtoError`]: the reader closes that connection.

use std::fmt;
use std::io::{self, Read, Write};

/// The protocol's version, sent in [`Message::Hello`].
pub const PROTOCOL_VERSION: u16 = 1;
/// Longest payload of one frame.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Longest bytes field (script, file data, output) that fits in a frame
/// beside the other fields of its message.
pub const MAX_DATA: usize = MAX_PAYLOAD - 4096 - 64;
/// Bytes before the payload: type and length.
pub const HEADER_LEN: usize = 5;
/// The socket's name in the directory that ua listens in.
pub const SOCKET_NAME: &str = "ua.sock";
/// Where that directory is mounted (read-only) in every container.
pub const SOCKET_PATH: &str = "/.ua/run/ua.sock";

/// The frame types (PROTOCOL.md lists who sends which).
pub mod kind {
    #![allow(missing_docs)]
    pub const HELLO: u8 = 0x01;
    pub const SETUP: u8 = 0x10;
    pub const OPEN: u8 = 0x11;
    pub const LIST: u8 = 0x12;
    pub const CLOSE: u8 = 0x13;
    pub const READ_FILE: u8 = 0x14;
    pub const WRITE_FILE: u8 = 0x15;
    pub const ERROR: u8 = 0x20;
    pub const SETUP_DONE: u8 = 0x21;
    pub const OPENED: u8 = 0x22;
    pub const TERMINALS: u8 = 0x23;
    pub const CLOSED: u8 = 0x24;
    pub const FILE_DATA: u8 = 0x25;
    pub const WRITTEN: u8 = 0x26;
    pub const ATTACH: u8 = 0x30;
    pub const REPLAY: u8 = 0x31;
    pub const OUTPUT: u8 = 0x32;
    pub const EXIT: u8 = 0x33;
    pub const INPUT: u8 = 0x34;
    pub const RESIZE: u8 = 0x35;
    /// Every type this version knows.
    pub const ALL: [u8; 20] = [
        HELLO, SETUP, OPEN, LIST, CLOSE, READ_FILE, WRITE_FILE, ERROR, SETUP_DONE, OPENED,
        TERMINALS, CLOSED, FILE_DATA, WRITTEN, ATTACH, REPLAY, OUTPUT, EXIT, INPUT, RESIZE,
    ];
}

/// Why a connection's frames cannot be read.
#[derive(Debug)]
pub enum ProtoError {
    /// The connection failed, or ended inside a frame.
    Io(io::Error),
    /// A frame longer than [`MAX_PAYLOAD`].
    Oversize(usize),
    /// A type this version does not know.
    UnknownType(u8),
    /// A payload that does not parse as its type.
    Malformed(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Io(e) => write!(f, "connection: {e}"),
            ProtoError::Oversize(n) => write!(f, "frame of {n} bytes (at most {MAX_PAYLOAD})"),
            ProtoError::UnknownType(t) => write!(f, "unknown frame type {t:#04x}"),
            ProtoError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<io::Error> for ProtoError {
    fn from(e: io::Error) -> Self {
        ProtoError::Io(e)
    }
}

/// What an [`Message::Error`] reply says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ErrorCode {
    NotFound = 1,
    PermissionDenied = 2,
    NotADirectory = 3,
    NameTooLong = 4,
    SymbolicLink = 5,
    IsADirectory = 6,
    NotRegular = 7,
    TooLarge = 8,
    NoSpace = 9,
    BadRequest = 10,
    Failed = 11,
}

impl ErrorCode {
    fn from_u8(code: u8) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            NotFound,
            PermissionDenied,
            NotADirectory,
            NameTooLong,
            SymbolicLink,
            IsADirectory,
            NotRegular,
            TooLarge,
            NoSpace,
            BadRequest,
            Failed,
        ]
        .into_iter()
        .find(|c| *c as u8 == code)
    }
}

/// One terminal in a [`Message::Terminals`] reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalInfo {
    /// Its name, `[a-z0-9-]{1,16}`.
    pub name: String,
    /// Whether its program still runs.
    pub running: bool,
    /// Its program's pid in the container (the process group it leads).
    pub pid: u32,
}

/// Every message; requests and their replies carry ua's request `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message {
    /// Agent → ua, first on the control connection.
    Hello {
        version: u16,
        agent: String,
    },
    /// Run `script` as root with `/bin/sh`, on its standard input.
    Setup {
        id: u32,
        script: Vec<u8>,
    },
    /// Start terminal `name` unless it runs, then attach it (ATTACH `id`).
    Open {
        id: u32,
        name: String,
        rows: u16,
        cols: u16,
    },
    List {
        id: u32,
    },
    /// SIGHUP to the terminal's process group.
    Close {
        id: u32,
        name: String,
    },
    /// Read a regular file as the user, from `offset`, at most `limit` bytes.
    ReadFile {
        id: u32,
        path: Vec<u8>,
        offset: u64,
        limit: u32,
    },
    /// Write a regular file as the user (`append`: to its end; else replace).
    WriteFile {
        id: u32,
        path: Vec<u8>,
        mode: Option<u32>,
        parents: bool,
        append: bool,
        data: Vec<u8>,
    },
    Error {
        id: u32,
        code: ErrorCode,
        message: String,
    },
    /// `status`: exit code, or 128 + signal. `output`: its last bytes.
    SetupDone {
        id: u32,
        status: i32,
        output: Vec<u8>,
    },
    Opened {
        id: u32,
        pid: u32,
        started: bool,
    },
    Terminals {
        id: u32,
        terminals: Vec<TerminalInfo>,
    },
    Closed {
        id: u32,
    },
    /// `size`: the whole file's; `data`: the bytes asked for.
    FileData {
        id: u32,
        size: u64,
        data: Vec<u8>,
    },
    Written {
        id: u32,
    },
    /// Agent → ua, first on an attach connection: the OPEN's `id`.
    Attach {
        id: u32,
        name: String,
    },
    Replay(Vec<u8>),
    Output(Vec<u8>),
    /// The terminal's program ended: exit code, or 128 + signal.
    Exit {
        status: i32,
    },
    Input(Vec<u8>),
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// Whether `name` is a terminal name: `[a-z0-9-]{1,16}`.
pub fn valid_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The header of a frame of `kind` with `len` bytes of payload.
pub fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [kind, 0, 0, 0, 0];
    h[1..].copy_from_slice(&(len as u32).to_be_bytes());
    h
}

/// The type and payload length in a header, checked.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(u8, usize), ProtoError> {
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if !kind::ALL.contains(&h[0]) {
        return Err(ProtoError::UnknownType(h[0]));
    }
    if len > MAX_PAYLOAD {
        return Err(ProtoError::Oversize(len));
    }
    Ok((h[0], len))
}

/// Reads one message; `None` when the connection ends between frames.
pub fn read_message(r: &mut impl Read) -> Result<Option<Message>, ProtoError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, len) = parse_header(&h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Message::decode(kind, &payload).map(Some)
}

/// Writes one message as a single frame.
pub fn write_message(w: &mut impl Write, message: &Message) -> io::Result<()> {
    w.write_all(&message.encode())
}

struct Payload(Vec<u8>);

impl Payload {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A short field: u16 length, then its bytes.
    fn short(self, v: &[u8]) -> Self {
        self.u16(v.len() as u16).rest(v)
    }
    fn rest(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
}

impl Message {
    /// The whole frame: header and payload.
    pub fn encode(&self) -> Vec<u8> {
        use Message::*;
        let p = Payload(Vec::new());
        let (kind, p) = match self {
            Hello { version, agent } => (kind::HELLO, p.u16(*version).short(agent.as_bytes())),
            Setup { id, script } => (kind::SETUP, p.u32(*id).rest(script)),
            Open { id, name, rows, cols } => {
                let p = p.u32(*id).u16(*rows).u16(*cols);
                (kind::OPEN, p.short(name.as_bytes()))
            }
            List { id } => (kind::LIST, p.u32(*id)),
            Close { id, name } => (kind::CLOSE, p.u32(*id).short(name.as_bytes())),
            ReadFile { id, path, offset, limit } => {
                let p = p.u32(*id).u64(*offset).u32(*limit);
                (kind::READ_FILE, p.rest(path))
            }
            WriteFile { id, path, mode, parents, append, data } => {
                let flags = *parents as u8 | (*append as u8) << 1 | (mode.is_some() as u8) << 2;
                let p = p.u32(*id).u8(flags).u32(mode.unwrap_or(0));
                (kind::WRITE_FILE, p.short(path).rest(data))
            }
            Error { id, code, message } => {
                (kind::ERROR, p.u32(*id).u8(*code as u8).rest(message.as_bytes()))
            }
            SetupDone { id, status, output } => {
                (kind::SETUP_DONE, p.u32(*id).u32(*status as u32).rest(output))
            }
            Opened { id, pid, started } => (kind::OPENED, p.u32(*id).u32(*pid).u8(*started as u8)),
            Terminals { id, terminals } => {
                let p = terminals.iter().fold(p.u32(*id), |p, t| {
                    p.u8(t.running as u8).u32(t.pid).short(t.name.as_bytes())
                });
                (kind::TERMINALS, p)
            }
            Closed { id } => (kind::CLOSED, p.u32(*id)),
            FileData { id, size, data } => (kind::FILE_DATA, p.u32(*id).u64(*size).rest(data)),
            Written { id } => (kind::WRITTEN, p.u32(*id)),
            Attach { id, name } => (kind::ATTACH, p.u32(*id).short(name.as_bytes())),
            Replay(bytes) => (kind::REPLAY, p.rest(bytes)),
            Output(bytes) => (kind::OUTPUT, p.rest(bytes)),
            Exit { status } => (kind::EXIT, p.u32(*status as u32)),
            Input(bytes) => (kind::INPUT, p.rest(bytes)),
            Resize { rows, cols } => (kind::RESIZE, p.u16(*rows).u16(*cols)),
        };
        let mut frame = header(kind, p.0.len()).to_vec();
        frame.extend_from_slice(&p.0);
        frame
    }

    /// The message in a frame of `kind` (from [`parse_header`]).
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, ProtoError> {
        use Message::*;
        let mut c = Cursor(payload);
        let message = match kind {
            kind::HELLO => Hello { version: c.u16()?, agent: c.text()? },
            kind::SETUP => Setup { id: c.u32()?, script: c.rest() },
            kind::OPEN => {
                let (id, rows, cols) = (c.u32()?, c.u16()?, c.u16()?);
                Open { id, rows, cols, name: c.name()? }
            }
            kind::LIST => List { id: c.u32()? },
            kind::CLOSE => Close { id: c.u32()?, name: c.name()? },
            kind::READ_FILE => {
                let (id, offset, limit) = (c.u32()?, c.u64()?, c.u32()?);
                ReadFile { id, offset, limit, path: c.rest() }
            }
            kind::WRITE_FILE => {
                let (id, flags, mode) = (c.u32()?, c.u8()?, c.u32()?);
                let (parents, append) = (flags & 1 != 0, flags & 2 != 0);
                let mode = (flags & 4 != 0).then_some(mode);
                let path = c.short()?.to_vec();
                WriteFile { id, path, mode, parents, append, data: c.rest() }
            }
            kind::ERROR => {
                let (id, code) = (c.u32()?, c.u8()?);
                let code = ErrorCode::from_u8(code).ok_or(ProtoError::Malformed("error code"))?;
                let message =
                    String::from_utf8(c.rest()).map_err(|_| ProtoError::Malformed("text"))?;
                Error { id, code, message }
            }
            kind::SETUP_DONE => {
                SetupDone { id: c.u32()?, status: c.u32()? as i32, output: c.rest() }
            }
            kind::OPENED => Opened { id: c.u32()?, pid: c.u32()?, started: c.flag()? },
            kind::TERMINALS => {
                let id = c.u32()?;
                let mut terminals = Vec::new();
                while !c.0.is_empty() {
                    let (running, pid) = (c.flag()?, c.u32()?);
                    terminals.push(TerminalInfo { running, pid, name: c.name()? });
                }
                Terminals { id, terminals }
            }
            kind::CLOSED => Closed { id: c.u32()? },
            kind::FILE_DATA => FileData { id: c.u32()?, size: c.u64()?, data: c.rest() },
            kind::WRITTEN => Written { id: c.u32()? },
            kind::ATTACH => Attach { id: c.u32()?, name: c.name()? },
            kind::REPLAY => Replay(c.rest()),
            kind::OUTPUT => Output(c.rest()),
            kind::EXIT => Exit { status: c.u32()? as i32 },
            kind::INPUT => Input(c.rest()),
            kind::RESIZE => Resize { rows: c.u16()?, cols: c.u16()? },
            other => return Err(ProtoError::UnknownType(other)),
        };
        if !c.0.is_empty() {
            return Err(ProtoError::Malformed("trailing bytes"));
        }
        Ok(message)
    }

    /// The request id of a request or reply.
    pub fn id(&self) -> Option<u32> {
        use Message::*;
        match self {
            Setup { id, .. }
            | Open { id, .. }
            | List { id }
            | Close { id, .. }
            | ReadFile { id, .. }
            | WriteFile { id, .. } => Some(*id),
            Error { id, .. }
            | SetupDone { id, .. }
            | Opened { id, .. }
            | Terminals { id, .. }
            | Closed { id }
            | FileData { id, .. }
            | Written { id } => Some(*id),
            _ => None,
        }
    }

    /// Whether ua sends it on the control connection (and expects a reply).
    pub fn is_request(&self) -> bool {
        use Message::*;
        matches!(
            self,
            Setup { .. }
                | Open { .. }
                | List { .. }
                | Close { .. }
                | ReadFile { .. }
                | WriteFile { .. }
        )
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Malformed("short payload"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool, ProtoError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtoError::Malformed("flag")),
        }
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn short(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Result<String, ProtoError> {
        let bytes = self.short()?.to_vec();
        String::from_utf8(bytes).map_err(|_| ProtoError::Malformed("text"))
    }
    fn name(&mut self) -> Result<String, ProtoError> {
        let name = self.text()?;
        if !valid_name(&name) {
            return Err(ProtoError::Malformed("terminal name"));
        }
        Ok(name)
    }
    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<Message> {
        use Message::*;
        let info = |name: &str, running, pid| TerminalInfo { name: name.into(), running, pid };
        vec![
            Hello { version: PROTOCOL_VERSION, agent: "0.1.0".into() },
            Setup { id: 1, script: b"echo hi\n".to_vec() },
            Open { id: 2, name: "main".into(), rows: 24, cols: 80 },
            List { id: 3 },
            Close { id: 4, name: "srv-2".into() },
            ReadFile { id: 5, path: b"/etc/motd".to_vec(), offset: 7, limit: 100 },
            WriteFile {
                id: 6,
                path: b"a/b".to_vec(),
                mode: Some(0o755),
                parents: true,
                append: false,
                data: vec![0, 1, 255],
            },
            WriteFile {
                id: 6,
                path: b"c".to_vec(),
                mode: None,
                parents: false,
                append: true,
                data: vec![],
            },
            Error { id: 7, code: ErrorCode::PermissionDenied, message: "no".into() },
            SetupDone { id: 8, status: -1, output: b"out".to_vec() },
            Opened { id: 9, pid: 42, started: true },
            Terminals { id: 10, terminals: vec![info("main", true, 12), info("b", false, 0)] },
            Terminals { id: 10, terminals: vec![] },
            Closed { id: 11 },
            FileData { id: 12, size: 1 << 40, data: b"x".to_vec() },
            Written { id: 13 },
            Attach { id: 14, name: "main".into() },
            Replay(b"before".to_vec()),
            Output(vec![0x1b, b'[']),
            Exit { status: 130 },
            Input(b"ls\r".to_vec()),
            Resize { rows: 33, cols: 101 },
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_stream() {
        let messages = all_messages();
        let stream: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
        let mut r = &stream[..];
        for m in &messages {
            assert_eq!(read_message(&mut r).unwrap().as_ref(), Some(m));
        }
        assert!(read_message(&mut r).unwrap().is_none(), "a clean end between frames");
    }

    #[test]
    fn oversize_and_unknown_frames_are_refused_before_the_payload() {
        let big = header(kind::OUTPUT, MAX_PAYLOAD + 1);
        assert!(matches!(read_message(&mut &big[..]), Err(ProtoError::Oversize(_))));
        assert!(parse_header(&header(kind::OUTPUT, MAX_PAYLOAD)).is_ok());
        for t in [0x00, 0x02, 0x0f, 0x16, 0x1f, 0x27, 0x2f, 0x36, 0xff] {
            let h = header(t, 0);
            assert!(
                matches!(parse_header(&h), Err(ProtoError::UnknownType(x)) if x == t),
                "{t:#x}"
            );
        }
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let bad_name = Message::Attach { id: 1, name: "Main".into() }.encode();
        assert!(matches!(read_message(&mut &bad_name[..]), Err(ProtoError::Malformed(_))));
        let mut long = Message::Close { id: 1, name: "x".repeat(17) }.encode();
        assert!(read_message(&mut &long[..]).is_err());
        long.truncate(7);
        assert!(
            matches!(read_message(&mut &long[..]), Err(ProtoError::Io(_))),
            "ends inside a frame"
        );
        // Every prefix of every payload, and one byte more, fails cleanly.
        for m in all_messages() {
            let frame = m.encode();
            let (kind, len) = parse_header(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
            let payload = &frame[HEADER_LEN..];
            for cut in 0..len {
                let _ = Message::decode(kind, &payload[..cut]);
            }
            let mut extra = payload.to_vec();
            extra.push(1);
            let _ = Message::decode(kind, &extra);
        }
        let flag = [0, 0, 0, 1, 0, 0, 0, 2, 7];
        assert!(Message::decode(kind::OPENED, &flag).is_err());
    }

    #[test]
    fn names_follow_the_api() {
        assert!(valid_name("main") && valid_name("a-1") && valid_name(&"z".repeat(16)));
        assert!(
            !valid_name("")
                && !valid_name("A")
                && !valid_name("a_b")
                && !valid_name(&"z".repeat(17))
        );
    }
}
