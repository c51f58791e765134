//! `ua check`: runs an instance's check (docs/API.md, "Checks") and prints
//! the feedback, the tests and the score; a key holder also sees the
//! opened result, and the output of a check that failed.

use anyhow::bail;

use crate::client::api::open_output;
use crate::client::connect::SpecTarget;
use crate::crypto::seal::{Keyring, Purpose};
use crate::telemetry::logging::for_terminal;

/// Flags of `ua check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    target: SpecTarget,
}

/// Runs the check; `true` when the score is 1.
pub fn main(args: CheckArgs) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: CheckArgs) -> anyhow::Result<bool> {
    let (server, instance) = args.target.instance().await?;
    let keys = Keyring::load(&args.target.key_file).ok();
    let (status, answer) = server.check(&instance).await?;
    if !status.is_success() {
        let error = answer["error"].as_str().unwrap_or("no explanation given");
        let output = answer["sealedOutput"]
            .as_str()
            .zip(keys.as_ref())
            .and_then(|(sealed, keys)| open_output(keys, sealed))
            .map(|text| format!("\n{}", for_terminal(&text)))
            .unwrap_or_default();
        bail!("the check did not run ({status}): {error}{output}");
    }
    print!("{}", report(&answer));
    if let Some(keys) = &keys {
        let sealed = answer["result"].as_str().unwrap_or_default();
        match keys.open_as(Purpose::Result, sealed) {
            Ok(result) => println!("result (opened): {}", for_terminal(result.trim_ascii_end())),
            Err(e) => bail!(
                "the result did not open with {}: {e}",
                args.target.key_file.display()
            ),
        }
    }
    Ok(answer["score"].as_f64() == Some(1.0))
}

/// The feedback, one line per test and the score, for a terminal.
fn report(answer: &serde_json::Value) -> String {
    let mut out = for_terminal(answer["output"].as_str().unwrap_or_default().as_bytes());
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for test in answer["tests"].as_array().into_iter().flatten() {
        let name = for_terminal(test["name"].as_str().unwrap_or("?").as_bytes());
        match (test["passed"].as_bool(), test["message"].as_str()) {
            (Some(true), _) => out.push_str(&format!("✓ {name}\n")),
            (_, Some(message)) => {
                out.push_str(&format!("✗ {name}: {}\n", for_terminal(message.as_bytes())))
            }
            _ => out.push_str(&format!("✗ {name}\n")),
        }
    }
    out.push_str(&format!("score: {}\n", answer["score"]));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_report_lists_each_test_and_the_score() {
        let answer = serde_json::json!({"output": "hi", "score": 0.5, "tests": [
            {"name": "a", "passed": true}, {"name": "b", "passed": false, "message": "no\u{1b}[2J"}
        ]});
        assert_eq!(
            super::report(&answer),
            "hi\n✓ a\n✗ b: no\\u{1b}[2J\nscore: 0.5\n"
        );
    }
}
