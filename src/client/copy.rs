//! `ua cp`: a file into an instance (`PUT /instance/{id}/files`) or out of
//! it (graded files), as the student (docs/API.md, "Files in").

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine;

use crate::client::api::Server;
use crate::crypto::ids::is_instance_id;

/// Flags of `ua cp`.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// What to copy: a local file, or `INSTANCE-ID:PATH` in an instance.
    source: String,
    /// Where to: `INSTANCE-ID:PATH`, or a local file or directory.
    target: String,
    /// The file's mode in the instance, octal (e.g. 0755).
    #[arg(long)]
    mode: Option<String>,
    /// Base URL of the ua server.
    #[arg(long, env = "UA_SERVER", default_value = "http://127.0.0.1:8000")]
    server: String,
    /// For https: also trust the CA certificates in this PEM file.
    #[arg(long, env = "UA_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// `ID:PATH` when `text` names a path in an instance.
fn remote(text: &str) -> Option<(&str, &str)> {
    text.split_once(':')
        .filter(|(id, path)| is_instance_id(id) && !path.is_empty())
}

/// Copies as asked.
pub fn main(args: CopyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: CopyArgs) -> anyhow::Result<()> {
    let server = Server::parse_with_ca(&args.server, args.ca_file.as_deref())?;
    match (remote(&args.source), remote(&args.target)) {
        (None, Some((id, path))) => {
            let content = std::fs::read(&args.source)
                .with_context(|| format!("cannot read {}", args.source))?;
            upload(&server, id, path, args.mode.as_deref(), content).await
        }
        (Some((id, path)), None) => download(&server, id, path, Path::new(&args.target)).await,
        (Some(_), Some(_)) => bail!("copy through this machine: one side must be a local file"),
        (None, None) => {
            bail!("one side must be INSTANCE-ID:PATH (an instance ID is 32 hex digits)")
        }
    }
}

async fn upload(
    server: &Server,
    id: &str,
    path: &str,
    mode: Option<&str>,
    content: Vec<u8>,
) -> anyhow::Result<()> {
    let (status, answer) = server.put_file(id, path, mode, content).await?;
    if !status.is_success() {
        bail!(
            "not copied ({status}): {}",
            answer["error"].as_str().unwrap_or("no reason given")
        );
    }
    eprintln!(
        "copied {} bytes to {}",
        answer["size"],
        answer["path"].as_str().unwrap_or(path)
    );
    Ok(())
}

async fn download(server: &Server, id: &str, path: &str, target: &Path) -> anyhow::Result<()> {
    let (status, answer) = server.get_file(id, path).await?;
    if !status.is_success() {
        bail!(
            "not copied ({status}): {}",
            answer["error"].as_str().unwrap_or("no reason given")
        );
    }
    let Some(contents) = answer["files"][0]["contents"].as_str() else {
        bail!("{path} is not a file the student can read in that instance");
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(contents)
        .context("the server's answer is not base64")?;
    let target = if target.is_dir() {
        let name = Path::new(path)
            .file_name()
            .context("the path names no file")?;
        target.join(name)
    } else {
        target.to_path_buf()
    };
    std::fs::write(&target, &bytes)
        .with_context(|| format!("cannot write {}", target.display()))?;
    eprintln!("copied {} bytes to {}", bytes.len(), target.display());
    Ok(())
}
