//! `ua bench --startup`: spec → first prompt for a shared-image assignment
//! and for a `Dockerfile.tmpl` assignment, each beside the docker CLI doing
//! the same by hand in the same run; then a class start (N new specs of the
//! shared-image assignment from concurrent clients) and the images it made.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::assignment::{shell_quote, Assignment, Renderer, TemplateVars, DOCKERFILE_IN_CONTEXT};
use crate::bench::args::BenchArgs;
use crate::bench::stats::{median, ms, percentile};
use crate::bench::term::{sealed_to_prompt, Bench, Term};
use crate::protocol::spec::AssignmentName;

/// The keep-alive ua runs in its containers; the CLI side runs the same.
const KEEP_ALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

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
    // The images behind the class's containers (`ua-<instance>`): exact,
    // whatever else runs on the daemon.
    let mut inspect = vec!["inspect", "-f", "{{.Image}}"];
    let names: Vec<String> = instances.iter().map(|i| format!("ua-{i}")).collect();
    inspect.extend(names.iter().map(String::as_str));
    let mut behind: Vec<String> = docker(&inspect).await?.lines().map(String::from).collect();
    behind.sort();
    behind.dedup();
    println!(
        "| images behind the class's {} containers | {} | | |",
        instances.len(),
        behind.len()
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

/// The daemon alone, in the same run: `docker run -d` of as many bare
/// containers as the class has students, from as many clients, then removed.
async fn docker_floor(bench: &Bench, args: &BenchArgs) -> anyhow::Result<()> {
    let names: Arc<Vec<String>> = Arc::new(
        (0..args.class_size)
            .map(|i| format!("ua-bench-floor-{}-{i}", bench.run_id))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.class_clients.max(1))
        .map(|_| {
            let (names, next) = (names.clone(), next.clone());
            tokio::spawn(async move {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    docker(&[
                        "run",
                        "-d",
                        "--name",
                        name,
                        "--network",
                        "none",
                        "--init",
                        "ua-busybox:latest",
                        "sleep",
                        "3600",
                    ])
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for client in clients {
        if let Err(e) = client.await? {
            result = Err(e);
        }
    }
    let elapsed = started.elapsed();
    let mut remove = vec!["rm", "-f"];
    remove.extend(names.iter().map(String::as_str));
    let removed = docker(&remove).await;
    result?;
    removed?;
    println!(
        "| the daemon alone: `docker run -d --init --network none` × {} from {} clients | | {:.2} s | the floor without a warm pool (no files, no setup, no terminal) |",
        args.class_size,
        args.class_clients.max(1),
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Image IDs that carry ua's ownership label (any ua server on this daemon).
async fn ua_images() -> anyhow::Result<Vec<String>> {
    let out = docker(&[
        "images",
        "-q",
        "--no-trunc",
        "--filter",
        "label=ua.owned=true",
    ])
    .await?;
    let mut ids: Vec<String> = out.lines().map(str::to_string).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
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

/// The docker CLI side of the shared-image mode: the assignment's image,
/// built once untimed, and what its terminal runs.
struct CliShared {
    dir: PathBuf,
    image: String,
    user: String,
    workdir: String,
    command: Vec<String>,
    /// The empty build context made when the assignment has none.
    scratch: Option<PathBuf>,
}

impl CliShared {
    async fn prepare(dir: &Path, run_id: &str) -> anyhow::Result<CliShared> {
        let image = format!("ua-bench-cli-{run_id}:shared");
        let context = dir.join("context");
        let scratch = match context.is_dir() {
            true => None,
            false => Some(scratch_dir(&format!("{run_id}-empty"))?),
        };
        let context = scratch.clone().unwrap_or(context);
        let dockerfile = dir.join("Dockerfile");
        let (dockerfile, context) = (path_text(&dockerfile)?, path_text(&context)?);
        docker(&[
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            &image,
            "-f",
            dockerfile,
            context,
        ])
        .await?;
        let config: serde_json::Value = serde_json::from_str(
            &docker(&["image", "inspect", "-f", "{{json .Config}}", &image]).await?,
        )?;
        let strings = |key: &str| -> Vec<String> {
            config[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut command = strings("Entrypoint");
        command.extend(strings("Cmd"));
        Ok(CliShared {
            dir: dir.to_path_buf(),
            image,
            user: config["User"].as_str().unwrap_or("").to_string(),
            workdir: config["WorkingDir"].as_str().unwrap_or("").to_string(),
            command,
            scratch,
        })
    }

    /// One instance by hand: create, cp of the rendered `instance/`, start,
    /// exec of the rendered setup as root, then `exec -it` until the prompt.
    /// Rendering happens before the clock starts.
    async fn start(&self, bench: &Bench, round: usize, variant: &str) -> anyhow::Result<Duration> {
        let data = serde_json::json!({ "variant": variant });
        let spec_id = format!("bench/{}/cli-{round}", bench.run_id);
        let instance_id = crate::crypto::ids::random_id();
        let vars = TemplateVars {
            data: &data,
            spec_id: &spec_id,
            instance_id: &instance_id,
        };
        let renderer = Renderer::new(&vars);
        let files = scratch_dir(&format!("{}-cli-{round}", bench.run_id))?;
        let instance_dir = self.dir.join("instance");
        if instance_dir.is_dir() {
            render_tree(&renderer, &instance_dir, &files)?;
        }
        let setup = match std::fs::read_to_string(self.dir.join("setup.sh.tmpl")) {
            Ok(text) => Some(renderer.render("setup.sh.tmpl", &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let name = format!("ua-bench-cli-{}-s{round}", bench.run_id);

        let started = Instant::now();
        let timed = async {
            docker(&[
                "create",
                "--name",
                &name,
                "--network",
                "none",
                "--init",
                "--user",
                "0",
                "--entrypoint",
                "/bin/sh",
                &self.image,
                "-c",
                KEEP_ALIVE,
            ])
            .await?;
            // Top-level entries one by one: `docker cp DIR/.` would also
            // give `/` the scratch directory's owner and mode.
            for entry in std::fs::read_dir(&files)? {
                let path = entry?.path();
                docker(&["cp", path_text(&path)?, &format!("{name}:/")]).await?;
            }
            docker(&["start", &name]).await?;
            if let Some(setup) = &setup {
                docker(&["exec", "-u", "0", &name, "/bin/sh", "-c", setup]).await?;
            }
            let mut exec = vec!["docker", "exec", "-it"];
            if !self.user.is_empty() {
                exec.extend(["-u", &self.user]);
            }
            if !self.workdir.is_empty() {
                exec.extend(["-w", &self.workdir]);
            }
            exec.push(&name);
            exec.extend(self.command.iter().map(String::as_str));
            until_prompt(&exec).await
        };
        let result = timed.await.map(|()| started.elapsed());
        let _ = docker(&["rm", "-f", &name]).await;
        let _ = std::fs::remove_dir_all(&files);
        result
    }

    async fn remove(&self) {
        let _ = docker(&["rmi", "-f", &self.image]).await;
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One instance of a `Dockerfile.tmpl` assignment by hand: build of the same
/// rendered context ua builds, run, then `exec -it` until the prompt. The
/// image's command is read between the two, off the clock.
async fn cli_tmpl_start(
    bench: &Bench,
    assignment: &Assignment,
    round: usize,
    variant: &str,
) -> anyhow::Result<Duration> {
    let data = serde_json::json!({ "variant": variant });
    let spec_id = format!("bench/{}/cli-tmpl-{round}", bench.run_id);
    let instance_id = crate::crypto::ids::random_id();
    let vars = TemplateVars {
        data: &data,
        spec_id: &spec_id,
        instance_id: &instance_id,
    };
    let context = assignment.render_context(&vars)?;
    let name = format!("ua-bench-cli-{}-t{round}", bench.run_id);
    let image = format!("{name}:latest");

    let started = Instant::now();
    let build = async {
        docker_with_input(
            &[
                "build",
                "-q",
                "--network",
                "none",
                "-t",
                &image,
                "-f",
                DOCKERFILE_IN_CONTEXT,
                "-",
            ],
            &context.tar,
        )
        .await?;
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--init",
            "--entrypoint",
            "/bin/sh",
            &image,
            "-c",
            KEEP_ALIVE,
        ])
        .await
    };
    let built = build.await;
    let build_time = started.elapsed();
    let result = async {
        built?;
        let command = docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
            &image,
        ])
        .await?;
        let mut exec = vec![
            "docker".to_string(),
            "exec".into(),
            "-it".into(),
            name.clone(),
        ];
        for part in command.split(' ') {
            let list: Option<Vec<String>> = serde_json::from_str(part).unwrap_or_default();
            exec.extend(list.unwrap_or_default());
        }
        let exec: Vec<&str> = exec.iter().map(String::as_str).collect();
        let started = Instant::now();
        until_prompt(&exec).await?;
        anyhow::Ok(build_time + started.elapsed())
    }
    .await;
    let _ = docker(&["rm", "-f", &name]).await;
    let _ = docker(&["rmi", "-f", &image]).await;
    result
}

/// Runs `command` (a `docker exec -it`) on a pseudo-terminal, as a person's
/// terminal would (`script` makes one), until the shell prints its prompt.
async fn until_prompt(command: &[&str]) -> anyhow::Result<()> {
    let line: Vec<String> = command.iter().map(|w| shell_quote(w)).collect();
    let mut child = tokio::process::Command::new("script")
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run `script` (util-linux) for the docker CLI's terminal")?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = stdout.read(&mut buffer).await?;
            if n == 0 {
                bail!("`{}` ended before its prompt", command.join(" "));
            }
            seen.extend_from_slice(&buffer[..n]);
            if seen.windows(2).any(|w| w == b"$ ") {
                return anyhow::Ok(());
            }
        }
    })
    .await;
    let _ = child.kill().await;
    found.with_context(|| format!("no prompt from `{}` in 60 s", command.join(" ")))?
}

/// Runs the docker CLI; its standard output, or an error with its message.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    docker_with_input(args, &[]).await
}

async fn docker_with_input(args: &[&str], input: &[u8]) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run the docker CLI")?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = tokio::spawn(async move { stdin.write_all(&input).await });
    let out = child.wait_with_output().await?;
    writer.await??;
    if !out.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Renders `from` (templates `*.tmpl` rendered, suffix dropped; modes kept)
/// into `to`.
fn render_tree(renderer: &Renderer, from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (path, name) = (entry.path(), entry.file_name());
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            render_tree(renderer, &path, &to.join(&*name))?;
            continue;
        }
        let mode = entry.metadata()?.permissions().mode();
        let target = match name.strip_suffix(".tmpl") {
            Some(rendered) => {
                let text = renderer.render(&name, &std::fs::read_to_string(&path)?)?;
                let target = to.join(rendered);
                std::fs::write(&target, text)?;
                target
            }
            None => {
                let target = to.join(&*name);
                std::fs::copy(&path, &target)?;
                target
            }
        };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A new empty directory under the system's temporary directory.
fn scratch_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ua-bench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{path:?} is not UTF-8"))
}
