//! The route token (docs/API.md, "Nodes and routing"): what a load balancer
//! hashes to send one spec to one node, since a sealed spec differs at every
//! seal. HMAC-SHA256 keyed with the first key, so it says nothing of the spec
//! to whoever lacks the key file.

use sha2::{Digest, Sha256};

use crate::seal::Keyring;

/// What the HMAC covers before the specID, so the token cannot be confused
/// with any other use of the key.
const CONTEXT: &[u8] = b"ua-route\0";
/// Hex digits of the token: 64 bits spread specs evenly enough.
const TOKEN_DIGITS: usize = 16;
const BLOCK: usize = 64;

/// The route token of `spec_id` under the key file's first key.
pub fn token(keys: &Keyring, spec_id: &str) -> String {
    token_with_key(keys.first_key(), spec_id)
}

/// The route token of `spec_id` under `key`.
pub fn token_with_key(key: &[u8], spec_id: &str) -> String {
    let mac = hmac_sha256(key, &[CONTEXT, spec_id.as_bytes()]);
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .split_at(TOKEN_DIGITS)
        .0
        .to_string()
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`; written out here, as
/// it is a few lines over the `sha2` crate ua already uses.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new_with_prefix(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new_with_prefix(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_contract_test_vector_holds() {
        let key: Vec<u8> = (0..32).collect();
        assert_eq!(
            token_with_key(&key, "course1/q42/variant-7f3a"),
            "76b129f1efbad080"
        );
        assert_eq!(token_with_key(&key, "é"), "ff525fe511ce3f45");
        let keys = Keyring::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(token(&keys, "course1/q42/variant-7f3a"), "76b129f1efbad080");
    }
}
