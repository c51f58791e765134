//! The agent protocol's frames over tokio streams, with its bounds.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ua_agent::proto::{self, Message, ProtoError, HEADER_LEN};

/// Reads one message; `None` when the connection ends between frames. A
/// frame over `MAX_PAYLOAD`, of an unknown type or that does not parse is
/// an error: the caller drops the connection.
pub(super) async fn read(r: &mut (impl AsyncRead + Unpin)) -> Result<Option<Message>, ProtoError> {
    let mut h = [0u8; HEADER_LEN];
    match r.read(&mut h[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut h[1..]).await?,
    };
    let (kind, len) = proto::parse_header(&h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Message::decode(kind, &payload).map(Some)
}

/// Writes one message as one frame.
pub(super) async fn write(
    w: &mut (impl AsyncWrite + Unpin),
    message: &Message,
) -> std::io::Result<()> {
    w.write_all(&message.encode()).await
}
