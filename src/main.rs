//! The `ua` command line: `serve`, `keygen`, `seal`, `open`, `connect`,
//! `bench`. The server itself lives in the library (see `lib.rs`).
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ua::client::{admin as admin_cli, check, connect, copy, listing, top};
use ua::crypto::{route, seal};
use ua::protocol::spec;
use ua::telemetry::logging;
use ua::{bench, config, server};

#[derive(Parser)]
#[command(
    name = "ua",
    version,
    about = "uAssign: a terminal in a purpose-built container, from a browser"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<config::ServeConfig>),
    /// Print a new key line for a key file.
    Keygen,
    /// Seal a plaintext spec (JSON) into the one-line form clients send.
    Seal(SealCommandArgs),
    /// Open a sealed spec, or the sealedOutput of a failed build, and print its plaintext.
    Open(SealArgs),
    /// Try an assignment from this terminal: seal a spec, get an instance, attach.
    Connect(connect::ConnectArgs),
    /// Run an instance's check (the assignment's check.sh.tmpl) and print
    /// the feedback, the tests and the score; exits 3 below a full score.
    Check(check::CheckArgs),
    /// Copy a file into an instance (`ua cp FILE ID:PATH`) or out of it
    /// (`ua cp ID:PATH FILE`), as the student.
    Cp(copy::CopyArgs),
    /// Measure a running server against direct Docker exec (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Show the running server's counts, Docker and limits (admin socket).
    Status {
        #[command(flatten)]
        target: admin_cli::Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the running server's instances by handle, with what each uses
    /// (admin socket).
    List(listing::ListArgs),
    /// Show what the instances use, redrawn every 2 s until q (admin socket).
    Top(top::TopArgs),
    /// Remove instances (session closed, container, image and record gone):
    /// one by spec ID or handle, or all of an assignment or idle for long.
    Clean {
        #[command(flatten)]
        target: admin_cli::Target,
        /// The spec whose instance goes.
        #[arg(
            long,
            required_unless_present_any = ["instance", "assignment", "idle_for"],
            conflicts_with_all = ["instance", "assignment", "idle_for"]
        )]
        spec_id: Option<String>,
        /// The handle (from `ua list`) of the instance that goes.
        #[arg(long, conflicts_with_all = ["assignment", "idle_for"])]
        instance: Option<String>,
        #[command(flatten)]
        bulk: admin_cli::Bulk,
    },
}

#[derive(clap::Args)]
struct SealArgs {
    /// Key file: one base64 key per line.
    #[arg(long, env = "UA_KEY_FILE", default_value = "/etc/ua/key")]
    key_file: PathBuf,
    /// Input file; standard input when absent or `-`.
    file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SealCommandArgs {
    #[command(flatten)]
    common: SealArgs,
    /// Also print `route=<token>` on a second line: the spec's route token
    /// for a load balancer in front of several nodes (docs/API.md, "Nodes and routing").
    #[arg(long)]
    route: bool,
    /// Print a link instead: `{server}/start?route=<token>#<sealed spec>`, a
    /// way in for a student's browser (the spec rides in the fragment, which
    /// no request line carries). Needs --server.
    #[arg(long, requires = "server")]
    link: bool,
    /// The ua server's base URL for --link, e.g. https://ua.example.edu.
    #[arg(long)]
    server: Option<String>,
}

fn read_input(file: &Option<PathBuf>) -> std::io::Result<Vec<u8>> {
    match file {
        Some(path) if path.as_os_str() != "-" => std::fs::read(path),
        _ => {
            let mut buffer = Vec::new();
            std::io::stdin().read_to_end(&mut buffer)?;
            Ok(buffer)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Bad flags of a service: at priority 3 in the journal, like any
        // other reason not to start (--help and --version are not errors).
        Err(e) if e.use_stderr() && logging::to_journal() => {
            logging::fatal(&e.to_string());
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(config) => server::main(*config),
        Command::Keygen => {
            ua::support::stdout::print(&format!("{}\n", seal::keygen())).map_err(Into::into)
        }
        Command::Seal(args) => seal_command(&args),
        Command::Open(args) => open_command(&args),
        Command::Connect(args) => connect::main(args),
        Command::Cp(args) => copy::main(args),
        Command::Check(args) => match check::main(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
        Command::Bench(args) => bench::main(args),
        Command::Status { target, json } => admin_cli::status(&target, json),
        Command::List(args) => listing::list(&args),
        Command::Top(args) => top::main(&args),
        Command::Clean { target, bulk, .. } if bulk.selects() => {
            admin_cli::clean_bulk(&target, &bulk)
        }
        Command::Clean {
            target,
            spec_id,
            instance,
            ..
        } => admin_cli::clean(&target, spec_id, instance),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `ua list | head`: the reader has what it wanted.
        Err(e) if ua::support::stdout::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn seal_command(args: &SealCommandArgs) -> anyhow::Result<()> {
    let keys = seal::Keyring::load(&args.common.key_file)?;
    let plaintext = read_input(&args.common.file)?;
    // Refuse what the server would refuse, before it travels.
    let spec =
        spec::Spec::parse(&plaintext).map_err(|e| anyhow::anyhow!("not a valid spec: {e}"))?;
    let sealed = keys.seal(&plaintext);
    if let (true, Some(server)) = (args.link, &args.server) {
        let token = route::token(&keys, &spec.spec_id);
        let link = format!(
            "{}/start?route={token}#{sealed}\n",
            server.trim_end_matches('/')
        );
        return Ok(ua::support::stdout::print(&link)?);
    }
    let mut out = format!("{sealed}\n");
    if args.route {
        out.push_str(&format!("route={}\n", route::token(&keys, &spec.spec_id)));
    }
    ua::support::stdout::print(&out)?;
    Ok(())
}

fn open_command(args: &SealArgs) -> anyhow::Result<()> {
    let keys = seal::Keyring::load(&args.key_file)?;
    let sealed = read_input(&args.file)?;
    let sealed =
        std::str::from_utf8(&sealed).map_err(|_| anyhow::anyhow!("the sealed spec is not text"))?;
    // Any purpose: a spec, or a sealedOutput (docs/API.md, "Subkeys").
    let plaintext = seal::Purpose::ALL
        .iter()
        .find_map(|&purpose| keys.open_as(purpose, sealed).ok())
        .map_or_else(|| keys.open(sealed), Ok)?;
    use std::io::{IsTerminal, Write};
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        out.write_all(logging::for_terminal(&plaintext).as_bytes())?;
    } else {
        out.write_all(&plaintext)?;
    }
    if !plaintext.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}
