//! Opening any text as a sealed spec, and parsing any bytes as a spec,
//! never panics; whatever parses has valid fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ua::crypto::seal::Keyring;
use ua::protocol::spec::Spec;

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::parse("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(plaintext) = keys.open(text) {
            let _ = Spec::parse(&plaintext);
        }
    }
    if let Ok(spec) = Spec::parse(data) {
        let chars = spec.spec_id.chars().count();
        assert!((1..=200).contains(&chars));
    }
    // A box sealed around the fuzz data opens to the same bytes, padded with
    // spaces to a multiple of 256 (JSON whitespace, see `Keyring::seal`).
    let opened = keys.open(&keys.seal(data)).unwrap();
    assert!(opened.starts_with(data) && opened[data.len()..].iter().all(|&b| b == b' '));
    assert_eq!(opened.len() % 256, 0);
});
