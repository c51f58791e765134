//! Node identity (docs/API.md, "Nodes and routing"): a server started with
//! `--node-id NAME` makes instance IDs `NAME-<32 hex digits>`, so a load
//! balancer routes `/instance/NAME-…` to it by path prefix.

use std::fmt::Write;

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
    let random = crate::instance::store::new_instance_id();
    match node {
        Some(node) => format!("{node}-{random}"),
        None => random,
    }
}

/// The `ua_node_info` gauge of `/metrics`.
pub fn render_metric(out: &mut String, node: Option<&str>) {
    let _ = writeln!(
        out,
        "# HELP ua_node_info The node this server is (--node-id; empty for none).\n\
         # TYPE ua_node_info gauge\n\
         ua_node_info{{node=\"{}\"}} 1",
        node.unwrap_or("")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::store::is_instance_id;

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
}
