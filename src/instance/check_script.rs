//! The shell that runs a check inside the container, and what ua reads
//! back from it: the script's output on standard output (the feedback), and
//! on standard error one header line and the verdict. Pure but for the
//! shell, which the tests run against a real container.

use std::time::Duration;

use crate::engine::docker::SplitOutcome;
use crate::protocol::check::{feedback, Verdict, MAX_VERDICT};

/// Room on standard error for the header line before the verdict.
pub const HEADER_ROOM: usize = 128;

/// Lines of output kept for the author of a check that failed.
const TAIL_LINES: usize = 20;
/// Longest line kept for the author.
const TAIL_LINE_BYTES: usize = 500;

/// Runs the check given on standard input (first line: a random token and
/// the time limit in seconds; then the script). The script never touches
/// the disk and is in no process's arguments: the inner shell reads it on
/// its standard input. Every process of the check carries `UA_CHECK=token`
/// in its environment (which only root may read): at the time limit, and
/// once the check ends, the processes that carry it are killed. fd 3 (the
/// exec's standard error) is closed to the check, so that nothing it runs
/// can forge the verdict line.
const CHECK_SHELL: &str = r#"exec 3>&2 2>&1
read -r ua_token ua_limit || exit 125
ua_check=$(cat) || exit 125
umask 077
ua_dir=$(mktemp -d) || { echo "[ua: mktemp -d failed: the check has nowhere to write its verdict]"; printf 'none 125\n' >&3; exit 125; }
UA_RESULT=$ua_dir/verdict.json
export UA_RESULT
ua_kill() {
  ua_round=0
  while [ "$ua_round" -lt 20 ]; do
    ua_found=
    for ua_p in /proc/[0-9]*; do
      case "$(cat "$ua_p/environ" 2>/dev/null)" in
        *"UA_CHECK=$ua_token"*) kill -9 "${ua_p#/proc/}" 2>/dev/null && ua_found=1 ;;
      esac
    done
    [ -n "$ua_found" ] || return 0
    ua_round=$((ua_round + 1))
  done
}
printf '%s' "$ua_check" | UA_CHECK=$ua_token /bin/sh -c 'ua_check=$(cat); exec </dev/null; eval "$ua_check"' 3>&- &
ua_pid=$!
( sleep "$ua_limit"; : > "$ua_dir/.timeout"; ua_kill ) >/dev/null 2>&1 3>&- </dev/null &
ua_dog=$!
wait "$ua_pid"
ua_status=$?
kill "$ua_dog" 2>/dev/null
wait "$ua_dog" 2>/dev/null
ua_kill 2>/dev/null
if [ -e "$ua_dir/.timeout" ]; then
  printf 'timeout\n' >&3
elif [ -f "$UA_RESULT" ]; then
  printf 'verdict %s %s\n' "$ua_status" "$(wc -c < "$UA_RESULT")" >&3
  cat "$UA_RESULT" >&3
else
  printf 'none %s\n' "$ua_status" >&3
fi
rm -rf "$ua_dir"
"#;

/// The exec's command: the shell above, the same text for every check.
pub const CHECK_COMMAND: [&str; 3] = ["/bin/sh", "-c", CHECK_SHELL];

/// What the shell is given on standard input.
pub fn stdin(script: &str, limit: Duration) -> Vec<u8> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).expect("the OS random number generator failed");
    let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let seconds = limit.as_secs_f64().ceil().max(1.0) as u64;
    format!("{token} {seconds}\n{script}").into_bytes()
}

/// What the shell's header line says.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// The check ran past its limit and was killed.
    Timeout,
    /// It ended with this status and wrote no verdict.
    NoVerdict(i64),
    /// It ended with this status; the verdict is this many bytes.
    Verdict(i64, usize),
}

/// The header line at the start of `stderr`, and where the rest begins.
fn header(stderr: &[u8]) -> Option<(Header, usize)> {
    let end = stderr.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&stderr[..end]).ok()?;
    let mut words = line.split_whitespace();
    let header = match (words.next()?, words.next(), words.next()) {
        ("timeout", None, None) => Header::Timeout,
        ("none", Some(status), None) => Header::NoVerdict(status.parse().ok()?),
        ("verdict", Some(status), Some(size)) => {
            Header::Verdict(status.parse().ok()?, size.parse().ok()?)
        }
        _ => return None,
    };
    Some((header, end + 1))
}

/// Whether the shell has said all it will on standard error.
pub fn is_complete(stderr: &[u8]) -> bool {
    match header(stderr) {
        Some((Header::Verdict(_, size), start)) => {
            stderr.len() >= start + size.min(MAX_VERDICT + 1)
        }
        Some(_) => true,
        None => false,
    }
}

/// A finished run, read.
pub struct Report<'a> {
    outcome: &'a SplitOutcome,
}

impl<'a> Report<'a> {
    /// Reads `outcome`.
    pub fn read(outcome: &'a SplitOutcome) -> Report<'a> {
        Report { outcome }
    }

    /// The feedback and the verdict, or why there is none.
    pub fn verdict(&self, limit: Duration) -> Result<(String, Verdict), Fault> {
        let stderr = &self.outcome.stderr;
        let tail = || tail_of(&self.outcome.stdout);
        let Some((header, start)) = header(stderr) else {
            return Err(failed(
                "the check did not run to its end (does the image have /bin/sh?)",
                tail(),
            ));
        };
        let (status, size) = match header {
            Header::Timeout => return Err(over_time(limit, tail())),
            Header::NoVerdict(status) => {
                let why = format!(
                    "the check wrote no verdict to $UA_RESULT (it exited with status {status})"
                );
                return Err(failed(&why, tail()));
            }
            Header::Verdict(status, size) => (status, size),
        };
        let body = &stderr[start.min(stderr.len())..];
        let parsed = if size > MAX_VERDICT || self.outcome.stderr_cut {
            Err(crate::protocol::check::VerdictError::TooBig)
        } else {
            Verdict::parse(&body[..size.min(body.len())])
        };
        match parsed {
            Ok(verdict) => Ok((
                feedback(&self.outcome.stdout, self.outcome.stdout_cut),
                verdict,
            )),
            Err(e) => {
                let mut tail = tail();
                tail.push(format!(
                    "[ua: the check exited with status {status}; {e}; the verdict began:]"
                ));
                tail.push(cut_line(&String::from_utf8_lossy(
                    &body[..body.len().min(TAIL_LINE_BYTES)],
                )));
                Err(failed(
                    &format!("the check's verdict is not valid: {e}"),
                    tail,
                ))
            }
        }
    }
}

/// A check that ran past `limit`.
pub fn over_time(limit: Duration, mut tail: Vec<String>) -> Fault {
    let limit = humantime::format_duration(limit);
    tail.push(format!(
        "[ua: the check took longer than {limit} and was stopped]"
    ));
    failed(
        &format!("the check took longer than its time limit of {limit} and was stopped"),
        tail,
    )
}

/// Why a check gave no verdict: `why` in words without spec data, `tail`
/// (the last output, raw) for the author.
#[derive(Debug)]
pub struct Fault {
    /// What failed.
    pub why: String,
    /// The last output lines and the verdict's fault.
    pub tail: Vec<String>,
}

fn failed(why: &str, tail: Vec<String>) -> Fault {
    Fault {
        why: why.to_string(),
        tail,
    }
}

/// The last non-blank lines of `output`, each cut, for the author.
fn tail_of(output: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines[from..].iter().map(|l| cut_line(l)).collect()
}

fn cut_line(line: &str) -> String {
    let mut end = line.len().min(TAIL_LINE_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stdout: &str, stderr: &[u8]) -> SplitOutcome {
        SplitOutcome {
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_header_says_when_standard_error_is_complete() {
        assert!(!is_complete(b"verdict 0 10\n{\"a\""));
        assert!(is_complete(b"verdict 0 4\n{}  "));
        assert!(is_complete(b"timeout\n"));
        assert!(is_complete(b"none 3\n"));
        assert!(!is_complete(b"none"));
        assert!(!is_complete(b"junk here\n"));
    }

    #[test]
    fn a_verdict_is_read_and_faults_are_named() {
        let limit = Duration::from_secs(30);
        let verdict = br#"{"score": 1, "tests": []}"#;
        let mut stderr = format!("verdict 1 {}\n", verdict.len()).into_bytes();
        stderr.extend_from_slice(verdict);
        let outcome = run("ok\n", &stderr);
        let (output, parsed) = Report::read(&outcome).verdict(limit).unwrap();
        assert_eq!((output.as_str(), parsed.score), ("ok\n", 1.0));
        let why = |stderr: &[u8]| match Report::read(&run("a\n\nb\n", stderr)).verdict(limit) {
            Err(Fault { why, tail }) => (why, tail),
            _ => panic!("not a failure"),
        };
        assert!(why(b"timeout\n").0.contains("time limit of 30s"));
        let (text, tail) = why(b"none 2\n");
        assert!(
            text.contains("no verdict") && text.contains("status 2"),
            "{text}"
        );
        assert_eq!(tail, ["a", "b"]);
        assert!(why(b"verdict 0 3\n{x}").0.contains("not valid JSON"));
        assert!(why(b"").0.contains("did not run"));
    }

    #[test]
    fn the_stdin_carries_a_fresh_token_and_whole_seconds() {
        let first = stdin("echo hi", Duration::from_millis(1500));
        let text = String::from_utf8(first.clone()).unwrap();
        let (line, script) = text.split_once('\n').unwrap();
        let (token, seconds) = line.split_once(' ').unwrap();
        assert_eq!((token.len(), seconds, script), (32, "2", "echo hi"));
        assert_ne!(first, stdin("echo hi", Duration::from_millis(1500)));
    }
}
