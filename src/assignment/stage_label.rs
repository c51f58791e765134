//! A `LABEL` line put after every `FROM` of a Dockerfile as it is packed, so
//! that the classic builder's step images carry the server's labels too: a
//! build cut short by a killed server leaves step images (holding whatever
//! the rendered context put in them) that the next start can find and
//! remove. The line is the same for every build of a server, so it shares
//! Docker's layer cache as before.

/// `dockerfile` with `label_line` after each `FROM` instruction (after its
/// continuation lines); the other lines are kept byte for byte. An empty
/// `label_line` leaves the text as it is.
pub fn label_every_stage(dockerfile: &str, label_line: &str) -> String {
    if label_line.is_empty() {
        return dockerfile.to_string();
    }
    let escape = escape_char(dockerfile);
    let mut out = String::with_capacity(dockerfile.len() + 4 * label_line.len());
    let mut in_from = false;
    for line in dockerfile.split_inclusive('\n') {
        out.push_str(line);
        let body = line.trim_end_matches(['\n', '\r']);
        if !in_from {
            let word = body.split_whitespace().next().unwrap_or("");
            in_from = word.eq_ignore_ascii_case("FROM");
        }
        if in_from && !body.trim_end().ends_with(escape) {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(label_line);
            out.push('\n');
            in_from = false;
        }
    }
    out
}

/// The line-continuation character: `\`, or what a leading
/// `# escape=` parser directive names.
fn escape_char(dockerfile: &str) -> char {
    for line in dockerfile.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = directive.split_once('=') else {
            break;
        };
        if key.trim().eq_ignore_ascii_case("escape") {
            return value.trim().chars().next().unwrap_or('\\');
        }
    }
    '\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "LABEL ua.owned=\"true\"";

    #[test]
    fn every_stage_gets_the_label_after_its_from_line() {
        let dockerfile = "ARG V=1\nFROM a:$V AS build\nRUN make\nfrom b\nCOPY --from=build /x /x";
        assert_eq!(
            label_every_stage(dockerfile, LABEL),
            format!("ARG V=1\nFROM a:$V AS build\n{LABEL}\nRUN make\nfrom b\n{LABEL}\nCOPY --from=build /x /x")
        );
    }

    #[test]
    fn a_continued_from_line_gets_it_after_its_last_line() {
        let dockerfile = "FROM \\\n  busybox\nRUN true\n";
        assert_eq!(
            label_every_stage(dockerfile, LABEL),
            format!("FROM \\\n  busybox\n{LABEL}\nRUN true\n")
        );
        let dockerfile = "# escape=`\nFROM `\n  busybox\\\nRUN dir c:\\\n";
        assert_eq!(
            label_every_stage(dockerfile, LABEL),
            format!("# escape=`\nFROM `\n  busybox\\\n{LABEL}\nRUN dir c:\\\n")
        );
    }

    #[test]
    fn a_from_in_another_instruction_or_a_comment_is_not_a_stage() {
        let dockerfile = "FROM x\nRUN echo FROM y\n# FROM z\n";
        assert_eq!(
            label_every_stage(dockerfile, LABEL),
            format!("FROM x\n{LABEL}\nRUN echo FROM y\n# FROM z\n")
        );
        assert_eq!(label_every_stage(dockerfile, ""), dockerfile);
    }
}
