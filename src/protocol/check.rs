//! A check's verdict and what ua makes of it (docs/API.md, "Checks"): the
//! verdict JSON a check writes to `$UA_RESULT`, validated; the answer to
//! `POST /instance/{id}/check`; the plaintext of its sealed `result`. Pure.

use serde_json::{Map, Value};

/// Most bytes of a check's output the student gets.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Most bytes of a verdict.
pub const MAX_VERDICT: usize = 64 * 1024;

/// The line that ends output cut at [`MAX_OUTPUT`].
pub const CUT_LINE: &str = "[ua: the check's output was cut at 64 KiB]";

/// Top-level names ua sets in the answer and the result; a verdict's own
/// fields of these names are dropped.
const RESERVED: [&str; 6] = [
    "output",
    "result",
    "specID",
    "assignmentName",
    "checkedAt",
    "instance",
];

/// What is wrong with a verdict; the words never quote it (it can hold answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictError {
    /// Over [`MAX_VERDICT`].
    #[error("the verdict is over 64 KiB")]
    TooBig,
    /// Not JSON.
    #[error("the verdict is not valid JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("the verdict is not a JSON object")]
    NotObject,
    /// `score` absent, not a number, or outside 0..=1.
    #[error("the verdict's score is not a number from 0 to 1")]
    Score,
    /// `tests` absent or not an array.
    #[error("the verdict's tests are not an array")]
    Tests,
    /// A test is not `{"name": string, "passed": bool, "message"?: string}`.
    #[error("the verdict's test {0} is not an object with a string name, a boolean passed and an optional string message")]
    Test(usize),
}

/// A valid verdict: the score, the tests, and the other fields, kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// From 0 to 1.
    pub score: f64,
    /// Each an object with `name`, `passed` and maybe `message`.
    pub tests: Vec<Map<String, Value>>,
    /// Other top-level fields, as written (reserved names dropped).
    pub extra: Map<String, Value>,
}

impl Verdict {
    /// Parses and checks a verdict.
    pub fn parse(bytes: &[u8]) -> Result<Verdict, VerdictError> {
        if bytes.len() > MAX_VERDICT {
            return Err(VerdictError::TooBig);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|_| VerdictError::NotJson)?;
        let Value::Object(mut fields) = value else {
            return Err(VerdictError::NotObject);
        };
        let score = fields
            .remove("score")
            .and_then(|s| s.as_f64())
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or(VerdictError::Score)?;
        let Some(Value::Array(tests)) = fields.remove("tests") else {
            return Err(VerdictError::Tests);
        };
        let tests = tests
            .into_iter()
            .enumerate()
            .map(|(index, test)| valid_test(test).ok_or(VerdictError::Test(index + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        for name in RESERVED {
            fields.remove(name);
        }
        Ok(Verdict {
            score,
            tests,
            extra: fields,
        })
    }

    /// The tests' names and messages passed through `redact`.
    pub fn redact(&mut self, redact: impl Fn(&str) -> String) {
        for test in &mut self.tests {
            for key in ["name", "message"] {
                if let Some(Value::String(text)) = test.get_mut(key) {
                    *text = redact(text);
                }
            }
        }
    }

    /// The plaintext of the sealed `result`.
    pub fn result(&self, spec_id: &str, assignment: &str, checked_at: i64, handle: &str) -> Value {
        let mut result = self.extra.clone();
        result.insert("specID".into(), spec_id.into());
        result.insert("assignmentName".into(), assignment.into());
        result.insert("score".into(), self.score.into());
        result.insert("tests".into(), self.tests_json());
        result.insert("checkedAt".into(), checked_at.into());
        result.insert("instance".into(), handle.into());
        Value::Object(result)
    }

    /// The `200` answer: the feedback, the verdict and the sealed result.
    pub fn answer(&self, output: &str, sealed_result: &str) -> Value {
        let mut answer = self.extra.clone();
        answer.insert("output".into(), output.into());
        answer.insert("score".into(), self.score.into());
        answer.insert("tests".into(), self.tests_json());
        answer.insert("result".into(), sealed_result.into());
        Value::Object(answer)
    }

    fn tests_json(&self) -> Value {
        Value::Array(self.tests.iter().cloned().map(Value::Object).collect())
    }
}

fn valid_test(test: Value) -> Option<Map<String, Value>> {
    let Value::Object(test) = test else {
        return None;
    };
    let named = test.get("name").is_some_and(Value::is_string);
    let passed = test.get("passed").is_some_and(Value::is_boolean);
    let message = test.get("message").is_none_or(Value::is_string);
    (named && passed && message).then_some(test)
}

/// The student's feedback from a check's raw output: the first
/// [`MAX_OUTPUT`] bytes (on a character boundary), then [`CUT_LINE`] when
/// there was more; invalid UTF-8 replaced.
pub fn feedback(kept: &[u8], cut: bool) -> String {
    let mut text = String::from_utf8_lossy(&kept[..kept.len().min(MAX_OUTPUT)]).into_owned();
    if cut || kept.len() > MAX_OUTPUT {
        // A character split at the cut is one U+FFFD at the end: drop it.
        if text.ends_with('\u{FFFD}') {
            text.pop();
        }
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
        text.push_str(CUT_LINE);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_verdict_keeps_its_extra_fields_and_drops_reserved_ones() {
        let verdict = Verdict::parse(
            br#"{"score": 0.5, "tests": [{"name": "a", "passed": true, "weight": 2},
                {"name": "b", "passed": false, "message": "no"}], "hint": "x", "specID": "forged"}"#,
        )
        .unwrap();
        assert_eq!(verdict.score, 0.5);
        assert_eq!(verdict.tests[0]["weight"], 2);
        let result = verdict.result("s", "a.b", 7, "h");
        assert_eq!(result["specID"], "s");
        assert_eq!(result["hint"], "x");
        assert_eq!(result["checkedAt"], 7);
        let answer = verdict.answer("out", "SEALED");
        assert_eq!(answer["result"], "SEALED");
        assert_eq!(answer["tests"][1]["message"], "no");
    }

    #[test]
    fn bad_verdicts_say_what_is_wrong() {
        let bad = |text: &str| Verdict::parse(text.as_bytes()).unwrap_err();
        assert_eq!(bad("{"), VerdictError::NotJson);
        assert_eq!(bad("[1]"), VerdictError::NotObject);
        assert_eq!(bad(r#"{"score": 1.5, "tests": []}"#), VerdictError::Score);
        assert_eq!(bad(r#"{"score": "1", "tests": []}"#), VerdictError::Score);
        assert_eq!(bad(r#"{"score": 1}"#), VerdictError::Tests);
        let no_name = r#"{"score": 1, "tests": [{"passed": true}]}"#;
        assert_eq!(bad(no_name), VerdictError::Test(1));
        let bad_message = r#"{"score": 0, "tests": [{"name": "a", "passed": true, "message": 3}]}"#;
        assert_eq!(bad(bad_message), VerdictError::Test(1));
        let big = format!(
            r#"{{"score": 0, "tests": [], "x": "{}"}}"#,
            "a".repeat(MAX_VERDICT)
        );
        assert_eq!(bad(&big), VerdictError::TooBig);
    }

    #[test]
    fn redaction_reaches_names_and_messages() {
        let mut verdict = Verdict::parse(
            br#"{"score": 0, "tests": [{"name": "is 4242", "passed": false, "message": "want 4242"}]}"#,
        )
        .unwrap();
        verdict.redact(|t| t.replace("4242", "[redacted]"));
        assert_eq!(verdict.tests[0]["name"], "is [redacted]");
        assert_eq!(verdict.tests[0]["message"], "want [redacted]");
    }

    #[test]
    fn feedback_is_cut_on_a_character_boundary_with_a_line_saying_so() {
        assert_eq!(feedback(b"ok\n", false), "ok\n");
        let mut long = vec![b'a'; MAX_OUTPUT - 1];
        long.extend_from_slice("é".as_bytes());
        let text = feedback(&long, true);
        assert!(
            text.ends_with(&format!("a\n{CUT_LINE}\n")),
            "{}",
            &text[text.len() - 60..]
        );
        assert!(!text.contains('\u{FFFD}'));
        assert_eq!(feedback(b"\xff", false), "\u{FFFD}");
    }
}
