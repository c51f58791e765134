//! The route token (docs/API.md, "Nodes and routing"): what a load balancer
//! hashes to send one spec to one node, since a sealed spec differs at every
//! seal. HMAC-SHA256 keyed with the first key's `route` subkey, so it says
//! nothing of the spec to whoever lacks the key file.

use crate::crypto::seal::{hmac_sha256, subkey, Keyring, Purpose, KEY_LEN};

/// Hex digits of the token: 64 bits spread specs evenly enough.
const TOKEN_DIGITS: usize = 16;

/// The route token of `spec_id` under the key file's first key.
pub fn token(keys: &Keyring, spec_id: &str) -> String {
    hex_token(&keys.first_subkey(Purpose::Route), spec_id)
}

/// The route token of `spec_id` under `key` (a key of the key file).
pub fn token_with_key(key: &[u8; KEY_LEN], spec_id: &str) -> String {
    hex_token(&subkey(key, Purpose::Route), spec_id)
}

fn hex_token(route_key: &[u8; KEY_LEN], spec_id: &str) -> String {
    let mac = hmac_sha256(route_key, &[spec_id.as_bytes()]);
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .split_at(TOKEN_DIGITS)
        .0
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_test_vector_holds() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            token_with_key(&key, "course1/q42/variant-7f3a"),
            "fff92af7fd67f703"
        );
        assert_eq!(token_with_key(&key, "é"), "d8902e8e65a94982");
        let keys = Keyring::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(token(&keys, "course1/q42/variant-7f3a"), "fff92af7fd67f703");
    }
}
