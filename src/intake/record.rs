//! A received report as the `TLSReport` objects that keep it: one per managed policy domain,
//! named by reporter, report-id and domain so a report that arrives again has the same name.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use jiff::tz::Offset;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use super::{Dkim, Incoming, Via};
use crate::api::{
    FailureGroup, MAX_EXAMPLES, MAX_FAILURE_GROUPS, MAX_RAW_GZIP, RawReport, ReportPolicy,
    ReportReceipt, TLSReportSpec,
};
use crate::report::{Limits, PolicyResult, Report, inflate};

/// Longest text kept from a report field (the CRD's limits are a little above).
const TEXT: usize = 250;

/// The policy domains a report names, lower case without a trailing dot, in order, once
/// each. Policies without `policy-domain` belong to `fallback` (the domain the report was
/// sent for, when the source knows it).
pub fn policy_domains(report: &Report, fallback: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &report.policies {
        if let Some(d) = domain_of(p, fallback)
            && !out.contains(&d)
        {
            out.push(d);
        }
    }
    out
}

fn normalize(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn domain_of(p: &PolicyResult, fallback: Option<&str>) -> Option<String> {
    p.policy
        .policy_domain
        .as_deref()
        .or(fallback)
        .map(normalize)
        .filter(|d| !d.is_empty())
}

/// The object name of `report` for `domain`: the report's day, then a digest of reporter,
/// report-id and domain (stable, so a repeated report collides with itself).
pub fn object_name(report: &Report, domain: &str) -> String {
    let mut hash = Sha256::new();
    for part in [
        report.organization_name.as_str(),
        report.report_id.as_str(),
        domain,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", report.day().strftime("%Y%m%d"))
}

/// The TLSReport spec of `incoming`'s policies for `domain`.
pub fn spec(incoming: &Incoming, domain: &str, fallback: Option<&str>) -> TLSReportSpec {
    let report = &incoming.report;
    let policies: Vec<ReportPolicy> = report
        .policies
        .iter()
        .filter(|p| domain_of(p, fallback).as_deref() == Some(domain))
        .take(64)
        .map(policy)
        .collect();
    let successful = policies
        .iter()
        .fold(0u64, |s, p| s.saturating_add(p.successful));
    let failed = policies
        .iter()
        .fold(0u64, |s, p| s.saturating_add(p.failed));
    let top_failure = policies
        .iter()
        .flat_map(|p| p.failures.iter())
        .max_by_key(|f| f.sessions)
        .map(|f| match &f.receiving_mx {
            Some(mx) => format!("{} at {mx}", f.result_type),
            None => f.result_type.clone(),
        });
    TLSReportSpec {
        policy_domain: domain.to_owned(),
        organization: clip(&report.organization_name),
        contact_info: report.contact_info.as_deref().map(clip),
        report_id: clip_to(&report.report_id, 500),
        start: Time(report.date_range.start),
        end: Time(report.date_range.end),
        day: Offset::UTC
            .to_datetime(report.date_range.start)
            .date()
            .strftime("%Y-%m-%d")
            .to_string(),
        successful,
        failed,
        top_failure,
        policies,
        received: receipt(&incoming.via),
        raw: raw(incoming),
        warnings: report
            .warnings
            .iter()
            .map(|w| w.code().to_owned())
            .take(32)
            .collect(),
    }
}

fn policy(p: &PolicyResult) -> ReportPolicy {
    // Group by (result type, MX, IP); the groups keep a few distinct reasons as examples.
    let mut groups: BTreeMap<(String, Option<String>, Option<String>), FailureGroup> =
        BTreeMap::new();
    for f in &p.failure_details {
        let key = (
            clip(f.result_type.as_str()),
            f.receiving_mx_hostname.as_deref().map(clip),
            f.receiving_ip.as_deref().map(|ip| clip_to(ip, 60)),
        );
        let group = groups.entry(key.clone()).or_insert_with(|| FailureGroup {
            result_type: key.0,
            receiving_mx: key.1,
            receiving_ip: key.2,
            sessions: 0,
            examples: Vec::new(),
        });
        group.sessions = group
            .sessions
            .saturating_add(f.failed_session_count.unwrap_or(0));
        for example in [&f.failure_reason_code, &f.additional_information]
            .into_iter()
            .flatten()
        {
            let example = clip(example);
            if group.examples.len() < MAX_EXAMPLES && !group.examples.contains(&example) {
                group.examples.push(example);
            }
        }
    }
    let mut failures: Vec<FailureGroup> = groups.into_values().collect();
    failures.sort_by_key(|f| std::cmp::Reverse(f.sessions));
    let omitted = failures.len().saturating_sub(MAX_FAILURE_GROUPS);
    failures.truncate(MAX_FAILURE_GROUPS);
    ReportPolicy {
        policy_type: clip_to(p.policy.policy_type.as_str(), 60),
        mode: p.policy.sts_value("mode").map(|m| clip_to(m, 16)),
        policy_string: p
            .policy
            .policy_string
            .iter()
            .take(64)
            .map(|s| clip(s))
            .collect(),
        mx_hosts: p.policy.mx_host.iter().take(64).map(|s| clip(s)).collect(),
        successful: p.summary.total_successful_session_count,
        failed: p.summary.total_failure_session_count,
        failures,
        failures_omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
    }
}

fn receipt(via: &Via) -> ReportReceipt {
    match via {
        Via::Https { .. } => ReportReceipt {
            via: "https".into(),
            message_id: None,
            from: None,
            dkim: None,
            dkim_domain: None,
        },
        Via::Mail {
            message_id,
            from,
            dkim,
            ..
        } => {
            let (verdict, domain) = match dkim {
                Dkim::Pass { domain } => ("pass", Some(clip(domain))),
                Dkim::Fail { .. } => ("fail", None),
                Dkim::None => ("none", None),
            };
            ReportReceipt {
                via: "mail".into(),
                message_id: message_id.as_deref().map(|m| clip_to(m, 500)),
                from: from.as_deref().map(|f| clip_to(f, 500)),
                dkim: Some(verdict.into()),
                dkim_domain: domain,
            }
        }
    }
}

/// The digest of the report JSON, and the JSON gzipped when that fits.
fn raw(incoming: &Incoming) -> RawReport {
    let inflated;
    let json: &[u8] = if incoming.raw.gzip {
        // Parsed before with the same limits, so this is bounded and succeeds.
        inflated = inflate(&incoming.raw.bytes, &Limits::default()).unwrap_or_default();
        &inflated
    } else {
        &incoming.raw.bytes
    };
    let gzip = if incoming.raw.gzip {
        Some(incoming.raw.bytes.clone())
    } else {
        gzip(json)
    };
    RawReport {
        sha256: Sha256::digest(json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        size: json.len() as u64,
        gzip: gzip
            .filter(|g| g.len() <= MAX_RAW_GZIP)
            .map(|g| base64::engine::general_purpose::STANDARD.encode(g)),
    }
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

fn clip(text: &str) -> String {
    clip_to(text, TEXT)
}

fn clip_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::Raw;
    use crate::report::parse_json;

    const REPORT: &str = r#"{"organization-name":"Example Sender","date-range":{"start-datetime":"2026-11-30T00:00:00Z","end-datetime":"2026-11-30T23:59:59Z"},"contact-info":"tlsrpt@sender.example","report-id":"r-1","policies":[
      {"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: mx1.example.com","max_age: 604800"],"policy-domain":"Example.COM.","mx-host":["mx1.example.com"]},
       "summary":{"total-successful-session-count":90,"total-failure-session-count":12},
       "failure-details":[
         {"result-type":"certificate-expired","receiving-mx-hostname":"mx1.example.com","receiving-ip":"192.0.2.1","failed-session-count":10,"failure-reason-code":"X509_V_ERR_CERT_HAS_EXPIRED"},
         {"result-type":"certificate-expired","receiving-mx-hostname":"mx1.example.com","receiving-ip":"192.0.2.1","failed-session-count":1,"failure-reason-code":"X509_V_ERR_CERT_HAS_EXPIRED"},
         {"result-type":"starttls-not-supported","receiving-mx-hostname":"mx2.example.com","failed-session-count":1}]},
      {"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce"],"policy-domain":"other.example"},
       "summary":{"total-successful-session-count":5,"total-failure-session-count":0}}]}"#;

    fn incoming() -> Incoming {
        Incoming {
            report: parse_json(REPORT.as_bytes(), &Limits::default()).unwrap(),
            raw: Raw {
                bytes: REPORT.as_bytes().to_vec(),
                gzip: false,
            },
            via: Via::Https {
                peer: std::net::Ipv4Addr::LOCALHOST.into(),
                host: None,
            },
        }
    }

    #[test]
    fn one_spec_per_domain_with_failures_grouped_largest_first() {
        let incoming = incoming();
        assert_eq!(
            policy_domains(&incoming.report, None),
            ["example.com", "other.example"]
        );
        let spec = spec(&incoming, "example.com", None);
        assert_eq!(spec.day, "2026-11-30");
        assert_eq!((spec.successful, spec.failed), (90, 12));
        assert_eq!(spec.policies.len(), 1);
        let failures = &spec.policies[0].failures;
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].result_type, "certificate-expired");
        assert_eq!(failures[0].sessions, 11);
        assert_eq!(failures[0].examples, ["X509_V_ERR_CERT_HAS_EXPIRED"]);
        assert_eq!(
            spec.top_failure.as_deref(),
            Some("certificate-expired at mx1.example.com")
        );
        assert_eq!(spec.policies[0].mode.as_deref(), Some("testing"));
        let other = super::spec(&incoming, "other.example", None);
        assert_eq!((other.successful, other.failed), (5, 0));
        assert_eq!(other.top_failure, None);
    }

    #[test]
    fn the_raw_report_is_kept_gzipped_with_its_digest() {
        let spec = spec(&incoming(), "example.com", None);
        assert_eq!(spec.raw.size, REPORT.len() as u64);
        let gz = base64::engine::general_purpose::STANDARD
            .decode(spec.raw.gzip.unwrap())
            .unwrap();
        assert_eq!(inflate(&gz, &Limits::default()).unwrap(), REPORT.as_bytes());
        assert_eq!(spec.raw.sha256.len(), 64);
    }

    #[test]
    fn names_are_stable_per_reporter_report_and_domain() {
        let report = incoming().report;
        let a = object_name(&report, "example.com");
        assert_eq!(a, object_name(&report, "example.com"));
        assert_ne!(a, object_name(&report, "other.example"));
        let mut again = report.clone();
        again.report_id = "r-2".into();
        assert_ne!(a, object_name(&again, "example.com"));
        assert!(a.starts_with("20261130-") && a.len() == 29, "{a}");
    }
}
