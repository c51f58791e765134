//! Docker's container attach, asked for by hand: its detach key must be a
//! byte no student can type, and bollard can only send UTF-8 query strings.
//!
//! Docker ends an attach when the input carries its detach sequence
//! (`detachKeys`, parsed by moby/term's `ToBytes`: a one-byte key is taken
//! as that byte). Everything ua writes to the attach is UTF-8 (terminado
//! stdin is JSON text), and the byte 0xFF never occurs in UTF-8, so
//! `detachKeys=%FF` is a sequence nobody can type or paste.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::engine::docker::errors::DockerError;
use crate::engine::docker::exec::Attached;

/// The detach key, URL-encoded: the single byte 0xFF, never in UTF-8 text.
pub const DETACH_KEY_QUERY: &str = "%FF";
/// Longest answer head Docker sends before the raw stream.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long connecting and Docker's answer may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Read buffer of the attached output.
const READ_BYTES: usize = 8 * 1024;

trait Duplex: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Duplex for T {}

/// Where the daemon listens, from `DOCKER_HOST` as bollard reads it.
fn daemon_address() -> Result<Address, DockerError> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if host.is_empty() {
        return Ok(Address::Unix("/var/run/docker.sock".into()));
    }
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Address::Unix(path.into()));
    }
    if let Some(rest) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        return Ok(Address::Tcp(rest.trim_end_matches('/').into()));
    }
    Err(DockerError::Unreachable(
        "DOCKER_HOST must be unix:// or tcp:// for terminals".into(),
    ))
}

enum Address {
    Unix(String),
    Tcp(String),
}

async fn connect(address: &Address) -> std::io::Result<Pin<Box<dyn Duplex>>> {
    Ok(match address {
        Address::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
        Address::Tcp(addr) => Box::pin(tokio::net::TcpStream::connect(addr).await?),
    })
}

/// Attaches to the TTY of `container`'s main process (API `version`),
/// with the untypeable detach key.
pub async fn attach(version: &str, container: &str) -> Result<Attached, DockerError> {
    let address = daemon_address()?;
    let opened = tokio::time::timeout(ANSWER_WITHIN, open(&address, version, container)).await;
    let (stream, early) = match opened {
        Ok(result) => result?,
        Err(_) => return Err(DockerError::Unreachable("no attach answer in 10 s".into())),
    };
    let (read, input) = tokio::io::split(stream);
    let first = futures_util::stream::iter((!early.is_empty()).then(|| Ok(early)));
    let rest = futures_util::stream::unfold(read, |mut read| async move {
        let mut buffer = BytesMut::with_capacity(READ_BYTES);
        match read.read_buf(&mut buffer).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buffer.freeze()), read)),
            Err(e) => Some((
                Err(DockerError::Unreachable(format!("IO error: {e}"))),
                read,
            )),
        }
    });
    Ok(Attached {
        output: Box::pin(first.chain(rest)),
        input: Box::pin(input),
    })
}

/// Sends the attach request and reads Docker's answer head; gives the
/// upgraded stream and any output that came with the head.
async fn open(
    address: &Address,
    version: &str,
    container: &str,
) -> Result<(Pin<Box<dyn Duplex>>, Bytes), DockerError> {
    let unreachable = |e: std::io::Error| DockerError::Unreachable(e.to_string());
    let mut stream = connect(address).await.map_err(unreachable)?;
    let request = format!(
        "POST /v{version}/containers/{container}/attach?stream=1&stdin=1&stdout=1&stderr=1\
         &detachKeys={DETACH_KEY_QUERY} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n\
         Upgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(unreachable)?;
    let mut head = Vec::new();
    let end = loop {
        if let Some(end) = find_head_end(&head) {
            break end;
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(DockerError::Unreachable(
                "attach answer head too long".into(),
            ));
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.map_err(unreachable)?;
        if n == 0 {
            return Err(DockerError::Unreachable("attach answer cut short".into()));
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let status = status_of(&head[..end])?;
    if status == 101 || status == 200 {
        return Ok((stream, Bytes::copy_from_slice(&head[end..])));
    }
    let message = String::from_utf8_lossy(&head[end..]).trim().to_string();
    Err(match status {
        404 => DockerError::NotFound,
        _ => DockerError::Api { status, message },
    })
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn status_of(head: &[u8]) -> Result<u16, DockerError> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| DockerError::Unreachable(format!("odd attach answer: {line}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_key_is_a_byte_utf8_never_holds() {
        assert_eq!(DETACH_KEY_QUERY, "%FF");
        // No char of any UTF-8 string encodes to a 0xFF byte.
        let every: String = (0..=0x10FFFFu32).filter_map(char::from_u32).collect();
        assert!(!every.as_bytes().contains(&0xFF));
    }

    #[test]
    fn the_answer_head_gives_its_status() {
        let head = b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\nhi";
        let end = find_head_end(head).unwrap();
        assert_eq!(&head[end..], b"hi");
        assert_eq!(status_of(&head[..end]).unwrap(), 101);
        assert!(status_of(b"garbage").is_err());
    }
}
