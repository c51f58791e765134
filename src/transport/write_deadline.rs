//! A write deadline for HTTP connections: a client that stops taking ua's
//! answer (a small receive buffer, never read) must not hold the answer,
//! its buffers and what produces it for ever. Once a write or flush finds
//! the socket full, the client has [`WRITE_DEADLINE`] to take
//! [`PROGRESS_BYTES`] or everything pending, else the connection fails with
//! `TimedOut` and hyper drops it. Websocket sessions have their own (a
//! send that takes a minute ends the session), so an upgraded connection
//! is exempt (`exempt`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a client may leave ua's writes waiting without taking
/// [`PROGRESS_BYTES`] (or all that is pending).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// What a client must take within [`WRITE_DEADLINE`] to keep its connection.
pub const PROGRESS_BYTES: usize = 64 * 1024;

/// `io` with a write deadline.
pub struct WithWriteDeadline<T> {
    io: T,
    /// Set once the connection is a websocket: its session keeps time.
    exempt: Arc<AtomicBool>,
    /// Running while writes wait, with the bytes taken since it started.
    stalled: Option<(Pin<Box<Sleep>>, usize)>,
}

impl<T> WithWriteDeadline<T> {
    /// `io` with the deadline; setting `exempt` turns it off.
    pub fn new(io: T, exempt: Arc<AtomicBool>) -> WithWriteDeadline<T> {
        WithWriteDeadline {
            io,
            exempt,
            stalled: None,
        }
    }

    /// Counts `written` bytes; restarts the clock once enough went out.
    fn progress(&mut self, written: usize) {
        if let Some((_, taken)) = self.stalled.as_mut() {
            *taken += written;
            if *taken >= PROGRESS_BYTES {
                self.stalled = None;
            }
        }
    }

    /// A write waits: starts the clock, or fails once it ran out.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.exempt.load(Ordering::Relaxed) {
            self.stalled = None;
            return Poll::Pending;
        }
        let (sleep, _) = self
            .stalled
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(WRITE_DEADLINE)), 0));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no answer for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WithWriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WithWriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.progress(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                self.progress(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            // hyper flushes the socket once its own buffer went out whole.
            Poll::Ready(Ok(())) => {
                self.stalled = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Pending => self.waiting(cx).map(Err),
            ready => ready,
        }
    }
}
