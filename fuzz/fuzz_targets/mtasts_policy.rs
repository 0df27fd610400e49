//! The MTA-STS policy file (RFC 8461 §3.2), as a policy server or a sender would serve it.
//! Properties: a parsed policy renders to a file that parses, without warnings, to the same
//! policy and the same id; bodies over 64 KiB are refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::mtasts::{MAX_POLICY_BYTES, Policy, PolicyError};

fuzz_target!(|body: &str| {
    let parsed = Policy::parse(body);
    if body.len() > MAX_POLICY_BYTES {
        assert!(matches!(parsed, Err(PolicyError::TooLarge(_))));
        return;
    }
    let Ok(parsed) = parsed else { return };
    let rendered = parsed.value.render();
    let again = Policy::parse(&rendered).expect("a rendered policy parses");
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.value, parsed.value);
    assert_eq!(again.value.id(), parsed.value.id());
    for mx in &parsed.value.mx {
        // Every pattern covers some host: its own name, or one label below it.
        let host = mx.to_string().replace("*.", "a.");
        assert!(parsed.value.covers(&host), "{mx} does not cover {host}");
    }
});
