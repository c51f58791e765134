//! [`Hub`]: one socket directory and listener per agent container, and the
//! agent's latest control connection in each.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use ua_agent::proto::{Message, PROTOCOL_VERSION, SOCKET_NAME};

use crate::engine::agent::error::AgentError;
use crate::engine::agent::frames;
use crate::engine::agent::link::{Link, Shared};

/// How long a new connection may take to say what it is.
const FIRST_FRAME: Duration = Duration::from_secs(10);
/// How often [`Hub::link`] looks for a connected agent.
const LINK_POLL: Duration = Duration::from_millis(20);

struct Slot {
    control: Mutex<Option<Link>>,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Every agent container's socket directory, under one root only ua writes.
pub struct Hub {
    root: PathBuf,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Hub {
    /// Socket directories go under `root` (created 0700).
    pub fn new(root: PathBuf) -> std::io::Result<Arc<Hub>> {
        private_dir(&root)?;
        Ok(Arc::new(Hub {
            root,
            slots: Mutex::new(HashMap::new()),
        }))
    }

    /// A fresh key for a new container's socket directory.
    pub fn new_key() -> String {
        crate::crypto::ids::random_id()
    }

    /// Whether `key` may name a directory (hex, as [`Hub::new_key`] makes).
    pub fn is_key(key: &str) -> bool {
        (16..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The directory bind-mounted into the container of `key`.
    pub fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Listens for the agent of `key` (idempotent): makes its directory
    /// (0700, ours) and a fresh socket in it. Its path never changes, so a
    /// running container's bind mount finds the new socket after a restart.
    pub fn listen(&self, key: &str) -> Result<PathBuf, AgentError> {
        if !Hub::is_key(key) {
            return Err(AgentError::Io(std::io::Error::other("not an agent key")));
        }
        let mut slots = self.slots.lock().unwrap();
        let dir = self.dir(key);
        if slots.contains_key(key) {
            return Ok(dir);
        }
        private_dir(&dir)?;
        let socket = dir.join(SOCKET_NAME);
        // Only ua writes in `dir`: what lies at `socket` is our old socket.
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let listener = UnixListener::bind(&socket)?;
        let shared = Arc::new(Shared::default());
        let slot = Arc::new_cyclic(|weak: &std::sync::Weak<Slot>| Slot {
            control: Mutex::new(None),
            shared: shared.clone(),
            accept: tokio::spawn(accept(listener, weak.clone())),
        });
        slots.insert(key.to_string(), slot);
        Ok(dir)
    }

    /// Stops listening for `key` and removes its directory.
    pub fn forget(&self, key: &str) {
        if !Hub::is_key(key) {
            return;
        }
        self.slots.lock().unwrap().remove(key);
        let _ = std::fs::remove_dir_all(self.dir(key));
    }

    /// The agent of `key`'s control connection, waiting up to `wait` for it
    /// to connect (a container just started, or ua just restarted).
    pub async fn link(&self, key: &str, wait: Duration) -> Result<Link, AgentError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let slot = self.slots.lock().unwrap().get(key).cloned();
            let Some(slot) = slot else {
                return Err(AgentError::NotConnected);
            };
            let link = slot.control.lock().unwrap().clone();
            if let Some(link) = link.filter(Link::is_alive) {
                return Ok(link);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AgentError::NotConnected);
            }
            tokio::time::sleep(LINK_POLL).await;
        }
    }
}

/// Makes `dir` a directory of ours that nobody else may enter; refuses a
/// symbolic link or a directory of someone else.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => other?,
    }
    let meta = std::fs::symlink_metadata(dir)?;
    use std::os::unix::fs::MetadataExt;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory of ua's",
            dir.display()
        )));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

async fn accept(listener: UnixListener, slot: std::sync::Weak<Slot>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let slot = slot.clone();
        tokio::spawn(async move {
            if let Some(slot) = slot.upgrade() {
                greet(stream, &slot).await;
            }
        });
    }
}

/// A new connection: root's only (the agent runs as root; a student's
/// user cannot pass the 0700 directory anyway), then a control connection
/// (HELLO) or the attach an OPEN asked for (ATTACH).
async fn greet(mut stream: UnixStream, slot: &Slot) {
    if !stream.peer_cred().is_ok_and(|c| c.uid() == 0) {
        log::warn!("agent socket: a connection not from root was refused");
        return;
    }
    let first = tokio::time::timeout(FIRST_FRAME, frames::read(&mut stream)).await;
    match first {
        Ok(Ok(Some(Message::Hello { version, agent }))) if version == PROTOCOL_VERSION => {
            log::debug!("agent socket: agent {agent} connected");
            let link = Link::start(stream, slot.shared.clone());
            *slot.control.lock().unwrap() = Some(link);
        }
        Ok(Ok(Some(Message::Attach { id, .. }))) => {
            let waiting = slot.shared.attaches.lock().unwrap().remove(&id);
            if let Some(waiting) = waiting {
                let _ = waiting.send(stream);
            }
        }
        _ => log::debug!("agent socket: a connection that did not greet was dropped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whether the hub has closed `stream` (it reads an end, not a hang).
    async fn closed(mut stream: UnixStream) -> bool {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }

    /// A real socket: what a hostile root in the container could send.
    #[tokio::test]
    async fn frames_out_of_protocol_close_only_their_connection() {
        let root = tempfile::tempdir().unwrap();
        let hub = Hub::new(root.path().join("agents")).unwrap();
        let key = Hub::new_key();
        let socket = hub.listen(&key).unwrap().join(SOCKET_NAME);
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            agent: "test".into(),
        }
        .encode();
        let sends: [&[u8]; 4] = [
            &[0x01, 0xff, 0xff, 0xff, 0xff],             // over MAX_PAYLOAD
            &[0x99, 0, 0, 0, 1, 0],                      // an unknown type
            &[0x01, 0, 0, 0, 1, 0],                      // a HELLO too short to parse
            &[0x30, 0, 0, 0, 7, 0, 0, 0, 9, 0, 1, b'x'], // an ATTACH nobody asked for
        ];
        for bytes in sends {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            assert!(closed(stream).await, "{bytes:x?}");
        }
        assert!(hub.link(&key, Duration::ZERO).await.is_err());
        // A linked agent that then sends garbage loses its link, nothing more.
        let mut agent = UnixStream::connect(&socket).await.unwrap();
        agent.write_all(&hello).await.unwrap();
        let link = hub.link(&key, Duration::from_secs(5)).await.unwrap();
        agent.write_all(&[0x99, 0, 0, 0, 0]).await.unwrap();
        assert!(closed(agent).await);
        assert!(!link.is_alive());
        let mut again = UnixStream::connect(&socket).await.unwrap();
        again.write_all(&hello).await.unwrap();
        assert!(hub
            .link(&key, Duration::from_secs(5))
            .await
            .unwrap()
            .is_alive());
        hub.forget(&key);
        assert!(!root.path().join("agents").join(&key).exists());
    }

    #[test]
    fn keys_name_nothing_but_their_directory() {
        assert!(Hub::is_key(&Hub::new_key()));
        for bad in ["", "..", "../etc", "abc/def", "0123456789abcdeg"] {
            assert!(!Hub::is_key(bad), "{bad}");
        }
    }
}
