//! A command under a real pseudo-terminal: a detached tmux session, keys
//! sent to it and its screen read back (for `ua connect`, which needs a
//! terminal). Included with `#[path]` by the tests that need it, which use
//! different parts of it.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session running one command; killed on drop.
pub struct Tmux {
    session: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a 100x30 session.
    pub fn start(command: &str) -> Tmux {
        let session = format!("ua-test-{}-{}", std::process::id(), rand_tag());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30"])
            .arg(command)
            .status()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(status.success());
        Tmux { session }
    }

    /// `tmux send-keys`: literal text, or key names such as `Enter`.
    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Resizes the session's window (the command sees a SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let status = Command::new("tmux")
            .args(["resize-window", "-t", &self.session])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (up to 30 s) for `text` on the screen; returns the screen.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn rand_tag() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
