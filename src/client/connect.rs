//! `ua connect`: seal a spec from flags, ask the server for an instance and
//! attach this terminal to it, as a student's browser would.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio_tungstenite::tungstenite::Message;

use crate::client::api::{Server, Socket};
use crate::crypto::seal::Keyring;
use crate::protocol::close;
use crate::protocol::terminado::{ClientMessage, ServerMessage};

/// Flags of `ua connect`.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    target: SpecTarget,
    /// The instance's terminal to attach to (docs/API.md, "Terminals").
    #[arg(long, default_value = "main", value_parser = terminal_name)]
    terminal: String,
}

fn terminal_name(text: &str) -> Result<String, String> {
    match ua_agent::proto::valid_name(text) {
        true => Ok(text.to_string()),
        false => Err("terminal names are 1 to 16 of a-z, 0-9 and -".into()),
    }
}

/// Which instance: a spec sealed from flags (made if need be), or an
/// existing instance; and the server (`ua connect`, `ua check`).
#[derive(clap::Args, Debug)]
pub struct SpecTarget {
    /// The assignment to try, e.g. `demo.busybox`.
    #[arg(long, required_unless_present = "instance")]
    assignment: Option<String>,
    /// The spec's data: JSON text, or `@FILE` to read it from a file.
    #[arg(long, default_value = "{}")]
    data: String,
    /// The spec's ID; the same ID reaches the same instance.
    #[arg(long)]
    spec_id: Option<String>,
    /// The spec's `keepUntil`: keep the instance at least until then. Unix
    /// seconds, an RFC 3339 time (`2026-12-24T00:00:00Z`) or a duration from
    /// now (`14d`).
    #[arg(long, value_parser = parse_keep_until, conflicts_with = "instance")]
    keep_until: Option<i64>,
    /// Use an existing instance instead of sending a spec.
    #[arg(long, conflicts_with = "assignment")]
    instance: Option<String>,
    /// Key file: one base64 key per line.
    #[arg(long, env = "UA_KEY_FILE", default_value = "/etc/ua/key")]
    pub(crate) key_file: PathBuf,
    /// Base URL of the ua server: `http://`, or `https://` behind a TLS proxy.
    #[arg(long, env = "UA_SERVER", default_value = "http://127.0.0.1:8000")]
    server: String,
    /// For https: also trust the CA certificates in this PEM file (a private
    /// CA); the system's are always trusted.
    #[arg(long, env = "UA_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// `--keep-until`: unix seconds, an RFC 3339 time or a duration from now.
fn parse_keep_until(text: &str) -> Result<i64, String> {
    if let Ok(unix) = text.parse::<i64>() {
        return Ok(unix);
    }
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(at) => at,
        Err(_) => {
            let after = humantime::parse_duration(text).map_err(|_| {
                format!(
                    "{text:?} is neither unix seconds, an RFC 3339 time nor a duration such as 14d"
                )
            })?;
            std::time::SystemTime::now() + after
        }
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| format!("{text:?} is before 1970"))
}

/// Runs `ua connect` until the session ends, then says why.
pub fn main(args: ConnectArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let reason = runtime.block_on(run(args))?;
    // Stdin is read on a blocking thread that never ends by itself.
    runtime.shutdown_background();
    eprintln!("\r\n[ua: {reason}]");
    Ok(())
}

impl SpecTarget {
    /// The server, and the instance: the one named, or the spec's (sealed
    /// from the flags, made if need be, its failure opened for the author).
    pub(crate) async fn instance(&self) -> anyhow::Result<(Server, String)> {
        let server = Server::parse_with_ca(&self.server, self.ca_file.as_deref())?;
        if let Some(id) = &self.instance {
            return Ok((server, id.clone()));
        }
        let keys = Keyring::load(&self.key_file)?;
        let data: serde_json::Value = match self.data.strip_prefix('@') {
            Some(path) => serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {path}"))?,
            ),
            None => serde_json::from_str(&self.data),
        }
        .context("--data is not JSON")?;
        let assignment = self.assignment.clone().expect("clap requires it");
        let spec_id = self
            .spec_id
            .clone()
            .unwrap_or_else(|| format!("connect/{assignment}"));
        let mut spec =
            serde_json::json!({ "specID": spec_id, "assignmentName": assignment, "data": data });
        if let Some(keep_until) = self.keep_until {
            spec["keepUntil"] = keep_until.into();
        }
        let sealed = keys.seal(spec.to_string().as_bytes());
        let instance = server
            .open_instance_as_author(&sealed, &keys, &spec_id)
            .await?;
        Ok((server, instance))
    }
}

async fn run(args: ConnectArgs) -> anyhow::Result<String> {
    let (server, instance) = args.target.instance().await?;
    let name = args.terminal;
    let mut socket = server.terminal(&instance, &name).await?;
    // "attached to instance ID;" is what scripts and tests read.
    let which = match name.as_str() {
        "main" => String::new(),
        other => format!(" terminal {other};"),
    };
    eprintln!(
        "[ua: attached to instance {instance};{which} the session ends when its shell exits]\r"
    );
    let _raw = RawMode::enable()?;
    // One reader for the whole run: a read in flight is never lost.
    let mut stdin = tokio::io::stdin();
    loop {
        match attach(socket, &mut stdin).await? {
            Ended::For(reason) => return Ok(reason),
            Ended::ServerGone(reason) => {
                // A restarting server keeps the program running: come back to it.
                eprint!("\r\n[ua: {reason}; reconnecting]\r\n");
                match reconnect(&server, &instance, &name).await {
                    Some(again) => socket = again,
                    None => return Ok(format!("{reason}; the server did not come back")),
                }
            }
        }
    }
}

/// How long `ua connect` tries to get back to a server that went away: the
/// server's default reattach grace.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the instance's terminal again, once a second, for [`RECONNECT_FOR`].
async fn reconnect(server: &Server, instance: &str, name: &str) -> Option<Socket> {
    let deadline = tokio::time::Instant::now() + RECONNECT_FOR;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if let Ok(socket) = server.terminal(instance, name).await {
            return Some(socket);
        }
    }
    None
}

/// Why a websocket session ended.
enum Ended {
    /// For good (exit, takeover, idle, ...): these words.
    For(String),
    /// The server shut down or the connection dropped: worth coming back.
    ServerGone(String),
}

/// Pipes this terminal to the websocket until it closes; returns why.
async fn attach(socket: Socket, stdin: &mut tokio::io::Stdin) -> anyhow::Result<Ended> {
    let (mut sink, mut stream) = socket.split();
    let mut resized = signal(SignalKind::window_change())?;
    // Ended from outside: return normally, so raw mode is undone.
    let mut terminated = signal(SignalKind::terminate())?;
    let mut hung_up = signal(SignalKind::hangup())?;
    let mut buffer = vec![0u8; 16 * 1024];
    send_size(&mut sink).await;
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    match ServerMessage::decode(&text) {
                        Some(ServerMessage::Stdout(output)) => {
                            stdout.write_all(output.as_bytes())?;
                            stdout.flush()?;
                        }
                        Some(ServerMessage::IdleWarning(left)) => eprint!(
                            "\r\n[ua: idle; this terminal closes in {left} s unless you type]\r\n"
                        ),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    let words = close::describe(code);
                    return Ok(if code == Some(close::Code::Shutdown.number()) {
                        Ended::ServerGone(words)
                    } else {
                        Ended::For(words)
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ok(Ended::ServerGone(format!("connection lost: {e}"))),
                None => return Ok(Ended::ServerGone("connection lost".into())),
            },
            read = stdin.read(&mut buffer) => {
                let n = read?;
                if n == 0 {
                    return Ok(Ended::For("input ended".into()));
                }
                let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let frame = ClientMessage::Stdin(text).encode();
                if sink.send(Message::text(frame)).await.is_err() {
                    return Ok(Ended::ServerGone("connection lost".into()));
                }
            }
            _ = resized.recv() => send_size(&mut sink).await,
            _ = terminated.recv() => return Ok(Ended::For("terminated".into())),
            _ = hung_up.recv() => return Ok(Ended::For("the terminal hung up".into())),
        }
    }
}

async fn send_size<S>(sink: &mut S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    if let Ok((cols, rows)) = crossterm::terminal::size() {
        let frame = ClientMessage::SetSize { rows, cols }.encode();
        let _ = sink.send(Message::text(frame)).await;
    }
}

/// Raw mode for as long as it lives; restored on drop, and by the panic
/// hook (`ua connect`, `ua top`).
pub(super) struct RawMode;

impl RawMode {
    pub(super) fn enable() -> anyhow::Result<RawMode> {
        crossterm::terminal::enable_raw_mode().context("standard input is not a terminal")?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::terminal::disable_raw_mode();
            previous(info);
        }));
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_until_takes_unix_seconds_times_and_durations() {
        assert_eq!(parse_keep_until("1896048000"), Ok(1896048000));
        assert_eq!(parse_keep_until("2030-01-31T00:00:00Z"), Ok(1896048000));
        let now = crate::support::time::unix_now();
        let in_two_weeks = parse_keep_until("14d").unwrap();
        assert!(
            (in_two_weeks - now - 14 * 86400).abs() < 5,
            "{in_two_weeks}"
        );
        assert!(parse_keep_until("next tuesday").is_err());
    }
}
