//! The client side of the admin socket: `ua status`, `ua clean` (`ua list`
//! and `ua top` are in `listing` and `top`; the server side is `admin`).
//! Output goes through `stdout::print`, so that `ua list | head` ends quietly.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::protocol::admin::{Request, Summary, SOCKET};
use crate::support::stdout::print;

/// Where `ua status`, `ua list` and `ua clean` find the server.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The server's state directory (its admin socket is admin.sock there).
    #[arg(long, env = "UA_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// The packaged server's state directory.
const DEFAULT_STATE_DIR: &str = "/var/lib/ua";
/// Where `scripts/demo` keeps its state, from the repository's top.
const DEMO_STATE_DIR: &str = "demo/state";

/// What to try when the admin socket cannot be reached.
fn hint(state_dir: &Path, kind: std::io::ErrorKind) -> String {
    use std::io::ErrorKind::*;
    match kind {
        PermissionDenied => "run it as root or as a member of the group ua".into(),
        NotFound | ConnectionRefused if state_dir == Path::new(DEFAULT_STATE_DIR) => {
            // A demo server (scripts/demo) keeps its state elsewhere.
            if Path::new(DEMO_STATE_DIR).join(SOCKET).exists() {
                format!(
                    "a server started by scripts/demo is here: pass --state-dir {DEMO_STATE_DIR}"
                )
            } else {
                "is the server running? (`systemctl start ua`; under ua.socket it starts on \
                 the first request) For a server started otherwise, pass its --state-dir \
                 (or set UA_STATE_DIR); scripts/demo uses demo/state"
                    .into()
            }
        }
        NotFound | ConnectionRefused => {
            "is the server running, with this --state-dir? (`ua serve --state-dir` of that server)"
                .into()
        }
        _ => "is the server running, with this --state-dir?".into(),
    }
}

/// Sends `request` to the server of `state_dir` and returns its answer.
pub fn ask(state_dir: &Path, request: &Request) -> anyhow::Result<Value> {
    let path = state_dir.join(SOCKET);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        let hint = hint(state_dir, e.kind());
        anyhow::anyhow!(
            "cannot reach the admin socket {}: {e}; {hint}",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer: Value = serde_json::from_str(&answer)
        .map_err(|_| anyhow::anyhow!("the server's answer on {} is not JSON", path.display()))?;
    if let Some(error) = answer["error"].as_str() {
        anyhow::bail!("{error}");
    }
    Ok(answer)
}

/// Unix seconds as an RFC 3339 time.
pub(crate) fn time(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `ua status`: headline counts, Docker and limits.
pub fn status(target: &Target, as_json: bool) -> anyhow::Result<()> {
    let s = ask(&target.state_dir, &Request::Status)?;
    if as_json {
        print(&format!("{s:#}\n"))?;
        return Ok(());
    }
    print(&status_text(&s))?;
    Ok(())
}

fn status_text(s: &Value) -> String {
    let i = &s["instances"];
    let l = &s["limits"];
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let mut out = String::new();
    match s["node"].as_str() {
        Some(node) => writeln!(
            out,
            "ua {} (pid {}), node {node}",
            text(&s["version"]),
            s["pid"]
        ),
        None => writeln!(out, "ua {} (pid {})", text(&s["version"]), s["pid"]),
    }
    .ok();
    writeln!(
        out,
        "instances: {} running, {} stopped, {} building ({} queued); {} sessions",
        i["running"], i["stopped"], i["building"], i["queued"], s["sessions"]
    )
    .ok();
    if let Some(pool) = s["pool"].as_object().filter(|p| !p.is_empty()) {
        let each: Vec<String> = pool.iter().map(|(a, n)| format!("{a} {n}")).collect();
        writeln!(out, "warm pool (--warm {}): {}", l["warm"], each.join(", ")).ok();
    }
    writeln!(out, "docker: {}", text(&s["docker"])).ok();
    writeln!(out, "state directory: {}", text(&s["stateDir"])).ok();
    if s["records"] == "reconciling" {
        writeln!(out, "records: reconciling with Docker (new instances wait)").ok();
    }
    writeln!(
        out,
        "limits: {} instances stored, {} running, {} builds at once, {} queued builds; per container {} MiB, {} processes, {} CPUs, disk {}",
        l["maxInstances"],
        l["maxRunning"],
        l["maxBuilds"],
        l["maxBuildQueue"],
        l["memoryMB"],
        l["pidsLimit"],
        l["cpus"],
        match l["diskMB"].as_i64() {
            Some(0) | None => "unlimited".to_string(),
            Some(mb) => format!("{mb} MiB"),
        }
    )
    .ok();
    writeln!(
        out,
        "times: expiry {}, idle timeout {}, reattach grace {}",
        text(&l["instanceExpiry"]),
        text(&l["idleTimeout"]),
        text(&l["reattachGrace"])
    )
    .ok();
    out
}

fn table(instances: &[Summary]) -> String {
    let mut out = format!(
        "{:<8}  {:<7}  {:<20}  {:<20}  {:<24}  SPEC ID\n",
        "HANDLE", "STATE", "LAST USED", "EXPIRES", "ASSIGNMENT"
    );
    for i in instances {
        writeln!(
            out,
            "{:<8}  {:<7}  {:<20}  {:<20}  {:<24}  {}",
            i.handle,
            i.state,
            time(i.last_used),
            i.expires.map_or_else(|| "-".to_string(), time),
            i.assignment,
            i.spec_id
        )
        .ok();
    }
    out
}

/// `ua clean`: removes one instance, as `POST /spec/clean` does.
pub fn clean(
    target: &Target,
    spec_id: Option<String>,
    instance: Option<String>,
) -> anyhow::Result<()> {
    let answer = ask(&target.state_dir, &Request::Clean { spec_id, instance })?;
    match answer["cleaned"].as_u64() {
        Some(0) => print("no instance to clean\n")?,
        Some(n) => print(&format!("cleaned {n} instance\n"))?,
        None => anyhow::bail!("unexpected answer: {answer}"),
    }
    Ok(())
}

/// `ua clean`'s selection of several instances: all that match go.
#[derive(clap::Args, Debug)]
pub struct Bulk {
    /// Every instance of this assignment (`cs101.tar` or `cs101/tar`).
    #[arg(long)]
    pub assignment: Option<String>,
    /// Every stopped instance unused for at least this long (`2h`, `3d`);
    /// with --assignment, those of the assignment.
    #[arg(long, value_parser = crate::support::time::parse_duration)]
    pub idle_for: Option<Duration>,
    /// List what would go, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before removing more than one instance.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl Bulk {
    /// Whether it selects instances (else `--spec-id` or `--instance` does).
    pub fn selects(&self) -> bool {
        self.assignment.is_some() || self.idle_for.is_some()
    }

    /// Whether `instance` is selected at `now` (unix seconds).
    fn matches(&self, instance: &Summary, now: i64) -> bool {
        let dotted = |name: &str| name.replace('/', ".");
        let of_assignment = self
            .assignment
            .as_ref()
            .is_none_or(|a| dotted(a) == dotted(&instance.assignment));
        // A running instance is in use, however long ago it was made.
        let idle = self.idle_for.is_none_or(|idle| {
            instance.state != "running" && now - instance.last_used >= idle.as_secs() as i64
        });
        of_assignment && idle
    }
}

/// `ua clean --assignment A` / `--idle-for D`: lists the instances that
/// match, asks `y/N` on standard input for more than one (unless `--yes`),
/// then cleans each by its spec ID.
pub fn clean_bulk(target: &Target, bulk: &Bulk) -> anyhow::Result<()> {
    let answer = ask(&target.state_dir, &Request::List { usage: false })?;
    let instances: Vec<Summary> = serde_json::from_value(answer["instances"].clone())?;
    let now = crate::support::time::unix_now();
    let chosen: Vec<Summary> = instances
        .into_iter()
        .filter(|i| bulk.matches(i, now))
        .collect();
    if chosen.is_empty() {
        print("no instance matches\n")?;
        return Ok(());
    }
    let verb = if bulk.dry_run {
        "would clean"
    } else {
        "to clean"
    };
    print(&format!(
        "{verb} {} instance(s):\n{}",
        chosen.len(),
        table(&chosen)
    ))?;
    if bulk.dry_run {
        return Ok(());
    }
    if chosen.len() > 1 && !bulk.yes && !confirm(chosen.len())? {
        print("nothing cleaned\n")?;
        return Ok(());
    }
    let mut cleaned = 0;
    for instance in &chosen {
        let request = Request::Clean {
            spec_id: Some(instance.spec_id.clone()),
            instance: None,
        };
        cleaned += ask(&target.state_dir, &request)?["cleaned"]
            .as_u64()
            .unwrap_or(0);
    }
    print(&format!("cleaned {cleaned} instance(s)\n"))?;
    Ok(())
}

/// Asks on standard error, reads a line of standard input: only `y` or
/// `yes` says yes (end of input says no).
fn confirm(n: usize) -> anyhow::Result<bool> {
    eprint!("clean these {n} instances? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(assignment: &str, state: &str, last_used: i64) -> Summary {
        Summary {
            handle: "0a1b2c3d".into(),
            spec_id: "s".into(),
            assignment: assignment.into(),
            state: state.into(),
            last_used,
            expires: None,
            usage: Default::default(),
        }
    }

    #[test]
    fn bulk_selection_by_assignment_and_idleness() {
        let bulk = Bulk {
            assignment: Some("cs101.tar".into()),
            idle_for: Some(Duration::from_secs(7200)),
            dry_run: false,
            yes: false,
        };
        let now = 100_000;
        assert!(bulk.matches(&summary("cs101/tar", "stopped", now - 7200), now));
        assert!(!bulk.matches(&summary("cs101/tar", "stopped", now - 60), now));
        assert!(!bulk.matches(&summary("cs101/tar", "running", 0), now));
        assert!(!bulk.matches(&summary("cs101/git", "stopped", 0), now));
        let all_of = Bulk {
            idle_for: None,
            ..bulk
        };
        assert!(all_of.matches(&summary("cs101.tar", "running", now), now));
    }
}
