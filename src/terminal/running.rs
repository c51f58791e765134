//! [`Terminal`]: one running terminal, spawned with its pump, input writer
//! and resizer tasks; attach, observe, kick and end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::docker::{Attached, Docker};
use crate::engine::oom;

use crate::terminal::activity::Activity;
use crate::terminal::attachment::{
    Attachment, Client, CloseReason, Command, Detacher, Observation, ObserverCount, CLIENT_QUEUE,
};
use crate::terminal::observers::OBSERVER_QUEUE;
use crate::terminal::pump::{Ended, Pump};
use crate::terminal::replay::Replay;
use crate::terminal::resize::{resize_terminal, AskedSize, Resizer};
use crate::terminal::tty::{write_input, Tty, INPUT_QUEUE};

/// How terminals behave, from the server's settings.
pub struct TerminalSettings {
    /// How long a terminal outlives its websocket.
    pub grace: Duration,
    /// Bytes of recent output replayed on reattach.
    pub replay_bytes: usize,
}

/// A handle on a running terminal, kept by its instance.
#[derive(Clone)]
pub struct Terminal {
    /// Tells this terminal from a later one of the same instance.
    pub generation: u64,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) input: mpsc::Sender<Bytes>,
    pub(super) resizer: Resizer,
    /// Who is attached and when input last came (`ua list`).
    pub activity: Arc<Activity>,
}

impl Terminal {
    /// Starts the pump and the input writer of an attached TTY. With
    /// `redraw`, the program was running before (ua restarted): the first
    /// size is applied with a change first, so that full-screen programs
    /// repaint what the client has lost. `on_end` runs once the terminal is
    /// over, with how it ended.
    pub fn spawn<F, Fut>(
        attached: Attached,
        tty: Tty,
        redraw: bool,
        docker: Arc<Docker>,
        settings: &TerminalSettings,
        generation: u64,
        on_end: F,
    ) -> Terminal
    where
        F: FnOnce(Ended) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (commands, command_rx) = mpsc::channel(8);
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (writers, writer_rx) = mpsc::channel(1);
        let activity = Arc::new(Activity::default());
        let heard = activity.clone();
        tokio::spawn(write_input(attached.input, input_rx, writer_rx, heard));
        let (asked, sizes) = watch::channel(AskedSize::default());
        let (done, applied) = watch::channel(0);
        tokio::spawn(resize_terminal(
            docker.clone(),
            tty.clone(),
            redraw,
            sizes,
            done,
        ));
        let output = match &tty {
            Tty::Main { container } | Tty::Agent { container, .. } => {
                oom::with_notices(attached.output, docker.clone(), container)
            }
            Tty::Exec { .. } => attached.output,
        };
        let pump = Pump {
            output,
            commands: command_rx,
            replay: Replay::new(settings.replay_bytes),
            grace: settings.grace,
            docker,
            tty,
            writers,
        };
        tokio::spawn(async move { on_end(pump.run().await).await });
        Terminal {
            generation,
            commands,
            input,
            resizer: Resizer {
                asked: Arc::new(asked),
                applied,
            },
            activity,
        }
    }

    /// Whether the terminal has ended.
    pub fn is_over(&self) -> bool {
        self.commands.is_closed()
    }

    /// Attaches a new client, closing the current one with 4001.
    pub async fn attach(&self, client_id: u64) -> Option<Attachment> {
        let (output_tx, output) = mpsc::channel(CLIENT_QUEUE);
        let (close, closed) = oneshot::channel();
        let client = Client {
            id: client_id,
            output: output_tx,
            close,
        };
        self.commands.send(Command::Attach(client)).await.ok()?;
        self.activity.attached(client_id);
        Some(Attachment {
            output,
            closed,
            input: self.input.clone(),
            resizer: self.resizer.clone(),
            detacher: Detacher {
                client_id,
                commands: self.commands.clone(),
                activity: self.activity.clone(),
            },
        })
    }

    /// Adds a read-only observer; `None` when the terminal is over or has
    /// [`MAX_OBSERVERS`] already.
    pub async fn observe(&self) -> Option<Observation> {
        let (output_tx, output) = mpsc::channel(OBSERVER_QUEUE);
        let (close, closed) = oneshot::channel();
        let (accepted_tx, accepted) = oneshot::channel();
        let observer = Client {
            id: 0,
            output: output_tx,
            close,
        };
        let command = Command::Observe(observer, accepted_tx);
        self.commands.send(command).await.ok()?;
        accepted.await.unwrap_or(false).then(|| Observation {
            output,
            closed,
            counted: ObserverCount::new(self.activity.clone()),
        })
    }

    /// Closes the attached client, if any, keeping the program running.
    pub async fn kick(&self, reason: CloseReason) {
        self.activity.kicked();
        let _ = self.commands.send(Command::Kick(reason)).await;
    }

    /// Closes the attached client and ends the terminal.
    pub async fn end(&self, reason: CloseReason) {
        let _ = self.commands.send(Command::End(reason)).await;
    }
}
