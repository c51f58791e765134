//! ua's side of the agent (agent/PROTOCOL.md): the agent is the main
//! process of every new container and holds its terminals; ua listens on a
//! unix socket in a per-instance directory that only ua can write
//! (bind-mounted read-only at `/.ua/run`), so terminal bytes never pass
//! through dockerd.
//!
//! Everything the agent sends is untrusted (a student who is root in their
//! container can connect too): frames are bounded by the protocol's
//! `MAX_PAYLOAD`, anything that does not parse ends that connection, and a
//! connection can only ever reach its own instance's terminals.

mod attach;
mod error;
mod frames;
mod hub;
mod link;

pub use attach::{split, AgentTty};
pub use error::AgentError;
pub use hub::Hub;

/// Where the agent lies on the host when the package installed it.
pub const AGENT_ON_HOST: &str = "/usr/lib/ua/ua-agent";
/// Where it appears in every container.
pub const AGENT: &str = "/.ua/agent";
/// Where the instance's socket directory appears in its container.
pub const RUN_DIR: &str = "/.ua/run";

/// The entrypoint of a container whose main process is the agent: it runs
/// `command` (the image's, or a shell) as `user` in `workdir`.
pub fn entrypoint(user: &str, workdir: &str, command: &[String]) -> Vec<String> {
    let user = if user.is_empty() { "0:0" } else { user };
    let workdir = if workdir.is_empty() { "/" } else { workdir };
    let mut entrypoint: Vec<String> = [AGENT, "--user", user, "--workdir", workdir, "--"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    entrypoint.extend(crate::engine::gate::command_or_shell(command.to_vec()));
    entrypoint
}

/// The bind mounts of an agent container: the agent and its socket directory.
pub fn mounts(agent_on_host: &std::path::Path, run_dir: &std::path::Path) -> Vec<String> {
    vec![
        format!("{}:{AGENT}:ro", agent_on_host.display()),
        format!("{}:{RUN_DIR}:ro", run_dir.display()),
    ]
}

/// Whether `path` is a static agent ua can put into containers, with what
/// to do if not.
pub fn check_host(path: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        _ => Err(format!(
            "{} is missing: ua runs every terminal through its agent \
             (install the package, or build it with scripts/build-agent and pass --agent)",
            path.display()
        )),
    }
}
