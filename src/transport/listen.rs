//! Where `ua serve --listen` listens when systemd passed no socket: a TCP
//! address, or a unix socket path (`unix:/run/ua/http.sock`) for a reverse
//! proxy on the same host.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A listening socket: TCP, or a unix socket (from systemd or `--listen`).
pub enum Listener {
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
    /// A unix socket listener (passed by systemd, or `--listen unix:`).
    Unix(tokio::net::UnixListener),
}

/// The value of `--listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `ADDR:PORT`.
    Tcp(SocketAddr),
    /// `unix:/PATH` (or just `/PATH`).
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenAddr, String> {
        let path = text.strip_prefix("unix:").unwrap_or(text);
        if path.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if text.starts_with("unix:") {
            return Err(format!(
                "{text}: a unix socket needs an absolute path (unix:/run/ua/http.sock)"
            ));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            format!(
                "{text}: write ADDR:PORT (127.0.0.1:8000) or unix:/PATH (unix:/run/ua/http.sock)"
            )
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// Binds it. A unix socket gets mode 0666: whoever may reach its
    /// directory may connect, as every local user may reach a loopback port.
    pub async fn bind(&self) -> io::Result<Listener> {
        match self {
            ListenAddr::Tcp(addr) => Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?)),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = tokio::net::UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
                Ok(Listener::Unix(listener))
            }
        }
    }

    /// Removes the unix socket file this server bound, once it stops
    /// listening (a TCP address leaves nothing behind).
    pub fn remove(&self) {
        if let ListenAddr::Unix(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a server that is gone (killed, or a crash) would
/// make bind fail: it is removed. One that still answers, or a file that is
/// not a socket, is left alone and refused.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server listens on this socket",
        ));
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_and_unix_paths_parse() {
        assert_eq!(
            "127.0.0.1:8000".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:8000".parse().unwrap()))
        );
        assert_eq!(
            "[::1]:8000".parse(),
            Ok(ListenAddr::Tcp("[::1]:8000".parse().unwrap()))
        );
        let unix = ListenAddr::Unix("/run/ua/http.sock".into());
        assert_eq!("unix:/run/ua/http.sock".parse(), Ok(unix.clone()));
        assert_eq!("/run/ua/http.sock".parse(), Ok(unix.clone()));
        assert_eq!(unix.to_string(), "unix:/run/ua/http.sock");
        assert!("unix:http.sock".parse::<ListenAddr>().is_err());
        assert!("localhost:8000".parse::<ListenAddr>().is_err());
        assert!("http.sock".parse::<ListenAddr>().is_err());
    }
}
