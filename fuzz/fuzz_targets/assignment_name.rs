//! No assignment name resolves outside the assignments root, whatever the
//! symlinks in it.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ua::assignment::Assignment;
use ua::protocol::spec::AssignmentName;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let outer = tempfile::tempdir().unwrap();
            let root = outer.path().join("root");
            let secret = outer.path().join("secret");
            for dir in [root.join("a/b"), secret.clone(), root.join("c")] {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("Dockerfile.tmpl"), "FROM x").unwrap();
            }
            std::os::unix::fs::symlink(&secret, root.join("escape")).unwrap();
            std::os::unix::fs::symlink("../../secret", root.join("a/up")).unwrap();
            std::os::unix::fs::symlink("b", root.join("a/inside")).unwrap();
            let root = root.canonicalize().unwrap();
            (outer, root)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(name) = AssignmentName::parse(text) else { return };
    let relative = name.relative_dir();
    assert!(relative.is_relative());
    assert!(relative.components().all(|c| matches!(c, std::path::Component::Normal(_))));
    if let Ok(found) = Assignment::find(root(), &name) {
        assert!(found.dir().starts_with(root()), "{text:?} escaped to {:?}", found.dir());
    }
});
