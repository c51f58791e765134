//! Instance IDs (128 random bits in hex) and node identity (docs/API.md,
//! "Nodes and routing"): a server started with
//! `--node-id NAME` makes instance IDs `NAME-<32 hex digits>`, so a load
//! balancer routes `/instance/NAME-…` to it by path prefix.

/// The longest node ID.
pub const MAX_LEN: usize = 16;

/// Checks a `--node-id`: 1–16 characters of `[a-z0-9]`.
pub fn parse_node_id(text: &str) -> Result<String, String> {
    let ok = (1..=MAX_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "a node ID is 1 to {MAX_LEN} characters of a-z and 0-9, such as `a` or `node3`"
        ))
    }
}

/// A new instance ID for this node: its prefix, if any, and 128 random bits.
pub fn new_instance_id(node: Option<&str>) -> String {
    let random = random_id();
    match node {
        Some(node) => format!("{node}-{random}"),
        None => random,
    }
}

/// Instance IDs are 128 random bits in lowercase hex: URL-safe, and safe as
/// a file name and in a Docker image tag.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` has the form of an instance ID (so it is safe as a file
/// name): 32 hex digits, with or without a node's `NAME-` prefix
/// .
pub fn is_instance_id(text: &str) -> bool {
    let random = match text.split_once('-') {
        Some((node, random)) => {
            if parse_node_id(node).is_err() {
                return false;
            }
            random
        }
        None => text,
    };
    random.len() == 32
        && random
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_lowercase_words() {
        for good in ["a", "node3", "0123456789abcdef"] {
            assert_eq!(parse_node_id(good).unwrap(), good);
        }
        for bad in ["", "A", "node-3", "a_b", "0123456789abcdefg", "é", "a/b"] {
            assert!(parse_node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instance_ids_carry_the_node_prefix() {
        let id = new_instance_id(Some("node3"));
        assert!(id.starts_with("node3-") && id.len() == 6 + 32, "{id}");
        assert!(is_instance_id(&id));
        let plain = new_instance_id(None);
        assert!(plain.len() == 32 && is_instance_id(&plain));
    }

    #[test]
    fn instance_ids_are_random_hex() {
        let (a, b) = (random_id(), random_id());
        assert!(is_instance_id(&a) && is_instance_id(&b) && a != b);
        assert!(!is_instance_id("../etc/passwd"));
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(is_instance_id(&format!("node3-{hex}")));
        for bad in ["-", "A-", "a-b-", "../", "0123456789abcdefg-"] {
            assert!(!is_instance_id(&format!("{bad}{hex}")), "{bad}");
        }
        assert!(!is_instance_id(&format!("a-{}", &hex[1..])));
    }
}
