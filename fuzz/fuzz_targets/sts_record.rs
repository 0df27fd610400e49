//! The `_mta-sts` TXT record (`v=STSv1; id=...`). Property: parse → render → parse is the
//! identity, and the id stays within RFC 8461's `1*32(ALPHA / DIGIT)`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::mtasts::StsRecord;

fuzz_target!(|value: &str| {
    let Ok(record) = StsRecord::parse(value) else {
        return;
    };
    let id = record.id.as_str();
    assert!((1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    let again = StsRecord::parse(&record.render()).expect("a rendered record parses");
    assert_eq!(again, record);
});
