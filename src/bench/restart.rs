//! `ua bench --restart`: a restart with many records on disk. Starts its
//! own server (`--serve-binary`, by default this `ua`) on a temporary state
//! directory, listening at `--server`; makes one live instance with a
//! shell; stops the server (its container runs on); writes `--records`
//! records of containers that never existed beside the live one; starts the
//! server again and times, from that start: the first `/health` answer, the
//! live instance's terminal (attach, then an echo through its shell), and
//! the records settled (`/health` `records` is `"ok"`; a server without the
//! field settles before it answers at all).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::bench::args::BenchArgs;
use crate::bench::stats::ms;
use crate::bench::term::{spec_to_prompt, Bench, Term};
use crate::crypto::ids::random_id;

/// The longest any step may take before the run gives up.
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// The server the bench runs, and where it keeps its state.
struct Served {
    binary: PathBuf,
    listen: String,
    key_file: PathBuf,
    assignments: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

pub(crate) async fn measure(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    let Some(listen) = args.server.strip_prefix("http://") else {
        bail!("--restart starts its own server: give --server as http://HOST:PORT");
    };
    let dir = std::env::temp_dir().join(format!("ua-bench-restart-{}", bench.run_id));
    let binary = match &args.serve_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?,
    };
    let mut served = Served {
        binary,
        listen: listen.trim_end_matches('/').to_string(),
        key_file: args.key_file.clone(),
        assignments: args.assignments.clone(),
        dir,
        child: None,
    };
    let result = restart(bench, args, &mut served).await;
    // Cleaned through the server, then the server and its directory go.
    bench.clean_up().await;
    bench.specs.clear();
    served.stop().await;
    let _ = std::fs::remove_dir_all(&served.dir);
    result
}

async fn restart(bench: &mut Bench, args: &BenchArgs, served: &mut Served) -> anyhow::Result<()> {
    served.start()?;
    wait_settled(bench, Instant::now()).await?;
    let (instance, _) = spec_to_prompt(bench, "live", "restart").await?;
    served.stop().await;
    let records = served.dir.join("state/instances");
    write_vanished(&records, &instance, args.records)?;

    let started = Instant::now();
    served.start()?;
    let first = first_health(bench).await?;
    let health = started.elapsed();
    let mut term = Term::open(&bench.server, &instance).await?;
    let attached = started.elapsed();
    term.send("echo \"RE\"\"ADY\"\r").await?;
    term.wait_for("READY", STEP_LIMIT).await?;
    let terminal = started.elapsed();
    let settled = wait_settled(bench, started).await?;
    let answered = first["records"].as_str().unwrap_or("(no field)");
    println!(
        "| after a start with {} records | from the start |",
        args.records
    );
    println!("|---|---|");
    println!(
        "| first `/health` answer (`records`: {answered}) | {} |",
        ms(health)
    );
    println!("| live instance's websocket attached | {} |", ms(attached));
    println!("| live instance's shell echoes | {} |", ms(terminal));
    println!("| records settled (`records`: ok) | {} |", ms(settled));
    Ok(())
}

/// Polls `/health` until the server answers (connections wait in its
/// backlog while it is busy); the answer.
async fn first_health(bench: &Bench) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        match bench.server.health().await {
            Ok(answer) => return Ok(answer),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e.context("the server did not answer /health in time")),
        }
    }
}

/// Polls `/health` until the records are settled; the time since `started`.
async fn wait_settled(bench: &Bench, started: Instant) -> anyhow::Result<Duration> {
    loop {
        let answer = first_health(bench).await?;
        if answer["records"].as_str().is_none_or(|r| r == "ok") {
            return Ok(started.elapsed());
        }
        if started.elapsed() > STEP_LIMIT {
            bail!("the records did not settle in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `n` copies of the live instance's record, each of a container
/// that never existed.
fn write_vanished(records: &Path, live: &str, n: usize) -> anyhow::Result<()> {
    let path = records.join(format!("{live}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("{path:?}"))?;
    let mut record: serde_json::Value = serde_json::from_str(&text)?;
    for i in 0..n {
        let id = random_id();
        record["instanceID"] = id.clone().into();
        record["specID"] = format!("bench/vanished/{i}").into();
        record["image"] = format!("ua/{id}").into();
        record["containerId"] = format!("{id}{id}").into();
        std::fs::write(records.join(format!("{id}.json")), record.to_string())?;
    }
    Ok(())
}

impl Served {
    fn start(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", &self.listen, "--browser-terminal", "false"])
            .args(["--log-level", "warn"])
            .arg("--key-file")
            .arg(&self.key_file)
            .arg("--assignments")
            .arg(&self.assignments)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, and the exit waited for: running containers are left running.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
