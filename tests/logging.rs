//! Logs (issue 13, item 5): instances are named by their handle, never by
//! their ID (the terminal's bearer credential); under systemd records go
//! through journald's native protocol with UA_INSTANCE and UA_SPEC fields;
//! fatal start-up errors go out at priority 3.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The handle of the one instance of `spec_id`, from `ua list --json`.
fn handle_of(server: &TestServer, spec_id: &str) -> String {
    let out = Command::new(BINARY)
        .args(["list", "--json", "--state-dir"])
        .arg(server.state_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let entry = list
        .iter()
        .find(|e| e["specID"] == spec_id)
        .unwrap_or_else(|| panic!("{spec_id} not in {listed}"));
    entry["handle"].as_str().unwrap().to_string()
}

/// Asserts that `text` holds none of `ids`, nor their containers' names.
fn assert_no_ids(text: &str, ids: &[&str], what: &str) {
    for id in ids {
        assert!(
            !text.contains(id),
            "{what} holds the instance ID {id}:\n{text}"
        );
        let hex = id.rsplit('-').next().unwrap();
        assert!(
            !text.contains(hex),
            "{what} holds the ID's random part:\n{text}"
        );
    }
}

/// The whole life of two instances (create, attach, run, detach, observe,
/// files, reattach, restart and reconcile, clean from outside and by API)
/// logs each by its handle, which `ua list` shows, and never by its ID.
#[test]
fn logs_and_listings_name_instances_by_handle_never_by_id() {
    let mut server = TestServer::start_with(&["--node-id", "n3"]);
    let kept = server.instance(&server.demo_spec("log-kept"));
    let dropped = server.instance(&server.demo_spec("log-dropped"));
    let ids = [kept.as_str(), dropped.as_str()];
    let kept_handle = handle_of(&server, "log-kept");
    let dropped_handle = handle_of(&server, "log-dropped");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&kept)).await;
        term.run("echo one").await;
        let observer = Term::connect(&format!("{}?mode=observe", server.ws_url(&kept))).await;
        observer.close().await;
        term.close().await;
        let mut term = Term::connect(&server.ws_url(&kept)).await;
        term.run("echo two > /tmp/graded").await;
        term.close().await;
        let mut term = Term::connect(&server.ws_url(&dropped)).await;
        term.run("echo three").await;
        term.close().await;
    });
    let files = server.http(
        "GET",
        &format!("/instance/{kept}/files?path=/tmp/graded"),
        "",
    );
    assert_eq!(files.status, 200, "{}", files.body);

    // A restart: shutdown stops the containers, reconcile finds the records.
    assert!(server.terminate().success());
    docker(&["rm", "-f", &format!("ua-{dropped}")]);
    server.spawn();
    eventually(
        Duration::from_secs(30),
        "the restarted server reconciled",
        || server.log().contains("reconciled"),
    );
    let again = server.instance(&server.demo_spec("log-kept"));
    assert_eq!(again, kept);
    rt.block_on(async {
        let mut term = Term::connect(&server.ws_url(&kept)).await;
        term.run("echo four").await;
        term.close().await;
    });
    let cleaned = server.http(
        "POST",
        "/spec/clean?async=false",
        &server.demo_spec("log-kept"),
    );
    assert_eq!(cleaned.body, r#"{"cleaned":1}"#);
    assert!(server.terminate().success());

    let log = server.log();
    assert_no_ids(&log, &ids, "the log");
    for (handle, what) in [
        (&kept_handle, "created"),
        (&kept_handle, "terminal started"),
        (&kept_handle, "attached"),
        (&kept_handle, "observer attached"),
        (&kept_handle, "closed"),
        (&kept_handle, "cleaned"),
        (&dropped_handle, "created"),
        (&dropped_handle, "its container is gone"),
    ] {
        assert!(
            log.lines()
                .any(|line| line.contains(&format!("instance {handle}")) && line.contains(what)),
            "no line says instance {handle} ... {what}:\n{log}"
        );
    }
    assert!(
        log.contains(&format!("instance {kept_handle}: build took")),
        "the debug phase lines name the handle:\n{log}"
    );
}

/// An instance that fails to be made names no ID in the answer or the log
/// (the ID of an instance never made is nobody's; `handle::hide` keeps it
/// out of Docker's words, unit-tested in src/handle.rs).
#[test]
fn a_failed_create_answers_and_logs_no_instance_id() {
    let server = TestServer::start();
    // A template whose build fails.
    let dir = server.assignments().join("broken").join("fails");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN echo failing-step && false\n",
    );
    let sealed =
        server.seal(r#"{"specID":"log-broken","assignmentName":"broken.fails","data":{}}"#);
    let response = server.http("POST", "/spec", &sealed);
    assert_eq!(response.status, 422, "{}", response.body);
    // The log line may land just after the answer.
    eventually(
        Duration::from_secs(10),
        "the build failure is logged",
        || server.log().contains("build failed"),
    );
    let log = server.log();
    // The instance ID never left the server: no 32-hex run may appear.
    for text in [&log, &response.body] {
        let hexes = text
            .split(|c: char| !c.is_ascii_hexdigit())
            .filter(|word| word.len() == 32)
            .collect::<Vec<_>>();
        assert!(hexes.is_empty(), "{hexes:?} in:\n{text}");
    }
}

/// Runs `ua serve` with `JOURNAL_STREAM` set (as systemd does, here not
/// naming its stderr) and returns its exit status and stderr.
fn serve_under_journal_stream(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(BINARY)
        .arg("serve")
        .args(args)
        .env("JOURNAL_STREAM", "8:1234")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status, String::from_utf8(out.stderr).unwrap())
}

/// Every line of `stderr` starts with `<3>` and one names `needle`.
fn assert_priority_3(stderr: &str, needle: &str) {
    assert!(!stderr.trim().is_empty(), "nothing on stderr");
    for line in stderr.lines() {
        assert!(
            line.starts_with("<3>"),
            "not at priority 3: {line:?}\n{stderr}"
        );
    }
    assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
}

/// A bad key file, a locked state directory and bad flags stop ua at
/// priority 3 (`journalctl -p warning` shows them); in a terminal they are
/// plain `ua: …` lines.
#[test]
fn fatal_start_up_errors_go_out_at_priority_3() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad-key");
    write(&bad_key, "not a key\n");
    let state = dir.path().join("state");
    let key_args = |key: &Path| {
        vec![
            "--key-file".to_string(),
            key.display().to_string(),
            "--state-dir".to_string(),
            state.display().to_string(),
            "--listen".to_string(),
            "127.0.0.1:0".to_string(),
        ]
    };
    let args = key_args(&bad_key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stderr) = serve_under_journal_stream(&args);
    assert!(!status.success());
    assert_priority_3(&stderr, "bad-key");

    // Without JOURNAL_STREAM: the same error as a plain line.
    let out = Command::new(BINARY)
        .arg("serve")
        .args(&args)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let plain = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        plain.starts_with("ua: ") && plain.contains("bad-key"),
        "{plain}"
    );

    // A state directory another server holds.
    let server = TestServer::start();
    let args = [
        "--key-file".to_string(),
        server.key_file().display().to_string(),
        "--state-dir".to_string(),
        server.state_dir().display().to_string(),
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stderr) = serve_under_journal_stream(&args);
    assert!(!status.success());
    assert_priority_3(&stderr, &server.state_dir().display().to_string());

    // Bad flags: every line of clap's message, usage included.
    let (status, stderr) = serve_under_journal_stream(&["--no-such-flag"]);
    assert_eq!(status.code(), Some(2));
    assert_priority_3(&stderr, "--no-such-flag");
    assert!(stderr.lines().count() > 1, "{stderr}");
}

/// One journal entry of the native protocol: its fields.
type Entry = HashMap<String, String>;

/// Parses a datagram of journald's native protocol: `KEY=value\n`, or
/// `KEY\n`, a little-endian u64 length, the value and `\n`.
fn parse_entry(mut data: &[u8]) -> Entry {
    let mut entry = Entry::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n').expect("a field ends");
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8(line[..eq].to_vec()).unwrap();
            entry.insert(key, String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            data = &data[end + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            entry.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            assert_eq!(rest[8 + len], b'\n');
            data = &rest[8 + len + 1..];
        }
    }
    entry
}

/// A stand-in for journald: a datagram socket that `ua serve` finds at
/// `/run/systemd/journal/socket` inside a mount namespace of its own, and
/// whose stderr is the file `JOURNAL_STREAM` names, as under systemd.
struct FakeJournal {
    dir: tempfile::TempDir,
    socket: UnixDatagram,
}

impl FakeJournal {
    fn new() -> FakeJournal {
        let dir = tempfile::tempdir().unwrap();
        let socket = UnixDatagram::bind(dir.path().join("socket")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        FakeJournal { dir, socket }
    }

    /// `ua ARGS` under `unshare --mount`, the journal's directory bound
    /// over `/run/systemd/journal`, stderr to a file `JOURNAL_STREAM` names.
    fn command(&self, args: &[String]) -> Command {
        let stderr = std::fs::File::create(self.dir.path().join("stderr")).unwrap();
        let meta = stderr.metadata().unwrap();
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
            .arg(
                "mkdir -p /run/systemd\n\
                 mount -t tmpfs ua-test /run/systemd\n\
                 mkdir /run/systemd/journal\n\
                 mount --bind \"$UA_FAKE_JOURNAL\" /run/systemd/journal\n\
                 exec \"$@\"",
            )
            .arg("sh")
            .arg(BINARY)
            .args(args)
            .env("UA_FAKE_JOURNAL", self.dir.path())
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        command
    }

    /// The entries received so far.
    fn take(&self, entries: &mut Vec<Entry>) {
        let mut buffer = vec![0u8; 1 << 20];
        while let Ok(n) = self.socket.recv(&mut buffer) {
            if n > 0 {
                entries.push(parse_entry(&buffer[..n]));
            }
        }
    }

    /// What the process wrote to stderr (nothing, when all went to the journal).
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap()
    }
}

fn message_has(entry: &Entry, text: &str) -> bool {
    entry.get("MESSAGE").is_some_and(|m| m.contains(text))
}

/// Under systemd, records go through journald's native protocol: an
/// instance's lines carry UA_INSTANCE=<handle> and UA_SPEC=<spec ID>, no
/// field holds the ID, priorities are journald's, and a fatal start-up
/// error arrives at priority 3.
#[test]
fn under_systemd_records_go_to_journald_with_instance_and_spec_fields() {
    docker_ready();
    let journal = FakeJournal::new();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    write_key_file(&key);
    let assignments = dir.path().join("assignments");
    copy_dir(&repo().join("templates/demo"), &assignments.join("demo"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |p: &Path| p.display().to_string();
    let args = vec![
        "serve".to_string(),
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--key-file".to_string(),
        path(&key),
        "--assignments".to_string(),
        path(&assignments),
        "--state-dir".to_string(),
        path(&dir.path().join("state")),
    ];
    let mut child = journal
        .command(&args)
        .spawn()
        .expect("unshare runs (these tests run as root)");
    let mut entries = Vec::new();
    eventually(Duration::from_secs(30), "ua says it listens", || {
        journal.take(&mut entries);
        assert!(
            child.try_wait().unwrap().is_none(),
            "ua serve ended; stderr:\n{}",
            journal.stderr()
        );
        entries
            .iter()
            .any(|e| message_has(e, "listening on http://"))
    });
    let listening = entries
        .iter()
        .find(|e| message_has(e, "listening on http://"))
        .unwrap();
    assert_eq!(listening["PRIORITY"], "5", "{listening:?}");
    assert_eq!(listening["SYSLOG_IDENTIFIER"], "ua", "{listening:?}");

    let seal = |plaintext: &str| {
        let out = ua_with_input("seal", &key, plaintext);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let sealed =
        seal(r#"{"specID":"journal-1","assignmentName":"demo.busybox","data":{"greeting":"hi"}}"#);
    let response = http(port, "POST", "/spec", &[], sealed.as_bytes());
    assert_eq!(response.status, 200, "{}", response.body);
    let id = response.json()["instanceID"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut term = Term::connect(&format!("ws://127.0.0.1:{port}/instance/{id}/ws")).await;
        term.run("echo journal").await;
        term.close().await;
    });
    let cleaned = http(
        port,
        "POST",
        "/spec/clean?async=false",
        &[],
        sealed.as_bytes(),
    );
    assert_eq!(cleaned.body, r#"{"cleaned":1}"#);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    journal.take(&mut entries);
    assert_eq!(journal.stderr(), "", "stderr stays empty under the journal");

    let of_instance: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.contains_key("UA_INSTANCE"))
        .collect();
    let handle = of_instance
        .first()
        .unwrap_or_else(|| panic!("no entry has UA_INSTANCE: {entries:?}"))["UA_INSTANCE"]
        .clone();
    assert!(
        handle.len() == 8 && handle.bytes().all(|b| b.is_ascii_hexdigit()),
        "{handle}"
    );
    for what in [
        "created",
        "terminal started",
        "attached",
        "closed",
        "cleaned",
    ] {
        let entry = of_instance
            .iter()
            .find(|e| message_has(e, what))
            .unwrap_or_else(|| panic!("no UA_INSTANCE entry says {what}: {entries:?}"));
        assert_eq!(entry["UA_INSTANCE"], handle, "{entry:?}");
        assert_eq!(entry["UA_SPEC"], "journal-1", "{entry:?}");
        assert!(
            message_has(entry, &format!("instance {handle}")),
            "{entry:?}"
        );
    }
    for entry in &entries {
        for (key, value) in entry {
            assert!(!value.contains(&id), "{key}={value} holds the instance ID");
        }
    }

    // A fatal start-up error arrives in the journal at priority 3.
    let bad_key = dir.path().join("bad-key");
    write(&bad_key, "not a key\n");
    let mut args = args;
    args[4] = path(&bad_key);
    let status = journal.command(&args).status().unwrap();
    assert!(!status.success());
    let before = entries.len();
    journal.take(&mut entries);
    let fatal = entries[before..]
        .iter()
        .find(|e| message_has(e, "bad-key"))
        .unwrap_or_else(|| panic!("no entry names the bad key file: {:?}", &entries[before..]));
    assert_eq!(fatal["PRIORITY"], "3", "{fatal:?}");
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
