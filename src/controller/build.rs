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
