//! Finding an assignment by name without leaving the root, and packing its
//! per-instance build context (templates rendered, `.dockerignore` kept).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::protocol::spec::AssignmentName;

use crate::assignment::settings::{
    AssignmentError, Mode, Settings, CONTEXT_DIR, DOCKERFILE, DOCKERFILE_IN_CONTEXT,
    DOCKERFILE_TEMPLATE, SETTINGS_FILE, TEMPLATE_SUFFIX,
};
use crate::assignment::template::{Renderer, TemplateVars};

/// A located assignment directory, known to lie inside the root.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Its name.
    pub name: AssignmentName,
    /// Its `assignment.json`, or the defaults.
    pub settings: Settings,
    /// Shared image or per-instance image.
    pub mode: Mode,
    dir: PathBuf,
    root: PathBuf,
}

impl Assignment {
    /// Finds `name` under `root`; symlinks may not lead out of the root.
    pub fn find(root: &Path, name: &AssignmentName) -> Result<Assignment, AssignmentError> {
        let not_found = || AssignmentError::NotFound(name.to_string());
        let root = root.canonicalize().map_err(|_| not_found())?;
        let dir = root
            .join(name.relative_dir())
            .canonicalize()
            .map_err(|_| not_found())?;
        if !dir.starts_with(&root) {
            return Err(not_found());
        }
        let mode = match (
            dir.join(DOCKERFILE_TEMPLATE).is_file(),
            dir.join(DOCKERFILE).is_file(),
        ) {
            (true, false) => Mode::PerInstance,
            (false, true) => Mode::Shared,
            (true, true) => return Err(AssignmentError::BothModes(name.to_string())),
            (false, false) => return Err(not_found()),
        };
        let settings = match fs::read(dir.join(SETTINGS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AssignmentError::Settings(e.to_string()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Settings::default(),
            Err(cause) => {
                return Err(AssignmentError::Io {
                    name: name.to_string(),
                    cause,
                })
            }
        };
        Ok(Assignment {
            name: name.clone(),
            settings,
            mode,
            dir,
            root,
        })
    }

    /// The assignment's directory, inside the root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The assignments root (symlinked templates must stay inside it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Renders the Dockerfile and `context/**.tmpl`, and packs the context as
    /// a tar with the Dockerfile at [`DOCKERFILE_IN_CONTEXT`], `stage_label`
    /// (a `LABEL` line, or empty) after each of its `FROM`s. Blocking.
    pub fn render_context(
        &self,
        vars: &TemplateVars,
        stage_label: &str,
    ) -> Result<RenderedContext, AssignmentError> {
        let renderer = Renderer::new(vars);
        let render = |name: &str, source: &str| renderer.render(name, source);
        let io_error = |cause| AssignmentError::Io {
            name: self.name.to_string(),
            cause,
        };

        let source = fs::read_to_string(self.dir.join(DOCKERFILE_TEMPLATE)).map_err(io_error)?;
        let dockerfile = render(DOCKERFILE_TEMPLATE, &source)?;
        // FROM names written without template syntax hold no spec data.
        let static_bases = crate::assignment::base_images::base_images(&source)
            .into_iter()
            .filter(|name| !name.contains("{{") && !name.contains("{%"))
            .collect();

        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        append_bytes(
            &mut tar,
            DOCKERFILE_IN_CONTEXT,
            crate::assignment::stage_label::label_every_stage(&dockerfile, stage_label).as_bytes(),
            0o644,
        )
        .map_err(io_error)?;
        let ignore = format!("{DOCKERFILE_IN_CONTEXT}\n.dockerignore\n");
        append_bytes(&mut tar, ".dockerignore", ignore.as_bytes(), 0o644).map_err(io_error)?;

        let context_dir = self.dir.join(CONTEXT_DIR);
        if context_dir.is_dir() {
            let ignore = DockerIgnore::read(&context_dir).map_err(io_error)?;
            for relative in walk(&context_dir).map_err(io_error)? {
                let name = relative.to_string_lossy().into_owned();
                if name == ".dockerignore" || ignore.excludes(&name) {
                    continue;
                }
                let path = context_dir.join(&relative);
                let meta = fs::symlink_metadata(&path).map_err(io_error)?;
                match name.strip_suffix(TEMPLATE_SUFFIX) {
                    Some(rendered_name) if meta.is_file() || meta.is_symlink() => {
                        // A symlinked template is read through the link: only within the root.
                        let source_path = path.canonicalize().map_err(io_error)?;
                        if !source_path.starts_with(&self.root) {
                            return Err(AssignmentError::Render(format!(
                                "{name} links outside the assignments root"
                            )));
                        }
                        let meta = fs::metadata(&source_path).map_err(io_error)?;
                        let text =
                            render(&name, &fs::read_to_string(&source_path).map_err(io_error)?)?;
                        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
                        // The template's own time: stable, so identical renders share the cache.
                        let mtime = meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_secs());
                        append_file(&mut tar, rendered_name, text.as_bytes(), mode, mtime)
                            .map_err(io_error)?;
                    }
                    _ => tar
                        .append_path_with_name(&path, &relative)
                        .map_err(io_error)?,
                }
            }
        }
        Ok(RenderedContext {
            tar: tar.into_inner().map_err(io_error)?,
            dockerfile,
            static_bases,
        })
    }
}

/// A per-instance build context: the tar, and the rendered Dockerfile in it
/// (read for its `FROM` lines).
pub struct RenderedContext {
    /// The packed context.
    pub tar: Vec<u8>,
    /// The rendered Dockerfile, without the stage label the packed one has.
    pub dockerfile: String,
    /// The base images its template names without template syntax: the
    /// only ones an error may name (the others may carry spec data).
    pub static_bases: Vec<String>,
}

pub(super) fn append_bytes(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    append_file(tar, name, bytes, mode, 0)
}

pub(super) fn append_file(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    bytes: &[u8],
    mode: u32,
    mtime: u64,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode & 0o7777);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
}

/// Every entry under `dir`, relative to it, parents before children, sorted;
/// symlinked directories are not entered.
pub(super) fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(dir.join(&relative))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let child = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}

/// `.dockerignore` rules as Docker applies them: the last matching rule
/// wins, `!` re-includes, and a rule matching a directory covers its contents.
pub(super) struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl DockerIgnore {
    pub(super) fn read(context_dir: &Path) -> io::Result<DockerIgnore> {
        let text = match fs::read_to_string(context_dir.join(".dockerignore")) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(DockerIgnore::parse(&text))
    }

    fn parse(text: &str) -> DockerIgnore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|line| {
                let (pattern, include) = match line.strip_prefix('!') {
                    Some(rest) => (rest.trim(), true),
                    None => (line, false),
                };
                let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
                let glob = GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .ok()?;
                Some((glob.compile_matcher(), include))
            })
            .collect();
        DockerIgnore { rules }
    }

    pub(super) fn excludes(&self, relative: &str) -> bool {
        let mut excluded = false;
        for (matcher, include) in &self.rules {
            let mut candidates = Path::new(relative)
                .ancestors()
                .filter(|p| !p.as_os_str().is_empty());
            if candidates.any(|p| matcher.is_match(p)) {
                excluded = !include;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::settings::*;
    use crate::assignment::template::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn unpack(tar: &[u8]) -> BTreeMap<String, String> {
        let mut archive = tar::Archive::new(tar);
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                files.insert(entry.path().unwrap().display().to_string(), text);
            }
        }
        files
    }

    fn vars(data: &serde_json::Value) -> TemplateVars<'_> {
        TemplateVars {
            data,
            spec_id: "spec-1",
            instance_id: "inst-1",
        }
    }

    #[test]
    fn renders_dockerfile_and_context_templates_with_filters() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("archive/tar_extract");
        write(
            &dir.join("Dockerfile.tmpl"),
            "FROM base\nRUN echo {{ data.secret | shell }} {{ spec_id }}\n",
        );
        write(
            &dir.join("context/notes.txt.tmpl"),
            "{{ data | json }} {{ data.secret | b64 }} {{ instance_id }}",
        );
        write(&dir.join("context/plain.sh"), "echo {{ not rendered }}");
        write(&dir.join("context/skip/me.log"), "x");
        write(&dir.join("context/.dockerignore"), "skip\n*.log\n");
        let name = AssignmentName::parse("archive.tar_extract").unwrap();
        let assignment = Assignment::find(root.path(), &name).unwrap();
        let data = serde_json::json!({"secret": "it's"});
        let files = unpack(&assignment.render_context(&vars(&data), "").unwrap().tar);
        assert_eq!(
            files[DOCKERFILE_IN_CONTEXT],
            "FROM base\nRUN echo 'it'\\''s' spec-1\n"
        );
        assert_eq!(files["notes.txt"], r#"{"secret":"it's"} aXQncw== inst-1"#);
        assert_eq!(files["plain.sh"], "echo {{ not rendered }}");
        assert!(!files
            .keys()
            .any(|k| k.contains("skip") || k.ends_with(".tmpl")));
    }

    #[test]
    fn undefined_variables_fail_without_echoing_data() {
        let root = tempfile::tempdir().unwrap();
        let template = root.path().join("a/Dockerfile.tmpl");
        let assignment = || Assignment::find(root.path(), &AssignmentName::parse("a").unwrap());
        let data = serde_json::json!({"secret": "hunter2"});
        for missing in [
            "data.missing",
            "data.missing | json",
            "data.missing | b64",
            "data.missing | shell",
        ] {
            write(
                &template,
                &format!("FROM x\nRUN {{{{ {missing} }}}} {{{{ data.secret }}}}\n"),
            );
            let err = assignment()
                .unwrap()
                .render_context(&vars(&data), "")
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("undefined") && err.contains("line 2"),
                "{missing}: {err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn nothing_outside_the_root_is_found() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        write(&outer.path().join("secret/Dockerfile.tmpl"), "FROM x");
        write(&root.join("ok/Dockerfile.tmpl"), "FROM x");
        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("escape")).unwrap();
        let find = |n: &str| Assignment::find(&root, &AssignmentName::parse(n).unwrap());
        assert!(find("ok").is_ok());
        assert!(matches!(find("escape"), Err(AssignmentError::NotFound(_))));
        assert!(matches!(find("missing"), Err(AssignmentError::NotFound(_))));
    }

    #[test]
    fn assignment_json_is_read_and_checked() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("a/Dockerfile.tmpl"), "FROM x");
        let find = || Assignment::find(root.path(), &AssignmentName::parse("a").unwrap());
        assert_eq!(find().unwrap().settings, Settings::default());
        write(
            &root.path().join("a/assignment.json"),
            r#"{"memoryMB": 64, "pidsLimit": 32, "cpus": 0.5, "buildTimeout": "90s"}"#,
        );
        let settings = find().unwrap().settings;
        assert_eq!(settings.memory_mb, Some(64));
        assert_eq!(
            settings.build_timeout,
            Some(std::time::Duration::from_secs(90))
        );
        write(&root.path().join("a/assignment.json"), r#"{"memory": 64}"#);
        assert!(matches!(find(), Err(AssignmentError::Settings(_))));
    }

    #[test]
    fn shell_quoting_is_exact_in_scripts_and_dockerfiles() {
        let texts = [
            "plain",
            "it's",
            "a\\\nb",
            "two\nlines",
            "back\\",
            "$HOME `x` \"q\"",
        ];
        for text in texts {
            for quoted in [shell_quote(text), shell_quote_one_line(text)] {
                let out = std::process::Command::new("sh")
                    .args(["-c", &format!("printf %s {quoted}")])
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout), text, "{quoted}");
            }
            assert!(!shell_quote_one_line(text).contains('\n'));
        }
    }

    #[test]
    fn dockerignore_rules() {
        let ignore = DockerIgnore::parse("# c\n*.md\n!README.md\nbuild/\n/tmp/**\n");
        assert!(ignore.excludes("a.md"));
        assert!(!ignore.excludes("README.md"));
        assert!(!ignore.excludes("sub/a.md"));
        assert!(ignore.excludes("build/x/y"));
        assert!(ignore.excludes("tmp/a/b"));
        assert!(!ignore.excludes("src/main.c"));
    }
}
