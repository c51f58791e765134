//! An opened agent terminal as the terminal layer drives it: an output
//! stream, an input writer, resizes, and whether its program ended.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use ua_agent::proto::Message;

use crate::engine::agent::frames;
use crate::engine::agent::link::Opened;
use crate::engine::docker::{Attached, DockerError};

/// Input bytes buffered between the terminal's writer and the socket.
const INPUT_PIPE: usize = 64 << 10;

/// The terminal side ua keeps of an opened agent terminal.
#[derive(Clone, Debug)]
pub struct AgentTty {
    resize: mpsc::Sender<(u16, u16)>,
    exit: watch::Receiver<Option<i32>>,
    /// Whether the attach connection has ended.
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl AgentTty {
    /// Asks for a new size (the last one asked wins).
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), DockerError> {
        self.resize
            .send((rows, cols))
            .await
            .map_err(|_| DockerError::Stream("the terminal's connection ended".into()))
    }

    /// Whether the program still runs, as far as the connection tells:
    /// once it has ended without an exit, the program's fate is unknown and
    /// it is taken as ended (the agent holds it for the next attach).
    pub fn is_running(&self) -> bool {
        self.exit.borrow().is_none() && !self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Splits an opened terminal into what the terminal layer reads and writes.
/// The replay the agent kept comes first in the output.
pub fn split(opened: Opened) -> (Attached, AgentTty) {
    let (reader, writer) = opened.stream.into_split();
    let (exit_tx, exit) = watch::channel(None);
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (resize, resizes) = mpsc::channel(4);
    let (ours, theirs) = tokio::io::duplex(INPUT_PIPE);
    tokio::spawn(write_side(theirs, resizes, writer));
    let replay = (!opened.replay.is_empty()).then(|| Ok(Bytes::from(opened.replay)));
    let output = futures_util::stream::iter(replay)
        .chain(output_stream(reader, exit_tx, ended.clone()))
        .boxed();
    let tty = AgentTty {
        resize,
        exit,
        ended,
    };
    (
        Attached {
            output,
            input: Box::pin(ours),
        },
        tty,
    )
}

type OutputItem = Result<Bytes, DockerError>;

/// OUTPUT frames as bytes, until EXIT (noted) or the connection's end; a
/// frame out of protocol ends it as an error.
fn output_stream(
    reader: OwnedReadHalf,
    exit: watch::Sender<Option<i32>>,
    ended: Arc<std::sync::atomic::AtomicBool>,
) -> impl futures_util::Stream<Item = OutputItem> {
    futures_util::stream::unfold(Some((reader, exit, ended)), |state| async move {
        let (mut reader, exit, ended) = state?;
        let item = frames::read(&mut reader).await;
        let done = |item: Option<OutputItem>| {
            ended.store(true, std::sync::atomic::Ordering::SeqCst);
            item.map(|item| (item, None))
        };
        match item {
            Ok(Some(Message::Output(bytes))) => {
                Some((Ok(Bytes::from(bytes)), Some((reader, exit, ended))))
            }
            Ok(Some(Message::Exit { status })) => {
                exit.send_replace(Some(status));
                done(None)
            }
            Ok(None) => done(None),
            Ok(Some(_)) => done(Some(Err(DockerError::Stream(
                "the agent sent a frame out of protocol".into(),
            )))),
            Err(e) => done(Some(Err(DockerError::Stream(format!(
                "the agent's connection: {e}"
            ))))),
        }
    })
}

/// Frames input and resizes onto the attach connection.
async fn write_side(
    mut input: tokio::io::DuplexStream,
    mut resizes: mpsc::Receiver<(u16, u16)>,
    mut writer: OwnedWriteHalf,
) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let message = tokio::select! {
            n = input.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => Message::Input(buf[..n].to_vec()),
            },
            size = resizes.recv() => match size {
                Some((rows, cols)) => Message::Resize { rows, cols },
                None => break,
            },
        };
        if frames::write(&mut writer, &message).await.is_err() {
            break;
        }
    }
}
