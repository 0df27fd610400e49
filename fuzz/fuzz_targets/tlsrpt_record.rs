//! The `_smtp._tls` TXT record (`v=TLSRPTv1; rua=...`, RFC 8460 §3). Properties: parse →
//! render → parse is the identity; no URI of a parsed record holds a raw `,` `!` `;`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::tlsrpt::{ReportUri, TlsRptRecord};

fuzz_target!(|value: &str| {
    // A single URI, as a user writes it in spec.tlsRpt.rua: encoding it is idempotent.
    if let Ok(uri) = ReportUri::parse(value) {
        assert!(!uri.as_str().contains([',', '!', ';']));
        assert_eq!(ReportUri::parse(uri.as_str()).as_ref(), Ok(&uri));
    }
    let Ok(record) = TlsRptRecord::parse(value) else {
        return;
    };
    assert!(!record.rua.is_empty());
    for uri in &record.rua {
        assert!(!uri.as_str().contains([',', '!', ';']), "{}", uri.as_str());
    }
    let again = TlsRptRecord::parse(&record.render()).expect("a rendered record parses");
    assert_eq!(again, record);
});
