//! Where log lines go. Under systemd (`JOURNAL_STREAM` names ua's stderr and
//! journald's socket answers) records go through journald's native protocol
//! with their key-value pairs as fields: `ua_instance = handle` becomes
//! `UA_INSTANCE=…`, `ua_spec = id` becomes `UA_SPEC=…`, so that
//! `journalctl -u ua UA_INSTANCE=…` finds an instance's lines. When only
//! `JOURNAL_STREAM` is set (and stderr is no terminal), stderr lines start
//! with their `<N>` syslog priority; otherwise (a terminal, a test) with a
//! timestamp.
//!
//! Log lines name an instance by its handle (`handle::of`), never its ID:
//! the ID is the terminal's bearer credential and the journal is readable
//! by the group adm.

use std::io::{IsTerminal, Write};

use systemd_journal_logger::JournalLog;

/// Where this process's log lines go.
enum Output {
    /// journald's native protocol (stderr if a send fails).
    Journal(JournalLog),
    /// stderr, each line led by `<N>`, for journald's stream reader.
    Prefixed,
    /// stderr, each line led by a timestamp and the level.
    Plain,
}

/// Picks the output from the environment systemd sets.
fn output() -> Output {
    // A terminal may inherit JOURNAL_STREAM (one started by a user
    // service): a person reads it, not journald.
    if std::env::var_os("JOURNAL_STREAM").is_none() || std::io::stderr().is_terminal() {
        return Output::Plain;
    }
    // JOURNAL_STREAM may be inherited by a process whose stderr goes
    // elsewhere: the native protocol only when it names our stderr.
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = JournalLog::empty() {
            return Output::Journal(journal.with_syslog_identifier("ua".to_string()));
        }
    }
    Output::Prefixed
}

/// The syslog priority of `level` on stderr: `<6>` info, `<7>` debug.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The `log` backend of `ua serve`.
struct Logger {
    output: Output,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // The global level, not a level of ours: a reload may change it.
        metadata.level() <= log::max_level() && metadata.target().starts_with("ua")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Client-chosen text (a path, a header) may hold newlines and `<N>`:
        // one record stays one line, one journal entry.
        let text = record.args().to_string();
        let message = escape_controls(&text);
        let line = match &self.output {
            Output::Journal(journal) => {
                let sent = journal.journal_send(
                    &log::Record::builder()
                        .args(format_args!("{message}"))
                        .level(record.level())
                        .target(record.target())
                        .module_path(record.module_path())
                        .file(record.file())
                        .line(record.line())
                        .key_values(record.key_values())
                        .build(),
                );
                match sent {
                    Ok(()) => return,
                    // journald restarting: the stream still reaches it.
                    Err(_) => format!("<{}>{message}\n", priority(record.level())),
                }
            }
            Output::Prefixed => format!("<{}>{message}\n", priority(record.level())),
            Output::Plain => format!(
                "{} {:5} {message}\n",
                humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                record.level(),
            ),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `text` with its control characters (newline, carriage return, escape,
/// …) written as Rust escapes (`\n`, `\u{1b}`), so that a log line stays
/// one line whatever a client put in it.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// `bytes` as text for a person's terminal: lines and tabs kept, every
/// other control character escaped (`\u{1b}`), so output a student could
/// shape (a setup echoing a submission) cannot retitle or clear the screen.
pub fn for_terminal(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(|c| match c {
            '\n' | '\t' => vec![c],
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect()
}

/// Installs the logger of `ua serve` at `level`.
pub fn init(level: log::LevelFilter) {
    let logger = Logger { output: output() };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// Reports an error that ends the process (a bad key file, a locked state
/// directory, bad flags) at priority 3 (err) under systemd, so that
/// `journalctl -p warning -u ua` shows why ua did not start; as
/// `ua: message` otherwise.
pub fn fatal(message: &str) {
    let message = format!("ua: {}", message.trim_end());
    let sent = match output() {
        Output::Plain => {
            eprintln!("{message}");
            return;
        }
        Output::Journal(journal) => journal
            .journal_send(
                &log::Record::builder()
                    .level(log::Level::Error)
                    .target("ua")
                    .args(format_args!("{message}"))
                    .build(),
            )
            .is_ok(),
        Output::Prefixed => false,
    };
    if !sent {
        // One journal entry per stderr line: each needs its priority.
        let mut err = std::io::stderr().lock();
        for line in message.lines().filter(|line| !line.trim().is_empty()) {
            let _ = writeln!(err, "<3>{line}");
        }
    }
}

/// Whether log lines go to the journal (natively or with `<N>` prefixes).
pub fn to_journal() -> bool {
    !matches!(output(), Output::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_keeps_lines_and_escapes_the_rest() {
        let shown = for_terminal(b"a\tb\n\x1b]0;PWNED\x07\x1b[2Jred\r");
        assert_eq!(shown, "a\tb\n\\u{1b}]0;PWNED\\u{7}\\u{1b}[2Jred\\r");
    }

    #[test]
    fn control_characters_are_escaped_onto_one_line() {
        assert_eq!(escape_controls("plain <0> text"), "plain <0> text");
        assert_eq!(
            escape_controls("a\n<0>ua: forged\r\u{1b}[2J\tb\u{85}"),
            "a\\n<0>ua: forged\\r\\u{1b}[2J\\tb\\u{85}"
        );
        assert!(!escape_controls("x\ny\rz").contains(['\n', '\r']));
    }
}
