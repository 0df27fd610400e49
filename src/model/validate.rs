//! Validate: a MailDomain spec (plus the Secrets it names) becomes a checked, normalized
//! [`MailConfig`], or a list of errors that each name the offending field. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::{self, MailDomainSpec};
use crate::domain::bimi::BimiRecord;
use crate::domain::dkim::{self, DkimRecord, PublicKey};
use crate::domain::dmarc::{self, DmarcRecord, DmarcUri};
use crate::domain::mtasts::{Mode, MxPattern, Policy};
use crate::domain::name::DomainName;
use crate::domain::spf::{Qualifier, SpfRecord};
use crate::domain::tlsrpt::{ReportUri, TlsRptRecord};

/// Secret data by Secret name, then data key: what the DKIM key references resolve against.
pub type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// A problem with one field, addressed by its path (`spec.mtaSts.maxAge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every error found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<FieldError>);

/// The checked configuration of one mail domain, free of Kubernetes types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    pub domain: DomainName,
    pub ttl: u32,
    pub mx: Vec<MxPattern>,
    pub mta_sts: Option<Policy>,
    pub tls_rpt: Option<TlsRptRecord>,
    pub spf: Option<SpfRecord>,
    pub dmarc: Option<DmarcRecord>,
    /// `(selector, record)`, selectors lower-cased.
    pub dkim: Vec<(String, DkimRecord)>,
    /// The `managed` DKIM entries: their records come from the keys the operator makes.
    pub managed_dkim: Vec<super::rotation::Entry>,
    pub bimi: Option<(String, BimiRecord)>,
}

/// A valid configuration and the advice that did not make it invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub config: MailConfig,
    pub warnings: Vec<FieldError>,
}

/// Collects errors and warnings while walking the spec.
#[derive(Default)]
struct Report {
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

impl Report {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Keeps the value, or records the error at `path` and returns None.
    fn check<T, E: fmt::Display>(
        &mut self,
        path: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }
}

const TTL_RANGE: std::ops::RangeInclusive<u32> = 60..=604_800;
const ADVISED_MIN_MAX_AGE: u32 = 86_400;

/// Validates a spec against every rule we know, the CRD's and the RFCs'. `receiver` is the
/// URL of this installation's report receiver, for `tlsRpt.receive` (none when no receiver
/// runs).
pub fn validate(
    spec: &MailDomainSpec,
    secrets: &SecretData,
    receiver: Option<&ReportUri>,
) -> Result<Validated, Invalid> {
    let mut r = Report::default();
    let domain = r.check(
        "spec.domain",
        DomainName::parse(&spec.domain).map_err(|e| format!("`{}` {e}", spec.domain)),
    );
    if !TTL_RANGE.contains(&spec.ttl) {
        r.error(
            "spec.ttl",
            format!("{} is outside 60..604800 seconds", spec.ttl),
        );
    }
    let mx: Vec<MxPattern> = spec
        .mx
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            r.check(
                format!("spec.mx[{i}]"),
                MxPattern::parse(m).map_err(|e| format!("`{m}` {e}")),
            )
        })
        .collect();
    for (i, m) in mx.iter().enumerate() {
        if mx[..i].contains(m) {
            r.error(format!("spec.mx[{i}]"), format!("`{m}` is listed twice"));
        }
    }
    let mta_sts = spec
        .mta_sts
        .as_ref()
        .and_then(|s| mta_sts(s, &spec.mx, &mx, &mut r));
    let tls_rpt = spec
        .tls_rpt
        .as_ref()
        .and_then(|s| tls_rpt(s, receiver, &mut r));
    let spf = spec.spf.as_ref().and_then(|s| spf(s, &mut r));
    let dmarc = spec
        .dmarc
        .as_ref()
        .and_then(|s| dmarc(s, domain.as_ref(), &mut r));
    let dkim = dkim_records(&spec.dkim, secrets, &mut r);
    let managed_dkim: Vec<super::rotation::Entry> = spec
        .dkim
        .iter()
        .filter_map(|d| {
            let managed = d.managed.as_ref()?;
            super::rotation::Entry::new(&d.selector, managed).ok()
        })
        .collect();
    let bimi = spec
        .bimi
        .as_ref()
        .and_then(|s| bimi(s, dmarc.as_ref(), &mut r));
    let nothing = spec.mta_sts.is_none()
        && spec.tls_rpt.is_none()
        && spec.spf.is_none()
        && spec.dmarc.is_none()
        && spec.dkim.is_empty()
        && spec.bimi.is_none();
    if nothing {
        r.error(
            "spec",
            "nothing to publish: set at least one of mtaSts, tlsRpt, spf, dmarc, dkim, bimi",
        );
    }
    match domain {
        Some(domain) if r.errors.is_empty() => Ok(Validated {
            config: MailConfig {
                domain,
                ttl: spec.ttl,
                mx,
                mta_sts,
                tls_rpt,
                spf,
                dmarc,
                dkim,
                managed_dkim,
                bimi,
            },
            warnings: r.warnings,
        }),
        _ => Err(Invalid(r.errors)),
    }
}

fn mta_sts(
    spec: &api::MtaStsSpec,
    given_mx: &[String],
    mx: &[MxPattern],
    r: &mut Report,
) -> Option<Policy> {
    let mode = match spec.mode {
        api::MtaStsMode::Testing => Mode::Testing,
        api::MtaStsMode::Enforce => Mode::Enforce,
        api::MtaStsMode::None => Mode::None,
    };
    if mode != Mode::None && given_mx.is_empty() {
        r.error(
            "spec.mx",
            format!("mtaSts.mode is {mode}: list at least one MX host pattern"),
        );
    }
    let limit = crate::domain::mtasts::MAX_AGE_LIMIT;
    if spec.max_age == 0 || spec.max_age > limit {
        r.error(
            "spec.mtaSts.maxAge",
            format!("{} is outside 1..{limit} seconds", spec.max_age),
        );
        return None;
    }
    if spec.max_age < ADVISED_MIN_MAX_AGE && mode != Mode::None {
        r.warn("spec.mtaSts.maxAge", format!("{} s is short: RFC 8461 §3.2 advises weeks, so senders keep the policy between visits", spec.max_age));
    }
    Some(Policy {
        mode,
        mx: mx.to_vec(),
        max_age: spec.max_age,
    })
}

fn tls_rpt(
    spec: &api::TlsRptSpec,
    receiver: Option<&ReportUri>,
    r: &mut Report,
) -> Option<TlsRptRecord> {
    let before = r.errors.len();
    let mut rua: Vec<ReportUri> = spec
        .rua
        .iter()
        .enumerate()
        .filter_map(|(i, u)| r.check(format!("spec.tlsRpt.rua[{i}]"), ReportUri::parse(u)))
        .collect();
    if spec.receive {
        match receiver {
            Some(url) if !rua.contains(url) => rua.push(url.clone()),
            Some(_) => {}
            None => r.error(
                "spec.tlsRpt.receive",
                "no report receiver runs in this installation: enable the chart's reports.receiver (or give the controller --report-url), or list rua destinations instead",
            ),
        }
    }
    if rua.is_empty() && r.errors.len() == before {
        r.error(
            "spec.tlsRpt.rua",
            "list at least one mailto: or https:// destination, or set receive: true",
        );
    }
    (r.errors.len() == before).then_some(TlsRptRecord { rua })
}

fn spf(spec: &api::SpfSpec, r: &mut Report) -> Option<SpfRecord> {
    let all = spec.all.map(|a| match a {
        api::SpfAll::Fail => Qualifier::Fail,
        api::SpfAll::Softfail => Qualifier::SoftFail,
        api::SpfAll::Neutral => Qualifier::Neutral,
    });
    if all.is_none() && spec.redirect.is_none() {
        r.error("spec.spf.all", "set all (fail, softfail or neutral) or redirect: without either, unlisted hosts get a neutral result");
        return None;
    }
    match SpfRecord::build(&spec.mechanisms, all, spec.redirect.as_deref()) {
        Ok((record, warnings)) => {
            for w in warnings {
                r.warn("spec.spf", w);
            }
            Some(record)
        }
        Err((index, e)) => {
            let path = match (index, &e) {
                (Some(i), _) => format!("spec.spf.mechanisms[{i}]"),
                (None, crate::domain::spf::SpfError::AllAndRedirect) => "spec.spf".to_owned(),
                (None, crate::domain::spf::SpfError::Argument { .. }) => {
                    "spec.spf.redirect".to_owned()
                }
                (None, _) => "spec.spf.mechanisms".to_owned(),
            };
            r.error(path, e.to_string());
            None
        }
    }
}

fn dmarc(
    spec: &api::DmarcSpec,
    domain: Option<&DomainName>,
    r: &mut Report,
) -> Option<DmarcRecord> {
    let disposition = |p: api::DmarcPolicy| match p {
        api::DmarcPolicy::None => dmarc::Disposition::None,
        api::DmarcPolicy::Quarantine => dmarc::Disposition::Quarantine,
        api::DmarcPolicy::Reject => dmarc::Disposition::Reject,
    };
    let alignment = |a: api::Alignment| match a {
        api::Alignment::Relaxed => dmarc::Alignment::Relaxed,
        api::Alignment::Strict => dmarc::Alignment::Strict,
    };
    let before = r.errors.len();
    let uris = |field: &str, list: &[String], r: &mut Report| -> Vec<DmarcUri> {
        list.iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let uri = r.check(format!("spec.dmarc.{field}[{i}]"), DmarcUri::parse(u))?;
                let external = DomainName::parse(uri.domain())
                    .ok()
                    .zip(domain)
                    .is_some_and(|(to, own)| !to.is_within(own) && !own.is_within(&to));
                if external {
                    r.warn(
                        format!("spec.dmarc.{field}[{i}]"),
                        format!(
                            "reports go to another domain: {} must publish `{}._report._dmarc.{}` TXT \"v=DMARC1\" or receivers drop them (RFC 7489 §7.1)",
                            uri.domain(),
                            domain.map(|d| d.as_str()).unwrap_or_default(),
                            uri.domain()
                        ),
                    );
                }
                Some(uri)
            })
            .collect()
    };
    let rua = uris("rua", &spec.rua, r);
    let ruf = uris("ruf", &spec.ruf, r);
    if spec.percent.is_some_and(|p| p > 100) {
        r.error("spec.dmarc.percent", "must be 0 to 100");
    }
    let failure_options = spec.failure_options.as_deref().and_then(|fo| {
        r.check(
            "spec.dmarc.failureOptions",
            dmarc::check_failure_options(fo),
        )
    });
    if let Some(ri) = spec
        .report_interval
        .filter(|ri| !(3600..=31_557_600).contains(ri))
    {
        r.error(
            "spec.dmarc.reportInterval",
            format!("{ri} is outside 3600..31557600 seconds"),
        );
    }
    if r.errors.len() != before {
        return None;
    }
    Some(DmarcRecord {
        policy: disposition(spec.policy),
        subdomain_policy: spec.subdomain_policy.map(disposition),
        rua,
        ruf,
        adkim: spec.dkim_alignment.map(alignment),
        aspf: spec.spf_alignment.map(alignment),
        report_interval: spec.report_interval,
        failure_options,
        percent: spec.percent,
    })
}

fn dkim_records(
    specs: &[api::DkimSpec],
    secrets: &SecretData,
    r: &mut Report,
) -> Vec<(String, DkimRecord)> {
    let mut out: Vec<(String, DkimRecord)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = format!("spec.dkim[{i}]");
        let selector = spec.selector.to_ascii_lowercase();
        if let Err(e) = dkim::check_selector(&selector) {
            r.error(
                format!("{path}.selector"),
                format!("`{}` {e}", spec.selector),
            );
            continue;
        }
        if out.iter().any(|(s, _)| *s == selector) {
            r.error(
                format!("{path}.selector"),
                format!("`{selector}` is listed twice"),
            );
            continue;
        }
        if let Some(managed) = &spec.managed {
            // Its records come from the keys the operator made (see model::rotation).
            if spec.key_secret_ref.is_some() || spec.public_key.is_some() {
                r.error(
                    path.clone(),
                    "set exactly one of keySecretRef, publicKey or managed",
                );
            } else if let Err(e) = super::rotation::Entry::new(&selector, managed) {
                r.error(format!("{path}.managed"), e);
            } else if selector.rsplit('.').next().is_some_and(|l| l.len() > 52) {
                r.error(
                    format!("{path}.selector"),
                    format!("`{selector}` is too long a prefix: the date and a counter must fit in its last label (52 characters at most)"),
                );
            }
            continue;
        }
        let key = match (&spec.key_secret_ref, &spec.public_key) {
            (Some(reference), None) => secret_key(reference, secrets)
                .and_then(|pem| {
                    PublicKey::from_pem(&pem).map_err(|e| {
                        format!(
                            "the key in Secret `{}` key `{}` {e}",
                            reference.name, reference.key
                        )
                    })
                })
                .map_err(|e| (format!("{path}.keySecretRef"), e)),
            (None, Some(text)) => inline_key(text).map_err(|e| (format!("{path}.publicKey"), e)),
            _ => Err((
                path.clone(),
                "set exactly one of keySecretRef, publicKey or managed".to_owned(),
            )),
        };
        match key {
            Ok(key) => {
                if key.key_type == dkim::KeyType::Rsa && key.bits < dkim::RSA_ADVISED_BITS {
                    r.warn(
                        &path,
                        format!(
                            "a {}-bit RSA key is weak; RFC 8301 advises 2048 bits",
                            key.bits
                        ),
                    );
                }
                out.push((selector, DkimRecord::new(&key, spec.testing)));
            }
            Err((p, e)) => r.error(p, e),
        }
    }
    out
}

fn secret_key(reference: &api::KeySecretRef, secrets: &SecretData) -> Result<String, String> {
    let data = secrets.get(&reference.name).ok_or_else(|| {
        format!(
            "Secret `{}` was not found in this namespace",
            reference.name
        )
    })?;
    let bytes = data
        .get(&reference.key)
        .ok_or_else(|| format!("Secret `{}` has no key `{}`", reference.name, reference.key))?;
    String::from_utf8(bytes.clone()).map_err(|_| {
        format!(
            "Secret `{}` key `{}` is not PEM text",
            reference.name, reference.key
        )
    })
}

/// A public key pasted from a mail provider: PEM, or the bare base64 `p=` value.
fn inline_key(text: &str) -> Result<PublicKey, String> {
    if text.contains("-----BEGIN") {
        return PublicKey::from_pem(text).map_err(|e| format!("the key {e}"));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded_len = compact.len() / 4 * 3;
    let key_type = if decoded_len <= 33 {
        dkim::KeyType::Ed25519
    } else {
        dkim::KeyType::Rsa
    };
    PublicKey::from_record_data(key_type, &compact).map_err(|e| format!("the key {e}"))
}

fn bimi(
    spec: &api::BimiSpec,
    dmarc: Option<&DmarcRecord>,
    r: &mut Report,
) -> Option<(String, BimiRecord)> {
    let selector = spec.selector.to_ascii_lowercase();
    if let Err(e) = dkim::check_selector(&selector) {
        r.error("spec.bimi.selector", format!("`{}` {e}", spec.selector));
        return None;
    }
    let logo = r.check(
        "spec.bimi.logoUrl",
        crate::domain::bimi::check_https_url(&spec.logo_url),
    );
    let authority = match &spec.authority_url {
        Some(a) => r
            .check(
                "spec.bimi.authorityUrl",
                crate::domain::bimi::check_https_url(a),
            )
            .map(|_| Some(a.as_str())),
        None => Some(None),
    };
    let enforcing = dmarc
        .is_some_and(|d| d.policy != dmarc::Disposition::None && d.percent.unwrap_or(100) == 100);
    if dmarc.is_some() && !enforcing {
        r.warn(
            "spec.bimi",
            "mailbox providers show BIMI logos only with DMARC at quarantine or reject and pct=100",
        );
    }
    let (_, authority) = logo.zip(authority)?;
    r.check("spec.bimi", BimiRecord::new(&spec.logo_url, authority))
        .map(|rec| (selector, rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> MailDomainSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn errors(yaml: &str) -> Vec<String> {
        validate(&spec(yaml), &SecretData::new(), None)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn warnings(yaml: &str) -> Vec<String> {
        validate(&spec(yaml), &SecretData::new(), None)
            .unwrap()
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let errs = errors(
            "domain: example.com.\nttl: 1\nmx: ['*.*.example.com']\nmtaSts: {mode: testing, maxAge: 0}\ntlsRpt: {rua: ['ftp://x']}\n",
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "spec.domain",
                "spec.ttl",
                "spec.mx[0]",
                "spec.mtaSts.maxAge",
                "spec.tlsRpt.rua[0]"
            ]
        );
    }

    #[test]
    fn advice_is_a_warning_not_an_error() {
        let w = warnings(
            "domain: example.com\nmx: [mx.example.com]\nmtaSts: {mode: testing, maxAge: 3600}\n",
        );
        assert!(
            w[0].starts_with("spec.mtaSts.maxAge: 3600 s is short"),
            "{w:?}"
        );
        let w = warnings(
            "domain: example.com\ndmarc: {policy: none, rua: ['mailto:d@reports.example.net', 'mailto:d@sub.example.com']}\n",
        );
        assert_eq!(
            w.len(),
            1,
            "only the other domain needs an authorization record: {w:?}"
        );
        assert!(
            w[0].contains("example.com._report._dmarc.reports.example.net"),
            "{w:?}"
        );
        let w = warnings(
            "domain: example.com\ndmarc: {policy: none}\nbimi: {logoUrl: 'https://example.com/l.svg'}\n",
        );
        assert!(w[0].starts_with("spec.bimi:"), "{w:?}");
    }

    #[test]
    fn dkim_keys_come_from_secrets_with_precise_errors() {
        let yaml = "domain: example.com\ndkim: [{selector: s1, keySecretRef: {name: k}}]\n";
        assert_eq!(
            errors(yaml),
            ["spec.dkim[0].keySecretRef: Secret `k` was not found in this namespace"]
        );
        let mut secrets = SecretData::new();
        secrets.insert("k".into(), [("other".to_owned(), b"x".to_vec())].into());
        let err = validate(&spec(yaml), &secrets, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.dkim[0].keySecretRef: Secret `k` has no key `private.key`"
        );
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/dkim/rsa1024.pkcs8.pem"
        ))
        .unwrap();
        secrets.insert("k".into(), [("private.key".to_owned(), pem)].into());
        let valid = validate(&spec(yaml), &secrets, None).unwrap();
        assert_eq!(valid.config.dkim[0].0, "s1");
        assert!(
            valid.warnings[0]
                .message
                .contains("1024-bit RSA key is weak")
        );
    }

    #[test]
    fn spf_needs_an_ending() {
        assert_eq!(
            errors("domain: example.com\nspf: {mechanisms: [mx]}\n"),
            [
                "spec.spf.all: set all (fail, softfail or neutral) or redirect: without either, unlisted hosts get a neutral result"
            ]
        );
        assert!(
            errors("domain: example.com\nspf: {redirect: 'bad..name'}\n")[0]
                .starts_with("spec.spf.redirect:")
        );
    }

    #[test]
    fn duplicate_mx_and_selectors_are_refused() {
        let errs =
            errors("domain: example.com\nmx: [MX.example.com, mx.example.com]\nmtaSts: {}\n");
        assert_eq!(errs, ["spec.mx[1]: `mx.example.com` is listed twice"]);
        let errs = errors(
            "domain: example.com\ndkim: [{selector: a, publicKey: 'Jp5+k9usIudxqg2jB6TmZeJrDSgUgcj6TxnIqvzIv10='}, {selector: A, publicKey: 'Jp5+k9usIudxqg2jB6TmZeJrDSgUgcj6TxnIqvzIv10='}]\n",
        );
        assert_eq!(errs, ["spec.dkim[1].selector: `a` is listed twice"]);
    }
}
