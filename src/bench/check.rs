//! `ua bench --check`: a check's round trip through ua (`POST
//! /instance/{id}/check`) beside the docker CLI running the same shell and
//! script in the same container by hand, with the container running (a
//! terminal attached) and stopped (ua starts it for the check).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bench::args::BenchArgs;
use crate::bench::docker_cli::{docker, docker_with_input};
use crate::bench::stats::{ms, percentile};
use crate::bench::term::{Bench, Term};
use crate::instance::check_script::{stdin, CHECK_COMMAND};
use crate::protocol::spec::AssignmentName;

/// Rounds of the stopped case (each waits for a stop).
const STOPPED_ROUNDS: usize = 5;

pub(super) async fn measure(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args
        .assignments
        .join(AssignmentName::parse(&args.check_assignment)?.relative_dir());
    let script = std::fs::read_to_string(dir.join("check.sh.tmpl"))
        .with_context(|| format!("{}: no check.sh.tmpl in {dir:?}", args.check_assignment))?;
    let sealed = bench.spec_of(&args.check_assignment, "check", "check");
    let instance = bench.server.open_instance(&sealed).await?;
    let container = format!("ua-{instance}");
    println!("| measurement | ua | docker CLI by hand | ratio |");
    println!("|---|---|---|---|");

    let mut term = Term::open(&bench.server, &instance).await?;
    term.wait_for("$ ", Duration::from_secs(60)).await?;
    let rounds = args.checks.max(1);
    let (mut via_ua, mut by_hand) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        via_ua.push(timed_check(bench, &instance).await?);
        by_hand.push(timed_exec(&container, &script).await?);
    }
    row(
        &format!("check, container running ({rounds} rounds), p50"),
        &via_ua,
        &by_hand,
        50.0,
    );
    row("check, container running, p90", &via_ua, &by_hand, 90.0);
    // The shell exits: the terminal ends and ua stops the container.
    term.send("exit\r").await?;
    drop(term);

    let (mut via_ua, mut by_hand) = (Vec::new(), Vec::new());
    for _ in 0..STOPPED_ROUNDS {
        wait_stopped(&container).await?;
        via_ua.push(timed_check(bench, &instance).await?);
        by_hand.push(start_and_exec(&container, &script).await?);
    }
    row(
        &format!("check, container stopped ({STOPPED_ROUNDS} rounds; start + check), p50"),
        &via_ua,
        &by_hand,
        50.0,
    );
    Ok(())
}

fn row(what: &str, ua: &[Duration], cli: &[Duration], p: f64) {
    let (ua, cli) = (percentile(ua, p), percentile(cli, p));
    let ratio = ua.as_secs_f64() / cli.as_secs_f64().max(1e-9);
    println!("| {what} | {} | {} | {ratio:.2}× |", ms(ua), ms(cli));
}

/// One `POST /instance/{id}/check`, which must give a verdict.
async fn timed_check(bench: &Bench, instance: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (status, answer) = bench.server.check(instance).await?;
    let took = started.elapsed();
    if !status.is_success() || answer["score"].as_f64().is_none() {
        bail!("the check answered {status}: {}", answer["error"]);
    }
    Ok(took)
}

/// The same shell and script run as root through the docker CLI.
async fn timed_exec(container: &str, script: &str) -> anyhow::Result<Duration> {
    let input = stdin(script, Duration::from_secs(30));
    let mut args = vec!["exec", "-i", "-u", "0", container];
    args.extend(CHECK_COMMAND);
    let started = Instant::now();
    docker_with_input(&args, &input).await?;
    Ok(started.elapsed())
}

/// By hand from a stopped container: `docker start`, then the check's exec.
/// ua's sweep stops a container it finds running with no session, and may
/// do so between the two: such a round is measured again (up to 3 tries).
async fn start_and_exec(container: &str, script: &str) -> anyhow::Result<Duration> {
    let mut tries = 0;
    loop {
        wait_stopped(container).await?;
        let started = Instant::now();
        docker(&["start", container]).await?;
        let ran = timed_exec(container, script).await;
        let took = started.elapsed();
        let stopped_under_it = ran.is_err()
            && docker(&["inspect", "-f", "{{.State.Running}}", container])
                .await?
                .trim()
                == "false";
        let _ = docker(&["stop", "-t", "0", container]).await;
        tries += 1;
        match ran {
            Ok(_) => return Ok(took),
            Err(_) if stopped_under_it && tries < 3 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits (at most 30 s) until the container no longer runs: ua stops it
/// after a check with no terminal, and after the terminal's grace.
async fn wait_stopped(container: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let running = docker(&["inspect", "-f", "{{.State.Running}}", container]).await?;
        if running.trim() == "false" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{container} did not stop within 30 s")
}
