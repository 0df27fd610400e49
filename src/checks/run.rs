//! The checks of one domain: DNS records (exactly one of each kind, valid, equal to what is
//! expected), the served MTA-STS policy, and MX coverage by that policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use serde::Serialize;

use super::dns::Dns;
use super::policy::{self, FetchError};
use super::smtp;
use super::spf;
use crate::domain::bimi::BimiRecord;
use crate::domain::dkim::DkimRecord;
use crate::domain::dmarc::DmarcRecord;
use crate::domain::mtasts::{Mode, Policy, StsRecord, policy_host};
use crate::domain::name::DomainName;
use crate::domain::record::RecordKind;
use crate::domain::spf::SpfRecord;
use crate::domain::tlsrpt::TlsRptRecord;
use crate::model::desired::Desired;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

/// One result: which check, about what, how it went, a stable reason and the detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub subject: String,
    pub outcome: Outcome,
    pub reason: &'static str,
    pub message: String,
}

/// The check that stands for the resolver itself.
pub const RESOLVER: &str = "DNS";
/// Its reason when no resolver answered.
pub const RESOLVER_UNREACHABLE: &str = "ResolverUnreachable";

/// The MX hosts of the domain, by preference, or why they could not be looked up.
type MxAnswer = Result<Vec<(u16, String)>, super::dns::LookupError>;

/// A strict parser of one record kind, for `txt_record`.
type Parser = fn(&str) -> Result<(), String>;

/// How to look.
#[derive(Clone, Debug)]
pub struct Options {
    /// The resolvers to ask (the system's by default, see [`super::dns::system_resolvers`]).
    pub resolvers: Vec<SocketAddr>,
    pub https_port: u16,
    /// Port of the MX hosts' SMTP service (25; tests use another).
    pub smtp_port: u16,
    pub roots: Arc<RootCertStore>,
    pub timeout: Duration,
}

fn finding(
    check: &'static str,
    subject: &str,
    outcome: Outcome,
    reason: &'static str,
    message: impl Into<String>,
) -> Finding {
    Finding {
        check,
        subject: subject.to_owned(),
        outcome,
        reason,
        message: message.into(),
    }
}

/// Runs every check that applies. With `expect`, records and policy must equal it, and only
/// the kinds it enables are checked; without, the MTA-STS, TLS-RPT, SPF and DMARC records must
/// exist and be valid.
pub async fn check(name: &DomainName, expect: Option<&Desired>, options: &Options) -> Vec<Finding> {
    let domain = name.as_str();
    let dns = match Dns::new(&options.resolvers, options.timeout) {
        Ok(d) => d,
        Err(e) => return vec![finding(RESOLVER, domain, Outcome::Fail, "ResolverError", e)],
    };
    // The first lookup tells whether the resolver answers at all; if it does not, every later
    // lookup would fail the same way, so that is the one finding.
    let mx = dns.mx(domain).await;
    if let Err(e) = mx.as_ref()
        && e.unreachable
    {
        let message = format!(
            "the resolver {} did not answer ({}): nothing could be checked",
            super::dns::describe(&options.resolvers),
            e.message
        );
        return vec![finding(
            RESOLVER,
            domain,
            Outcome::Fail,
            RESOLVER_UNREACHABLE,
            message,
        )];
    }
    let mut findings = Vec::new();
    let expected =
        |kind: RecordKind| expect.and_then(|d| d.records.iter().find(|r| r.kind == kind));
    let wants = |kind: RecordKind| expect.is_none_or(|d| d.records.iter().any(|r| r.kind == kind));

    if wants(RecordKind::MtaSts) {
        let f = txt_record(
            &dns,
            &RecordKind::MtaSts.owner(name, ""),
            RecordKind::MtaSts,
            expected(RecordKind::MtaSts).map(|r| r.value.as_str()),
            |v| StsRecord::parse(v).map(|_| ()).map_err(|e| e.to_string()),
        )
        .await;
        findings.push(f);
        let (policy_findings, served) = policy_check(
            &dns,
            name,
            expect.and_then(|d| d.policy.as_ref().map(|p| &p.policy)),
            options,
        )
        .await;
        findings.extend(policy_findings);
        let patterns = served.or_else(|| {
            expect
                .and_then(|d| d.policy.as_ref())
                .map(|p| p.policy.clone())
        });
        if let Some(policy) = patterns.filter(|p| p.mode != Mode::None) {
            findings.push(mx_coverage(domain, &mx, &policy));
        }
        findings.extend(smtp_tls(&dns, domain, &mx, options).await);
    }
    let kinds: [(RecordKind, Parser); 3] = [
        (RecordKind::TlsRpt, |v| {
            TlsRptRecord::parse(v)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
        (RecordKind::Spf, |v| {
            SpfRecord::parse(v).map(|_| ()).map_err(|e| e.to_string())
        }),
        (RecordKind::Dmarc, |v| {
            DmarcRecord::parse(v).map(|_| ()).map_err(|e| e.to_string())
        }),
    ];
    for (kind, parse) in kinds {
        if wants(kind) {
            let name = kind.owner(name, "");
            let f = txt_record(
                &dns,
                &name,
                kind,
                expected(kind).map(|r| r.value.as_str()),
                parse,
            )
            .await;
            let published = (f.outcome == Outcome::Pass)
                .then(|| SpfRecord::parse(&f.message).ok())
                .flatten();
            findings.push(f);
            if let Some(record) = published.filter(|_| kind == RecordKind::Spf) {
                findings.push(spf_limits(&dns, &name, &record).await);
            }
        }
    }
    for record in expect
        .iter()
        .flat_map(|d| d.records.iter())
        .filter(|r| matches!(r.kind, RecordKind::Dkim | RecordKind::Bimi))
    {
        let parse: Parser = match record.kind {
            RecordKind::Dkim => |v| DkimRecord::parse(v).map(|_| ()).map_err(|e| e.to_string()),
            _ => |v| BimiRecord::parse(v).map(|_| ()).map_err(|e| e.to_string()),
        };
        findings
            .push(txt_record(&dns, &record.name, record.kind, Some(&record.value), parse).await);
    }
    findings
}

/// Exactly one value of `kind` at `name`, valid, and equal to `expected` when given.
async fn txt_record(
    dns: &Dns,
    name: &str,
    kind: RecordKind,
    expected: Option<&str>,
    parse: Parser,
) -> Finding {
    let check = kind.as_str();
    let values = match dns.txt(name).await {
        Ok(v) => v,
        Err(e) => return finding(check, name, Outcome::Fail, "LookupFailed", e.to_string()),
    };
    let ours: Vec<&String> = values.iter().filter(|v| kind.matches(v)).collect();
    match ours.as_slice() {
        [] => finding(
            check,
            name,
            Outcome::Fail,
            "NoRecord",
            format!("no `{}` TXT record at {name}", kind.tag()),
        ),
        [value] => {
            if let Err(e) = parse(value) {
                return finding(
                    check,
                    name,
                    Outcome::Fail,
                    "InvalidRecord",
                    format!("`{value}`: {e}"),
                );
            }
            match expected {
                Some(want) if want != value.as_str() => finding(
                    check,
                    name,
                    Outcome::Fail,
                    "Mismatch",
                    format!("published `{value}`, expected `{want}`"),
                ),
                _ => finding(check, name, Outcome::Pass, "Valid", value.as_str()),
            }
        }
        many => finding(
            check,
            name,
            Outcome::Fail,
            "MultipleRecords",
            format!(
                "{} `{}` records at {name}; receivers ignore them all when there is more than one",
                many.len(),
                kind.tag()
            ),
        ),
    }
}

/// Fetches and checks the policy; returns the findings and the policy when it could be read.
async fn policy_check(
    dns: &Dns,
    domain: &DomainName,
    expected: Option<&Policy>,
    options: &Options,
) -> (Vec<Finding>, Option<Policy>) {
    let host = policy_host(domain);
    let check = "MTA-STS policy";
    let fail = |reason, message: String| {
        (
            vec![finding(check, &host, Outcome::Fail, reason, message)],
            None,
        )
    };
    let addrs = match dns.addresses(&host).await {
        Ok(a) => a,
        Err(e) => return fail("LookupFailed", e.to_string()),
    };
    let fetched = match policy::fetch(
        domain.as_str(),
        &addrs,
        options.https_port,
        options.roots.clone(),
        options.timeout,
    )
    .await
    {
        Ok(f) => f,
        Err(e @ FetchError::NoAddress(_)) => return fail("NoAddress", e.to_string()),
        Err(e @ FetchError::Certificate { reason, .. }) => return fail(reason, e.to_string()),
        Err(e @ FetchError::TlsVersion { .. }) => return fail("TLSVersionTooOld", e.to_string()),
        Err(e @ FetchError::Tls { .. }) => return fail("TLSHandshakeFailed", e.to_string()),
        Err(e @ FetchError::Timeout(_)) => return fail("Timeout", e.to_string()),
        Err(e @ FetchError::NoCloseNotify(_)) => return fail("NoCloseNotify", e.to_string()),
        Err(e @ FetchError::Http(_)) => return fail("HTTPError", e.to_string()),
        Err(e @ FetchError::Connect(_)) => return fail("Unreachable", e.to_string()),
    };
    if (300..400).contains(&fetched.status) {
        let to = fetched.location.unwrap_or_default();
        return fail(
            "Redirect",
            format!(
                "HTTP {} to `{to}`: senders do not follow redirects (RFC 8461 §3.3)",
                fetched.status
            ),
        );
    }
    if fetched.status != 200 {
        return fail(
            "HTTPStatus",
            format!("HTTP {}, senders need 200", fetched.status),
        );
    }
    let media = fetched.content_type.as_deref().unwrap_or_default();
    if !media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .eq_ignore_ascii_case("text/plain")
    {
        return fail(
            "ContentType",
            format!("Content-Type is `{media}`, senders need text/plain"),
        );
    }
    if fetched.body.len() > crate::domain::mtasts::MAX_POLICY_BYTES {
        return fail(
            "TooLarge",
            "the policy is larger than the 64 KiB senders read".into(),
        );
    }
    let Ok(text) = String::from_utf8(fetched.body) else {
        return fail("InvalidPolicy", "the policy is not UTF-8 text".into());
    };
    let parsed = match Policy::parse(&text) {
        Ok(p) => p,
        Err(e) => return fail("InvalidPolicy", e.to_string()),
    };
    let mut findings = Vec::new();
    for warning in &parsed.warnings {
        findings.push(finding(
            check,
            &host,
            Outcome::Warn,
            "PolicyWarning",
            warning.clone(),
        ));
    }
    match expected {
        Some(want) if *want != parsed.value => findings.push(finding(
            check,
            &host,
            Outcome::Fail,
            "Mismatch",
            format!(
                "served mode {} mx [{}] max_age {}, expected mode {} mx [{}] max_age {}",
                parsed.value.mode,
                list(&parsed.value),
                parsed.value.max_age,
                want.mode,
                list(want),
                want.max_age
            ),
        )),
        _ => findings.push(finding(
            check,
            &host,
            Outcome::Pass,
            "Served",
            format!(
                "mode {}, max_age {}",
                parsed.value.mode, parsed.value.max_age
            ),
        )),
    }
    (findings, Some(parsed.value))
}

fn list(p: &Policy) -> String {
    p.mx.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SPF tree within the limits receivers enforce.
async fn spf_limits(dns: &Dns, name: &str, record: &SpfRecord) -> Finding {
    let check = "SPF lookups";
    let cost = spf::cost(dns, record).await;
    let void = if cost.void_names.is_empty() {
        String::new()
    } else {
        format!(" (nothing at {})", cost.void_names.join(", "))
    };
    if cost.lookups > crate::domain::spf::LOOKUP_LIMIT {
        let message = format!(
            "{} DNS-querying terms across includes; receivers fail SPF above 10 (RFC 7208 §4.6.4)",
            cost.lookups
        );
        finding(check, name, Outcome::Fail, "TooManyLookups", message)
    } else if cost.void > spf::VOID_LIMIT {
        let message = format!(
            "{} lookups answered nothing{void}; receivers fail SPF above 2 (RFC 7208 §4.6.4)",
            cost.void
        );
        finding(check, name, Outcome::Fail, "TooManyVoidLookups", message)
    } else if !cost.problems.is_empty() {
        finding(
            check,
            name,
            Outcome::Fail,
            "BrokenInclude",
            cost.problems.join("; "),
        )
    } else {
        finding(
            check,
            name,
            Outcome::Pass,
            "WithinLimits",
            format!("{} of 10 lookups, {} void", cost.lookups, cost.void),
        )
    }
}

/// Each MX host must offer STARTTLS with TLS 1.2+ and a certificate valid for its name. A
/// connect timeout is a warning: port 25 is often blocked where a check runs.
async fn smtp_tls(dns: &Dns, domain: &str, mx: &MxAnswer, options: &Options) -> Vec<Finding> {
    let check = "SMTP TLS";
    let hosts = match mx {
        Ok(h) => h,
        Err(e) => {
            return vec![finding(
                check,
                domain,
                Outcome::Fail,
                "LookupFailed",
                e.to_string(),
            )];
        }
    };
    let mut findings = Vec::new();
    for (_, host) in hosts {
        let addrs = match dns.addresses(host).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                findings.push(finding(
                    check,
                    host,
                    Outcome::Fail,
                    "NoAddress",
                    format!("{host} has no address"),
                ));
                continue;
            }
            Err(e) => {
                findings.push(finding(
                    check,
                    host,
                    Outcome::Fail,
                    "LookupFailed",
                    e.to_string(),
                ));
                continue;
            }
        };
        let addr = SocketAddr::new(addrs[0], options.smtp_port);
        findings.push(
            match smtp::probe(host, addr, options.roots.clone(), options.timeout).await {
                Ok(s) => finding(
                    check,
                    host,
                    Outcome::Pass,
                    "STARTTLS",
                    format!("STARTTLS with {}, certificate valid for {host}", s.version),
                ),
                Err(e @ smtp::SmtpError::ConnectTimeout(_)) => {
                    finding(check, host, Outcome::Warn, e.reason(), e.to_string())
                }
                Err(e) => finding(check, host, Outcome::Fail, e.reason(), e.to_string()),
            },
        );
    }
    findings
}

/// Every MX host must match a pattern of the policy, or senders in enforce mode refuse it.
fn mx_coverage(domain: &str, mx: &MxAnswer, policy: &Policy) -> Finding {
    let check = "MX coverage";
    let hosts = match mx {
        Ok(h) => h,
        Err(e) => return finding(check, domain, Outcome::Fail, "LookupFailed", e.to_string()),
    };
    if hosts.is_empty() {
        return finding(
            check,
            domain,
            Outcome::Fail,
            "NoMX",
            format!("{domain} has no MX records"),
        );
    }
    let uncovered: Vec<&str> = hosts
        .iter()
        .map(|(_, h)| h.as_str())
        .filter(|h| !policy.covers(h))
        .collect();
    if uncovered.is_empty() {
        let all: Vec<&str> = hosts.iter().map(|(_, h)| h.as_str()).collect();
        finding(
            check,
            domain,
            Outcome::Pass,
            "Covered",
            format!("{} covered by the policy", all.join(", ")),
        )
    } else {
        finding(
            check,
            domain,
            Outcome::Fail,
            "MXNotCovered",
            format!(
                "{} not covered by the policy's mx [{}]",
                uncovered.join(", "),
                list(policy)
            ),
        )
    }
}
