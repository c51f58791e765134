//! One running terminal: the TTY of an instance's container (its main
//! process; an exec in containers of older versions), outliving the
//! websockets attached to it. A single task (the pump) owns the TTY's
//! output, the replay buffer and the attached client; input has its own
//! writer task so that a paste never blocks output.
//!
//! Flow control: the pump reads the next chunk only once the client's queue
//! has taken the previous one, so a slow client blocks the program on its own
//! output instead of growing our memory. With no client attached (the grace
//! period) output goes only to the bounded replay buffer.
//!
//! Uses `engine` (the TTY's Docker calls, OOM notices) and nothing above
//! it: it knows no registry, no websocket, no HTTP. Inside, files name each
//! other; the rest uses what is re-exported here.

mod activity;
mod attachment;
mod observers;
mod pump;
mod replay;
mod resize;
mod running;
mod tty;

pub use activity::Activity;
pub use attachment::{Attachment, CloseReason, Observation, MAX_CHUNK};
pub use pump::Ended;
pub use resize::Resizer;
pub use running::{Terminal, TerminalSettings};
pub use tty::Tty;
