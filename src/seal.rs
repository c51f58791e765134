//! The shared key file and sealed specs (docs/API.md, "Keys" and "Sealed
//! specs"): NaCl `crypto_secretbox`, byte-compatible with PyNaCl's
//! `SecretBox(key).encrypt(plaintext)`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use xsalsa20poly1305::aead::{Aead, KeyInit};
use xsalsa20poly1305::XSalsa20Poly1305;
use zeroize::Zeroizing;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce, at the start of a sealed box.
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

type Key = Zeroizing<[u8; KEY_LEN]>;

/// Why a key file cannot be used; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read key file {path}: {cause} (create one with `ua keygen > {path} && chmod 600 {path}`)")]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// What the file system said.
        cause: std::io::Error,
    },
    /// Group or others may read it.
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not a key.
    #[error("key file {path}, line {line}: not a key; each key is 32 bytes in standard base64 (44 characters), as `ua keygen` prints")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
    },
    /// It holds no key.
    #[error("key file {path} holds no key; add one made by `ua keygen`")]
    Empty {
        /// The key file.
        path: PathBuf,
    },
}

/// Why a sealed spec did not open. Never carries any of the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Not standard base64.
    #[error("the sealed spec is not standard base64")]
    NotBase64,
    /// Shorter than a nonce and a tag.
    #[error("the sealed spec is too short to be a sealed box")]
    TooShort,
    /// No key opens it.
    #[error("the sealed spec was forged, altered, or sealed with a key this server does not hold")]
    Forged,
}

/// The keys of a key file: the first seals, every one opens.
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// Reads and checks a key file (docs/API.md, "Keys").
    pub fn load(path: &Path) -> Result<Keyring, KeyFileError> {
        let unreadable = |cause| KeyFileError::Unreadable {
            path: path.to_owned(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(unreadable)?);
        Keyring::parse(&text).map_err(|e| match e {
            Some(line) => KeyFileError::Malformed {
                path: path.to_owned(),
                line,
            },
            None => KeyFileError::Empty {
                path: path.to_owned(),
            },
        })
    }

    /// Parses key file text; the error is the bad line's number, or `None` when empty.
    pub fn parse(text: &str) -> Result<Keyring, Option<usize>> {
        let mut keys = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = Zeroizing::new(BASE64.decode(line).map_err(|_| Some(index + 1))?);
            let mut key: Key = Zeroizing::new([0; KEY_LEN]);
            if bytes.len() != KEY_LEN {
                return Err(Some(index + 1));
            }
            key.copy_from_slice(&bytes);
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(None);
        }
        Ok(Keyring { keys })
    }

    /// How many keys the file held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a key file with no key is refused.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plaintext` with the first key: base64(nonce ‖ tag ‖ ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        let cipher = XSalsa20Poly1305::new(self.keys[0].as_ref().into());
        let sealed = cipher
            .encrypt(&nonce.into(), plaintext)
            .expect("sealing into memory cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        BASE64.encode(out)
    }

    /// The first key (the sealing key): it also keys the route token (`crate::route`).
    pub fn first_key(&self) -> &[u8; KEY_LEN] {
        &self.keys[0]
    }

    /// Opens a sealed line with whichever key fits. White space around it is ignored.
    pub fn open(&self, sealed: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let bytes = BASE64
            .decode(sealed.trim())
            .map_err(|_| OpenError::NotBase64)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::TooShort);
        }
        let (nonce, boxed) = bytes.split_at(NONCE_LEN);
        let nonce = xsalsa20poly1305::Nonce::from_slice(nonce);
        self.keys
            .iter()
            .find_map(|key| {
                XSalsa20Poly1305::new(key.as_ref().into())
                    .decrypt(nonce, boxed)
                    .ok()
            })
            .map(Zeroizing::new)
            .ok_or(OpenError::Forged)
    }
}

/// A new random key as a key-file line.
pub fn keygen() -> String {
    let mut key: Key = Zeroizing::new([0; KEY_LEN]);
    getrandom::fill(key.as_mut()).expect("the OS random number generator failed");
    BASE64.encode(key.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[&str]) -> Keyring {
        Keyring::parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let keys = ring(&[&keygen()]);
        let sealed = keys.seal(b"{\"specID\":\"x\"}");
        assert_eq!(
            &keys.open(&format!("  {sealed}\n")).unwrap()[..],
            b"{\"specID\":\"x\"}"
        );
    }

    #[test]
    fn every_key_opens_the_first_seals() {
        let (old, new) = (keygen(), keygen());
        let sealed_with_old = ring(&[&old]).seal(b"hi");
        let rotated = ring(&["# rotated", &new, "", &old]);
        assert_eq!(&rotated.open(&sealed_with_old).unwrap()[..], b"hi");
        assert_eq!(
            ring(&[&old]).open(&rotated.seal(b"x")),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn tampering_and_junk_are_refused() {
        let keys = ring(&[&keygen()]);
        let mut raw = BASE64.decode(keys.seal(b"answer")).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        assert_eq!(keys.open(&BASE64.encode(&raw)), Err(OpenError::Forged));
        assert_eq!(keys.open("not base64!"), Err(OpenError::NotBase64));
        assert_eq!(keys.open("AAAA"), Err(OpenError::TooShort));
    }

    #[test]
    fn known_answer_from_libsodium() {
        // Key 0x01.., nonce 0x02..: the box PyNaCl gives for b"hello".
        let key = BASE64.encode([1u8; 32]);
        let keys = ring(&[&key]);
        let sealed = "AgICAgICAgICAgICAgICAgICAgICAgICaRF4oKbpM89AV5wURjA7xZUAspER";
        assert_eq!(&keys.open(sealed).unwrap()[..], b"hello");
    }

    #[test]
    fn malformed_key_lines_are_named() {
        assert_eq!(Keyring::parse("# only a comment\n").err(), Some(None));
        assert_eq!(Keyring::parse("\nshort\n").err(), Some(Some(2)));
    }
}
