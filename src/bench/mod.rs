//! `ua bench`: measures a running server as a client would, and the same
//! container through the Docker API directly (the floor), in one run.

mod startup;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::client::api::{Server, Socket};
use crate::crypto::seal::Keyring;
use crate::engine::docker::Docker;
use crate::protocol::terminado::{ClientMessage, ServerMessage};

/// Flags of `ua bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Base URL of the ua server to measure (on this machine: the direct
    /// path talks to its containers through the local Docker daemon).
    #[arg(long, env = "UA_SERVER", default_value = "http://127.0.0.1:8000")]
    server: String,
    /// The server's key file.
    #[arg(long, env = "UA_KEY_FILE", default_value = "/etc/ua/key")]
    key_file: PathBuf,
    /// Assignment to use; it must take `{"variant": ...}` (see templates/demo/bench).
    #[arg(long, default_value = "demo.bench")]
    pub(crate) assignment: String,
    /// Bytes of output for the throughput test.
    #[arg(long, default_value_t = 50_000_000)]
    bytes: u64,
    /// Throughput rounds (ua and direct alternate), or with --startup the
    /// start-up rounds; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
    /// Keystrokes timed for the echo test.
    #[arg(long, default_value_t = 300)]
    echoes: usize,
    /// Concurrent session counts to try, e.g. `50,100,200`.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    sessions: Vec<usize>,
    /// How long the concurrent sessions type, one key per second each.
    #[arg(long, default_value = "20s", value_parser = crate::support::time::parse_duration)]
    typing: Duration,
    /// During the concurrent rounds, one more session floods output to a
    /// client that never reads.
    #[arg(long)]
    flood: bool,
    /// The server's process ID, to read its memory use (RSS) from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Measure instance start-up instead: spec → first prompt for a
    /// shared-image and a `Dockerfile.tmpl` assignment beside the docker CLI
    /// doing the same by hand (`--rounds` rounds, medians), then a class start.
    #[arg(long)]
    pub(crate) startup: bool,
    /// With --startup: the shared-image assignment (same data as --assignment).
    #[arg(long, default_value = "demo.bench_shared")]
    pub(crate) shared_assignment: String,
    /// With --startup: the server's assignments directory, where the docker
    /// CLI side reads the same assignments (it must be on this machine).
    #[arg(long, env = "UA_ASSIGNMENTS", default_value = "/etc/ua/assignments")]
    pub(crate) assignments: PathBuf,
    /// With --startup: students in the class start (new specs of the
    /// shared-image assignment); 0 skips it.
    #[arg(long, default_value_t = 100)]
    pub(crate) class_size: usize,
    /// With --startup: concurrent clients posting the class's specs.
    #[arg(long, default_value_t = 8)]
    pub(crate) class_clients: usize,
    /// With --startup: before the class start, wait until the server's warm
    /// pool (`/health` `pool`) holds this many containers (a server started
    /// with `--warm N`); 0 waits for none.
    #[arg(long, default_value_t = 0)]
    pub(crate) class_warm: usize,
}

/// Runs `ua bench`: measures, prints a Markdown table, cleans up.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

pub(crate) struct Bench {
    pub(crate) server: Server,
    keys: Keyring,
    assignment: String,
    pub(crate) run_id: String,
    docker: Docker,
    specs: Vec<String>,
}

impl Bench {
    fn spec(&mut self, name: &str, variant: &str) -> String {
        let assignment = self.assignment.clone();
        self.spec_of(&assignment, name, variant)
    }

    /// A sealed spec of `assignment` with `{"variant": ...}`, cleaned up at the end.
    pub(crate) fn spec_of(&mut self, assignment: &str, name: &str, variant: &str) -> String {
        let spec = serde_json::json!({
            "specID": format!("bench/{}/{name}", self.run_id),
            "assignmentName": assignment,
            "data": { "variant": variant },
        });
        let sealed = self.keys.seal(spec.to_string().as_bytes());
        self.specs.push(sealed.clone());
        sealed
    }

    /// Cleans every spec made, a few at a time (a class start makes many).
    async fn clean_up(&self) {
        futures_util::stream::iter(&self.specs)
            .for_each_concurrent(8, |sealed| async move {
                let _ = self.server.clean(sealed).await;
            })
            .await;
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut bench = Bench {
        server: Server::parse(&args.server)?,
        keys: Keyring::load(&args.key_file)?,
        assignment: args.assignment.clone(),
        run_id: crate::instance::store::new_instance_id()[..8].to_string(),
        docker: Docker::new(std::path::Path::new("/")),
        specs: Vec::new(),
    };
    let result = if args.startup {
        crate::bench::startup::measure(&mut bench, &args).await
    } else {
        measure(&mut bench, &args).await
    };
    eprintln!("cleaning up {} bench instances", bench.specs.len());
    bench.clean_up().await;
    result
}

async fn measure(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    println!("| measurement | ua | direct (Docker API) | ratio / note |");
    println!("|---|---|---|---|");

    // Spec to first prompt: cold (the spec's step misses the cache) and warm.
    let cold_variant = format!("cold-{}", bench.run_id);
    let (instance, cold) = spec_to_prompt(bench, "main", &cold_variant).await?;
    let (_, warm) = spec_to_prompt(bench, "warm", &cold_variant).await?;
    println!("| spec → first prompt, cold build | {} | | |", ms(cold));
    println!("| spec → first prompt, cached build | {} | | |", ms(warm));

    let container = format!("ua-{instance}");
    let mut term = Term::open(&bench.server, &instance).await?;

    // Output throughput: rounds alternate, the median of each side counts.
    let (mut ua_rates, mut direct_rates) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        ua_rates.push(term.throughput(args.bytes).await?);
        direct_rates.push(direct_throughput(&bench.docker, &container, args.bytes).await?);
    }
    let (ua_rate, direct_rate) = (median(&mut ua_rates), median(&mut direct_rates));
    println!(
        "| output throughput, {} MB, median of {} | {ua_rate:.1} MB/s | {direct_rate:.1} MB/s | {:.2}× |",
        args.bytes / 1_000_000,
        ua_rates.len(),
        ua_rate / direct_rate
    );

    // Keystroke echo round trip, through `cat` on a raw TTY.
    let ua_echo = term.echo_times(args.echoes).await?;
    let direct_echo = direct_echo_times(&bench.docker, &container, args.echoes).await?;
    let (u50, u99) = (percentile(&ua_echo, 50.0), percentile(&ua_echo, 99.0));
    let (d50, d99) = (
        percentile(&direct_echo, 50.0),
        percentile(&direct_echo, 99.0),
    );
    println!(
        "| echo p50 | {} | {} | +{} |",
        ms(u50),
        ms(d50),
        ms(u50.saturating_sub(d50))
    );
    println!(
        "| echo p99 | {} | {} | +{} |",
        ms(u99),
        ms(d99),
        ms(u99.saturating_sub(d99))
    );
    drop(term);

    for &count in args.sessions.iter().filter(|&&n| n > 0) {
        concurrent(bench, args, count).await?;
    }
    Ok(())
}

/// `POST /spec`, connect, and wait for the shell's prompt.
async fn spec_to_prompt(
    bench: &mut Bench,
    name: &str,
    variant: &str,
) -> anyhow::Result<(String, Duration)> {
    let sealed = bench.spec(name, variant);
    sealed_to_prompt(bench, &sealed).await
}

/// Sends a sealed spec, connects, and waits for the shell's prompt.
pub(crate) async fn sealed_to_prompt(
    bench: &Bench,
    sealed: &str,
) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    let instance = bench.server.open_instance(sealed).await?;
    let mut term = Term::open(&bench.server, &instance).await?;
    term.wait_for("$ ", Duration::from_secs(60)).await?;
    Ok((instance, started.elapsed()))
}

/// N instances with a session each, typing one key a second.
async fn concurrent(bench: &mut Bench, args: &BenchArgs, count: usize) -> anyhow::Result<()> {
    let rss_before = args.server_pid.and_then(rss_kib);
    let mut terms = Vec::with_capacity(count);
    for i in 0..count {
        let sealed = bench.spec(&format!("s{count}-{i}"), "shared");
        let instance = bench.server.open_instance(&sealed).await?;
        let mut term = Term::open(&bench.server, &instance).await?;
        term.start_cat().await?;
        terms.push(term);
    }
    // Idle sessions: what each costs the server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = args.server_pid.and_then(rss_kib);
    // One more session floods `yes` to a client that never reads: the others
    // must not notice, and ua must not buffer it.
    let _flood = if args.flood {
        let sealed = bench.spec(&format!("s{count}-flood"), "shared");
        let instance = bench.server.open_instance(&sealed).await?;
        let mut term = Term::open(&bench.server, &instance).await?;
        term.wait_for("$ ", Duration::from_secs(30)).await?;
        term.send("yes flood-flood-flood-flood-flood\r").await?;
        Some(term)
    } else {
        None
    };
    let typing = args.typing;
    let tasks: Vec<_> = terms
        .into_iter()
        .enumerate()
        .map(|(i, mut term)| {
            tokio::spawn(async move {
                // Spread the sessions over the second.
                let offset = Duration::from_millis((i as u64 * 997) % 1000);
                tokio::time::sleep(offset).await;
                let mut times = Vec::new();
                let deadline = Instant::now() + typing;
                while Instant::now() < deadline {
                    let tick = Instant::now();
                    times.push(term.echo_once().await?);
                    tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
                }
                anyhow::Ok(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await??);
    }
    let flood_note = match (args.flood, rss_idle, args.server_pid.and_then(rss_kib)) {
        (true, Some(before), Some(after)) => format!(
            "; with a `yes` flood to a non-reading client, ua RSS {:+.1} MiB over the typing",
            (after as f64 - before as f64) / 1024.0
        ),
        (true, ..) => "; with a `yes` flood to a non-reading client".into(),
        _ => String::new(),
    };
    let per_session = match (rss_before, rss_idle) {
        (Some(before), Some(idle)) => format!(
            "ua RSS {} MiB; {:.0} KiB per idle session",
            idle / 1024,
            (idle.saturating_sub(before)) as f64 / count as f64
        ),
        _ => "pass --server-pid for memory".into(),
    };
    println!(
        "| {count} sessions typing 1 key/s, echo p50 / p99 | {} / {} | | {per_session}{flood_note} |",
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0)),
    );
    Ok(())
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(crate) fn percentile(times: &[Duration], p: f64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A terminado client that counts what it reads. Its reader runs in its own
/// task, as a browser's would, so pings are answered while the bench is busy.
pub(crate) struct Term {
    sink: futures_util::stream::SplitSink<Socket, Message>,
    output: tokio::sync::mpsc::Receiver<anyhow::Result<String>>,
    text: String,
}

impl Term {
    pub(crate) async fn open(server: &Server, instance: &str) -> anyhow::Result<Term> {
        let (sink, mut stream) = server.terminal(instance).await?.split();
        let (tx, output) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let text = match stream.next().await {
                    Some(Ok(Message::Text(frame))) => match ServerMessage::decode(&frame) {
                        Some(ServerMessage::Stdout(text)) => text,
                        _ => continue,
                    },
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(anyhow::anyhow!("the terminal failed: {e}"))?,
                    None => Err(anyhow::anyhow!("the terminal closed"))?,
                };
                if tx.send(Ok(text)).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        });
        Ok(Term {
            sink,
            output,
            text: String::new(),
        })
    }

    async fn send(&mut self, keys: &str) -> anyhow::Result<()> {
        let frame = ClientMessage::Stdin(keys.to_string()).encode();
        self.sink.send(Message::text(frame)).await?;
        Ok(())
    }

    /// Reads frames until `needle` is in the text read so far; returns the bytes read.
    pub(crate) async fn wait_for(
        &mut self,
        needle: &str,
        within: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        let mut read = 0;
        loop {
            if let Some(at) = self.text.find(needle) {
                self.text.drain(..at + needle.len());
                return Ok(read);
            }
            // Keep only a tail that may hold the start of the needle.
            if self.text.len() > 4096 {
                let cut = self
                    .text
                    .floor_char_boundary(self.text.len() - needle.len());
                self.text.drain(..cut);
            }
            let text = tokio::time::timeout_at(deadline, self.output.recv())
                .await
                .with_context(|| format!("{needle:?} did not arrive in time"))?
                .context("the terminal's reader ended")??;
            read += text.len();
            self.text.push_str(&text);
        }
    }

    async fn throughput(&mut self, bytes: u64) -> anyhow::Result<f64> {
        self.wait_for("$ ", Duration::from_secs(30)).await?;
        let started = Instant::now();
        self.send(&format!(
            "head -c {bytes} /dev/zero | tr '\\0' a; echo \"E\"\"ND\"\r"
        ))
        .await?;
        let read = self.wait_for("aEND", Duration::from_secs(600)).await?;
        let elapsed = started.elapsed();
        if (read as u64) < bytes {
            bail!("only {read} of {bytes} bytes arrived");
        }
        Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
    }

    /// Starts `cat` on a raw, non-echoing TTY: each key comes straight back.
    async fn start_cat(&mut self) -> anyhow::Result<()> {
        self.wait_for("$ ", Duration::from_secs(30)).await?;
        self.send("stty raw -echo; echo \"RE\"\"ADY\"; exec cat\r")
            .await?;
        self.wait_for("READY", Duration::from_secs(30)).await?;
        // cat may not be reading yet: probe until a key comes back.
        self.send("z").await?;
        self.wait_for("z", Duration::from_secs(30)).await?;
        Ok(())
    }

    async fn echo_once(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.send("x").await?;
        self.wait_for("x", Duration::from_secs(30)).await?;
        Ok(started.elapsed())
    }

    async fn echo_times(&mut self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        self.start_cat().await?;
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            times.push(self.echo_once().await?);
        }
        Ok(times)
    }
}

async fn direct_throughput(docker: &Docker, container: &str, bytes: u64) -> anyhow::Result<f64> {
    let command = format!("head -c {bytes} /dev/zero | tr '\\0' a");
    let started = Instant::now();
    let mut exec = docker
        .exec(container, vec!["/bin/sh".into(), "-c".into(), command])
        .await?;
    let mut read = 0u64;
    while let Some(item) = exec.output.next().await {
        read += item?.into_bytes().len() as u64;
    }
    let elapsed = started.elapsed();
    if read < bytes {
        bail!("only {read} of {bytes} bytes arrived directly");
    }
    Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
}

async fn direct_echo_times(
    docker: &Docker,
    container: &str,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let command = "stty raw -echo; echo READY; exec cat".to_string();
    let mut exec = docker
        .exec(container, vec!["/bin/sh".into(), "-c".into(), command])
        .await?;
    let mut seen = Vec::new();
    async fn read_until(
        exec: &mut crate::engine::docker::Exec,
        seen: &mut Vec<u8>,
        needle: &[u8],
    ) -> anyhow::Result<()> {
        loop {
            if let Some(at) = seen.windows(needle.len()).position(|w| w == needle) {
                seen.drain(..at + needle.len());
                return Ok(());
            }
            let item = tokio::time::timeout(Duration::from_secs(30), exec.output.next())
                .await
                .context("no echo from the direct exec")?
                .context("the direct exec ended")??;
            seen.extend_from_slice(&item.into_bytes());
        }
    }
    read_until(&mut exec, &mut seen, b"READY").await?;
    exec.input.write_all(b"z").await?;
    read_until(&mut exec, &mut seen, b"z").await?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        exec.input.write_all(b"x").await?;
        exec.input.flush().await?;
        read_until(&mut exec, &mut seen, b"x").await?;
        times.push(started.elapsed());
    }
    exec.input.write_all(&[4]).await?;
    Ok(times)
}
