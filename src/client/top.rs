//! `ua top`: the table of `ua list` redrawn every `--interval` until `q`,
//! Ctrl-C (or SIGTERM, SIGHUP), with the terminal put back as it was.
//!
//! On a terminal each frame clears the screen and fits its height, and
//! when the keys come from that terminal too it is in raw mode (a key needs
//! no Enter). Into a pipe (`ua top | head`) frames follow each other
//! plainly, and a reader that goes ends it quietly (`stdout::print`'s EPIPE,
//! as `ua list`).

use std::io::IsTerminal;
use std::time::Duration;

use clap::ValueEnum;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::client::admin::Target;
use crate::client::connect::RawMode;
use crate::client::listing::{fetch, table, Filter, SortKey};
use crate::protocol::admin::Summary;
use crate::support::stdout::print;

/// Home, then clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// `ua top`'s options.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Where the server is.
    #[command(flatten)]
    pub target: Target,
    /// Which instances are shown.
    #[command(flatten)]
    pub filter: Filter,
    /// Sort by this.
    #[arg(long, value_enum, default_value = "cpu")]
    pub sort: SortKey,
    /// Time between two redraws.
    #[arg(long, default_value = "2s", value_parser = crate::support::time::parse_duration)]
    pub interval: Duration,
}

/// Runs `ua top` until it is told to stop.
pub fn main(args: &TopArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args));
    // A read of standard input may be in flight: not waited for.
    runtime.shutdown_background();
    result
}

async fn run(args: &TopArgs) -> anyhow::Result<()> {
    let screen = std::io::stdout().is_terminal();
    // Keys without Enter only when they come from the terminal shown on.
    let raw = screen && std::io::stdin().is_terminal();
    let _raw = raw.then(RawMode::enable).transpose()?;
    let mut interrupted = signal(SignalKind::interrupt())?;
    let mut terminated = signal(SignalKind::terminate())?;
    let mut hung_up = signal(SignalKind::hangup())?;
    let mut stdin = tokio::io::stdin();
    let mut keys = [0u8; 64];
    let mut reading = true;
    loop {
        let shown = fetch(&args.target, &args.filter, Some(args.sort))?;
        let text = frame(args, &shown, screen);
        // Raw mode sends a bare LF as is: lines end in CR LF.
        print(&if raw {
            text.replace('\n', "\r\n")
        } else {
            text
        })?;
        let next = tokio::time::sleep(args.interval);
        tokio::pin!(next);
        loop {
            tokio::select! {
                () = &mut next => break,
                read = stdin.read(&mut keys), if reading => match read {
                    Ok(n) if n > 0 => if keys[..n].iter().any(|k| is_quit(*k)) {
                        return Ok(());
                    },
                    // No more input: only signals end it now.
                    _ => reading = false,
                },
                _ = interrupted.recv() => return Ok(()),
                _ = terminated.recv() => return Ok(()),
                _ = hung_up.recv() => return Ok(()),
            }
        }
    }
}

/// `q`, Ctrl-C or Ctrl-D (raw mode delivers them as bytes).
fn is_quit(key: u8) -> bool {
    matches!(key, b'q' | b'Q' | 0x03 | 0x04)
}

/// One screenful: a title line, then the table; on a terminal (`screen`)
/// after a clear and cut to its height.
fn frame(args: &TopArgs, shown: &[Summary], screen: bool) -> String {
    let running = shown.iter().filter(|s| s.state == "running").count();
    let title = format!(
        "ua top: {} instances, {running} running; every {}, by {}; q quits\n",
        shown.len(),
        humantime::format_duration(args.interval),
        args.sort
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    );
    if !screen {
        return format!("{title}{}\n", table(shown));
    }
    let rows = crossterm::terminal::size().map_or(24, |(_, rows)| rows as usize);
    // The title, the table's header and a line for what is cut.
    let fits = rows.saturating_sub(3).max(1);
    let mut text = table(&shown[..shown.len().min(fits)]);
    if shown.len() > fits {
        text.push_str(&format!("({} more)\n", shown.len() - fits));
    }
    format!("{CLEAR}{title}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_ctrl_c_and_ctrl_d_quit() {
        assert!(is_quit(b'q') && is_quit(3) && is_quit(4));
        assert!(!is_quit(b' ') && !is_quit(b'\r'));
    }
}
