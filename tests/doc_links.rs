//! The README and the guides stay a way in and a web: the README is short,
//! and every relative link in the documents names a file that exists and,
//! for a Markdown file, a heading in it (GitHub's anchors).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents whose links are checked: the top-level ones, docs/ and the
/// clients' READMEs.
fn documents() -> Vec<PathBuf> {
    let root = repo();
    let mut docs: Vec<PathBuf> = [
        "README.md",
        "SECURITY.md",
        "BENCHMARKS.md",
        "clients/python/README.md",
        "clients/prairielearn/README.md",
        "clients/prairielearn/elements/uassign_terminal/README.md",
    ]
    .iter()
    .map(|path| root.join(path))
    .collect();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            docs.push(path);
        }
    }
    docs
}

/// The lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// turned into hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(path: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    prose(&text)
        .into_iter()
        .filter(|line| line.starts_with('#'))
        .filter_map(|line| line.trim_start_matches('#').strip_prefix(' '))
        .map(anchor)
        .collect()
}

/// The targets of the links (`[text](target)`) in a document's prose,
/// without URLs.
fn relative_targets(text: &str) -> Vec<String> {
    let prose = prose(text).join("\n");
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if !target.contains(':') && !target.contains(char::is_whitespace) {
            targets.push(target.to_string());
        }
    }
    targets
}

/// What is wrong with one link of `doc`, if anything.
fn broken(doc: &Path, target: &str) -> Option<String> {
    let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
    let path = match file {
        "" => doc.to_path_buf(),
        file => doc.parent().unwrap().join(file),
    };
    if !path.exists() {
        return Some(format!("{}: {target}: no such file", doc.display()));
    }
    let markdown = path.extension().is_some_and(|ext| ext == "md");
    if !fragment.is_empty() && markdown && !anchors(&path).contains(fragment) {
        return Some(format!("{}: {target}: no such heading", doc.display()));
    }
    None
}

#[test]
fn every_relative_link_in_the_documents_resolves() {
    let mut problems = Vec::new();
    let mut links = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for target in relative_targets(&text) {
            links += 1;
            problems.extend(broken(&doc, &target));
        }
    }
    assert!(
        links > 50,
        "only {links} links found: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_missing_heading_or_file_is_found() {
    let readme = repo().join("README.md");
    assert!(broken(&readme, "docs/OPERATING.md#configuration-reference").is_none());
    assert!(broken(&readme, "docs/OPERATING.md#no-such-heading").is_some());
    assert!(broken(&readme, "docs/NO-SUCH-GUIDE.md").is_some());
}

#[test]
fn the_readme_is_a_way_in_with_the_two_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 400,
        "README.md has {lines} lines: move detail into a guide under docs/"
    );
    for command in ["```sh\nscripts/demo\n```", "```sh\nscripts/test\n```"] {
        assert!(readme.contains(command), "README.md lost {command:?}");
    }
}
