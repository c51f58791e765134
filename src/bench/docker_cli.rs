//! The floor of `ua bench --startup`: the same starts through the docker
//! CLI (a per-instance image built, or one shared image with the files
//! copied in and the setup run), timed to the first prompt.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::assignment::{shell_quote, Assignment, Renderer, TemplateVars, DOCKERFILE_IN_CONTEXT};
use crate::bench::args::BenchArgs;
use crate::bench::term::Bench;

/// The keep-alive ua runs in its containers; the CLI side runs the same.
pub(super) const KEEP_ALIVE: &str =
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// The daemon alone, in the same run: `docker run -d` of as many bare
/// containers as the class has students, from as many clients, then removed.
pub(super) async fn docker_floor(bench: &Bench, args: &BenchArgs) -> anyhow::Result<()> {
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
pub(super) async fn ua_images() -> anyhow::Result<Vec<String>> {
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

/// The docker CLI side of the shared-image mode: the assignment's image,
/// built once untimed, and what its terminal runs.
pub(super) struct CliShared {
    pub(super) dir: PathBuf,
    pub(super) image: String,
    pub(super) user: String,
    pub(super) workdir: String,
    pub(super) command: Vec<String>,
    /// The empty build context made when the assignment has none.
    pub(super) scratch: Option<PathBuf>,
}

impl CliShared {
    pub(super) async fn prepare(dir: &Path, run_id: &str) -> anyhow::Result<CliShared> {
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
    pub(super) async fn start(
        &self,
        bench: &Bench,
        round: usize,
        variant: &str,
    ) -> anyhow::Result<Duration> {
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

    pub(super) async fn remove(&self) {
        let _ = docker(&["rmi", "-f", &self.image]).await;
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One instance of a `Dockerfile.tmpl` assignment by hand: build of the same
/// rendered context ua builds, run, then `exec -it` until the prompt. The
/// image's command is read between the two, off the clock.
pub(super) async fn cli_tmpl_start(
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
    let context = assignment.render_context(&vars, "")?;
    let name = format!("ua-bench-cli-{}-t{round}", bench.run_id);
    let image = format!("{name}:latest");

    let started = Instant::now();
    let built = build_and_run(&image, &name, &context.tar).await;
    let build_time = started.elapsed();
    let result = async {
        built?;
        let exec = exec_command(&image, &name).await?;
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

/// Builds `image` from a rendered context with the docker CLI and starts
/// a container `name` of it that waits.
async fn build_and_run(image: &str, name: &str, tar: &[u8]) -> anyhow::Result<String> {
    docker_with_input(
        &[
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            image,
            "-f",
            DOCKERFILE_IN_CONTEXT,
            "-",
        ],
        tar,
    )
    .await?;
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--init",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        KEEP_ALIVE,
    ])
    .await
}

/// The `docker exec -it` that starts `image`'s own command in `name`.
async fn exec_command(image: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let command = docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
        image,
    ])
    .await?;
    let mut exec = vec![
        "docker".to_string(),
        "exec".into(),
        "-it".into(),
        name.to_string(),
    ];
    for part in command.split(' ') {
        let list: Option<Vec<String>> = serde_json::from_str(part).unwrap_or_default();
        exec.extend(list.unwrap_or_default());
    }
    Ok(exec)
}

/// Runs `command` (a `docker exec -it`) on a pseudo-terminal, as a person's
/// terminal would (`script` makes one), until the shell prints its prompt.
pub(super) async fn until_prompt(command: &[&str]) -> anyhow::Result<()> {
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
pub(super) async fn docker(args: &[&str]) -> anyhow::Result<String> {
    docker_with_input(args, &[]).await
}

pub(super) async fn docker_with_input(args: &[&str], input: &[u8]) -> anyhow::Result<String> {
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
pub(super) fn render_tree(renderer: &Renderer, from: &Path, to: &Path) -> anyhow::Result<()> {
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
pub(super) fn scratch_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ua-bench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(super) fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{path:?} is not UTF-8"))
}
