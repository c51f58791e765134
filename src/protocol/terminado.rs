//! The terminado websocket codec (docs/API.md, "Terminal websocket") and the
//! incremental UTF-8 decoder that keeps characters whole across reads. Knows nothing of sockets.

use serde_json::Value;

/// Terminal sizes outside this range are ignored as absurd.
const MAX_DIMENSION: u64 = 4096;

/// A frame from the client: decoded by the server, encoded by clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `["stdin", text]`: keys for the terminal.
    Stdin(String),
    /// `["set_size", rows, cols, …]` with a sane size.
    SetSize {
        /// Rows, 1 to 4096.
        rows: u16,
        /// Columns, 1 to 4096.
        cols: u16,
    },
    /// Anything else; the reason is for debug logs and never holds frame text.
    Ignored(&'static str),
}

impl ClientMessage {
    /// The frame's text. `Ignored` is no message of its own: it encodes as
    /// `[]`, which decodes as ignored again.
    pub fn encode(&self) -> String {
        match self {
            ClientMessage::Stdin(text) => json_text(&("stdin", text)),
            ClientMessage::SetSize { rows, cols } => json_text(&("set_size", rows, cols)),
            ClientMessage::Ignored(_) => "[]".to_string(),
        }
    }
}

/// Decodes one client frame; it never fails: junk is `Ignored`.
pub fn decode(frame: &str) -> ClientMessage {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(frame) else {
        return ClientMessage::Ignored("not a JSON array");
    };
    match items.first().and_then(Value::as_str) {
        Some("stdin") => match items.get(1) {
            Some(Value::String(text)) => ClientMessage::Stdin(text.clone()),
            _ => ClientMessage::Ignored("stdin without text"),
        },
        Some("set_size") => {
            let dimension = |i: usize| {
                items
                    .get(i)
                    .and_then(Value::as_u64)
                    .filter(|n| (1..=MAX_DIMENSION).contains(n))
            };
            match (dimension(1), dimension(2)) {
                (Some(rows), Some(cols)) => ClientMessage::SetSize {
                    rows: rows as u16,
                    cols: cols as u16,
                },
                _ => ClientMessage::Ignored("set_size without a sane size"),
            }
        }
        Some(_) => ClientMessage::Ignored("unknown message"),
        None => ClientMessage::Ignored("no message name"),
    }
}

/// A frame from the server: encoded by the server, decoded by clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// `["setup", {}]`, the first message of a connection.
    Setup,
    /// `["stdout", text]`: terminal output.
    Stdout(String),
    /// `["disconnect", 1]`: the command exited.
    Disconnect,
    /// `["idle_warning", seconds]`: the idle timeout closes the terminal in
    /// that many seconds unless input or output comes first.
    IdleWarning(u64),
}

impl ServerMessage {
    /// The frame's text.
    pub fn encode(&self) -> String {
        match self {
            ServerMessage::Setup => r#"["setup",{}]"#.to_string(),
            ServerMessage::Stdout(text) => json_text(&("stdout", text)),
            ServerMessage::Disconnect => r#"["disconnect",1]"#.to_string(),
            ServerMessage::IdleWarning(seconds) => json_text(&("idle_warning", seconds)),
        }
    }

    /// Decodes one server frame; `None` for anything that is none of these
    /// (clients skip it).
    pub fn decode(frame: &str) -> Option<ServerMessage> {
        let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(frame) else {
            return None;
        };
        match items.first().and_then(Value::as_str)? {
            "setup" => Some(ServerMessage::Setup),
            "disconnect" => Some(ServerMessage::Disconnect),
            "idle_warning" => items
                .get(1)
                .and_then(Value::as_u64)
                .map(ServerMessage::IdleWarning),
            "stdout" => match items.get_mut(1).map(Value::take) {
                Some(Value::String(text)) => Some(ServerMessage::Stdout(text)),
                _ => None,
            },
            _ => None,
        }
    }
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("strings and numbers always serialise")
}

/// Turns a byte stream into text without ever splitting a character: an
/// incomplete sequence at the end of one read waits for the next; invalid
/// bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Appends the text decoded so far from `bytes` to `out`.
    pub fn decode(&mut self, bytes: &[u8], out: &mut String) {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.pending);
            &joined
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    return;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("checked valid"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            self.pending.extend_from_slice(after);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: a dangling partial character becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_client_messages() {
        assert_eq!(
            decode(r#"["stdin","ls\r"]"#),
            ClientMessage::Stdin("ls\r".into())
        );
        assert_eq!(
            decode(r#"["set_size",24,80,480,640]"#),
            ClientMessage::SetSize { rows: 24, cols: 80 }
        );
        for junk in [
            "",
            "{}",
            "[]",
            "[1]",
            r#"["stdin"]"#,
            r#"["stdin",1]"#,
            r#"["set_size",0,80]"#,
            r#"["set_size",24,100000]"#,
            r#"["set_size",-1,80]"#,
            r#"["set_size","24","80"]"#,
            r#"["hello"]"#,
            "not json",
        ] {
            assert!(
                matches!(decode(junk), ClientMessage::Ignored(_)),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn encodes_server_messages() {
        assert_eq!(ServerMessage::Setup.encode(), r#"["setup",{}]"#);
        assert_eq!(
            ServerMessage::Stdout("a\"\u{1b}é".into()).encode(),
            r#"["stdout","a\"\u001bé"]"#
        );
        assert_eq!(ServerMessage::Disconnect.encode(), r#"["disconnect",1]"#);
    }

    #[test]
    fn encodes_client_messages() {
        assert_eq!(
            ClientMessage::Stdin("ls\r".into()).encode(),
            r#"["stdin","ls\r"]"#
        );
        assert_eq!(
            ClientMessage::SetSize { rows: 24, cols: 80 }.encode(),
            r#"["set_size",24,80]"#
        );
        assert_eq!(ClientMessage::Ignored("x").encode(), "[]");
        assert!(matches!(decode("[]"), ClientMessage::Ignored(_)));
    }

    #[test]
    fn decodes_server_messages() {
        assert_eq!(
            ServerMessage::decode(r#"["stdout", "hi\u001b"]"#),
            Some(ServerMessage::Stdout("hi\u{1b}".into()))
        );
        assert_eq!(
            ServerMessage::decode(r#"["setup",{}]"#),
            Some(ServerMessage::Setup)
        );
        assert_eq!(
            ServerMessage::decode(r#"["disconnect",1]"#),
            Some(ServerMessage::Disconnect)
        );
        for other in [
            "",
            "{}",
            "[]",
            r#"["stdout"]"#,
            r#"["stdout",1]"#,
            r#"["hello"]"#,
        ] {
            assert_eq!(ServerMessage::decode(other), None, "{other:?}");
        }
    }

    #[test]
    fn never_splits_a_character() {
        let text = "héllo → 世界 🎉!";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let mut decoder = Utf8Decoder::default();
            let (mut first, mut second) = (String::new(), String::new());
            decoder.decode(&bytes[..split], &mut first);
            decoder.decode(&bytes[split..], &mut second);
            assert_eq!(first.clone() + &second, text);
            assert!(text.starts_with(&first));
        }
    }

    proptest::proptest! {
        /// Every server message comes back from its own frame.
        #[test]
        fn server_messages_round_trip(text in "\\PC{0,64}|[\\x00-\\x1f\"\\\\]{0,16}") {
            for message in [ServerMessage::Setup, ServerMessage::Stdout(text.clone()), ServerMessage::Disconnect] {
                proptest::prop_assert_eq!(ServerMessage::decode(&message.encode()), Some(message));
            }
        }

        /// Every client message comes back from its own frame.
        #[test]
        fn client_messages_round_trip(text in "\\PC{0,64}|[\\x00-\\x1f\"\\\\]{0,16}",
                                      rows in 1..=4096u16, cols in 1..=4096u16) {
            for message in [ClientMessage::Stdin(text.clone()), ClientMessage::SetSize { rows, cols }] {
                proptest::prop_assert_eq!(decode(&message.encode()), message);
            }
        }

        /// Any byte stream, split at any points: no character is ever split,
        /// and the text is what a one-shot lossy decode gives.
        #[test]
        fn any_stream_any_splits(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
                                 cuts in proptest::collection::vec(0usize..512, 0..16)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort();
            let mut decoder = Utf8Decoder::default();
            let mut text = String::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                let mut piece = String::new();
                decoder.decode(&bytes[start..cut], &mut piece);
                // Every piece is whole text on its own.
                proptest::prop_assert!(std::str::from_utf8(piece.as_bytes()).is_ok());
                text.push_str(&piece);
                start = cut;
            }
            decoder.finish(&mut text);
            proptest::prop_assert_eq!(text, String::from_utf8_lossy(&bytes));
        }

        /// Valid UTF-8 split anywhere comes out unchanged.
        #[test]
        fn valid_text_survives_any_split(text in "\\PC{0,64}", cut in 0usize..256) {
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            let mut decoder = Utf8Decoder::default();
            let (mut first, mut second) = (String::new(), String::new());
            decoder.decode(&bytes[..cut], &mut first);
            decoder.decode(&bytes[cut..], &mut second);
            proptest::prop_assert_eq!(first + &second, text);
        }
    }

    #[test]
    fn byte_at_a_time_and_invalid_bytes() {
        let mut decoder = Utf8Decoder::default();
        let mut out = String::new();
        for b in "🎉a".bytes() {
            decoder.decode(&[b], &mut out);
        }
        decoder.decode(b"\xffb\xe4\xb8", &mut out);
        decoder.finish(&mut out);
        assert_eq!(out, "🎉a\u{fffd}b\u{fffd}");
    }
}
