//! A report POSTed to the HTTPS endpoint: the Content-Type (the first line of the input) and
//! the body. Properties: the declared JSON and gzip types give what their parsers give, and an
//! undeclared body is sniffed to the same report as the type its first bytes show.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::report::{Limits, ReportError, parse_body, parse_gzip, parse_json};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_compressed: 64 << 10,
        max_uncompressed: 64 << 10,
        max_mail: 128 << 10,
        ..Limits::default()
    };
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::new(), data),
    };
    let declared = parse_body(&content_type, body, &limits);
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/tlsrpt+json" | "application/json" => {
            assert_eq!(declared, parse_json(body, &limits))
        }
        "application/tlsrpt+gzip" | "application/gzip" | "application/x-gzip" => {
            assert_eq!(declared, parse_gzip(body, &limits))
        }
        "" | "application/tlsrpt" | "application/octet-stream" => {
            if let Ok(report) = &declared {
                let typed = if body.starts_with(&[0x1f, 0x8b]) {
                    parse_gzip(body, &limits)
                } else {
                    parse_json(body, &limits)
                };
                assert_eq!(typed.as_ref(), Ok(report));
            }
        }
        "message/rfc822" => {}
        _ => assert!(matches!(
            declared,
            Err(ReportError::UnsupportedContentType(_))
        )),
    }
});
