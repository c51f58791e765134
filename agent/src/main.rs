//! `ua-agent --user USER --workdir DIR [--socket PATH] -- COMMAND...`: the
//! container's main process (under Docker's init), as root. It connects
//! to ua's socket (agent/PROTOCOL.md), reconnects whenever that connection
//! ends, and keeps every terminal and its replay meanwhile. SIGTERM hangs
//! up the terminals and ends it.

mod files;
mod terminal;
mod user;

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ua_agent::proto::{self, ErrorCode, Message, TerminalInfo, PROTOCOL_VERSION};

use terminal::{Program, Terminal};
use user::User;

/// How often the agent tries ua's socket while it is not connected.
const RECONNECT: Duration = Duration::from_millis(200);
/// How long SIGTERM waits for hung-up terminals to end.
const HANG_UP_GRACE: Duration = Duration::from_secs(2);

struct Config {
    user: String,
    workdir: String,
    socket: String,
    command: Vec<String>,
}

struct Agent {
    config: Config,
    terminals: Mutex<HashMap<String, Arc<Terminal>>>,
}

type Reply = Result<Message, (ErrorCode, String)>;

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ua-agent: {e}\nusage: ua-agent --user USER --workdir DIR [--socket PATH] -- COMMAND...");
            return ExitCode::from(2);
        }
    };
    // Blocked here, the termination signals are blocked in every thread and
    // taken by sigwait below (children get a clean mask from std).
    let signals = termination_signals();
    // SAFETY: changes this thread's mask, inherited by the threads it spawns.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    let agent = Arc::new(Agent { config, terminals: Mutex::new(HashMap::new()) });
    let control = agent.clone();
    std::thread::spawn(move || control.stay_connected());
    let mut signal = 0;
    // SAFETY: waits for one of the blocked signals.
    unsafe { libc::sigwait(&signals, &mut signal) };
    agent.hang_up_all();
    ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config {
        user: String::new(),
        workdir: "/".into(),
        socket: proto::SOCKET_PATH.into(),
        command: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--user" => config.user = value()?,
            "--workdir" => config.workdir = value()?,
            "--socket" => config.socket = value()?,
            "--" => break,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    config.command = args.collect();
    if config.command.is_empty() {
        return Err("no command after --".into());
    }
    Ok(config)
}

fn termination_signals() -> libc::sigset_t {
    // SAFETY: fills a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

impl Agent {
    /// Connects to ua and serves it, again and again: a restart of ua makes
    /// a new socket, and the terminals wait meanwhile.
    fn stay_connected(self: Arc<Self>) {
        let mut last_error = String::new();
        loop {
            match UnixStream::connect(&self.config.socket) {
                Ok(conn) => {
                    last_error.clear();
                    if let Err(e) = self.clone().serve(conn) {
                        eprintln!("ua-agent: control connection: {e}");
                    }
                }
                Err(e) if e.to_string() != last_error => {
                    last_error = e.to_string();
                    eprintln!("ua-agent: cannot connect to {}: {e}", self.config.socket);
                }
                Err(_) => {}
            }
            std::thread::sleep(RECONNECT);
        }
    }

    /// The control connection: HELLO, then each request in a thread of its
    /// own (a long setup does not hold up the rest); replies carry its id.
    fn serve(self: Arc<Self>, conn: UnixStream) -> Result<(), proto::ProtoError> {
        let hello =
            Message::Hello { version: PROTOCOL_VERSION, agent: env!("CARGO_PKG_VERSION").into() };
        let writer = Arc::new(Mutex::new(conn.try_clone()?));
        proto::write_message(&mut conn.try_clone()?, &hello)?;
        let mut reader = conn;
        let result = loop {
            match proto::read_message(&mut reader) {
                Ok(Some(request)) if request.is_request() => {
                    let (agent, writer) = (self.clone(), writer.clone());
                    std::thread::spawn(move || agent.answer(request, &writer));
                }
                Ok(Some(_)) => break Err(proto::ProtoError::Malformed("not a request")),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = reader.shutdown(std::net::Shutdown::Both);
        result
    }

    fn answer(&self, request: Message, writer: &Mutex<UnixStream>) {
        let id = request.id().unwrap_or(0);
        let reply = self.handle(request).unwrap_or_else(|(code, message)| Message::Error {
            id,
            code,
            message,
        });
        let _ = proto::write_message(&mut *writer.lock().expect("lock"), &reply);
    }

    fn handle(&self, request: Message) -> Reply {
        let workdir = self.config.workdir.as_str();
        match request {
            Message::Setup { id, script } => {
                let (status, output) = files::setup(script, workdir).map_err(failed)?;
                Ok(Message::SetupDone { id, status, output })
            }
            Message::Open { id, name, rows, cols } => self.open(id, name, rows, cols),
            Message::List { id } => Ok(Message::Terminals { id, terminals: self.list() }),
            Message::Close { id, name } => {
                let terminals = self.terminals.lock().expect("lock");
                let terminal = terminals
                    .get(&name)
                    .filter(|t| t.running())
                    .ok_or((ErrorCode::NotFound, "no such terminal runs".into()))?;
                terminal.hang_up();
                Ok(Message::Closed { id })
            }
            Message::ReadFile { id, path, offset, limit } => {
                let (size, data) = files::read(&self.user()?, workdir, &path, offset, limit)?;
                Ok(Message::FileData { id, size, data })
            }
            Message::WriteFile { id, path, mode, parents, append, data } => {
                let options = files::WriteOptions { mode, parents, append };
                files::write(&self.user()?, workdir, &path, &options, &data)?;
                Ok(Message::Written { id })
            }
            _ => Err((ErrorCode::BadRequest, "not a request".into())),
        }
    }

    /// Starts terminal `name` unless it runs, replies, and attaches it on a
    /// new connection that begins with ATTACH `id`.
    fn open(&self, id: u32, name: String, rows: u16, cols: u16) -> Reply {
        let (terminal, started) = {
            let mut terminals = self.terminals.lock().expect("lock");
            match terminals.get(&name) {
                Some(t) if t.running() => {
                    t.resize(rows, cols);
                    (t.clone(), false)
                }
                _ => {
                    let user = self.user()?;
                    let c = &self.config;
                    let program = Program { user: &user, workdir: &c.workdir, command: &c.command };
                    let t = Terminal::start(&program, rows, cols).map_err(failed)?;
                    terminals.insert(name.clone(), t.clone());
                    (t, true)
                }
            }
        };
        let socket = self.config.socket.clone();
        let pid = terminal.pid;
        std::thread::spawn(move || {
            let attached = UnixStream::connect(&socket).and_then(|mut conn| {
                proto::write_message(&mut conn, &Message::Attach { id, name })?;
                terminal.attach(conn)
            });
            if let Err(e) = attached {
                eprintln!("ua-agent: attach connection: {e}");
            }
        });
        Ok(Message::Opened { id, pid, started })
    }

    /// The terminals whose programs run; ended ones are forgotten here.
    fn list(&self) -> Vec<TerminalInfo> {
        let mut terminals = self.terminals.lock().expect("lock");
        terminals.retain(|_, t| t.running());
        let mut list: Vec<TerminalInfo> = terminals
            .iter()
            .map(|(name, t)| TerminalInfo { name: name.clone(), running: t.running(), pid: t.pid })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn user(&self) -> Result<User, (ErrorCode, String)> {
        User::resolve(&self.config.user).map_err(failed)
    }

    /// SIGHUP to every terminal, then a short wait for them to end.
    fn hang_up_all(&self) {
        let terminals: Vec<Arc<Terminal>> =
            self.terminals.lock().expect("lock").values().cloned().collect();
        terminals.iter().for_each(|t| t.hang_up());
        let deadline = std::time::Instant::now() + HANG_UP_GRACE;
        while terminals.iter().any(|t| t.running()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn failed(e: io::Error) -> (ErrorCode, String) {
    let code = match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ => ErrorCode::Failed,
    };
    (code, e.to_string())
}
