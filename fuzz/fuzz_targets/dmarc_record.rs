//! The DMARC record (`_dmarc`, RFC 7489 §6.4). Property: parse → render → parse gives the
//! same record, but for `pct=100`, the default, which render leaves out.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::dmarc::DmarcRecord;

fuzz_target!(|value: &str| {
    let Ok(record) = DmarcRecord::parse(value) else {
        return;
    };
    let rendered = record.render();
    let again = DmarcRecord::parse(&rendered).expect("a rendered record parses");
    let mut expected = record.clone();
    expected.percent = expected.percent.filter(|p| *p != 100);
    assert_eq!(again, expected);
    assert_eq!(again.render(), rendered);
});
