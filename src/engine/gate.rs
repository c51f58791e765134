//! The student's terminal is the container's main process, on its TTY, so
//! that a restart of ua leaves it running and a new attach lands in it
//! (Docker cannot re-attach to an exec). The container itself runs as root
//! (a setup exec as root only has the container's capabilities then) and
//! its main process is a small gate:
//!
//! - a container created *open* (nothing to do before the terminal) runs
//!   the terminal at once;
//! - a container created *closed* (a setup script to run first, or a warm
//!   container waiting for its student) waits until ua releases it with
//!   `SIGWINCH` (or writes [`READY`] before starting it), and from then on
//!   every start goes straight through.
//!
//! The terminal runs as the image's USER through `gosu` (a static binary,
//! bind-mounted read-only from the host), so it works on any image that
//! has `/bin/sh` and `sleep`.

use serde::{Deserialize, Serialize};

/// Where `gosu` lies on the Docker host (Debian's `gosu` package).
pub const GOSU_ON_HOST: &str = "/usr/sbin/gosu";
/// Where it appears in every container.
pub const GOSU: &str = "/.ua/gosu";
/// Once this file exists, the gate is open for good.
pub const READY: &str = ".ua/ready";
/// The signal that wakes a closed gate. Programs ignore it by default and
/// terminals take it as "the size may have changed", so sending it to a
/// container whose terminal already runs does no harm.
pub const WAKE_SIGNAL: &str = "SIGWINCH";

/// The gate, run by `/bin/sh -c` with `$0` the mode and `"$@"` the user and
/// the command. Woken, it leaves [`READY`] behind for later starts. A signal
/// sent before the trap is set is lost: ua writes [`READY`] itself before it
/// starts a closed container, and the gate looks for it every two seconds.
const SCRIPT: &str = r#"if [ "$0" != open ] && [ ! -e /.ua/ready ]; then
  trap 'ua_go=1; kill $ua_poll 2>/dev/null' WINCH
  while [ -z "$ua_go" ] && [ ! -e /.ua/ready ]; do
    sleep 2 & ua_poll=$!; wait $ua_poll
  done
  trap - WINCH
  : > /.ua/ready
fi
exec /.ua/gosu "$@""#;

/// How an instance's container starts its terminal (kept in its record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Gate {
    /// Made by a version of ua before the gate: the main process idles and
    /// the terminal is an exec (lost on restart).
    #[default]
    Legacy,
    /// The terminal runs as soon as the container starts.
    Open,
    /// The terminal waits for ua's release (setup, or a warm container).
    Closed,
    /// No gate: the main process is ua's agent (`engine::agent`), which
    /// holds the terminals; the record's `agentKey` names its socket
    /// directory.
    Agent,
}

/// The container's entrypoint for `gate` (`Open` or `Closed`): the terminal
/// `command` run as `user` (the image's USER; empty is root).
pub fn entrypoint(gate: Gate, user: &str, command: &[String]) -> Vec<String> {
    let mode = if gate == Gate::Closed {
        "closed"
    } else {
        "open"
    };
    let user = if user.is_empty() { "0:0" } else { user };
    let mut entrypoint: Vec<String> = ["/bin/sh", "-c", SCRIPT, mode, user]
        .iter()
        .map(|s| s.to_string())
        .collect();
    entrypoint.extend(command_or_shell(command.to_vec()));
    entrypoint
}

/// The terminal's command: the image's, or a shell when it has none.
pub fn command_or_shell(command: Vec<String>) -> Vec<String> {
    if command.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        command
    }
}

/// An archive that opens the gate for good once unpacked at `/`.
pub fn ready_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(0);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    builder
        .append_data(&mut header, READY, std::io::empty())
        .expect("an archive in memory is written");
    builder
        .into_inner()
        .expect("an archive in memory is written")
}

/// The bind mount that puts `gosu` in a container.
pub fn gosu_mount() -> String {
    format!("{GOSU_ON_HOST}:{GOSU}:ro")
}

/// Whether the host has `gosu`, with what to do if not.
pub fn check_host() -> Result<(), String> {
    if std::path::Path::new(GOSU_ON_HOST).is_file() {
        Ok(())
    } else {
        Err(format!(
            "{GOSU_ON_HOST} is missing: ua runs each terminal as the image's user \
             through gosu (apt-get install gosu)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entrypoint_runs_the_command_as_the_user() {
        let command = vec!["/bin/bash".to_string(), "-l".to_string()];
        let e = entrypoint(Gate::Closed, "student", &command);
        assert_eq!(&e[..2], ["/bin/sh", "-c"]);
        assert_eq!(&e[3..], ["closed", "student", "/bin/bash", "-l"]);
        let e = entrypoint(Gate::Open, "", &[]);
        assert_eq!(&e[3..], ["open", "0:0", "/bin/sh"]);
        assert!(e[2].contains(GOSU) && e[2].contains(READY));
    }
}
