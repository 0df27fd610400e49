//! The BIMI record (`<selector>._bimi`, `v=BIMI1; l=...; a=...`). Property: parse → render →
//! parse is the identity, and what parses also builds through `BimiRecord::new`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::bimi::BimiRecord;

fuzz_target!(|value: &str| {
    let Ok(record) = BimiRecord::parse(value) else {
        return;
    };
    let again = BimiRecord::parse(&record.render()).expect("a rendered record parses");
    assert_eq!(again, record);
    if !record.logo.is_empty() {
        let built = BimiRecord::new(&record.logo, record.authority.as_deref());
        assert_eq!(built.as_ref(), Ok(&record));
    }
});
