//! RFC 8460 §4.4 JSON: the parser (bounded, lenient where senders deviate) and the renderer.
//!
//! The parse reads the JSON once, with serde_json, into the raw form of [`super::raw`] (whose
//! visitors bound depth and counts as they read), then builds the typed [`Report`] from it,
//! saying what is missing and what is off.

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeSeed;

use super::limits::Limits;
use super::model::{
    DateRange, FailureDetail, Policy, PolicyResult, Report, Summary, Warning, check,
};
use super::raw::{Ctx, MxHost, RawDate, RawReport, ReportSeed, Warnings};
use super::{ReportError, clip};

pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses a report from its JSON (UTF-8, a byte order mark allowed) within `limits`.
pub fn parse_json(json: &[u8], limits: &Limits) -> Result<Report, ReportError> {
    if json.len() > limits.max_uncompressed {
        return Err(ReportError::TooLarge {
            what: "JSON report",
            size: json.len(),
            limit: limits.max_uncompressed,
        });
    }
    let mut ctx = Ctx::new(limits);
    let json = match json.strip_prefix(BOM) {
        Some(rest) => {
            ctx.warnings.push(Warning::ByteOrderMark);
            rest
        }
        None => json,
    };
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(ReportError::NotAReport("the JSON is not an object".into())),
        None => return Err(ReportError::NotAReport("no JSON".into())),
    }
    // Checked once here, so serde_json need not check each string again.
    let json = std::str::from_utf8(json)
        .map_err(|e| ReportError::InvalidJson(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut de = serde_json::Deserializer::from_str(json);
    let raw = match (ReportSeed { ctx: &mut ctx }).deserialize(&mut de) {
        Ok(raw) => raw,
        Err(e) => return Err(ctx.exceeded.take().unwrap_or_else(|| json_error(&e))),
    };
    de.end().map_err(|e| json_error(&e))?;
    build(raw, ctx.warnings)
}

/// The report as RFC 8460 JSON: every key in its RFC spelling, `mx-host` a list, date-times
/// in UTC; keys with nothing to say (no contact-info, empty lists) left out.
pub fn render(report: &Report) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Out<'a> {
        organization_name: &'a str,
        date_range: Range,
        #[serde(skip_serializing_if = "Option::is_none")]
        contact_info: Option<&'a str>,
        report_id: &'a str,
        policies: Vec<Entry<'a>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Range {
        start_datetime: String,
        end_datetime: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Entry<'a> {
        policy: OutPolicy<'a>,
        summary: OutSummary,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        failure_details: Vec<Detail<'a>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct OutPolicy<'a> {
        policy_type: &'a str,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        policy_string: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        policy_domain: Option<&'a str>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        mx_host: &'a [String],
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct OutSummary {
        total_successful_session_count: u64,
        total_failure_session_count: u64,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Detail<'a> {
        result_type: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        sending_mta_ip: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        receiving_mx_hostname: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        receiving_mx_helo: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        receiving_ip: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_session_count: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        additional_information: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        failure_reason_code: Option<&'a str>,
    }

    let out = Out {
        organization_name: &report.organization_name,
        date_range: Range {
            start_datetime: report.date_range.start.to_string(),
            end_datetime: report.date_range.end.to_string(),
        },
        contact_info: report.contact_info.as_deref(),
        report_id: &report.report_id,
        policies: report
            .policies
            .iter()
            .map(|entry| Entry {
                policy: OutPolicy {
                    policy_type: entry.policy.policy_type.as_str(),
                    policy_string: &entry.policy.policy_string,
                    policy_domain: entry.policy.policy_domain.as_deref(),
                    mx_host: &entry.policy.mx_host,
                },
                summary: OutSummary {
                    total_successful_session_count: entry.summary.total_successful_session_count,
                    total_failure_session_count: entry.summary.total_failure_session_count,
                },
                failure_details: entry
                    .failure_details
                    .iter()
                    .map(|d| Detail {
                        result_type: d.result_type.as_str(),
                        sending_mta_ip: d.sending_mta_ip.as_deref(),
                        receiving_mx_hostname: d.receiving_mx_hostname.as_deref(),
                        receiving_mx_helo: d.receiving_mx_helo.as_deref(),
                        receiving_ip: d.receiving_ip.as_deref(),
                        failed_session_count: d.failed_session_count,
                        additional_information: d.additional_information.as_deref(),
                        failure_reason_code: d.failure_reason_code.as_deref(),
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string(&out).expect("plain structs with string keys always serialise")
}

fn json_error(e: &serde_json::Error) -> ReportError {
    let text = clip(&e.to_string(), 200);
    if e.is_eof() {
        ReportError::TruncatedJson(text)
    } else {
        ReportError::InvalidJson(text)
    }
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ReportError> {
    value.ok_or(ReportError::MissingField { field })
}

fn datetime(
    value: Option<RawDate>,
    field: &'static str,
    path: &'static str,
    warnings: &mut Warnings,
) -> Result<Timestamp, ReportError> {
    match required(value, path)? {
        RawDate::Zoned(t) => Ok(t),
        RawDate::Unzoned(t) => {
            warnings.push(Warning::DateWithoutTimeZone { field });
            Ok(t)
        }
        RawDate::Invalid(value) => Err(ReportError::InvalidDateTime { field, value }),
    }
}

fn build(raw: RawReport, mut warnings: Warnings) -> Result<Report, ReportError> {
    let organization_name = required(raw.organization_name, "organization-name")?;
    let range = required(raw.date_range, "date-range")?;
    let start = datetime(
        range.start,
        "start-datetime",
        "date-range.start-datetime",
        &mut warnings,
    )?;
    let end = datetime(
        range.end,
        "end-datetime",
        "date-range.end-datetime",
        &mut warnings,
    )?;
    let report_id = required(raw.report_id.filter(|id| !id.is_empty()), "report-id")?;
    let Some(entries) = raw.policies else {
        return Err(if raw.draft_policy {
            ReportError::DraftSchema
        } else {
            ReportError::MissingField { field: "policies" }
        });
    };

    let mut policies = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let policy = required(entry.policy, "policies[].policy")?;
        let policy_type = required(policy.policy_type, "policies[].policy.policy-type")?;
        let mut policy_string = policy.policy_string;
        // Microsoft packs its TLSA records into one string holding a JSON list.
        if let [only] = policy_string.as_slice()
            && only.trim_start().starts_with('[')
            && let Ok(list) = serde_json::from_str::<Vec<String>>(only)
        {
            policy_string = list;
            warnings.push(Warning::PackedPolicyString { policy: i });
        }
        let mx_host = match policy.mx_host {
            None => Vec::new(),
            Some(MxHost::Many(hosts)) => hosts,
            Some(MxHost::One(host)) => {
                warnings.push(Warning::MxHostString { policy: i });
                vec![host]
            }
        };
        let summary = required(entry.summary, "policies[].summary")?;
        let summary = Summary {
            total_successful_session_count: required(
                summary.successful,
                "policies[].summary.total-successful-session-count",
            )?,
            total_failure_session_count: required(
                summary.failed,
                "policies[].summary.total-failure-session-count",
            )?,
        };
        let mut failure_details = Vec::with_capacity(entry.failure_details.len());
        for d in entry.failure_details {
            failure_details.push(FailureDetail {
                result_type: required(d.result_type, "policies[].failure-details[].result-type")?,
                sending_mta_ip: d.sending_mta_ip,
                receiving_mx_hostname: d.receiving_mx_hostname,
                receiving_mx_helo: d.receiving_mx_helo,
                receiving_ip: d.receiving_ip,
                failed_session_count: d.failed_session_count,
                additional_information: d.additional_information,
                failure_reason_code: d.failure_reason_code,
            });
        }
        policies.push(PolicyResult {
            policy: Policy {
                policy_type,
                policy_string,
                policy_domain: policy.policy_domain,
                mx_host,
            },
            summary,
            failure_details,
        });
    }

    let mut report = Report {
        organization_name,
        date_range: DateRange { start, end },
        contact_info: raw.contact_info,
        report_id,
        policies,
        warnings: Vec::new(),
    };
    for warning in check(&report) {
        warnings.push(warning);
    }
    report.warnings = warnings.finish();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"organization-name":"Org","date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"contact-info":"a@example.org","report-id":"r1","policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing"],"policy-domain":"example.com","mx-host":["mx.example.com"]},"summary":{"total-successful-session-count":5,"total-failure-session-count":0}}]}"#;

    fn parse(json: &str) -> Result<Report, ReportError> {
        parse_json(json.as_bytes(), &Limits::default())
    }

    #[test]
    fn a_minimal_report_without_warnings() {
        let report = parse(MINIMAL).expect("parses");
        assert_eq!(report.organization_name, "Org");
        assert_eq!(report.day().to_string(), "2024-01-09");
        assert_eq!(report.policies[0].policy.mx_host, ["mx.example.com"]);
        assert_eq!(report.policies[0].policy.sts_value("mode"), Some("testing"));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(parse(&render(&report)), Ok(report));
    }

    #[test]
    fn depth_is_counted_as_the_parse_enters_arrays_and_objects() {
        let with = |extra: &str| MINIMAL.replacen('{', &format!(r#"{{"x":{extra},"#), 1);
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let depth = |extra: &str| {
            parse_json(
                with(extra).as_bytes(),
                &Limits {
                    max_depth: 5,
                    ..limits.clone()
                },
            )
            .map(|_| ())
            .map_err(|e| e.reason())
        };
        // Brackets in strings do not count; the report's object is level 1, `x` level 2.
        assert_eq!(depth(r#""[[[[[[[[[[\"[[[[""#), Ok(()));
        assert_eq!(depth("[[[[1]]]]"), Ok(()));
        assert_eq!(depth("[[[[[1]]]]]"), Err("TooDeep"));
        assert_eq!(depth(r#"{"a":{"b":[[{}]]}}"#), Err("TooDeep"));
        // The report itself is 5 levels deep (policies, entry, policy, policy-string).
        assert_eq!(
            parse_json(MINIMAL.as_bytes(), &limits),
            Err(ReportError::TooDeep { limit: 3 })
        );
    }

    #[test]
    fn warnings_beyond_the_limit_are_counted() {
        let limits = Limits {
            max_warnings: 2,
            ..Limits::default()
        };
        let json = MINIMAL.replacen('{', r#"{"x1":1,"x2":2,"x3":3,"x4":4,"#, 1);
        let report = parse_json(json.as_bytes(), &limits).expect("parses");
        assert_eq!(report.warnings.len(), 3);
        assert_eq!(report.warnings[0].code(), "UnknownField");
        assert_eq!(report.warnings[2], Warning::MoreWarnings { count: 2 });
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let json = MINIMAL.replacen('{', r#"{"report-id":"r0","#, 1);
        assert_eq!(parse(&json).map_err(|e| e.reason()), Err("InvalidJson"));
    }

    #[test]
    fn the_draft_schema_is_named() {
        let json = r#"{"organization-name":"Org","date-range":{"start-datetime":"2017-01-01T00:00:00Z","end-datetime":"2017-01-01T23:59:59Z"},"report-id":"r","policy":{"policy-type":"sts"},"summary":{"success-aggregate":1}}"#;
        assert_eq!(parse(json), Err(ReportError::DraftSchema));
    }

    #[test]
    fn error_text_of_untrusted_input_is_clipped() {
        let long = "x".repeat(10_000);
        let json = MINIMAL.replace("\"r1\"", &format!("[\"{long}\"]"));
        let error = parse(&json).expect_err("report-id is a list");
        assert!(error.to_string().len() < 400, "{error}");
    }
}
