//! The shared key file and sealed specs (docs/API.md, "Keys" and "Sealed
//! specs"): NaCl `crypto_secretbox`, byte-compatible with PyNaCl's
//! `SecretBox(key).encrypt(plaintext)`. Specs are sealed with the keys
//! themselves; every other use has its own subkey ("Subkeys"), so that no
//! box ua seals for one purpose opens as another (output as a spec).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};
use xsalsa20poly1305::aead::{Aead, KeyInit};
use xsalsa20poly1305::XSalsa20Poly1305;
use zeroize::Zeroizing;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce, at the start of a sealed box.
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

type Key = Zeroizing<[u8; KEY_LEN]>;

/// What a key is used for (docs/API.md, "Subkeys"): each purpose but
/// `Spec` has a subkey of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Sealed specs: the key itself, as clients have always sealed them.
    Spec,
    /// `sealedOutput`: build, setup and render-error output.
    Output,
    /// A check's sealed `result`.
    Result,
    /// The route token's HMAC (`crate::crypto::route`).
    Route,
}

impl Purpose {
    /// Every purpose, in the order `ua open` tries them.
    pub const ALL: [Purpose; 4] = [
        Purpose::Spec,
        Purpose::Output,
        Purpose::Result,
        Purpose::Route,
    ];

    /// The subkey's label; none for specs, which use the key itself.
    fn label(self) -> Option<&'static str> {
        match self {
            Purpose::Spec => None,
            Purpose::Output => Some("output"),
            Purpose::Result => Some("result"),
            Purpose::Route => Some("route"),
        }
    }
}

/// The key for `purpose`: HMAC-SHA256(key, "ua-subkey" ‖ 0x00 ‖ label), or
/// the key itself for specs.
pub fn subkey(key: &[u8; KEY_LEN], purpose: Purpose) -> Zeroizing<[u8; KEY_LEN]> {
    match purpose.label() {
        None => Zeroizing::new(*key),
        Some(label) => Zeroizing::new(hmac_sha256(key, &[b"ua-subkey\0", label.as_bytes()])),
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`; written out here, as
/// it is a few lines over the `sha2` crate ua already uses.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| Zeroizing::new(block.map(|b| b ^ byte));
    let mut inner = Sha256::new_with_prefix(*pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new_with_prefix(*pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

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

    /// Seals a spec with the first key: base64(nonce ‖ tag ‖ ciphertext).
    /// The JSON is padded with spaces to a multiple of [`SPEC_PADDING`]
    /// bytes, so the sealed length tells little of the answers' lengths.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        self.seal_as(Purpose::Spec, &padded(plaintext))
    }

    /// Seals `plaintext` for `purpose` padded like a spec (a check's
    /// result: its length tells little of its tests).
    pub fn seal_padded_as(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        self.seal_as(purpose, &padded(plaintext))
    }

    /// Seals `plaintext` for `purpose` with the first key's subkey.
    pub fn seal_as(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        seal_with_nonce(&subkey(&self.keys[0], purpose), &nonce, plaintext)
    }

    /// The first key's subkey for `purpose` (the route token's key).
    pub fn first_subkey(&self, purpose: Purpose) -> Zeroizing<[u8; KEY_LEN]> {
        subkey(&self.keys[0], purpose)
    }

    /// Opens a sealed spec with whichever key fits. White space around it
    /// is ignored. A box sealed for any other purpose is `Forged`.
    pub fn open(&self, sealed: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        self.open_as(Purpose::Spec, sealed)
    }

    /// Opens a line sealed for `purpose` with whichever key's subkey fits.
    pub fn open_as(&self, purpose: Purpose, sealed: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
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
                XSalsa20Poly1305::new(subkey(key, purpose).as_ref().into())
                    .decrypt(nonce, boxed)
                    .ok()
            })
            .map(Zeroizing::new)
            .ok_or(OpenError::Forged)
    }
}

/// base64(nonce ‖ tag ‖ ciphertext) of `plaintext` under `key`.
fn seal_with_nonce(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> String {
    let cipher = XSalsa20Poly1305::new(key.into());
    let sealed = cipher
        .encrypt(nonce.into(), plaintext)
        .expect("sealing into memory cannot fail");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    BASE64.encode(out)
}

/// A new random key as a key-file line.
pub fn keygen() -> String {
    let mut key: Key = Zeroizing::new([0; KEY_LEN]);
    getrandom::fill(key.as_mut()).expect("the OS random number generator failed");
    BASE64.encode(key.as_ref())
}

/// Sealed specs are padded to a multiple of this many bytes.
pub const SPEC_PADDING: usize = 256;

/// `plaintext` with trailing spaces (JSON whitespace) up to a multiple of
/// [`SPEC_PADDING`].
fn padded(plaintext: &[u8]) -> Vec<u8> {
    let mut padded = plaintext.to_vec();
    padded.resize(plaintext.len().div_ceil(SPEC_PADDING) * SPEC_PADDING, b' ');
    padded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_specs_hide_the_length_within_a_step_of_padding() {
        let keys = Keyring::parse("c2VjcmV0LWtleS0zMi1ieXRlcy1sb25nLXh4eHh4eHg=\n").unwrap();
        let short = keys.seal(br#"{"specID":"a","assignmentName":"x","data":{"answer":"7"}}"#);
        let long =
            keys.seal(br#"{"specID":"a","assignmentName":"x","data":{"answer":"31415926"}}"#);
        assert_eq!(short.len(), long.len());
        let opened = keys.open(&short).unwrap();
        assert_eq!(opened.len(), SPEC_PADDING);
        assert!(crate::protocol::spec::Spec::parse(&opened).is_ok());
    }

    fn ring(lines: &[&str]) -> Keyring {
        Keyring::parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let keys = ring(&[&keygen()]);
        let sealed = keys.seal(b"{\"specID\":\"x\"}");
        // The padding is JSON whitespace after the spec.
        assert_eq!(
            keys.open(&format!("  {sealed}\n"))
                .unwrap()
                .trim_ascii_end(),
            b"{\"specID\":\"x\"}"
        );
    }

    #[test]
    fn every_key_opens_the_first_seals() {
        let (old, new) = (keygen(), keygen());
        let sealed_with_old = ring(&[&old]).seal(b"hi");
        let rotated = ring(&["# rotated", &new, "", &old]);
        assert_eq!(
            rotated.open(&sealed_with_old).unwrap().trim_ascii_end(),
            b"hi"
        );
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

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 (a short key) and 6 (a key longer than a block).
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// docs/API.md, "Subkeys": the contract's test vectors.
    #[test]
    fn the_subkey_test_vectors_hold() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        let vectors = [
            (
                Purpose::Output,
                "22e033cde54f6a3d7f89176c5bcbda9480064cd2e04b335a5c22eebe9ef5ed89",
            ),
            (
                Purpose::Result,
                "8c016dbc71ffe818f82e5460fc7a6f67f93b4b8c3e2d98a59d76530388f67461",
            ),
            (
                Purpose::Route,
                "8a3a8b8ecef22a9053d350bdbeeacaa50453950ff8406f17e20cd089908b1e7f",
            ),
        ];
        for (purpose, want) in vectors {
            assert_eq!(hex(subkey(&key, purpose).as_ref()), want, "{purpose:?}");
        }
        let nonce = [2u8; NONCE_LEN];
        let as_output = "AgICAgICAgICAgICAgICAgICAgICAgICwP/7IJQl3as4oxtvbypDdr9YP4pW";
        let as_spec = "AgICAgICAgICAgICAgICAgICAgICAgICoCF7hBYRST4HBmhnJKErCf9icEw8";
        let output_key = subkey(&key, Purpose::Output);
        assert_eq!(seal_with_nonce(&output_key, &nonce, b"hello"), as_output);
        assert_eq!(seal_with_nonce(&key, &nonce, b"hello"), as_spec);
        let keys = ring(&[&BASE64.encode(key)]);
        assert_eq!(
            &keys.open_as(Purpose::Output, as_output).unwrap()[..],
            b"hello"
        );
        assert_eq!(&keys.open(as_spec).unwrap()[..], b"hello");
        assert_eq!(keys.open(as_output), Err(OpenError::Forged));
        assert_eq!(
            keys.open_as(Purpose::Output, as_spec),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn no_purpose_opens_another_and_rotation_holds_for_each() {
        let (old, new) = (keygen(), keygen());
        let rotated = ring(&[&new, &old]);
        for sealer in Purpose::ALL {
            let sealed = ring(&[&old]).seal_as(sealer, b"x");
            for opener in Purpose::ALL {
                let opened = rotated.open_as(opener, &sealed);
                assert_eq!(opened.is_ok(), sealer == opener, "{sealer:?} by {opener:?}");
            }
        }
    }

    #[test]
    fn malformed_key_lines_are_named() {
        assert_eq!(Keyring::parse("# only a comment\n").err(), Some(None));
        assert_eq!(Keyring::parse("\nshort\n").err(), Some(Some(2)));
    }
}
