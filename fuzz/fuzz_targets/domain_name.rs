//! Domain names and MX patterns as users write them (spec.domain, spec.mx) and as policy
//! files carry them. Properties: parsing is idempotent (the normal form parses to itself),
//! the normal form is lower-case LDH A-labels; a pattern matches per RFC 8461 §4.1.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::mtasts::MxPattern;
use mailsec_operator::domain::name::DomainName;

fuzz_target!(|input: &str| {
    if let Ok(name) = DomainName::parse(input) {
        let s = name.as_str();
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
            "{s}"
        );
        assert_eq!(DomainName::parse(s).as_ref(), Ok(&name));
        assert!(name.is_within(&name));
    }
    if let Ok(pattern) = MxPattern::parse(input) {
        let text = pattern.to_string();
        assert_eq!(MxPattern::parse(&text).as_ref(), Ok(&pattern));
        match text.strip_prefix("*.") {
            Some(base) => {
                assert!(!pattern.matches(base));
                assert!(pattern.matches(&format!("a.{base}")));
                assert!(!pattern.matches(&format!("a.b.{base}")));
            }
            None => {
                assert!(pattern.matches(&text));
                assert!(pattern.matches(&text.to_ascii_uppercase()));
            }
        }
    }
});
