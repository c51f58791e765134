//! Living under systemd: the socket it hands over (listenfd), readiness,
//! status and watchdog notifications (sd-notify). Logging under systemd is
//! `logging`'s.

use std::time::Duration;

use listenfd::ListenFd;
use sd_notify::NotifyState;

use crate::transport::listen::ListenAddr;
use crate::transport::listen::Listener;

/// The sockets taken from systemd before the runtime starts
/// (`ListenFd::from_env` edits the environment, which is only safe while
/// single-threaded). Empty when none was passed.
pub struct Inherited(Vec<InheritedSocket>);

enum InheritedSocket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Takes every socket systemd passed: an operator who adds a second
/// `ListenStream=` (say `[::1]:8000`) gets both served, not one left hanging.
pub fn take_inherited_socket() -> std::io::Result<Inherited> {
    let mut fds = ListenFd::from_env();
    let mut sockets = Vec::new();
    for index in 0..fds.len() {
        if let Ok(Some(listener)) = fds.take_tcp_listener(index) {
            sockets.push(InheritedSocket::Tcp(listener));
        } else if let Some(listener) = fds.take_unix_listener(index)? {
            sockets.push(InheritedSocket::Unix(listener));
        } else {
            return Err(std::io::Error::other(format!(
                "socket {index} that systemd passed is neither a TCP nor a unix stream \
                 listener; ua.socket may only have ListenStream= lines"
            )));
        }
    }
    Ok(Inherited(sockets))
}

impl Inherited {
    /// The listeners to serve on: the inherited ones, else `fallback` bound now.
    pub async fn into_listeners(self, fallback: &ListenAddr) -> std::io::Result<Vec<Listener>> {
        if self.0.is_empty() {
            return Ok(vec![fallback.bind().await?]);
        }
        self.0
            .into_iter()
            .map(|socket| {
                Ok(match socket {
                    InheritedSocket::Tcp(listener) => {
                        listener.set_nonblocking(true)?;
                        Listener::Tcp(tokio::net::TcpListener::from_std(listener)?)
                    }
                    InheritedSocket::Unix(listener) => {
                        listener.set_nonblocking(true)?;
                        Listener::Unix(tokio::net::UnixListener::from_std(listener)?)
                    }
                })
            })
            .collect()
    }

    /// Whether systemd passed any socket.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Tells systemd the server is ready.
pub fn notify_ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

/// Tells systemd the server is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Sets the status line that `systemctl status` shows.
pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
}

/// How often to feed the watchdog, when systemd asked for one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

/// Feeds systemd's watchdog.
pub fn notify_watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}
