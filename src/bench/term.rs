//! The benchmark as a client of the server: specs sealed for a run, and
//! a terminal over the websocket that it types into and reads from.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::client::api::{Server, Socket};
use crate::crypto::seal::Keyring;
use crate::engine::docker::Docker;
use crate::protocol::terminado::{ClientMessage, ServerMessage};

pub(super) struct Bench {
    pub(super) server: Server,
    pub(super) keys: Keyring,
    pub(super) assignment: String,
    pub(super) run_id: String,
    pub(super) docker: Docker,
    pub(super) specs: Vec<String>,
}

impl Bench {
    pub(super) fn spec(&mut self, name: &str, variant: &str) -> String {
        let assignment = self.assignment.clone();
        self.spec_of(&assignment, name, variant)
    }

    /// A sealed spec of `assignment` with `{"variant": ...}`, cleaned up at the end.
    pub(super) fn spec_of(&mut self, assignment: &str, name: &str, variant: &str) -> String {
        let spec = serde_json::json!({
            "specID": format!("bench/{}/{name}", self.run_id),
            "assignmentName": assignment,
            "data": { "variant": variant },
        });
        let sealed = self.keys.seal(spec.to_string().as_bytes());
        self.specs.push(sealed.clone());
        sealed
    }

    /// Cleans every spec made, a few at a time (a class start makes many).
    pub(super) async fn clean_up(&self) {
        futures_util::stream::iter(&self.specs)
            .for_each_concurrent(8, |sealed| async move {
                let _ = self.server.clean(sealed).await;
            })
            .await;
    }
}

/// `POST /spec`, connect, and wait for the shell's prompt.
pub(super) async fn spec_to_prompt(
    bench: &mut Bench,
    name: &str,
    variant: &str,
) -> anyhow::Result<(String, Duration)> {
    let sealed = bench.spec(name, variant);
    sealed_to_prompt(bench, &sealed).await
}

/// Sends a sealed spec, connects, and waits for the shell's prompt.
pub(super) async fn sealed_to_prompt(
    bench: &Bench,
    sealed: &str,
) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    let instance = bench.server.open_instance(sealed).await?;
    let mut term = Term::open(&bench.server, &instance).await?;
    term.wait_for("$ ", Duration::from_secs(60)).await?;
    Ok((instance, started.elapsed()))
}

/// A terminado client that counts what it reads. Its reader runs in its own
/// task, as a browser's would, so pings are answered while the bench is busy.
pub(super) struct Term {
    pub(super) sink: futures_util::stream::SplitSink<Socket, Message>,
    pub(super) output: tokio::sync::mpsc::Receiver<anyhow::Result<String>>,
    pub(super) text: String,
}

impl Term {
    pub(super) async fn open(server: &Server, instance: &str) -> anyhow::Result<Term> {
        let (sink, mut stream) = server.terminal(instance, "main").await?.split();
        let (tx, output) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let text = match stream.next().await {
                    Some(Ok(Message::Text(frame))) => match ServerMessage::decode(&frame) {
                        Some(ServerMessage::Stdout(text)) => text,
                        _ => continue,
                    },
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(anyhow::anyhow!("the terminal failed: {e}"))?,
                    None => Err(anyhow::anyhow!("the terminal closed"))?,
                };
                if tx.send(Ok(text)).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        });
        Ok(Term {
            sink,
            output,
            text: String::new(),
        })
    }

    pub(super) async fn send(&mut self, keys: &str) -> anyhow::Result<()> {
        let frame = ClientMessage::Stdin(keys.to_string()).encode();
        self.sink.send(Message::text(frame)).await?;
        Ok(())
    }

    /// Reads frames until `needle` is in the text read so far; returns the bytes read.
    pub(super) async fn wait_for(
        &mut self,
        needle: &str,
        within: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        let mut read = 0;
        loop {
            if let Some(at) = self.text.find(needle) {
                self.text.drain(..at + needle.len());
                return Ok(read);
            }
            // Keep only a tail that may hold the start of the needle.
            if self.text.len() > 4096 {
                let cut = self
                    .text
                    .floor_char_boundary(self.text.len() - needle.len());
                self.text.drain(..cut);
            }
            let text = tokio::time::timeout_at(deadline, self.output.recv())
                .await
                .with_context(|| format!("{needle:?} did not arrive in time"))?
                .context("the terminal's reader ended")??;
            read += text.len();
            self.text.push_str(&text);
        }
    }

    pub(super) async fn throughput(&mut self, bytes: u64) -> anyhow::Result<f64> {
        self.wait_for("$ ", Duration::from_secs(30)).await?;
        let started = Instant::now();
        self.send(&format!(
            "head -c {bytes} /dev/zero | tr '\\0' a; echo \"E\"\"ND\"\r"
        ))
        .await?;
        let read = self.wait_for("aEND", Duration::from_secs(600)).await?;
        let elapsed = started.elapsed();
        if (read as u64) < bytes {
            bail!("only {read} of {bytes} bytes arrived");
        }
        Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
    }

    /// Starts `cat` on a raw, non-echoing TTY: each key comes straight back.
    pub(super) async fn start_cat(&mut self) -> anyhow::Result<()> {
        self.wait_for("$ ", Duration::from_secs(30)).await?;
        self.send("stty raw -echo; echo \"RE\"\"ADY\"; exec cat\r")
            .await?;
        self.wait_for("READY", Duration::from_secs(30)).await?;
        // cat may not be reading yet: probe until a key comes back.
        self.send("z").await?;
        self.wait_for("z", Duration::from_secs(30)).await?;
        Ok(())
    }

    pub(super) async fn echo_once(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.send("x").await?;
        self.wait_for("x", Duration::from_secs(30)).await?;
        Ok(started.elapsed())
    }

    pub(super) async fn echo_times(&mut self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        self.start_cat().await?;
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            times.push(self.echo_once().await?);
        }
        Ok(times)
    }
}
