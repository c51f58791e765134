//! The steady-state run: spec to prompt, echo and throughput through the
//! server, beside the same container through Docker directly (the floor).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::engine::docker::Docker;

use crate::bench::args::BenchArgs;
use crate::bench::stats::{median, ms, percentile, rss_kib};
use crate::bench::term::{spec_to_prompt, Bench, Term};

pub(super) async fn measure(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
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

/// N instances with a session each, typing one key a second.
pub(super) async fn concurrent(
    bench: &mut Bench,
    args: &BenchArgs,
    count: usize,
) -> anyhow::Result<()> {
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

pub(super) async fn direct_throughput(
    docker: &Docker,
    container: &str,
    bytes: u64,
) -> anyhow::Result<f64> {
    let command = format!("head -c {bytes} /dev/zero | tr '\\0' a");
    let started = Instant::now();
    let mut exec = docker
        .exec(container, vec!["/bin/sh".into(), "-c".into(), command])
        .await?;
    let mut read = 0u64;
    while let Some(item) = exec.output.next().await {
        read += item?.len() as u64;
    }
    let elapsed = started.elapsed();
    if read < bytes {
        bail!("only {read} of {bytes} bytes arrived directly");
    }
    Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
}

pub(super) async fn direct_echo_times(
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
            seen.extend_from_slice(&item);
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
