//! Whole report e-mails (RFC 8460 §5.3) from the TLS-RPT mailbox: MIME, transfer encodings,
//! attached messages. Properties: the report taken from a mail is the report its part's own
//! bytes give (the submitter check aside), `part_gzip` says what the part is.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::report::{Limits, Warning, parse_mail, sniff};

fuzz_target!(|raw: &[u8]| {
    let limits = Limits {
        max_mail: 256 << 10,
        max_uncompressed: 256 << 10,
        ..Limits::default()
    };
    let Ok(mail) = parse_mail(raw, &limits) else {
        return;
    };
    assert_eq!(mail.part_gzip, mail.part.starts_with(&[0x1f, 0x8b]));
    let mut from_part = sniff(&mail.part, &limits).expect("the report part parses on its own");
    let mut report = mail.report;
    report
        .warnings
        .retain(|w| !matches!(w, Warning::SubmitterMismatch { .. }));
    from_part
        .warnings
        .retain(|w| !matches!(w, Warning::SubmitterMismatch { .. }));
    assert_eq!(report, from_part);
});
