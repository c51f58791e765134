//! Short, non-secret handles for instances (docs/API.md, "Handles"). The
//! instance ID is the bearer credential of a terminal, so logs, the admin
//! CLI and metrics name an instance by the first 8 hex digits of
//! HMAC-SHA256(server key, instance ID) instead. The key is random per
//! state directory (`<state-dir>/handle-key`, mode 0600), so a handle
//! cannot be turned back into its ID, and stays the same across restarts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The file in the state directory that holds the handle key.
pub const KEY_FILE: &str = "handle-key";

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Loads the state directory's handle key, making it on first use.
pub fn init(state_dir: &Path) -> std::io::Result<()> {
    let path = state_dir.join(KEY_FILE);
    let key = match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("32 bytes"),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not 32 bytes; remove it and a new one is made (log handles change)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(&key)?;
            file.sync_all()?;
            key
        }
        Err(e) => return Err(e),
    };
    let _ = KEY.set(key);
    Ok(())
}

/// The handle of `instance_id`: 8 lowercase hex digits. Without `init`
/// (tools, tests) a random key of this process is used.
pub fn of(instance_id: &str) -> String {
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        key
    });
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(instance_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` (say, Docker's words about the container `ua-<ID>`) with every
/// occurrence of `instance_id` replaced by `<handle>`, for a log line or an
/// error message.
pub fn hide(text: impl std::fmt::Display, instance_id: &str) -> String {
    let text = text.to_string();
    if instance_id.is_empty() {
        return text;
    }
    text.replace(instance_id, &format!("<{}>", of(instance_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` has the form of a handle.
    fn is_handle(text: &str) -> bool {
        text.len() == 8 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn handles_are_short_stable_and_not_the_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let handle = of(id);
        assert!(is_handle(&handle), "{handle}");
        assert_eq!(of(id), handle);
        assert!(!id.contains(&handle));
        assert_ne!(of("0123456789abcdef0123456789abcdee"), handle);
    }

    #[test]
    fn hide_replaces_every_occurrence_of_the_id() {
        let id = "n7-0123456789abcdef0123456789abcdef";
        let text = format!("No such container: ua-{id}; image ua/{id}");
        let hidden = hide(&text, id);
        assert!(!hidden.contains(id), "{hidden}");
        let handle = of(id);
        assert_eq!(
            hidden,
            format!("No such container: ua-<{handle}>; image ua/<{handle}>")
        );
        assert_eq!(hide("nothing here", id), "nothing here");
    }
}
