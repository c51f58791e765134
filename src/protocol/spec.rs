//! The plaintext spec (docs/API.md, "Sealed specs"): parsing and validation.
//! Error messages name the field at fault but never echo its value: specs
//! carry answers.

use std::path::PathBuf;

use serde_json::Value;

/// Longest `specID` accepted, in characters.
pub const MAX_SPEC_ID_CHARS: usize = 200;

/// Why an opened spec is refused; names the field, never its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Not a UTF-8 JSON object.
    #[error("the opened spec is not a UTF-8 JSON object")]
    NotJsonObject,
    /// A required field is absent (or null).
    #[error("the spec has no `{0}` field")]
    Missing(&'static str),
    /// A field has the wrong type.
    #[error("the spec's `{0}` field has the wrong type")]
    WrongType(&'static str),
    /// `specID` is empty or over 200 characters.
    #[error("the spec's `specID` must be 1 to 200 characters")]
    SpecIdLength,
    /// `assignmentName` is not segments of `[A-Za-z0-9_-]` joined by `.` or `/`.
    #[error("the spec's `assignmentName` must be segments of letters, digits, `_` or `-`, joined by `.` or `/`")]
    BadAssignmentName,
}

/// An assignment's name, reduced to its segments: `a.b` and `a/b` are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssignmentName(Vec<String>);

impl AssignmentName {
    /// Parses `a.b` or `a/b`; nothing that could leave the root passes.
    pub fn parse(text: &str) -> Result<AssignmentName, SpecError> {
        let segments: Vec<String> = text.split(['.', '/']).map(str::to_owned).collect();
        let valid_segment = |s: &String| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if segments.iter().all(valid_segment) {
            Ok(AssignmentName(segments))
        } else {
            Err(SpecError::BadAssignmentName)
        }
    }

    /// The directory of the assignment relative to the assignments root.
    pub fn relative_dir(&self) -> PathBuf {
        self.0.iter().collect()
    }
}

impl std::fmt::Display for AssignmentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// An opened and validated spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `specID`: the spec's identity.
    pub spec_id: String,
    /// `assignmentName`.
    pub assignment: AssignmentName,
    /// `data`: the templates' context, which may hold answers.
    pub data: Value,
    /// `notAfter`, in unix seconds.
    pub not_after: Option<i64>,
    /// Unix seconds: keep the instance at least until then (capped by `--max-keep`).
    pub keep_until: Option<i64>,
    /// The sealed text it was opened from, when the server opened it: the
    /// record keeps it for checks (docs/API.md, "Checks").
    pub sealed: Option<String>,
}

impl Spec {
    /// Parses and checks the plaintext of an opened spec.
    pub fn parse(plaintext: &[u8]) -> Result<Spec, SpecError> {
        let value: Value =
            serde_json::from_slice(plaintext).map_err(|_| SpecError::NotJsonObject)?;
        let Value::Object(mut fields) = value else {
            return Err(SpecError::NotJsonObject);
        };
        let spec_id = match fields.remove("specID") {
            None | Some(Value::Null) => return Err(SpecError::Missing("specID")),
            Some(Value::String(s)) => s,
            Some(_) => return Err(SpecError::WrongType("specID")),
        };
        let chars = spec_id.chars().count();
        if chars == 0 || chars > MAX_SPEC_ID_CHARS {
            return Err(SpecError::SpecIdLength);
        }
        let assignment = match fields.remove("assignmentName") {
            None | Some(Value::Null) => return Err(SpecError::Missing("assignmentName")),
            Some(Value::String(s)) => AssignmentName::parse(&s)?,
            Some(_) => return Err(SpecError::WrongType("assignmentName")),
        };
        let data = match fields.remove("data") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v) => v,
        };
        let not_after = unix_seconds(fields.remove("notAfter"), "notAfter")?;
        let keep_until = unix_seconds(fields.remove("keepUntil"), "keepUntil")?;
        Ok(Spec {
            spec_id,
            assignment,
            data,
            not_after,
            keep_until,
            sealed: None,
        })
    }

    /// True when the spec is presented after its `notAfter`.
    pub fn expired_at(&self, unix_now: i64) -> bool {
        self.not_after.is_some_and(|limit| unix_now > limit)
    }
}

/// An optional time field in unix seconds.
fn unix_seconds(value: Option<Value>, field: &'static str) -> Result<Option<i64>, SpecError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(SpecError::WrongType(field)),
        Some(_) => Err(SpecError::WrongType(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_until_is_optional_unix_seconds() {
        let spec =
            Spec::parse(br#"{"specID":"s","assignmentName":"a","keepUntil":1893456000}"#).unwrap();
        assert_eq!(spec.keep_until, Some(1893456000));
        let spec = Spec::parse(br#"{"specID":"s","assignmentName":"a"}"#).unwrap();
        assert_eq!(spec.keep_until, None);
        assert_eq!(
            Spec::parse(br#"{"specID":"s","assignmentName":"a","keepUntil":"soon"}"#).unwrap_err(),
            SpecError::WrongType("keepUntil")
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let spec = Spec::parse(
            br#"{"specID":"course1/q42/variant-7f3a","assignmentName":"archive.tar_extract",
                "data":{"filename":"notes.txt"},"notAfter":1893456000,"extra":true}"#,
        )
        .unwrap();
        assert_eq!(spec.spec_id, "course1/q42/variant-7f3a");
        assert_eq!(spec.assignment.to_string(), "archive/tar_extract");
        assert_eq!(spec.data["filename"], "notes.txt");
        assert!(!spec.expired_at(1893456000));
        assert!(spec.expired_at(1893456001));
    }

    #[test]
    fn data_defaults_to_an_empty_object() {
        let spec = Spec::parse(br#"{"specID":"s","assignmentName":"a"}"#).unwrap();
        assert_eq!(spec.data, serde_json::json!({}));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: &[(&[u8], SpecError)] = &[
            (b"[1]", SpecError::NotJsonObject),
            (b"\xff", SpecError::NotJsonObject),
            (br#"{"assignmentName":"a"}"#, SpecError::Missing("specID")),
            (
                br#"{"specID":"","assignmentName":"a"}"#,
                SpecError::SpecIdLength,
            ),
            (
                br#"{"specID":5,"assignmentName":"a"}"#,
                SpecError::WrongType("specID"),
            ),
            (br#"{"specID":"s"}"#, SpecError::Missing("assignmentName")),
            (
                br#"{"specID":"s","assignmentName":"a","notAfter":"x"}"#,
                SpecError::WrongType("notAfter"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Spec::parse(text).unwrap_err(), *want);
        }
        let long = format!(r#"{{"specID":"{}","assignmentName":"a"}}"#, "é".repeat(201));
        assert_eq!(
            Spec::parse(long.as_bytes()).unwrap_err(),
            SpecError::SpecIdLength
        );
    }

    #[test]
    fn assignment_names_cannot_escape() {
        for bad in [
            "", "..", "a..b", "/a", "a/", "a/../b", "a b", "a\\b", "./a", "~a", "a/.b",
        ] {
            assert!(AssignmentName::parse(bad).is_err(), "{bad:?}");
        }
        let name = AssignmentName::parse("archive/tar_extract").unwrap();
        assert_eq!(name, AssignmentName::parse("archive.tar_extract").unwrap());
        assert_eq!(name.relative_dir(), PathBuf::from("archive/tar_extract"));
    }
}
