//! The DKIM key record (`<selector>._domainkey`, RFC 6376 §3.6.1), with the public key it
//! carries. Property: parse → render → parse is the identity (the key decodes both times).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::dkim::{DkimRecord, check_selector};

fuzz_target!(|value: &str| {
    // Selectors are user input too (spec.dkim[].selector); a valid one is a DNS name part.
    if check_selector(value).is_ok() {
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        );
    }
    let Ok(record) = DkimRecord::parse(value) else {
        return;
    };
    let again = DkimRecord::parse(&record.render()).expect("a rendered record parses");
    assert_eq!(again, record);
});
