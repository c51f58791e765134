//! Keeps spec data out of text a student sees (a check's feedback): every
//! string or number in `data` long enough to be recognisable is blanked, in
//! the forms the template filters produce too.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::Value;

/// Shorter values are left alone: blanking `a` or `42` would ruin the text
/// and protect little (docs/API.md, "Checks").
const MIN_SECRET_CHARS: usize = 4;

/// What a blanked value becomes.
pub const MARK: &str = "[redacted]";

/// The values to blank, in every form, longest first.
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for the spec's `data`.
    pub fn new(data: &Value) -> Redactor {
        let mut leaves = Vec::new();
        collect_strings(data, &mut leaves);
        let mut secrets: Vec<String> = leaves
            .iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .flat_map(|s| {
                let json = serde_json::to_string(s).unwrap_or_default();
                [
                    s.clone(),
                    BASE64.encode(s),
                    json[1..json.len() - 1].to_string(),
                ]
            })
            .collect();
        // Longest first, so that a secret containing another goes whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret blanked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MARK);
            }
        }
        out
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| collect_strings(v, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_secrets_in_every_form_and_leaves_short_ones() {
        let redactor = Redactor::new(&serde_json::json!({
            "secret": "hunter2", "nested": [{"answer": 31337}], "short": "ok",
            "quoted": "say \"hi\""
        }));
        let text = "got hunter2 and aHVudGVyMg== and 31337, ok, say \\\"hi\\\"";
        assert_eq!(
            redactor.redact(text),
            "got [redacted] and [redacted] and [redacted], ok, [redacted]"
        );
    }
}
