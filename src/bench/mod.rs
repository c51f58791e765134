//! `ua bench`: measures a running server as a client would, and the same
//! container through the Docker API directly (the floor), in one run.

mod args;
mod check;
mod docker_cli;
mod restart;
mod startup;
mod stats;
mod steady;
mod term;

pub use args::BenchArgs;

use crate::bench::term::Bench;
use crate::client::api::Server;
use crate::crypto::seal::Keyring;
use crate::engine::docker::Docker;

/// Runs `ua bench`: measures, prints a Markdown table, cleans up.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut bench = Bench {
        server: Server::parse(&args.server)?,
        keys: Keyring::load(&args.key_file)?,
        assignment: args.assignment.clone(),
        run_id: crate::crypto::ids::random_id()[..8].to_string(),
        docker: Docker::new(std::path::Path::new("/")),
        specs: Vec::new(),
    };
    let result = if args.restart {
        restart::measure(&mut bench, &args).await
    } else if args.check {
        check::measure(&mut bench, &args).await
    } else if args.startup {
        startup::measure(&mut bench, &args).await
    } else {
        steady::measure(&mut bench, &args).await
    };
    eprintln!("cleaning up {} bench instances", bench.specs.len());
    bench.clean_up().await;
    result
}
