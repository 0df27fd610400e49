//! The report as RFC 8460 §4.4 defines it, with the values real senders send kept as sent.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::Offset;

/// One TLS report: what one sending organisation saw of one domain's policies over one
/// date range (usually a UTC day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    /// `None` when the sender wrote `null` or left it out (both seen).
    pub contact_info: Option<String>,
    /// Unique per sender: with the sender, the key to drop re-sent copies.
    pub report_id: String,
    pub policies: Vec<PolicyResult>,
    /// What is off in this report, in the order found (at most [`super::Limits::max_warnings`]);
    /// none of it stopped the parse.
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Report {
    /// The UTC day the report is about: the day it starts. Senders end a day at 23:59:59Z or
    /// at the next day's 00:00:00Z, so the end says less.
    pub fn day(&self) -> jiff::civil::Date {
        Offset::UTC.to_datetime(self.date_range.start).date()
    }

    /// Successful sessions of all policies (saturating).
    pub fn successful_sessions(&self) -> u64 {
        self.policies.iter().fold(0u64, |sum, p| {
            sum.saturating_add(p.summary.total_successful_session_count)
        })
    }

    /// Failed sessions of all policies, from the summaries (saturating).
    pub fn failed_sessions(&self) -> u64 {
        self.policies.iter().fold(0u64, |sum, p| {
            sum.saturating_add(p.summary.total_failure_session_count)
        })
    }
}

/// One entry of `policies`: a policy as the sender applied it and the sessions under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResult {
    pub policy: Policy,
    pub summary: Summary,
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub policy_type: PolicyType,
    /// sts: the policy file's lines; tlsa: one TLSA record's data per entry.
    pub policy_string: Vec<String>,
    /// Missing in some senders' `no-policy-found` entries.
    pub policy_domain: Option<String>,
    /// sts: the policy's `mx` patterns (a string on the wire is one pattern).
    pub mx_host: Vec<String>,
}

impl Policy {
    /// The value of `key` in an sts `policy-string` (`mode` → `testing`), white space around
    /// the `:` optional as some senders write `version:STSv1`.
    pub fn sts_value(&self, key: &str) -> Option<&str> {
        self.policy_string.iter().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

/// One row of `failure-details`. Only the result type is always there: policy fetch
/// failures come without addresses and host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetail {
    pub result_type: ResultType,
    pub sending_mta_ip: Option<String>,
    pub receiving_mx_hostname: Option<String>,
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<String>,
    pub failed_session_count: Option<u64>,
    pub additional_information: Option<String>,
    pub failure_reason_code: Option<String>,
}

impl FailureDetail {
    /// A row with only its result type and count.
    pub fn new(result_type: ResultType, failed_session_count: u64) -> Self {
        FailureDetail {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            failed_session_count: Some(failed_session_count),
            additional_information: None,
            failure_reason_code: None,
        }
    }
}

/// `policy-type`; a value the RFC does not name is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicyType {
    Sts,
    Tlsa,
    NoPolicyFound,
    Other(String),
}

impl PolicyType {
    /// The type `name` stands for (ASCII case ignored); unknown names are kept as sent.
    pub fn from_name(name: &str) -> Self {
        const KNOWN: [PolicyType; 3] =
            [PolicyType::Sts, PolicyType::Tlsa, PolicyType::NoPolicyFound];
        KNOWN
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
            .unwrap_or_else(|| PolicyType::Other(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
            PolicyType::Other(other) => other,
        }
    }
}

/// `result-type` (RFC 8460 §4.3, the IANA "STARTTLS Validation Result Types"); a value the
/// registry does not (yet) name is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
    Other(String),
}

impl ResultType {
    /// Every type RFC 8460 names.
    pub const KNOWN: [ResultType; 11] = [
        ResultType::StarttlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::TlsaInvalid,
        ResultType::DnssecInvalid,
        ResultType::DaneRequired,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    /// The type `name` stands for (ASCII case ignored); unknown names are kept as sent.
    pub fn from_name(name: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
            .unwrap_or_else(|| ResultType::Other(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
            ResultType::Other(other) => other,
        }
    }
}

/// Something off in a report that did not stop the parse. `policy` and `detail` are
/// 0-based indexes into `policies` and its `failure-details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The JSON started with a UTF-8 byte order mark (dropped).
    ByteOrderMark,
    /// A date-time without a time zone (`2024-03-26T00:00:00`): read as UTC.
    DateWithoutTimeZone {
        field: &'static str,
    },
    EndBeforeStart,
    /// The range is not one day (86,399 or 86,400 seconds).
    RangeNotOneDay {
        seconds: i64,
    },
    /// `contact-info` null or missing.
    NoContactInfo,
    /// `policies` is an empty list.
    NoPolicies,
    UnknownPolicyType {
        policy: usize,
        value: String,
    },
    MissingPolicyDomain {
        policy: usize,
    },
    /// `mx-host` was a string, not a list (the RFC's own example, errata 6241).
    MxHostString {
        policy: usize,
    },
    /// `policy-string` was one string holding a JSON list of the records: unpacked.
    PackedPolicyString {
        policy: usize,
    },
    UnknownResultType {
        policy: usize,
        detail: usize,
        value: String,
    },
    /// The failure details add up to `details` sessions, the summary says `summary`; both
    /// are kept as sent (totals come from the summary).
    FailureCountMismatch {
        policy: usize,
        summary: u64,
        details: u64,
    },
    /// A key the RFC does not define (ignored), e.g. `policies.0.policy.mx-host-pattern`.
    UnknownField {
        path: String,
    },
    /// The mail's `TLS-Report-Submitter` is not the domain of `contact-info` (or above it).
    SubmitterMismatch {
        submitter: String,
        contact: String,
    },
    /// This many more warnings were not kept.
    MoreWarnings {
        count: usize,
    },
}

impl Warning {
    /// A form the parser absorbed (the content is as meant): no time zone, `mx-host` as a
    /// string, packed TLSA records, a byte order mark. The others say the content is off.
    pub fn is_normalization(&self) -> bool {
        matches!(
            self,
            Warning::ByteOrderMark
                | Warning::DateWithoutTimeZone { .. }
                | Warning::MxHostString { .. }
                | Warning::PackedPolicyString { .. }
        )
    }

    /// Stable code, for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Warning::ByteOrderMark => "ByteOrderMark",
            Warning::DateWithoutTimeZone { .. } => "DateWithoutTimeZone",
            Warning::EndBeforeStart => "EndBeforeStart",
            Warning::RangeNotOneDay { .. } => "RangeNotOneDay",
            Warning::NoContactInfo => "NoContactInfo",
            Warning::NoPolicies => "NoPolicies",
            Warning::UnknownPolicyType { .. } => "UnknownPolicyType",
            Warning::MissingPolicyDomain { .. } => "MissingPolicyDomain",
            Warning::MxHostString { .. } => "MxHostString",
            Warning::PackedPolicyString { .. } => "PackedPolicyString",
            Warning::UnknownResultType { .. } => "UnknownResultType",
            Warning::FailureCountMismatch { .. } => "FailureCountMismatch",
            Warning::UnknownField { .. } => "UnknownField",
            Warning::SubmitterMismatch { .. } => "SubmitterMismatch",
            Warning::MoreWarnings { .. } => "MoreWarnings",
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ByteOrderMark => write!(f, "a UTF-8 byte order mark before the JSON"),
            Warning::DateWithoutTimeZone { field } => {
                write!(f, "`{field}` has no time zone; read as UTC")
            }
            Warning::EndBeforeStart => write!(f, "the date range ends before it starts"),
            Warning::RangeNotOneDay { seconds } => {
                write!(f, "the date range is {seconds} s long, not one day")
            }
            Warning::NoContactInfo => write!(f, "no contact-info"),
            Warning::NoPolicies => write!(f, "the report lists no policies"),
            Warning::UnknownPolicyType { policy, value } => {
                write!(f, "policy {policy}: unknown policy-type `{value}`, kept")
            }
            Warning::MissingPolicyDomain { policy } => {
                write!(f, "policy {policy}: no policy-domain")
            }
            Warning::MxHostString { policy } => {
                write!(f, "policy {policy}: mx-host is a string, not a list")
            }
            Warning::PackedPolicyString { policy } => write!(
                f,
                "policy {policy}: policy-string packed into one JSON string, unpacked"
            ),
            Warning::UnknownResultType {
                policy,
                detail,
                value,
            } => write!(
                f,
                "policy {policy}, failure detail {detail}: unknown result-type `{value}`, kept"
            ),
            Warning::FailureCountMismatch {
                policy,
                summary,
                details,
            } => write!(
                f,
                "policy {policy}: the failure details add up to {details} sessions, the summary says {summary}"
            ),
            Warning::UnknownField { path } => write!(f, "unknown field `{path}`, ignored"),
            Warning::SubmitterMismatch { submitter, contact } => write!(
                f,
                "TLS-Report-Submitter `{submitter}` is not the domain of contact-info `{contact}`"
            ),
            Warning::MoreWarnings { count } => write!(f, "{count} more warnings"),
        }
    }
}

/// The warnings that follow from a report's content alone (not from how it was written):
/// what [`super::parse_json`] adds after the ones it finds in the text.
pub fn check(report: &Report) -> Vec<Warning> {
    let mut out = Vec::new();
    let DateRange { start, end } = report.date_range;
    let seconds = end.as_second().saturating_sub(start.as_second());
    if end < start {
        out.push(Warning::EndBeforeStart);
    } else if !(86_399..=86_400).contains(&seconds) {
        out.push(Warning::RangeNotOneDay { seconds });
    }
    if report.contact_info.is_none() {
        out.push(Warning::NoContactInfo);
    }
    if report.policies.is_empty() {
        out.push(Warning::NoPolicies);
    }
    for (i, entry) in report.policies.iter().enumerate() {
        if let PolicyType::Other(value) = &entry.policy.policy_type {
            out.push(Warning::UnknownPolicyType {
                policy: i,
                value: value.clone(),
            });
        }
        if entry.policy.policy_domain.is_none() {
            out.push(Warning::MissingPolicyDomain { policy: i });
        }
        for (d, detail) in entry.failure_details.iter().enumerate() {
            if let ResultType::Other(value) = &detail.result_type {
                out.push(Warning::UnknownResultType {
                    policy: i,
                    detail: d,
                    value: value.clone(),
                });
            }
        }
        if !entry.failure_details.is_empty() {
            let details = entry.failure_details.iter().fold(0u64, |sum, d| {
                sum.saturating_add(d.failed_session_count.unwrap_or(0))
            });
            let summary = entry.summary.total_failure_session_count;
            if details != summary {
                out.push(Warning::FailureCountMismatch {
                    policy: i,
                    summary,
                    details,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_by_name_and_unknown_ones_kept() {
        for t in ResultType::KNOWN {
            assert_eq!(ResultType::from_name(t.as_str()), t);
            assert_eq!(
                ResultType::from_name(&t.as_str().to_ascii_uppercase()),
                t,
                "case ignored"
            );
        }
        assert_eq!(
            ResultType::from_name("quantum-failure"),
            ResultType::Other("quantum-failure".into())
        );
        assert_eq!(
            PolicyType::from_name("no-policy-found"),
            PolicyType::NoPolicyFound
        );
        assert_eq!(PolicyType::from_name("dane-sts").as_str(), "dane-sts");
    }

    #[test]
    fn sts_values_with_or_without_space() {
        let policy = Policy {
            policy_type: PolicyType::Sts,
            policy_string: vec!["version:STSv1".into(), "mode : testing".into()],
            policy_domain: None,
            mx_host: vec![],
        };
        assert_eq!(policy.sts_value("version"), Some("STSv1"));
        assert_eq!(policy.sts_value("mode"), Some("testing"));
        assert_eq!(policy.sts_value("max_age"), None);
    }
}
