//! Standard output of the command-line tools. Rust ignores SIGPIPE, so a
//! reader that goes away (`ua list | head`) makes writes fail with EPIPE:
//! `print` returns that error (never panics, as `println!` does) and `main`
//! ends quietly on it.

use std::io::Write;

/// Writes `text` to standard output and flushes it.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `error` is (or was caused by) a write to a closed pipe.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_recognised_through_context() {
        use anyhow::Context;
        let closed: anyhow::Result<()> =
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
        assert!(is_closed_pipe(
            &closed.context("writing the list").unwrap_err()
        ));
        let other = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_closed_pipe(&other));
    }
}
