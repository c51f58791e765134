//! The agent as a real process on this host, as root, its terminals and
//! file operations as `nobody` (65534), against a test that listens on a
//! unix socket the way ua does.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{contains, Ua, PATIENCE};
use ua_agent::proto::{self, ErrorCode, Message, MAX_DATA};

const AGENT: &str = env!("CARGO_BIN_EXE_ua-agent");
const NOBODY: u32 = 65534;

/// A running agent, stopped (SIGTERM: its terminals are hung up) on drop.
struct Agent {
    child: Child,
    _socket_dir: tempfile::TempDir,
}

impl Agent {
    fn start(workdir: &Path) -> (Agent, Ua) {
        assert!(is_root(), "these tests run the agent as root, as in a container");
        let dir = tempfile::tempdir().unwrap();
        let listener = Ua::listen(dir.path());
        let socket = dir.path().join(proto::SOCKET_NAME);
        let mut command = Command::new(AGENT);
        command
            .arg("--socket")
            .arg(&socket)
            .args(["--user", &format!("{NOBODY}:{NOBODY}"), "--workdir"])
            .arg(workdir)
            .args(["--", "/bin/sh"])
            .env("PS1", "$ ")
            .stdin(Stdio::null());
        // SAFETY: prctl only; the agent goes if this test's thread does.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            })
        };
        let child = command.spawn().unwrap();
        let ua = Ua::accept_control(listener, socket);
        (Agent { child, _socket_dir: dir }, ua)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.terminate();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// A directory `nobody` may enter (a temporary directory is 0700).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn two_terminals_resize_reattach_and_survive_a_restart_of_ua() {
    let work = open_dir();
    let (_agent, mut ua) = Agent::start(work.path());
    let (main_pid, started, mut main) = ua.open("main", 24, 80);
    assert!(started);
    let (second_pid, started, mut second) = ua.open("second", 24, 80);
    assert!(started && second_pid != main_pid);
    main.send("V=kept-$((40+2)); echo main-$((1+1)) $(id -u)\n");
    main.expect(&format!("main-2 {NOBODY}"));
    second.send("echo second-$((2+2))\n");
    second.expect("second-4");
    main.resize(33, 101);
    main.send("stty size\n");
    main.expect("33 101");

    // Disconnect and reattach: the same shell, its replay, not the other's.
    drop(main);
    let (pid, started, mut main) = ua.open("main", 33, 101);
    assert_eq!((pid, started), (main_pid, false));
    assert!(contains(&main.replay, "main-2") && contains(&main.replay, "33 101"));
    assert!(!contains(&main.replay, "second-4"));
    main.send("echo again-$((3*3))\n");
    main.expect("again-9");

    // ua restarts: a new listener; the agent comes back to it.
    drop((main, second));
    let socket = ua.stop();
    let listener = Ua::listen(socket.parent().unwrap());
    let mut ua = Ua::accept_control(listener, socket);
    let names: Vec<_> = ua.list().into_iter().map(|t| (t.name, t.running, t.pid)).collect();
    assert_eq!(names, [("main".into(), true, main_pid), ("second".into(), true, second_pid)]);
    let (pid, started, mut main) = ua.open("main", 33, 101);
    assert_eq!((pid, started), (main_pid, false));
    assert!(contains(&main.replay, "again-9"));
    main.send("echo $V\n");
    main.expect("kept-42");

    // CLOSE hangs up; a new OPEN starts a new program.
    let (_, _, mut second) = ua.open("second", 24, 80);
    let id = ua.id();
    assert_eq!(ua.request(Message::Close { id, name: "second".into() }), Message::Closed { id });
    assert_eq!(second.expect_exit(), 128 + libc::SIGHUP);
    assert!(!ua.list().iter().any(|t| t.name == "second"), "an ended terminal is not listed");
    let id = ua.id();
    let ended = ua.request(Message::Close { id, name: "second".into() });
    assert!(matches!(ended, Message::Error { code: ErrorCode::NotFound, .. }), "{ended:?}");
    let (pid, started, _second) = ua.open("second", 24, 80);
    assert!(started && pid != second_pid);
    main.send("exit 7\n");
    assert_eq!(main.expect_exit(), 7);
    let id = ua.id();
    let missing = ua.request(Message::Close { id, name: "nope".into() });
    assert!(matches!(missing, Message::Error { code: ErrorCode::NotFound, .. }), "{missing:?}");
}

#[test]
fn a_flood_that_ua_does_not_read_blocks_the_program_not_the_memory() {
    let work = open_dir();
    let (agent, mut ua) = Agent::start(work.path());
    let (_, _, mut flood) = ua.open("flood", 24, 80);
    flood.send("yes\n");
    flood.expect("y\r\ny\r\ny\r\n");
    // Unread for a while: `yes` would write hundreds of MB meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let blocked = agent.rss_kib();
    std::thread::sleep(Duration::from_secs(2));
    let later = agent.rss_kib();
    assert!(later < 32 * 1024 && later <= blocked + 4096, "RSS {blocked} KiB, then {later} KiB");
    // Still running: reading again gets more.
    flood.drain(4 << 20);
    // Detached, it runs free into its 64 KiB replay: still bounded.
    drop(flood);
    std::thread::sleep(Duration::from_secs(2));
    let detached = agent.rss_kib();
    assert!(detached < 32 * 1024, "RSS {detached} KiB while detached");
    let (_, started, mut flood) = ua.open("flood", 24, 80);
    assert!(!started && flood.replay.len() <= 64 * 1024 && contains(&flood.replay, "y\r\ny\r\n"));
    flood.send("\x03");
    let id = ua.id();
    ua.request(Message::Close { id, name: "flood".into() });
    flood.expect_exit();
}

fn read(ua: &mut Ua, path: &str, offset: u64, limit: u32) -> Result<(u64, Vec<u8>), ErrorCode> {
    let id = ua.id();
    match ua.request(Message::ReadFile { id, path: path.into(), offset, limit }) {
        Message::FileData { size, data, .. } => Ok((size, data)),
        Message::Error { code, .. } => Err(code),
        other => panic!("{other:?}"),
    }
}

fn write(
    ua: &mut Ua,
    path: &str,
    mode: Option<u32>,
    parents: bool,
    data: &[u8],
) -> Result<(), ErrorCode> {
    write_with(ua, path, mode, parents, false, data)
}

fn write_with(
    ua: &mut Ua,
    path: &str,
    mode: Option<u32>,
    parents: bool,
    append: bool,
    data: &[u8],
) -> Result<(), ErrorCode> {
    let id = ua.id();
    let data = data.to_vec();
    match ua.request(Message::WriteFile { id, path: path.into(), mode, parents, append, data }) {
        Message::Written { .. } => Ok(()),
        Message::Error { code, .. } => Err(code),
        other => panic!("{other:?}"),
    }
}

/// root/ (0755): secret 0600, public 0644, rootonly/ 0700 with f, links
/// to both, a fifo, and home/ owned by nobody (the workdir).
fn file_tree() -> (tempfile::TempDir, PathBuf) {
    let dir = open_dir();
    let root = dir.path();
    let file = |name: &str, mode: u32, text: &str| {
        std::fs::write(root.join(name), text).unwrap();
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    file("secret", 0o600, "answer");
    file("public", 0o644, "hello");
    std::fs::create_dir(root.join("rootonly")).unwrap();
    std::fs::set_permissions(root.join("rootonly"), std::fs::Permissions::from_mode(0o700))
        .unwrap();
    file("rootonly/f", 0o644, "hidden");
    std::os::unix::fs::symlink(root.join("rootonly"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(root.join("public"), root.join("publink")).unwrap();
    let fifo =
        std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
    let home = root.join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    (dir, home)
}

#[test]
fn files_are_read_and_written_with_the_users_permissions() {
    let (dir, home) = file_tree();
    let root = dir.path().to_str().unwrap().to_string();
    let (_agent, mut ua) = Agent::start(&home);
    let at = |name: &str| format!("{root}/{name}");
    assert_eq!(read(&mut ua, &at("public"), 0, 100), Ok((5, b"hello".to_vec())));
    assert_eq!(read(&mut ua, &at("public"), 1, 2), Ok((5, b"el".to_vec())));
    assert_eq!(read(&mut ua, &at("secret"), 0, 100), Err(ErrorCode::PermissionDenied));
    assert_eq!(read(&mut ua, &at("link/f"), 0, 100), Err(ErrorCode::PermissionDenied));
    assert_eq!(read(&mut ua, &at("rootonly/f"), 0, 100), Err(ErrorCode::PermissionDenied));
    assert_eq!(read(&mut ua, &at("publink"), 0, 100), Err(ErrorCode::SymbolicLink));
    assert_eq!(read(&mut ua, &at("missing"), 0, 100), Err(ErrorCode::NotFound));
    assert_eq!(read(&mut ua, &at("public/x"), 0, 100), Err(ErrorCode::NotADirectory));
    assert_eq!(read(&mut ua, &root, 0, 100), Err(ErrorCode::IsADirectory));
    assert_eq!(read(&mut ua, &at("fifo"), 0, 100), Err(ErrorCode::NotRegular));
    assert_eq!(read(&mut ua, &"x".repeat(5000), 0, 100), Err(ErrorCode::NameTooLong));

    // Parents made as the user, the mode applied, relative to the workdir.
    assert_eq!(write(&mut ua, "a/b/c.txt", Some(0o600), true, b"one"), Ok(()));
    for made in ["a", "a/b", "a/b/c.txt"] {
        let meta = std::fs::metadata(home.join(made)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{made}");
    }
    assert_eq!(std::fs::metadata(home.join("a/b/c.txt")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(write_with(&mut ua, "a/b/c.txt", None, false, true, b"+two"), Ok(()));
    assert_eq!(read(&mut ua, "a/b/c.txt", 0, 100), Ok((7, b"one+two".to_vec())));
    assert_eq!(write(&mut ua, "a/b/c.txt", None, false, b"new"), Ok(()));
    assert_eq!(std::fs::read(home.join("a/b/c.txt")).unwrap(), b"new");
    assert_eq!(std::fs::metadata(home.join("a/b/c.txt")).unwrap().mode() & 0o7777, 0o600);

    // Never where the user could not write.
    assert_eq!(
        write(&mut ua, &at("nope.txt"), None, false, b"x"),
        Err(ErrorCode::PermissionDenied)
    );
    assert!(!Path::new(&at("nope.txt")).exists());
    assert_eq!(write(&mut ua, &at("link/x"), None, true, b"x"), Err(ErrorCode::PermissionDenied));
    assert_eq!(write(&mut ua, &at("new/x"), None, true, b"x"), Err(ErrorCode::PermissionDenied));
    assert_eq!(write(&mut ua, &at("secret"), None, false, b"x"), Err(ErrorCode::PermissionDenied));
    assert_eq!(std::fs::read(at("secret")).unwrap(), b"answer");
    assert_eq!(write(&mut ua, "a", None, false, b"x"), Err(ErrorCode::IsADirectory));
    std::os::unix::fs::symlink(at("secret"), home.join("trap")).unwrap();
    assert_eq!(write(&mut ua, "trap", None, false, b"x"), Err(ErrorCode::SymbolicLink));
    assert_eq!(write(&mut ua, "m", Some(0o4777), false, b"x"), Err(ErrorCode::BadRequest));
    assert_eq!(write(&mut ua, "a/b\0c", None, false, b"x"), Err(ErrorCode::BadRequest));
}

/// Whether any process's argv or environment holds `needle`; and whether
/// any holds `seen` (to show the scan sees the setup's shell).
fn in_proc(needle: &str, seen: &str) -> (bool, bool) {
    let (mut found, mut saw) = (false, false);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        for what in ["cmdline", "environ"] {
            if let Ok(bytes) = std::fs::read(entry.path().join(what)) {
                found |= contains(&bytes, needle);
                saw |= contains(&bytes, seen);
            }
        }
    }
    (found, saw)
}

fn setup(ua: &mut Ua, script: &str) -> (i32, Vec<u8>) {
    let id = ua.id();
    match ua.request(Message::Setup { id, script: script.into() }) {
        Message::SetupDone { status, output, .. } => (status, output),
        other => panic!("{other:?}"),
    }
}

#[test]
fn setup_runs_as_root_and_its_text_stays_out_of_argv_and_environ() {
    let work = open_dir();
    let flags = open_dir();
    let (_agent, mut ua) = Agent::start(work.path());
    let (started, go) = (flags.path().join("started"), flags.path().join("go"));
    let script = format!(
        "touch {s}\nwhile [ ! -e {g} ]; do sleep 0.05; done\nsecret=zq-sekrit-7781\n\
         echo \"uid=$(id -u) ${{secret#zq-}}\"\necho to-stderr >&2\nread line; echo \"got[$line]\"\nexit 3\n",
        s = started.display(),
        g = go.display()
    );
    let id = ua.id();
    proto::write_message(&mut ua.control, &Message::Setup { id, script: script.into() }).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the setup script did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (found, saw_shell) = in_proc("zq-sekrit", "ua_setup=$(cat)");
    assert!(saw_shell, "the scan sees the setup's shell");
    assert!(!found, "the script's text is in some process's argv or environment");
    std::fs::write(&go, "").unwrap();
    let reply = proto::read_message(&mut ua.control).unwrap().unwrap();
    let Message::SetupDone { id: got, status, output } = reply else { panic!("{reply:?}") };
    let output = String::from_utf8(output).unwrap();
    assert_eq!((got, status), (id, 3));
    assert_eq!(
        output, "uid=0 sekrit-7781\nto-stderr\ngot[]\n",
        "the script reads no more of itself"
    );

    let (status, output) = setup(&mut ua, "head -c 3000000 /dev/zero | tr '\\0' x; echo END");
    assert_eq!(status, 0);
    assert!(
        output.len() <= MAX_DATA && output.len() > MAX_DATA - 10 && output.ends_with(b"xxEND\n")
    );
    assert_eq!(setup(&mut ua, "kill -9 $$").0, 128 + 9);
}

#[test]
fn protocol_errors_close_the_connection_and_the_agent_comes_back() {
    let work = open_dir();
    let (mut agent, mut ua) = Agent::start(work.path());
    let (pid, _, mut main) = ua.open("main", 24, 80);
    for bad in [
        vec![0x7f, 0, 0, 0, 0], // unknown type
        proto::header(proto::kind::LIST, proto::MAX_PAYLOAD + 1).to_vec(), // oversize
        Message::Output(b"x".to_vec()).encode(), // not a request
        Message::Open { id: 1, name: "main".into(), rows: 1, cols: 1 }.encode()[..9].to_vec(),
    ] {
        ua.control.write_all(&bad).unwrap();
        if bad.len() == 9 {
            ua.control.shutdown(std::net::Shutdown::Write).unwrap(); // ends inside a frame
        }
        assert!(matches!(proto::read_message(&mut ua.control), Ok(None)), "the agent closes");
        ua.accept_control_again();
    }
    // A bad frame on an attach connection detaches; the terminal runs on.
    main.write_raw(&[0x00, 0, 0, 0, 0]);
    loop {
        match proto::read_message(&mut main.conn) {
            Ok(Some(Message::Output(_))) => {} // the prompt, maybe
            Ok(None) | Err(_) => break,
            Ok(Some(other)) => panic!("{other:?}"),
        }
    }
    let (again, started, mut main) = ua.open("main", 24, 80);
    assert_eq!((again, started), (pid, false));
    main.send("echo fine-$((5*5))\n");
    main.expect("fine-25");
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent runs on");
}

#[test]
fn sigterm_hangs_up_every_terminal_and_the_agent_exits_zero() {
    let work = open_dir();
    let (mut agent, mut ua) = Agent::start(work.path());
    let (_, _, mut one) = ua.open("one", 24, 80);
    let (_, _, mut two) = ua.open("two", 24, 80);
    one.send("echo ready-$((1+1))\n");
    one.expect("ready-2");
    let status = agent.terminate();
    assert_eq!(one.expect_exit(), 128 + libc::SIGHUP);
    assert_eq!(two.expect_exit(), 128 + libc::SIGHUP);
    assert!(status.success(), "{status:?}");
}
