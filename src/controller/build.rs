//! Build: the desired DNS records and policy file of a validated configuration. Pure.

use serde::Serialize;

use super::validate::MailConfig;
use crate::domain::mtasts::{PolicyId, StsRecord};
use crate::domain::record::{RecordKind, TxtRecord};

/// The policy file to serve and the id that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub text: String,
    pub id: PolicyId,
}

/// Everything one MailDomain should look like from the outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub domain: String,
    pub records: Vec<TxtRecord>,
    pub policy: Option<PolicyFile>,
}

/// The JSON shape of `mailsec render --output json`.
#[derive(Debug, Serialize)]
pub struct RenderedDomain<'a> {
    pub domain: &'a str,
    pub records: Vec<RenderedRecord<'a>>,
    pub policy: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct RenderedRecord<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub record_type: &'static str,
    pub ttl: u32,
    pub value: &'a str,
}

impl Desired {
    pub fn rendered(&self) -> RenderedDomain<'_> {
        RenderedDomain {
            domain: &self.domain,
            records: self
                .records
                .iter()
                .map(|r| RenderedRecord {
                    name: &r.name,
                    record_type: "TXT",
                    ttl: r.ttl,
                    value: &r.value,
                })
                .collect(),
            policy: self.policy.as_ref().map(|p| p.text.as_str()),
        }
    }
}

/// The records in a fixed order: MTA-STS, TLS-RPT, SPF, DMARC, DKIM, BIMI.
pub fn build(config: &MailConfig) -> Desired {
    let domain = &config.domain;
    let mut records = Vec::new();
    let mut add = |name: String, kind: RecordKind, value: String| {
        records.push(TxtRecord {
            name,
            kind,
            ttl: config.ttl,
            value,
        });
    };
    let policy = config.mta_sts.as_ref().map(|p| PolicyFile {
        text: p.render(),
        id: p.id(),
    });
    if let Some(p) = &policy {
        add(
            domain.child("_mta-sts"),
            RecordKind::MtaSts,
            StsRecord { id: p.id.clone() }.render(),
        );
    }
    if let Some(t) = &config.tls_rpt {
        add(domain.child("_smtp._tls"), RecordKind::TlsRpt, t.render());
    }
    if let Some(s) = &config.spf {
        add(domain.to_string(), RecordKind::Spf, s.render());
    }
    if let Some(d) = &config.dmarc {
        add(domain.child("_dmarc"), RecordKind::Dmarc, d.render());
    }
    for (selector, key) in &config.dkim {
        add(
            domain.child(&format!("{selector}._domainkey")),
            RecordKind::Dkim,
            key.render(),
        );
    }
    if let Some((selector, b)) = &config.bimi {
        add(
            domain.child(&format!("{selector}._bimi")),
            RecordKind::Bimi,
            b.render(),
        );
    }
    Desired {
        domain: domain.to_string(),
        records,
        policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MailDomainSpec;
    use crate::controller::validate::{SecretData, validate};
    use crate::domain::{bimi, dkim, dmarc, mtasts, spf, tlsrpt};

    fn spec(yaml: &str) -> MailDomainSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn every_record_is_recognised_by_its_kind_and_parses() {
        let s = spec(
            "domain: Bücher.Example\nmx: [mx.bücher.example]\nmtaSts: {mode: enforce}\ntlsRpt: {rua: ['mailto:t@bücher.example']}\n\
             spf: {mechanisms: [mx], all: softfail}\ndmarc: {policy: quarantine}\n\
             dkim: [{selector: S1, publicKey: 'Jp5+k9usIudxqg2jB6TmZeJrDSgUgcj6TxnIqvzIv10='}]\n\
             bimi: {logoUrl: 'https://bücher.example/logo.svg'}\n",
        );
        let desired = build(&validate(&s, &SecretData::new()).unwrap().config);
        assert_eq!(desired.domain, "xn--bcher-kva.example");
        let names: Vec<&str> = desired.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "_mta-sts.xn--bcher-kva.example",
                "_smtp._tls.xn--bcher-kva.example",
                "xn--bcher-kva.example",
                "_dmarc.xn--bcher-kva.example",
                "s1._domainkey.xn--bcher-kva.example",
                "default._bimi.xn--bcher-kva.example",
            ]
        );
        for r in &desired.records {
            for kind in RecordKind::ALL {
                assert_eq!(
                    kind.matches(&r.value),
                    kind == r.kind,
                    "{} as {kind}",
                    r.value
                );
            }
            let parsed = match r.kind {
                RecordKind::MtaSts => mtasts::StsRecord::parse(&r.value).is_ok(),
                RecordKind::TlsRpt => tlsrpt::TlsRptRecord::parse(&r.value).is_ok(),
                RecordKind::Spf => spf::SpfRecord::parse(&r.value).is_ok(),
                RecordKind::Dmarc => dmarc::DmarcRecord::parse(&r.value).is_ok(),
                RecordKind::Dkim => dkim::DkimRecord::parse(&r.value).is_ok(),
                RecordKind::Bimi => bimi::BimiRecord::parse(&r.value).is_ok(),
            };
            assert!(parsed, "{}", r.value);
        }
        let policy = desired.policy.unwrap();
        assert_eq!(
            desired.records[0].value,
            format!("v=STSv1; id={}", policy.id)
        );
        assert!(policy.text.contains("mx: mx.xn--bcher-kva.example\r\n"));
    }

    #[test]
    fn policy_id_changes_with_the_policy_and_only_then() {
        let base = "domain: example.com\nmx: [mx1.example.com]\nmtaSts: {mode: testing}\ntlsRpt: {rua: ['mailto:t@example.com']}\n";
        let id = |yaml: &str| {
            build(&validate(&spec(yaml), &SecretData::new()).unwrap().config)
                .policy
                .unwrap()
                .id
        };
        let original = id(base);
        assert_eq!(
            original,
            id(&base.replace("mailto:t@", "mailto:other@")),
            "TLS-RPT is not part of the policy"
        );
        assert_ne!(original, id(&base.replace("testing", "enforce")));
        assert_ne!(
            original,
            id(&base.replace("[mx1.example.com]", "[mx1.example.com, mx2.example.com]"))
        );
        assert_ne!(
            original,
            id(&base.replace("{mode: testing}", "{mode: testing, maxAge: 86400}"))
        );
    }
}
