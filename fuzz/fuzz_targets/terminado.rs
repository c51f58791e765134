//! Any client frame decodes without panicking; any byte stream, split
//! anywhere, decodes to whole characters and the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ua::protocol::terminado::{decode, ClientMessage, Utf8Decoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = std::str::from_utf8(data) {
        if let ClientMessage::SetSize { rows, cols } = decode(frame) {
            assert!(rows > 0 && cols > 0);
        }
    }
    // Split the bytes at positions taken from the data itself.
    let mut decoder = Utf8Decoder::default();
    let mut pieces = String::new();
    let mut rest = data;
    while !rest.is_empty() {
        let cut = (rest[0] as usize % 7 + 1).min(rest.len());
        let before = pieces.len();
        decoder.decode(&rest[..cut], &mut pieces);
        assert!(pieces.is_char_boundary(before));
        rest = &rest[cut..];
    }
    decoder.finish(&mut pieces);
    assert_eq!(pieces, String::from_utf8_lossy(data));
});
