//! Build: the desired DNS records and policy file of a validated configuration. Pure.

use super::validate::MailConfig;
use crate::domain::mtasts::{Policy, PolicyId, StsRecord};
use crate::domain::name::DomainName;
use crate::domain::record::{RecordKind, TxtRecord};

/// A policy, its file and the id that names it: the id is derived from the file, so the three
/// never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub policy: Policy,
    pub text: String,
    pub id: PolicyId,
}

impl PolicyFile {
    pub fn new(policy: Policy) -> Self {
        PolicyFile {
            text: policy.render(),
            id: policy.id(),
            policy,
        }
    }
}

/// Everything one MailDomain should look like from the outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub domain: DomainName,
    /// The TTL of new records.
    pub ttl: u32,
    pub records: Vec<TxtRecord>,
    pub policy: Option<PolicyFile>,
    /// The `managed` DKIM entries, whose records are added from the keys made for them.
    pub managed_dkim: Vec<super::rotation::Entry>,
}

impl Desired {
    /// Nothing at all: what a MailDomain being deleted wants.
    pub fn nothing(domain: DomainName, ttl: u32) -> Self {
        Desired {
            domain,
            ttl,
            records: Vec::new(),
            policy: None,
            managed_dkim: Vec::new(),
        }
    }

    /// The records with the `_mta-sts` record naming `id` first, or without one for `None`:
    /// during a rollout the id in DNS lags the policy (RFC 8461 §8), and a withdrawal names
    /// the `mode: none` policy that the spec no longer asks for.
    pub fn with_sts_id(&self, id: Option<&PolicyId>) -> Vec<TxtRecord> {
        let sts = id.map(|id| TxtRecord {
            name: RecordKind::MtaSts.owner(&self.domain, ""),
            kind: RecordKind::MtaSts,
            ttl: self.ttl,
            value: StsRecord { id: id.clone() }.render(),
        });
        sts.into_iter()
            .chain(
                self.records
                    .iter()
                    .filter(|r| r.kind != RecordKind::MtaSts)
                    .cloned(),
            )
            .collect()
    }

    /// This, expecting `policy` to be served and `records` in DNS: what the live checks
    /// compare with while the rollout publishes something other than the spec asks for.
    pub fn as_published(&self, records: Vec<TxtRecord>, policy: Option<PolicyFile>) -> Self {
        Desired {
            domain: self.domain.clone(),
            ttl: self.ttl,
            records,
            policy,
            managed_dkim: self.managed_dkim.clone(),
        }
    }

    /// Adds the DKIM record of a managed key (`selector`, its public key).
    pub fn add_managed_key(&mut self, selector: &str, key: &crate::domain::dkim::PublicKey) {
        self.records.push(TxtRecord {
            name: RecordKind::Dkim.owner(&self.domain, selector),
            kind: RecordKind::Dkim,
            ttl: self.ttl,
            value: crate::domain::dkim::DkimRecord::new(key, false).render(),
        });
    }
}

/// The records in a fixed order: MTA-STS, TLS-RPT, SPF, DMARC, DKIM, BIMI.
pub fn build(config: &MailConfig) -> Desired {
    let domain = &config.domain;
    let mut records = Vec::new();
    let mut add = |kind: RecordKind, selector: &str, value: String| {
        records.push(TxtRecord {
            name: kind.owner(domain, selector),
            kind,
            ttl: config.ttl,
            value,
        });
    };
    let policy = config.mta_sts.clone().map(PolicyFile::new);
    if let Some(p) = &policy {
        add(
            RecordKind::MtaSts,
            "",
            StsRecord { id: p.id.clone() }.render(),
        );
    }
    if let Some(t) = &config.tls_rpt {
        add(RecordKind::TlsRpt, "", t.render());
    }
    if let Some(s) = &config.spf {
        add(RecordKind::Spf, "", s.render());
    }
    if let Some(d) = &config.dmarc {
        add(RecordKind::Dmarc, "", d.render());
    }
    for (selector, key) in &config.dkim {
        add(RecordKind::Dkim, selector, key.render());
    }
    if let Some((selector, b)) = &config.bimi {
        add(RecordKind::Bimi, selector, b.render());
    }
    Desired {
        domain: domain.clone(),
        ttl: config.ttl,
        records,
        policy,
        managed_dkim: config.managed_dkim.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MailDomainSpec;
    use crate::domain::{bimi, dkim, dmarc, mtasts, spf, tlsrpt};
    use crate::model::validate::{SecretData, validate};

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
        let desired = build(&validate(&s, &SecretData::new(), None).unwrap().config);
        assert_eq!(desired.domain.as_str(), "xn--bcher-kva.example");
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
    fn the_sts_record_names_the_id_to_publish_and_only_that() {
        let s = spec(
            "domain: example.com\nttl: 900\nmx: [mx.example.com]\nmtaSts: {mode: testing}\ndmarc: {policy: none}\n",
        );
        let desired = build(&validate(&s, &SecretData::new(), None).unwrap().config);
        let old = mtasts::PolicyId::parse("0ld").unwrap();
        let records = desired.with_sts_id(Some(&old));
        assert_eq!(records.len(), 2);
        assert_eq!(
            (
                records[0].name.as_str(),
                records[0].value.as_str(),
                records[0].ttl
            ),
            ("_mta-sts.example.com", "v=STSv1; id=0ld", 900)
        );
        assert_eq!(records[1], desired.records[1], "the others as built");
        let without = desired.with_sts_id(None);
        assert_eq!(without, desired.records[1..]);
        // A withdrawal: the spec has no MTA-STS, the record names the mode none policy.
        let gone = Desired::nothing(desired.domain.clone(), 900).with_sts_id(Some(&old));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].kind, RecordKind::MtaSts);
    }

    #[test]
    fn policy_id_changes_with_the_policy_and_only_then() {
        let base = "domain: example.com\nmx: [mx1.example.com]\nmtaSts: {mode: testing}\ntlsRpt: {rua: ['mailto:t@example.com']}\n";
        let id = |yaml: &str| {
            build(
                &validate(&spec(yaml), &SecretData::new(), None)
                    .unwrap()
                    .config,
            )
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
