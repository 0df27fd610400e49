//! The policy server's Host header → domain lookup (`mta-sts.<domain>`, any case, a port).
//! Properties: a hit serves that domain's policy and nothing else; ASCII case, a `:port` and
//! trailing dots do not change the answer; `mta-sts.` before any name that parses finds that
//! name's normal form.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mailsec_operator::domain::name::DomainName;
use mailsec_operator::serve::PolicyIndex;

#[path = "../common/index.rs"]
mod common;

static INDEX: LazyLock<PolicyIndex> = LazyLock::new(common::index);

fn policy_of(domain: &str) -> Option<&'static str> {
    common::DOMAINS
        .iter()
        .find(|(d, _)| *d == domain)
        .map(|(_, p)| *p)
}

fuzz_target!(|host: &str| {
    let found = INDEX.lookup(host);
    if let Some(body) = &found {
        assert!(
            common::DOMAINS
                .iter()
                .any(|(_, p)| p.as_bytes() == &body[..])
        );
    }
    assert_eq!(INDEX.lookup(&host.to_ascii_uppercase()), found);
    if !host.contains(':') {
        assert_eq!(INDEX.lookup(&format!("{host}:443")), found);
        assert_eq!(INDEX.lookup(&format!("{host}.")), found);
    }
    if let Ok(name) = DomainName::parse(host) {
        let served = INDEX.lookup(&format!("mta-sts.{host}"));
        assert_eq!(
            served.as_deref(),
            policy_of(name.as_str()).map(str::as_bytes)
        );
    }
});
