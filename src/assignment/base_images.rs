//! Base images: which images a Dockerfile's `FROM` lines name, and the
//! `--pull` policy that decides whether ua fetches them before a build.
//! The daemon would otherwise pull a missing base by itself, from Docker
//! Hub, with no time limit.

use std::collections::HashSet;

/// When to pull the base images of a build (`--pull`, `UA_PULL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Never: a base image missing on the host fails the build, naming it.
    Never,
    /// Pull a base image the host lacks.
    Missing,
    /// Pull every base image before each build, for a newer version.
    Always,
}

/// The images named by `FROM` lines, in order and without repeats; `scratch`,
/// earlier stages (`FROM x AS name`) and references still holding a
/// variable after `ARG` defaults are applied are left out.
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: HashSet<String> = HashSet::new();
    let mut args: Vec<(String, String)> = Vec::new();
    let mut seen_from = false;
    let mut images = Vec::new();
    for line in logical_lines(dockerfile) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") && !seen_from {
            // Only ARGs before the first FROM apply to FROM lines.
            for word in words {
                if let Some((name, value)) = word.split_once('=') {
                    args.push((name.to_string(), unquote(value).to_string()));
                }
            }
            continue;
        }
        if !instruction.eq_ignore_ascii_case("FROM") {
            continue;
        }
        seen_from = true;
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(reference) = rest.first() else {
            continue;
        };
        let reference = substitute(reference, &args);
        if let [_, keyword, name] = rest.as_slice() {
            if keyword.eq_ignore_ascii_case("AS") {
                stages.insert(name.to_ascii_lowercase());
            }
        }
        let is_stage = stages.contains(&reference.to_ascii_lowercase())
            && !rest
                .get(2)
                .is_some_and(|name| name.eq_ignore_ascii_case(&reference));
        if reference.eq_ignore_ascii_case("scratch")
            || reference.contains('$')
            || is_stage
            || images.contains(&reference)
        {
            continue;
        }
        images.push(reference);
    }
    images
}

/// Lines with `\` continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') && current.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

fn unquote(value: &str) -> &str {
    value.trim_matches('"').trim_matches('\'')
}

/// `$NAME` and `${NAME}` replaced by ARG defaults; unknown ones stay.
fn substitute(reference: &str, args: &[(String, String)]) -> String {
    let mut out = reference.to_string();
    for (name, value) in args.iter().rev() {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Who the last stage runs as: its last `USER`, or (`Err`) the image it
/// starts `FROM` when it sets none (whose own `USER` then holds).
pub fn last_stage_user(dockerfile: &str) -> Result<String, Option<String>> {
    let mut user = None;
    let mut from = None;
    for line in logical_lines(dockerfile) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some(word) if word.eq_ignore_ascii_case("FROM") => {
                from = words.find(|w| !w.starts_with("--")).map(str::to_owned);
                user = None;
            }
            Some(word) if word.eq_ignore_ascii_case("USER") => {
                user = words.next().map(|u| unquote(u).to_string());
            }
            _ => {}
        }
    }
    user.ok_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stages_user_or_its_base_is_found() {
        let two_stages = "FROM a AS build\nUSER x\nFROM --platform=p b\nRUN true\n";
        assert_eq!(last_stage_user(two_stages), Err(Some("b".into())));
        assert_eq!(
            last_stage_user("FROM a\nUSER root\nUSER \"student\"\n"),
            Ok("student".into())
        );
        assert_eq!(last_stage_user("# nothing\n"), Err(None));
    }

    #[test]
    fn from_lines_name_bases_but_not_stages_or_scratch() {
        let dockerfile = "\
# syntax comment
ARG BASE=debian:12
FROM --platform=linux/amd64 ${BASE} AS build
RUN make
from scratch
FROM build AS again
FROM 127.0.0.1:5000/ua/base:v1
COPY --from=build /x /x
FROM \\
  ua-busybox:latest
FROM ua-busybox:latest
FROM $UNKNOWN
";
        assert_eq!(
            base_images(dockerfile),
            vec![
                "debian:12".to_string(),
                "127.0.0.1:5000/ua/base:v1".to_string(),
                "ua-busybox:latest".to_string(),
            ]
        );
    }

    #[test]
    fn a_stage_named_like_its_base_is_still_pulled() {
        assert_eq!(base_images("FROM base AS base\n"), vec!["base".to_string()]);
    }
}
