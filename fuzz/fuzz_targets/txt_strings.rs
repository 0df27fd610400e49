//! TXT character-strings (RFC 1035 §3.3) and their zone-file presentation, which DNS
//! providers' APIs hand back. Properties: split → join is lossless with every string at most
//! 255 bytes; presentation → parse → join is lossless; whatever parses strictly parses the
//! same leniently; parsed strings re-presented parse back to the same strings.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::txt::{
    MAX_STRING_BYTES, join, parse_presentation, parse_presentation_lenient, split, to_presentation,
};

fuzz_target!(|text: &str| {
    let parts = split(text);
    assert!(parts.iter().all(|p| p.len() <= MAX_STRING_BYTES));
    assert_eq!(parts.len(), text.len().div_ceil(MAX_STRING_BYTES).max(1));
    assert_eq!(join(&parts), text);
    let presented = to_presentation(text);
    let strings = parse_presentation(&presented).expect("our presentation parses");
    assert_eq!(join(&strings), text);

    let strict = parse_presentation(text);
    let lenient = parse_presentation_lenient(text);
    if let Ok(strings) = &strict {
        assert!(strings.iter().all(|s| s.len() <= MAX_STRING_BYTES));
        assert_eq!(lenient.as_ref(), Ok(strings));
    }
    if let Ok(strings) = lenient {
        // The joined value, presented by us, reads back as the same value.
        let value = join(&strings);
        if value.as_bytes() == strings.concat() {
            let back = parse_presentation(&to_presentation(&value)).expect("presentation parses");
            assert_eq!(back.concat(), strings.concat());
        }
    }
});
