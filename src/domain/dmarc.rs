//! DMARC (RFC 7489): the `_dmarc.<domain>` TXT record.

use std::fmt;

use super::name::DomainName;
use super::tags;

/// What receivers should do with mail that fails DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    None,
    Quarantine,
    Reject,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::None => "none",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Disposition::None),
            "quarantine" => Some(Disposition::Quarantine),
            "reject" => Some(Disposition::Reject),
            _ => None,
        }
    }
}

/// Identifier alignment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    Relaxed,
    Strict,
}

impl Alignment {
    fn as_str(self) -> &'static str {
        match self {
            Alignment::Relaxed => "r",
            Alignment::Strict => "s",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "r" => Some(Alignment::Relaxed),
            "s" => Some(Alignment::Strict),
            _ => None,
        }
    }
}

/// A report destination: `mailto:` with an optional size limit such as `!10m` (RFC 7489 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcUri {
    pub address: String,
    pub limit: Option<String>,
}

impl DmarcUri {
    pub fn parse(input: &str) -> Result<Self, DmarcError> {
        let bad = || DmarcError::Uri(input.to_owned());
        let rest = input.strip_prefix("mailto:").ok_or_else(bad)?;
        let (address, limit) = match rest.split_once('!') {
            Some((a, l)) => (a, Some(l)),
            None => (rest, None),
        };
        if let Some(l) = limit {
            let digits = l.trim_end_matches(['k', 'm', 'g', 't']);
            let ok = !digits.is_empty()
                && digits.len() + 1 >= l.len()
                && digits.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return Err(DmarcError::Uri(input.to_owned()));
            }
        }
        if address.contains([',', ';', ' ']) {
            return Err(bad());
        }
        let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || DomainName::parse(domain).is_err() {
            return Err(bad());
        }
        Ok(DmarcUri {
            address: address.to_owned(),
            limit: limit.map(str::to_owned),
        })
    }

    /// The domain that receives the reports.
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default()
    }
}

impl fmt::Display for DmarcUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mailto:{}", self.address)?;
        if let Some(l) = &self.limit {
            write!(f, "!{l}")?;
        }
        Ok(())
    }
}

/// A `v=DMARC1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcRecord {
    pub policy: Disposition,
    pub subdomain_policy: Option<Disposition>,
    pub rua: Vec<DmarcUri>,
    pub ruf: Vec<DmarcUri>,
    pub adkim: Option<Alignment>,
    pub aspf: Option<Alignment>,
    pub report_interval: Option<u32>,
    pub failure_options: Option<String>,
    pub percent: Option<u8>,
}

/// Why a DMARC value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmarcError {
    #[error("{0}")]
    Syntax(String),
    #[error("the p tag is missing (it must follow v=DMARC1)")]
    NoPolicy,
    #[error("tag `{tag}` has the invalid value `{value}`")]
    Value { tag: &'static str, value: String },
    #[error("`{0}` is not a mailto: URI such as mailto:dmarc@example.com (optionally with !10m)")]
    Uri(String),
    #[error("fo `{0}` must be a `:`-separated list of 0, 1, d, s")]
    FailureOptions(String),
}

impl DmarcRecord {
    /// A record with only a policy.
    pub fn new(policy: Disposition) -> Self {
        DmarcRecord {
            policy,
            subdomain_policy: None,
            rua: Vec::new(),
            ruf: Vec::new(),
            adkim: None,
            aspf: None,
            report_interval: None,
            failure_options: None,
            percent: None,
        }
    }

    /// Tags in the order of the RFC 7489 §6.4 grammar; defaults (pct=100) are left out.
    pub fn render(&self) -> String {
        let mut parts = vec!["v=DMARC1".to_owned(), format!("p={}", self.policy.as_str())];
        if let Some(sp) = self.subdomain_policy {
            parts.push(format!("sp={}", sp.as_str()));
        }
        let join = |uris: &[DmarcUri]| {
            uris.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.rua.is_empty() {
            parts.push(format!("rua={}", join(&self.rua)));
        }
        if !self.ruf.is_empty() {
            parts.push(format!("ruf={}", join(&self.ruf)));
        }
        if let Some(a) = self.adkim {
            parts.push(format!("adkim={}", a.as_str()));
        }
        if let Some(a) = self.aspf {
            parts.push(format!("aspf={}", a.as_str()));
        }
        if let Some(ri) = self.report_interval {
            parts.push(format!("ri={ri}"));
        }
        if let Some(fo) = &self.failure_options {
            parts.push(format!("fo={fo}"));
        }
        if let Some(pct) = self.percent.filter(|p| *p != 100) {
            parts.push(format!("pct={pct}"));
        }
        parts.join("; ")
    }

    /// Parses a published record. `p` must directly follow `v` (RFC 7489 §6.4); unknown tags
    /// are ignored as the RFC asks.
    pub fn parse(value: &str) -> Result<Self, DmarcError> {
        let tags = tags::parse(value).map_err(|e| DmarcError::Syntax(e.to_string()))?;
        tags::expect_version(&tags, "DMARC1").map_err(DmarcError::Syntax)?;
        match tags.get(1) {
            Some(t) if t.name == "p" => {}
            _ => return Err(DmarcError::NoPolicy),
        }
        let disposition = |tag: &'static str, v: &str| {
            Disposition::parse(v).ok_or_else(|| DmarcError::Value {
                tag,
                value: v.to_owned(),
            })
        };
        let alignment = |tag: &'static str, v: &str| {
            Alignment::parse(v).ok_or_else(|| DmarcError::Value {
                tag,
                value: v.to_owned(),
            })
        };
        let uris = |v: &str| {
            v.split(',')
                .map(|u| DmarcUri::parse(u.trim()))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut record = DmarcRecord::new(Disposition::None);
        for t in &tags[1..] {
            match t.name {
                "p" => record.policy = disposition("p", t.value)?,
                "sp" => record.subdomain_policy = Some(disposition("sp", t.value)?),
                "rua" => record.rua = uris(t.value)?,
                "ruf" => record.ruf = uris(t.value)?,
                "adkim" => record.adkim = Some(alignment("adkim", t.value)?),
                "aspf" => record.aspf = Some(alignment("aspf", t.value)?),
                "ri" => {
                    record.report_interval =
                        Some(t.value.parse().map_err(|_| DmarcError::Value {
                            tag: "ri",
                            value: t.value.to_owned(),
                        })?)
                }
                "fo" => record.failure_options = Some(check_failure_options(t.value)?),
                "pct" => {
                    let pct = t.value.parse::<u8>().ok().filter(|p| *p <= 100);
                    record.percent = Some(pct.ok_or_else(|| DmarcError::Value {
                        tag: "pct",
                        value: t.value.to_owned(),
                    })?);
                }
                _ => {}
            }
        }
        Ok(record)
    }
}

/// `fo`: a `:`-separated list of `0`, `1`, `d`, `s`.
pub fn check_failure_options(value: &str) -> Result<String, DmarcError> {
    let ok = !value.is_empty() && value.split(':').all(|o| matches!(o, "0" | "1" | "d" | "s"));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(DmarcError::FailureOptions(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_grammar_order_and_round_trips() {
        let mut rec = DmarcRecord::new(Disposition::Reject);
        rec.subdomain_policy = Some(Disposition::Quarantine);
        rec.rua = vec![
            DmarcUri::parse("mailto:dmarc@example.com").unwrap(),
            DmarcUri::parse("mailto:d@r.example.net!10m").unwrap(),
        ];
        rec.adkim = Some(Alignment::Strict);
        rec.failure_options = Some("1:d".into());
        rec.percent = Some(50);
        let text = rec.render();
        assert_eq!(
            text,
            "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.com,mailto:d@r.example.net!10m; adkim=s; fo=1:d; pct=50"
        );
        assert_eq!(DmarcRecord::parse(&text).unwrap(), rec);
    }

    #[test]
    fn pct_100_is_the_default_and_left_out() {
        let mut rec = DmarcRecord::new(Disposition::None);
        rec.percent = Some(100);
        assert_eq!(rec.render(), "v=DMARC1; p=none");
    }

    #[test]
    fn p_must_follow_v() {
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; rua=mailto:a@example.com; p=none"),
            Err(DmarcError::NoPolicy)
        );
        assert_eq!(DmarcRecord::parse("v=DMARC1"), Err(DmarcError::NoPolicy));
        assert!(matches!(
            DmarcRecord::parse("p=none; v=DMARC1"),
            Err(DmarcError::Syntax(_))
        ));
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; p=block"),
            Err(DmarcError::Value {
                tag: "p",
                value: "block".into()
            })
        );
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; p=none; pct=101"),
            Err(DmarcError::Value {
                tag: "pct",
                value: "101".into()
            })
        );
        assert!(matches!(
            DmarcRecord::parse("v=DMARC1; p=none; rua=https://x.example/"),
            Err(DmarcError::Uri(_))
        ));
        assert!(matches!(
            DmarcRecord::parse("v=DMARC1; p=none; fo=2"),
            Err(DmarcError::FailureOptions(_))
        ));
        assert!(DmarcUri::parse("mailto:a@example.com!10x").is_err());
        assert!(DmarcUri::parse("mailto:a@example.com!").is_err());
        assert!(DmarcUri::parse("mailto:example.com").is_err());
    }

    #[test]
    fn unknown_tags_are_ignored() {
        let rec = DmarcRecord::parse("v=DMARC1; p=none; np=reject; psd=n").unwrap();
        assert_eq!(rec, DmarcRecord::new(Disposition::None));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn disposition() -> impl Strategy<Value = Disposition> {
        prop_oneof![
            Just(Disposition::None),
            Just(Disposition::Quarantine),
            Just(Disposition::Reject)
        ]
    }

    fn alignment() -> impl Strategy<Value = Option<Alignment>> {
        proptest::option::of(prop_oneof![
            Just(Alignment::Relaxed),
            Just(Alignment::Strict)
        ])
    }

    fn uris() -> impl Strategy<Value = Vec<DmarcUri>> {
        proptest::collection::vec(
            (
                "[a-z0-9.]{1,8}",
                "[a-z]{1,8}\\.(com|org|net)",
                proptest::option::of("[0-9]{1,3}[kmgt]?"),
            ),
            0..3,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(local, domain, limit)| DmarcUri {
                    address: format!("{local}@{domain}"),
                    limit,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(
            policy in disposition(),
            sp in proptest::option::of(disposition()),
            rua in uris(),
            ruf in uris(),
            adkim in alignment(),
            aspf in alignment(),
            ri in proptest::option::of(3600u32..100_000),
            fo in proptest::option::of("[01ds](:[01ds]){0,3}"),
            pct in proptest::option::of(0u8..100),
        ) {
            let rec = DmarcRecord { policy, subdomain_policy: sp, rua, ruf, adkim, aspf, report_interval: ri, failure_options: fo, percent: pct };
            prop_assert_eq!(DmarcRecord::parse(&rec.render()).unwrap(), rec);
        }
    }
}
