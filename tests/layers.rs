//! The shape of `src/` (docs/ARCHITECTURE.md, "Layers"): arrows run one
//! way. Read from the `crate::` and `super::` paths of every file, with std
//! only: no two folders import each other, directly or round a loop, and
//! inside each folder no two files do. Beside it, the sizes the code keeps:
//! no file over 450 code lines, no function over 80 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest file, in lines that are neither blank nor comments.
const MAX_FILE_CODE_LINES: usize = 450;
/// Longest function, from its `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 80;

/// One source file: its module path (`engine::docker::build`; `""` for
/// `lib.rs`) and its text with comment lines taken out.
struct Source {
    module: Vec<String>,
    is_face: bool,
    path: PathBuf,
    text: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|path| path != &root.join("main.rs"))
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let is_face = matches!(module.last().map(String::as_str), Some("mod" | "lib"));
            if is_face {
                module.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            Source {
                module,
                is_face,
                path,
                text,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: lines that are not comments, and each line cut at a
/// `//` that starts a comment (outside a string, roughly: after a space).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| line.find(" // ").map_or(line, |at| &line[..at]))
}

/// Every path a piece of code names after `prefix` (`crate::` or
/// `super::`), with `{a, b::{c}}` groups spread out.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut tree = Vec::new();
        parse_tree(&mut rest.chars().peekable(), Vec::new(), &mut tree);
        found.extend(tree);
    }
    found
}

/// Reads one use tree (`a::b`, `a::{b, c::d}`) into whole paths.
fn parse_tree(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    mut path: Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                parse_tree(chars, path.clone(), out);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                match chars.next() {
                    Some(',') => continue,
                    _ => return,
                }
            }
        }
        let mut segment = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_alphanumeric() || c == '_' {
                segment.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if segment.is_empty() {
            break;
        }
        path.push(segment);
        let mut lookahead = chars.clone();
        if lookahead.next() == Some(':') && lookahead.next() == Some(':') {
            chars.next();
            chars.next();
        } else {
            break;
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The module a path names: its longest prefix that is a module.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// For each file, the modules it names (itself and its own inline test
/// module left out: `super::` after `mod tests` is the file itself).
fn imports(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for source in sources {
        let mut named = BTreeSet::new();
        let code: String = code_lines(&source.text).collect::<Vec<_>>().join("\n");
        let (outer, _tests) = code.split_once("mod tests {").unwrap_or((&code, ""));
        let mut paths = paths_after(&code, "crate::");
        let parent = &source.module[..source.module.len().saturating_sub(1)];
        for path in paths_after(outer, "super::") {
            let mut whole = parent.to_vec();
            whole.extend(path);
            paths.push(whole);
        }
        if source.is_face {
            // A face names its own children without a prefix: `pub use a::X;`.
            for line in outer.lines() {
                let line = line.trim_start();
                let line = line.strip_prefix("pub ").unwrap_or(line);
                if let Some(tree) = line.strip_prefix("use ") {
                    let mut local = Vec::new();
                    parse_tree(&mut tree.chars().peekable(), Vec::new(), &mut local);
                    for path in local {
                        let mut whole = source.module.clone();
                        whole.extend(path);
                        paths.push(whole);
                    }
                }
            }
        }
        for path in paths {
            if let Some(target) = resolve(&path, &modules) {
                if target != source.module {
                    named.insert(target);
                }
            }
        }
        graph.insert(source.module.clone(), named);
    }
    graph
}

/// At every folder, the arrows between its rooms: its files and subfolders
/// by name, its `mod.rs` as `mod`. Keyed by the folder (`crate` at the top).
fn arrows_by_folder(
    graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, targets) in graph {
        for to in targets {
            let shared = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            let room = |m: &[String]| m.get(shared).cloned().unwrap_or_else(|| "mod".into());
            let (a, b) = (room(from), room(to));
            if a == b {
                continue;
            }
            let folder = if shared == 0 {
                "crate".into()
            } else {
                from[..shared].join("::")
            };
            folders
                .entry(folder)
                .or_default()
                .entry(a)
                .or_default()
                .insert(b);
        }
    }
    folders
}

/// One loop of arrows, if there is any: `a -> b -> a`.
fn find_cycle(arrows: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        arrows: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        stack.push(node.to_string());
        for next in arrows.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, arrows, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    arrows
        .keys()
        .find_map(|node| visit(node, arrows, &mut done, &mut Vec::new()))
}

#[test]
fn no_folder_or_file_imports_round_a_loop() {
    let folders = arrows_by_folder(&imports(&sources()));
    assert!(
        folders.contains_key("crate"),
        "no arrows read at the top: {folders:?}"
    );
    let cycles: Vec<String> = folders
        .iter()
        .filter_map(|(folder, arrows)| {
            find_cycle(arrows).map(|cycle| format!("in {folder}: {}", cycle.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_groups_faces_and_cycles() {
    let mut paths = paths_after("use crate::a::{b::X, c::{d, e::Y}};", "crate::");
    paths.sort();
    let want: Vec<Vec<String>> = [
        &["a", "b", "X"][..],
        &["a", "c", "d"],
        &["a", "c", "e", "Y"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(paths, want);
    let arrows = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&arrows).unwrap(), ["a", "b", "c", "a"]);
    let mut open = arrows.clone();
    open.remove("c");
    assert_eq!(find_cycle(&open), None);
}

#[test]
fn no_file_is_over_450_code_lines() {
    let long: Vec<String> = sources()
        .iter()
        .map(|s| {
            (
                s,
                code_lines(&s.text).filter(|l| !l.trim().is_empty()).count(),
            )
        })
        .filter(|(_, n)| *n > MAX_FILE_CODE_LINES)
        .map(|(s, n)| format!("{}: {n}", shown(&s.path)))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_CODE_LINES} code lines:\n{}",
        long.join("\n")
    );
}

/// Functions as rustfmt lays them out: from a line with `fn NAME` to the
/// first line after it that is a `}` at the same indentation.
fn long_functions(text: &str, limit: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let head = line.trim_start();
        let Some(name) = head
            .split_once("fn ")
            .filter(|(before, _)| before.split_whitespace().all(is_fn_qualifier))
            .map(|(_, after)| after.split(['(', '<']).next().unwrap_or("").to_string())
        else {
            continue;
        };
        if head.ends_with(';') || head.ends_with('}') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[at..].iter().position(|l| *l == close) {
            if end + 1 > limit {
                long.push((name, end + 1));
            }
        }
    }
    long
}

fn is_fn_qualifier(word: &str) -> bool {
    matches!(word, "pub" | "async" | "const" | "unsafe") || word.starts_with("pub(")
}

#[test]
fn no_function_is_over_80_lines() {
    let long: Vec<String> = sources()
        .iter()
        .flat_map(|s| {
            long_functions(&s.text, MAX_FUNCTION_LINES)
                .into_iter()
                .map(|(name, n)| format!("{}: {name} {n}", shown(&s.path)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// A path as the project names it: from its root.
fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
