//! `ua bench --startup`: spec → first prompt for a shared-image assignment
//! and for a `Dockerfile.tmpl` assignment, each beside the docker CLI doing
//! the same by hand in the same run; then a class start (N new specs of the
//! shared-image assignment from concurrent clients) and the images it made.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::assignment::Assignment;
use crate::bench::args::BenchArgs;
use crate::bench::docker_cli::{cli_tmpl_start, docker, docker_floor, ua_images, CliShared};
use crate::bench::stats::{median, ms, percentile};
use crate::bench::term::{sealed_to_prompt, Bench, Term};
use crate::protocol::spec::AssignmentName;

pub(super) async fn measure(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    let shared_dir = assignment_dir(&args.assignments, &args.shared_assignment)?;
    println!("| measurement | ua | docker CLI by hand | ratio / note |");
    println!("|---|---|---|---|");

    // First use of the shared assignment builds its image; the rounds measure
    // what every later student waits. The CLI side builds its twin untimed.
    let data = variant(bench, "first");
    let first = bench.spec_of(&args.shared_assignment, "first", &data);
    let (_, first_use) = sealed_to_prompt(bench, &first).await?;
    println!(
        "| shared image: first spec (builds the assignment image) | {} | | once per assignment version |",
        ms(first_use)
    );
    let cli = CliShared::prepare(&shared_dir, &bench.run_id).await?;
    let result = rounds(bench, args, &cli).await;
    cli.remove().await;
    result?;

    if args.class_size > 0 {
        class_start(bench, args).await?;
    }
    Ok(())
}

async fn rounds(bench: &mut Bench, args: &BenchArgs, cli: &CliShared) -> anyhow::Result<()> {
    let tmpl = Assignment::find(&args.assignments, &AssignmentName::parse(&args.assignment)?)
        .with_context(|| format!("{} in {:?}", args.assignment, args.assignments))?;
    let (mut ua_shared, mut cli_shared, mut ua_tmpl, mut cli_tmpl) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rounds = args.rounds.max(1);
    for round in 0..rounds {
        // Fresh spec IDs and data each round: every instance is a new student.
        let name = format!("shared-{round}");
        let data = variant(bench, &name);
        let sealed = bench.spec_of(&args.shared_assignment, &name, &data);
        ua_shared.push(secs(sealed_to_prompt(bench, &sealed).await?.1));
        cli_shared.push(secs(cli.start(bench, round, &variant(bench, "cli")).await?));

        let name = format!("tmpl-{round}");
        let data = variant(bench, &name);
        let sealed = bench.spec_of(&args.assignment, &name, &data);
        ua_tmpl.push(secs(sealed_to_prompt(bench, &sealed).await?.1));
        let cli_variant = variant(bench, &format!("cli-{round}"));
        cli_tmpl.push(secs(
            cli_tmpl_start(bench, &tmpl, round, &cli_variant).await?,
        ));
    }
    let [ua_shared, cli_shared, ua_tmpl, cli_tmpl] =
        [ua_shared, cli_shared, ua_tmpl, cli_tmpl].map(|mut v| median(&mut v));
    let row = |what: &str, ua: f64, cli: f64, how: &str| {
        println!(
            "| {what}, median of {rounds} | {:.0} ms | {:.0} ms ({how}) | {:.2}× |",
            ua * 1e3,
            cli * 1e3,
            ua / cli
        );
    };
    row(
        "spec → first prompt, shared image",
        ua_shared,
        cli_shared,
        "create + cp + start + exec setup + exec -it",
    );
    row(
        "spec → first prompt, Dockerfile.tmpl",
        ua_tmpl,
        cli_tmpl,
        "build + run + exec -it",
    );
    row(
        "shared image (ua) vs the CLI's Dockerfile.tmpl way",
        ua_shared,
        cli_tmpl,
        "build + run + exec -it",
    );
    Ok(())
}

/// N students open the shared-image assignment at once, from a few clients,
/// after the daemon's floor for as many containers is measured in the same
/// run (and, with `--class-warm`, once the server's warm pool is full).
async fn class_start(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    if args.class_warm > 0 {
        wait_for_pool(bench, args.class_warm).await?;
    }
    docker_floor(bench, args).await?;
    let images_before = ua_images().await?;
    // Sealing is the platform's work, done before the class starts.
    let specs: Vec<String> = (0..args.class_size)
        .map(|i| {
            let name = format!("class-{i}");
            let data = variant(bench, &name);
            bench.spec_of(&args.shared_assignment, &name, &data)
        })
        .collect();
    let specs = Arc::new(specs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.class_clients.max(1))
        .map(|_| {
            let (specs, next, server) = (specs.clone(), next.clone(), bench.server.clone());
            tokio::spawn(async move {
                let (mut waits, mut instances) = (Vec::new(), Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sealed) = specs.get(i) else {
                        return anyhow::Ok((waits, instances));
                    };
                    let asked = Instant::now();
                    let instance = server.open_instance(sealed).await?;
                    let mut term = Term::open(&server, &instance).await?;
                    term.wait_for("$ ", Duration::from_secs(300)).await?;
                    waits.push(asked.elapsed());
                    instances.push(instance);
                }
            })
        })
        .collect();
    let (mut waits, mut instances) = (Vec::new(), Vec::new());
    for client in clients {
        let (w, i) = client.await??;
        waits.extend(w);
        instances.extend(i);
    }
    let all_ready = started.elapsed();
    let pool = match args.class_warm {
        0 => "no warm pool".to_string(),
        n => format!("warm pool of {n}"),
    };
    println!(
        "| class start: {} students from {} clients, {pool}, until every prompt | {:.2} s | | each student waited p50 {} / p99 {} |",
        args.class_size,
        args.class_clients.max(1),
        all_ready.as_secs_f64(),
        ms(percentile(&waits, 50.0)),
        ms(percentile(&waits, 99.0)),
    );
    println!(
        "| images behind the class's {} containers | {} | | |",
        instances.len(),
        images_behind(&instances).await?
    );
    // What `docker images` shows: new images with ua's label (on a daemon
    // shared with other ua servers, theirs count too).
    let images_after = ua_images().await?;
    let made = images_after
        .iter()
        .filter(|i| !images_before.contains(i))
        .count();
    println!(
        "| ua images (`docker images`, label ua.owned=true) made during the class start | {made} | | {} in all |",
        images_after.len(),
    );
    Ok(())
}

/// How many images stand behind the class's containers (`ua-<instance>`):
/// exact, whatever else runs on the daemon.
async fn images_behind(instances: &[String]) -> anyhow::Result<usize> {
    let mut inspect = vec!["inspect", "-f", "{{.Image}}"];
    let names: Vec<String> = instances.iter().map(|i| format!("ua-{i}")).collect();
    inspect.extend(names.iter().map(String::as_str));
    let mut behind: Vec<String> = docker(&inspect).await?.lines().map(String::from).collect();
    behind.sort();
    behind.dedup();
    Ok(behind.len())
}

/// Waits (up to 10 minutes) until the server's warm pool holds `n` containers.
async fn wait_for_pool(bench: &Bench, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let pool = bench.server.health().await?["pool"].as_u64();
        match pool {
            Some(have) if have as usize >= n => break,
            Some(_) if started.elapsed() < Duration::from_secs(600) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Some(have) => bail!("the warm pool holds {have} of {n} after 10 minutes"),
            None => bail!("the server's /health has no `pool`: does it have --warm?"),
        }
    }
    println!(
        "| warm pool full before the class start: {n} containers | {:.1} s after the rounds | | the server refills in the background, one container at a time |",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn variant(bench: &Bench, name: &str) -> String {
    format!(
        "{}-{name}-{}",
        bench.run_id,
        crate::crypto::ids::random_id()
    )
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An assignment's directory under the assignments root.
fn assignment_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = root.join(AssignmentName::parse(name)?.relative_dir());
    if !dir.join("Dockerfile").is_file() {
        bail!(
            "{name}: no {:?} (a shared-image assignment)",
            dir.join("Dockerfile")
        );
    }
    Ok(dir)
}
