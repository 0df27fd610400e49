//! The SPF record (`v=spf1 ...`, RFC 7208) at the apex. Properties: parse → render → parse
//! is the identity, and the lookup count does not change.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::spf::SpfRecord;

fuzz_target!(|value: &str| {
    let Ok(record) = SpfRecord::parse(value) else {
        return;
    };
    let rendered = record.render();
    let again = SpfRecord::parse(&rendered).expect("a rendered record parses");
    assert_eq!(again, record);
    assert_eq!(again.lookup_count(), record.lookup_count());
    assert_eq!(again.render(), rendered);
});
