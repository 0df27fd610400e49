//! The TLS-RPT report parser (`mailsec_operator::report`) on every real sample report in
//! shared/tlsrpt-samples (each with the outcome its manifest names), on each deviation real
//! senders are known for, on every result type, on hostile input (a gzip bomb, truncation,
//! deep nesting, too many entries) and on report e-mails as senders build them; and a
//! property test: any report renders to JSON that parses back to the same report.
//!
//! The samples are read where they are, never copied; in CI a missing samples directory
//! fails the run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use jiff::Timestamp;
use mailsec_operator::report::{
    DateRange, FailureDetail, Limits, Policy, PolicyResult, PolicyType, Report, ReportError,
    ResultType, Summary, Warning, check, parse_body, parse_gzip, parse_json, parse_mail, render,
    sniff,
};
use proptest::prelude::*;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tlsrpt-samples");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The samples directory; `None` (skip) outside CI when it is missing, a failure in CI.
fn samples() -> Option<PathBuf> {
    let dir = PathBuf::from(SAMPLES);
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    assert!(
        !in_ci(),
        "the TLS-RPT samples are missing at {SAMPLES} (shared/tlsrpt-samples beside the repository)"
    );
    eprintln!("skipped: no TLS-RPT samples at {SAMPLES}");
    None
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("write to a Vec");
    enc.finish().expect("finish into a Vec")
}

fn limits() -> Limits {
    Limits::default()
}

fn json(text: &str) -> Result<Report, ReportError> {
    parse_json(text.as_bytes(), &limits())
}

fn content_warnings(report: &Report) -> Vec<&Warning> {
    report
        .warnings
        .iter()
        .filter(|w| !w.is_normalization())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The real samples.

/// A sample's file (relative to the samples directory) parsed by the reader its directory
/// names: `eml/` a whole mail, `gz/` the gzipped attachment, `json/` plain JSON.
fn parse_sample(dir: &Path, file: &str) -> Result<Report, ReportError> {
    let bytes = read(&dir.join(file));
    match file.split('/').next() {
        Some("eml") => parse_mail(&bytes, &limits()).map(|m| m.report),
        Some("gz") => parse_gzip(&bytes, &limits()),
        Some("json") => parse_json(&bytes, &limits()),
        _ => panic!("{file}: a sample outside eml/, gz/ and json/"),
    }
}

/// The e-mail a derived sample (`gz/X.json.gz`, `json/X.from-eml.json`) came from.
fn eml_of(file: &str) -> String {
    let name = file.rsplit('/').next().unwrap_or(file);
    let stem = name
        .strip_suffix(".json.gz")
        .or_else(|| name.strip_suffix(".from-eml.json"))
        .unwrap_or_else(|| panic!("{file}: `same as eml`, but which eml?"));
    format!("eml/{stem}.eml")
}

#[test]
fn every_sample_has_its_expected_outcome() {
    let Some(dir) = samples() else { return };
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("manifest.json"))).expect("manifest.json");
    let entries = manifest.as_array().expect("manifest.json is a list");
    let expect_of = |file: &str| -> String {
        let entry = entries
            .iter()
            .find(|e| e["file"] == file)
            .unwrap_or_else(|| panic!("{file} is not in manifest.json"));
        entry["expect"].as_str().expect("expect").to_owned()
    };

    // Every file on disk is in the manifest (so none goes unchecked), and the reverse.
    let mut on_disk = Vec::new();
    for sub in ["eml", "gz", "json"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("read a samples directory") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            on_disk.push(format!("{sub}/{name}"));
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = entries
        .iter()
        .map(|e| e["file"].as_str().expect("file").to_owned())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "the files on disk and in manifest.json");
    assert!(on_disk.len() >= 16, "{} samples", on_disk.len());

    let mut failures = Vec::new();
    for file in &on_disk {
        let mut expect = expect_of(file);
        if expect == "same as eml" {
            expect = expect_of(&eml_of(file));
        }
        let outcome = parse_sample(&dir, file);
        let ok = match (&outcome, expect.as_str()) {
            (Ok(report), "accept") => content_warnings(report).is_empty(),
            (Ok(report), "accept-with-normalization") => {
                content_warnings(report).is_empty()
                    && report.warnings.iter().any(Warning::is_normalization)
            }
            (Ok(report), "accept-with-warning") => !content_warnings(report).is_empty(),
            (Err(_), "reject") => true,
            (_, "accept" | "accept-with-normalization" | "accept-with-warning" | "reject") => false,
            (_, other) => panic!("{file}: unknown expectation `{other}`"),
        };
        let seen = match &outcome {
            Ok(r) => format!(
                "ok, warnings {:?}",
                r.warnings.iter().map(Warning::code).collect::<Vec<_>>()
            ),
            Err(e) => format!("{} ({e})", e.reason()),
        };
        eprintln!("{file}: expect {expect}: {seen}");
        if !ok {
            failures.push(format!("{file}: expected {expect}, got {seen}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_mail_the_attachment_and_the_json_of_one_report_agree() {
    let Some(dir) = samples() else { return };
    for stem in [
        "google-2022.mox",
        "google-cardinalhealth.parsedmarc",
        "microsoft-2023-notz.mox",
    ] {
        let mail = parse_sample(&dir, &format!("eml/{stem}.eml")).expect(stem);
        let gz = parse_sample(&dir, &format!("gz/{stem}.json.gz")).expect(stem);
        let json = parse_sample(&dir, &format!("json/{stem}.from-eml.json")).expect(stem);
        assert_eq!(mail, gz, "{stem}");
        assert_eq!(gz, json, "{stem}");
    }
}

#[test]
fn google_2022_mail_fields() {
    let Some(dir) = samples() else { return };
    let mail = parse_mail(&read(&dir.join("eml/google-2022.mox.eml")), &limits()).expect("parses");
    assert_eq!(
        mail.from.as_deref(),
        Some("noreply-smtp-tls-reporting@google.com")
    );
    assert_eq!(mail.tls_report_domain.as_deref(), Some("test.xmox.nl"));
    assert_eq!(mail.tls_report_submitter.as_deref(), Some("google.com"));
    assert_eq!(mail.part_type, "application/tlsrpt+gzip");
    assert_eq!(
        mail.part_name.as_deref(),
        Some("google.com!test.xmox.nl!1663200000!1663286399!001.json.gz")
    );
    assert!(
        mail.subject
            .as_deref()
            .is_some_and(|s| s.starts_with("Report Domain: test.xmox.nl Submitter: google.com"))
    );
    let r = &mail.report;
    assert_eq!(r.organization_name, "Google Inc.");
    assert_eq!(
        r.contact_info.as_deref(),
        Some("smtp-tls-reporting@google.com")
    );
    assert_eq!(r.report_id, "2022-09-15T00:00:00Z_test.xmox.nl");
    assert_eq!(
        r.date_range.start,
        "2022-09-15T00:00:00Z".parse::<Timestamp>().expect("ts")
    );
    assert_eq!(r.day().to_string(), "2022-09-15");
    let p = &r.policies[0];
    assert_eq!(p.policy.policy_type, PolicyType::Sts);
    assert_eq!(p.policy.sts_value("mode"), Some("enforce"));
    assert_eq!(p.policy.policy_domain.as_deref(), Some("test.xmox.nl"));
    assert_eq!(p.policy.mx_host, ["komijn.test.xmox.nl"]);
    assert_eq!(p.summary.total_successful_session_count, 3);
    assert!(p.failure_details.is_empty());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn google_no_policy_found_and_a_quoted_printable_text_part() {
    let Some(dir) = samples() else { return };
    let mail = parse_mail(
        &read(&dir.join("eml/google-cardinalhealth.parsedmarc.eml")),
        &limits(),
    )
    .expect("parses");
    assert_eq!(mail.tls_report_domain.as_deref(), Some("cardinalhealth.ca"));
    let p = &mail.report.policies[0];
    assert_eq!(p.policy.policy_type, PolicyType::NoPolicyFound);
    assert!(p.policy.policy_string.is_empty());
    assert_eq!(p.policy.policy_domain.as_deref(), Some("cardinalhealth.ca"));
    assert_eq!(p.summary.total_successful_session_count, 48);
    assert_eq!(mail.report.successful_sessions(), 48);
}

#[test]
fn microsoft_dates_without_a_time_zone_are_utc() {
    let Some(dir) = samples() else { return };
    for file in [
        "eml/microsoft-2023-notz.mox.eml",
        "json/microsoft-2.mta-sts-exporter.json",
    ] {
        let r = parse_sample(&dir, file).expect(file);
        assert_eq!(
            r.warnings,
            [
                Warning::DateWithoutTimeZone {
                    field: "start-datetime"
                },
                Warning::DateWithoutTimeZone {
                    field: "end-datetime"
                }
            ],
            "{file}"
        );
        assert_eq!(r.organization_name, "Microsoft Corporation");
        assert!(r.policies[0].policy.mx_host.is_empty(), "no mx-host");
    }
    let r = parse_sample(&dir, "json/microsoft-2.mta-sts-exporter.json").expect("parses");
    assert_eq!(
        r.date_range,
        DateRange {
            start: "2024-03-26T00:00:00Z".parse().expect("ts"),
            end: "2024-03-26T23:59:59Z".parse().expect("ts"),
        }
    );
    assert_eq!(r.report_id, "133561180919336230+example.com");
}

#[test]
fn mailru_counts_that_do_not_add_up_are_kept_and_flagged() {
    let Some(dir) = samples() else { return };
    let r = parse_sample(&dir, "json/mailru-sts-fetch-error.parsedmarc.json").expect("parses");
    assert_eq!(
        r.warnings,
        [Warning::FailureCountMismatch {
            policy: 0,
            summary: 1,
            details: 2
        }]
    );
    assert_eq!(r.failed_sessions(), 1, "totals come from the summary");
    assert_eq!(
        r.day().to_string(),
        "2024-02-22",
        "ends at the next day's 00:00Z"
    );
    let details = &r.policies[0].failure_details;
    assert_eq!(details.len(), 2);
    assert_eq!(details[0].result_type, ResultType::StsPolicyFetchError);
    assert_eq!(details[0].sending_mta_ip, None);
    assert_eq!(details[0].receiving_mx_hostname, None);
    assert_eq!(
        details[1].failure_reason_code.as_deref(),
        Some("bad https response code: 500")
    );
}

#[test]
fn the_rfc_example_with_mx_host_as_a_string() {
    let Some(dir) = samples() else { return };
    let r = parse_sample(&dir, "json/rfc8460-appendix-b.parsedmarc.json").expect("parses");
    assert_eq!(r.warnings, [Warning::MxHostString { policy: 0 }]);
    let p = &r.policies[0];
    assert_eq!(p.policy.mx_host, ["*.mail.company-y.example"]);
    assert_eq!(p.summary.total_failure_session_count, 303);
    let types: Vec<&str> = p
        .failure_details
        .iter()
        .map(|d| d.result_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "certificate-expired",
            "starttls-not-supported",
            "validation-failure"
        ]
    );
    assert_eq!(
        p.failure_details[0].sending_mta_ip.as_deref(),
        Some("2001:db8:abcd:0012::1")
    );
    assert_eq!(
        p.failure_details[1].additional_information.as_deref(),
        Some("https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported")
    );
    assert_eq!(
        p.failure_details[2].failure_reason_code.as_deref(),
        Some("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED")
    );
    // The errata form says the same with mx-host as a list (and the URL mangled as in the
    // RFC's text, kept as sent).
    let errata = parse_sample(&dir, "json/rfc-errata-6241.mta-sts-exporter.json").expect("parses");
    assert!(errata.warnings.is_empty(), "{:?}", errata.warnings);
    assert_eq!(errata.policies[0].policy, p.policy);
    assert!(
        errata.policies[0].failure_details[1]
            .additional_information
            .as_deref()
            .is_some_and(|u| u.contains("report_info ? id = 5065427 c"))
    );
}

#[test]
fn every_sample_renders_to_json_that_parses_back() {
    let Some(dir) = samples() else { return };
    for sub in ["eml", "gz", "json"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("read") {
            let file = format!(
                "{sub}/{}",
                entry.expect("entry").file_name().to_string_lossy()
            );
            let report = parse_sample(&dir, &file).expect(&file);
            let again = json(&render(&report)).expect(&file);
            // The forms the parser absorbed are gone once rendered; the content is the same.
            assert_eq!(again.warnings, check(&report), "{file}");
            assert_eq!(
                Report {
                    warnings: vec![],
                    ..again
                },
                Report {
                    warnings: vec![],
                    ..report
                },
                "{file}"
            );
        }
    }
}

#[test]
fn every_content_type_over_the_samples() {
    let Some(dir) = samples() else { return };
    let gz = read(&dir.join("gz/google-2022.mox.json.gz"));
    let plain = read(&dir.join("json/google-2022.mox.from-eml.json"));
    let mail = read(&dir.join("eml/google-2022.mox.eml"));
    let want = parse_json(&plain, &limits()).expect("parses");
    for (content_type, body) in [
        ("application/tlsrpt+gzip", &gz),
        ("application/tlsrpt+json", &plain),
        ("Application/TLSRPT+JSON; charset=utf-8", &plain),
        ("application/tlsrpt", &gz),
        ("application/tlsrpt", &plain),
        ("application/gzip", &gz),
        ("application/octet-stream", &gz),
        ("message/rfc822", &mail),
    ] {
        assert_eq!(
            parse_body(content_type, body, &limits()).as_ref(),
            Ok(&want),
            "{content_type}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Our own cases: the RFC's values and the senders' deviations.

/// A report with one sts policy; `policy` and `extra` are spliced in as JSON text.
fn report_json(dates: (&str, &str), contact: &str, policy: &str, extra: &str) -> String {
    format!(
        r#"{{"organization-name":"Example Org","date-range":{{"start-datetime":"{}","end-datetime":"{}"}},{contact}"report-id":"2024-01-09_example.com","policies":[{policy}]{extra}}}"#,
        dates.0, dates.1
    )
}

const DAY: (&str, &str) = ("2024-01-09T00:00:00Z", "2024-01-09T23:59:59Z");
const CONTACT: &str = r#""contact-info":"tlsrpt@example.org","#;
const STS: &str = r#"{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce","mx: mx.example.com","max_age: 86400"],"policy-domain":"example.com","mx-host":["mx.example.com"]},"summary":{"total-successful-session-count":10,"total-failure-session-count":0}}"#;

#[test]
fn every_result_type_and_an_unknown_one() {
    let mut details = Vec::new();
    let names: Vec<&str> = ResultType::KNOWN
        .iter()
        .map(ResultType::as_str)
        .chain(["x-future-failure"])
        .collect();
    for (i, name) in names.iter().enumerate() {
        details.push(format!(
            r#"{{"result-type":"{name}","sending-mta-ip":"192.0.2.{i}","receiving-mx-hostname":"mx.example.com","receiving-mx-helo":"mx","receiving-ip":"198.51.100.1","failed-session-count":{i},"additional-information":"https://example.org/{i}","failure-reason-code":"code-{i}"}}"#
        ));
    }
    let total: usize = (0..names.len()).sum();
    let policy = format!(
        r#"{{"policy":{{"policy-type":"sts","policy-string":["version: STSv1"],"policy-domain":"example.com"}},"summary":{{"total-successful-session-count":1,"total-failure-session-count":{total}}},"failure-details":[{}]}}"#,
        details.join(",")
    );
    let r = json(&report_json(DAY, CONTACT, &policy, "")).expect("parses");
    let got = &r.policies[0].failure_details;
    assert_eq!(got.len(), 12);
    for (i, t) in ResultType::KNOWN.iter().enumerate() {
        assert_eq!(&got[i].result_type, t);
        assert_eq!(got[i].failed_session_count, Some(i as u64));
        assert_eq!(
            got[i].sending_mta_ip.as_deref(),
            Some(&*format!("192.0.2.{i}"))
        );
        assert_eq!(got[i].receiving_mx_helo.as_deref(), Some("mx"));
        assert_eq!(got[i].receiving_ip.as_deref(), Some("198.51.100.1"));
        assert_eq!(
            got[i].failure_reason_code.as_deref(),
            Some(&*format!("code-{i}"))
        );
    }
    assert_eq!(
        got[11].result_type,
        ResultType::Other("x-future-failure".into())
    );
    assert_eq!(
        r.warnings,
        [Warning::UnknownResultType {
            policy: 0,
            detail: 11,
            value: "x-future-failure".into()
        }]
    );
}

#[test]
fn every_policy_type_and_an_unknown_one() {
    let entry = |t: &str| {
        format!(
            r#"{{"policy":{{"policy-type":"{t}","policy-domain":"example.com"}},"summary":{{"total-successful-session-count":1,"total-failure-session-count":0}}}}"#
        )
    };
    let policies = ["sts", "tlsa", "no-policy-found", "dane-sts-hybrid"]
        .map(entry)
        .join(",");
    let r = json(&report_json(DAY, CONTACT, &policies, "")).expect("parses");
    let types: Vec<&PolicyType> = r.policies.iter().map(|p| &p.policy.policy_type).collect();
    assert_eq!(
        types,
        [
            &PolicyType::Sts,
            &PolicyType::Tlsa,
            &PolicyType::NoPolicyFound,
            &PolicyType::Other("dane-sts-hybrid".into())
        ]
    );
    assert_eq!(
        r.warnings,
        [Warning::UnknownPolicyType {
            policy: 3,
            value: "dane-sts-hybrid".into()
        }]
    );
}

#[test]
fn dates_without_a_time_zone_and_other_date_forms() {
    let r = json(&report_json(
        ("2024-03-26T00:00:00", "2024-03-26T23:59:59"),
        CONTACT,
        STS,
        "",
    ))
    .expect("parses");
    assert_eq!(
        r.date_range.start,
        "2024-03-26T00:00:00Z".parse::<Timestamp>().expect("ts")
    );
    assert_eq!(r.warnings.len(), 2);
    assert!(r.warnings.iter().all(|w| w.code() == "DateWithoutTimeZone"));
    // An offset is honoured; fractions kept.
    let r = json(&report_json(
        ("2024-03-26T02:00:00+02:00", "2024-03-27T01:59:59.5+02:00"),
        CONTACT,
        STS,
        "",
    ))
    .expect("parses");
    assert_eq!(r.day().to_string(), "2024-03-26");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // Not a date-time at all: refused, with the field named.
    let e = json(&report_json(("yesterday", DAY.1), CONTACT, STS, "")).expect_err("refused");
    assert_eq!(
        e,
        ReportError::InvalidDateTime {
            field: "start-datetime",
            value: "yesterday".into()
        }
    );
}

#[test]
fn ranges_ending_at_the_next_midnight_before_the_start_or_a_week_long() {
    let next_midnight = ("2024-02-22T00:00:00Z", "2024-02-23T00:00:00Z");
    let r = json(&report_json(next_midnight, CONTACT, STS, "")).expect("parses");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.day().to_string(), "2024-02-22");
    let backwards = ("2024-02-23T00:00:00Z", "2024-02-22T00:00:00Z");
    let r = json(&report_json(backwards, CONTACT, STS, "")).expect("parses");
    assert_eq!(r.warnings, [Warning::EndBeforeStart]);
    let week = ("2024-02-19T00:00:00Z", "2024-02-25T23:59:59Z");
    let r = json(&report_json(week, CONTACT, STS, "")).expect("parses");
    assert_eq!(r.warnings, [Warning::RangeNotOneDay { seconds: 604_799 }]);
}

#[test]
fn contact_info_null_or_missing() {
    for contact in [r#""contact-info":null,"#, ""] {
        let r = json(&report_json(DAY, contact, STS, "")).expect("parses");
        assert_eq!(r.contact_info, None);
        assert_eq!(r.warnings, [Warning::NoContactInfo]);
    }
}

#[test]
fn policy_domain_missing_as_postfix_sends_no_policy_found() {
    let policy = r#"{"policy":{"policy-type":"no-policy-found"},"summary":{"total-successful-session-count":4,"total-failure-session-count":0},"failure-details":[]}"#;
    let r = json(&report_json(DAY, CONTACT, policy, "")).expect("parses");
    assert_eq!(r.policies[0].policy.policy_domain, None);
    assert_eq!(r.warnings, [Warning::MissingPolicyDomain { policy: 0 }]);
}

#[test]
fn tlsa_records_packed_into_one_string_are_unpacked() {
    let policy = r#"{"policy":{"policy-type":"tlsa","policy-string":["[\"2 1 1 0254AB\",\"2 1 1 0B9FCD\"]"],"policy-domain":"mx.example.com"},"summary":{"total-successful-session-count":2,"total-failure-session-count":0}}"#;
    let r = json(&report_json(DAY, CONTACT, policy, "")).expect("parses");
    assert_eq!(
        r.policies[0].policy.policy_string,
        ["2 1 1 0254AB", "2 1 1 0B9FCD"]
    );
    assert_eq!(r.warnings, [Warning::PackedPolicyString { policy: 0 }]);
    // One record that merely starts with `[` but is no JSON list stays as sent.
    let odd = policy.replace(
        r#"["[\"2 1 1 0254AB\",\"2 1 1 0B9FCD\"]"]"#,
        r#"["[not json"]"#,
    );
    let r = json(&report_json(DAY, CONTACT, &odd, "")).expect("parses");
    assert_eq!(r.policies[0].policy.policy_string, ["[not json"]);
    assert!(r.warnings.is_empty());
}

#[test]
fn failure_counts_that_do_not_add_up() {
    let policy = r#"{"policy":{"policy-type":"sts","policy-domain":"example.com"},"summary":{"total-successful-session-count":0,"total-failure-session-count":1},"failure-details":[{"result-type":"sts-policy-fetch-error","failed-session-count":1},{"result-type":"sts-policy-fetch-error","failed-session-count":1}]}"#;
    let r = json(&report_json(DAY, CONTACT, policy, "")).expect("parses");
    assert_eq!(r.policies[0].failure_details.len(), 2, "kept as sent");
    assert_eq!(
        r.warnings,
        [Warning::FailureCountMismatch {
            policy: 0,
            summary: 1,
            details: 2
        }]
    );
    // Failures with no details at all are no mismatch: details are optional.
    let none = r#"{"policy":{"policy-type":"sts","policy-domain":"example.com"},"summary":{"total-successful-session-count":0,"total-failure-session-count":7},"failure-details":null}"#;
    let r = json(&report_json(DAY, CONTACT, none, "")).expect("parses");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn mx_host_as_a_string_null_or_empty() {
    let one = STS.replace(r#"["mx.example.com"]"#, r#""*.example.com""#);
    let r = json(&report_json(DAY, CONTACT, &one, "")).expect("parses");
    assert_eq!(r.policies[0].policy.mx_host, ["*.example.com"]);
    assert_eq!(r.warnings, [Warning::MxHostString { policy: 0 }]);
    for empty in ["null", "[]"] {
        let none = STS.replace(r#"["mx.example.com"]"#, empty);
        let r = json(&report_json(DAY, CONTACT, &none, "")).expect("parses");
        assert!(r.policies[0].policy.mx_host.is_empty());
        assert!(r.warnings.is_empty());
    }
}

#[test]
fn unknown_keys_a_byte_order_mark_and_sts_lines_without_a_space() {
    let policy = r#"{"policy":{"policy-type":"sts","policy-string":["version:STSv1","mode:testing"],"policy-domain":"example.com","mx-host":[]},"summary":{"total-successful-session-count":1,"total-failure-session-count":1},"failure-details":[{"result-type":"validation-failure","receiving-mx-host-name":"mx.example.com","failed-session-count":1}]}"#;
    let text = format!(
        "\u{feff}{}",
        report_json(
            DAY,
            CONTACT,
            policy,
            r#","x-vendor":{"nested":[1,2,{"a":null}]}"#
        )
    );
    let r = json(&text).expect("parses");
    assert_eq!(r.policies[0].policy.sts_value("mode"), Some("testing"));
    assert_eq!(
        r.warnings,
        [
            Warning::ByteOrderMark,
            Warning::UnknownField {
                path: "policies.0.failure-details.0.receiving-mx-host-name".into()
            },
            Warning::UnknownField {
                path: "x-vendor".into()
            },
        ]
    );
}

#[test]
fn what_is_missing_is_named() {
    let cases = [
        (
            r#"{"date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"report-id":"r","policies":[]}"#,
            "organization-name",
        ),
        (
            r#"{"organization-name":"O","report-id":"r","policies":[]}"#,
            "date-range",
        ),
        (
            r#"{"organization-name":"O","date-range":{"start-datetime":"2024-01-09T00:00:00Z"},"report-id":"r","policies":[]}"#,
            "date-range.end-datetime",
        ),
        (
            r#"{"organization-name":"O","date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"report-id":"","policies":[]}"#,
            "report-id",
        ),
        (
            r#"{"organization-name":"O","date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"report-id":"r"}"#,
            "policies",
        ),
        (
            r#"{"organization-name":"O","date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"report-id":"r","policies":[{"policy":{},"summary":{}}]}"#,
            "policies[].policy.policy-type",
        ),
        (
            r#"{"organization-name":"O","date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"report-id":"r","policies":[{"policy":{"policy-type":"sts"}}]}"#,
            "policies[].summary",
        ),
        (
            r#"{"organization-name":"O","date-range":{"start-datetime":"2024-01-09T00:00:00Z","end-datetime":"2024-01-09T23:59:59Z"},"report-id":"r","policies":[{"policy":{"policy-type":"sts"},"summary":{"total-successful-session-count":1,"total-failure-session-count":1},"failure-details":[{"failed-session-count":1}]}]}"#,
            "policies[].failure-details[].result-type",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(
            json(text),
            Err(ReportError::MissingField { field }),
            "{text}"
        );
    }
    // An empty list of policies is a report, flagged.
    let r = json(&report_json(DAY, CONTACT, "", "")).expect("parses");
    assert_eq!(r.warnings, [Warning::NoPolicies]);
}

#[test]
fn wrong_types_and_non_reports_are_refused() {
    let reason = |text: &str| json(text).map_err(|e| e.reason());
    let negative = STS.replace(":10,", ":-10,");
    assert_eq!(
        reason(&report_json(DAY, CONTACT, &negative, "")),
        Err("InvalidJson")
    );
    let text_count = STS.replace(":10,", r#":"10","#);
    assert_eq!(
        reason(&report_json(DAY, CONTACT, &text_count, "")),
        Err("InvalidJson")
    );
    assert_eq!(reason(""), Err("NotAReport"));
    assert_eq!(reason("  [1, 2]"), Err("NotAReport"));
    assert_eq!(reason("\"a report\""), Err("NotAReport"));
    assert_eq!(
        reason("<?xml version=\"1.0\"?><feedback/>"),
        Err("NotAReport")
    );
    assert_eq!(
        reason(&format!("{} trailing", report_json(DAY, CONTACT, STS, ""))),
        Err("InvalidJson")
    );
    assert_eq!(
        parse_json(b"{\"organization-name\":\"\xff\xfe\"}", &limits()).map_err(|e| e.reason()),
        Err("InvalidJson"),
        "not UTF-8"
    );
}

// ---------------------------------------------------------------------------------------
// Hostile input: limits.

#[test]
fn a_gzip_bomb_is_cut_off_while_it_inflates() {
    // 1 GiB of zeros, streamed through the encoder: about 1 MiB of gzip, within the default
    // compressed limit, so what stops it is the bound on inflating.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let copied = std::io::copy(&mut std::io::repeat(0).take(1 << 30), &mut encoder)
        .expect("compress into a Vec");
    assert_eq!(copied, 1 << 30);
    let bomb = encoder.finish().expect("finish into a Vec");
    let limits = limits();
    assert!(bomb.len() <= limits.max_compressed, "{} bytes", bomb.len());
    let inflated = ReportError::InflatedTooLarge {
        limit: limits.max_uncompressed,
    };
    assert_eq!(parse_gzip(&bomb, &limits), Err(inflated.clone()));
    assert_eq!(
        parse_body("application/tlsrpt+gzip", &bomb, &limits),
        Err(inflated.clone())
    );
    assert_eq!(sniff(&bomb, &limits), Err(inflated.clone()));
    // The same bomb as a mail attachment.
    let mail = mime_mail(&[Part {
        content_type: "application/tlsrpt+gzip",
        name: Some("bomb.json.gz"),
        encoding: Encoding::Base64,
        body: bomb,
    }]);
    assert_eq!(parse_mail(&mail, &limits).map(|m| m.report), Err(inflated));
}

#[test]
fn a_bomb_of_many_gzip_members_is_cut_off_too() {
    // 990 members of 1 MiB of spaces each: about 1 GiB, in just under 1 MiB.
    let member = gzip(&vec![b' '; 1 << 20]);
    let bomb: Vec<u8> = std::iter::repeat_n(member.as_slice(), 990)
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        parse_gzip(&bomb, &limits()),
        Err(ReportError::InflatedTooLarge { limit: 10 << 20 })
    );
}

#[test]
fn truncated_gzip_is_refused() {
    let gz = gzip(report_json(DAY, CONTACT, STS, "").as_bytes());
    assert!(parse_gzip(&gz, &limits()).is_ok());
    for cut in 0..gz.len() {
        let reason = parse_gzip(&gz[..cut], &limits()).map_err(|e| e.reason());
        let expected = if cut < 2 { "NotGzip" } else { "TruncatedGzip" };
        assert_eq!(reason, Err(expected), "cut at {cut} of {}", gz.len());
    }
    let Some(dir) = samples() else { return };
    let sample = read(&dir.join("gz/microsoft-2023-notz.mox.json.gz"));
    assert_eq!(
        parse_gzip(&sample[..sample.len() / 2], &limits()),
        Err(ReportError::TruncatedGzip)
    );
}

#[test]
fn truncated_json_is_refused_at_every_length() {
    let text = report_json(DAY, CONTACT, STS, "");
    let end = text.rfind('}').expect("closing brace");
    for cut in 0..end {
        let reason = json(&text[..cut]).map_err(|e| e.reason());
        assert!(
            matches!(reason, Err("TruncatedJson" | "NotAReport")),
            "cut at {cut}: {reason:?}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let deep = |n: usize| {
        report_json(
            DAY,
            CONTACT,
            STS,
            &format!(r#","x":{}{}"#, "[".repeat(n), "]".repeat(n)),
        )
    };
    // `x` sits in the report's object (level 1): 15 arrays make 16 levels.
    assert!(json(&deep(15)).is_ok());
    assert_eq!(json(&deep(16)), Err(ReportError::TooDeep { limit: 16 }));
    // Far deeper than serde_json's own recursion limit, and unbalanced.
    let abyss = format!("{{\"x\":{}", "[".repeat(1_000_000));
    assert_eq!(json(&abyss), Err(ReportError::TooDeep { limit: 16 }));
    let strict = Limits {
        max_depth: 4,
        ..limits()
    };
    let text = report_json(DAY, CONTACT, STS, "");
    assert_eq!(
        parse_json(text.as_bytes(), &strict),
        Err(ReportError::TooDeep { limit: 4 }),
        "policy-string sits 5 deep"
    );
}

#[test]
fn too_many_policies_or_failure_details() {
    let policies = |n: usize| vec![STS; n].join(",");
    assert_eq!(
        json(&report_json(DAY, CONTACT, &policies(1000), "")).map(|r| r.policies.len()),
        Ok(1000)
    );
    assert_eq!(
        json(&report_json(DAY, CONTACT, &policies(1001), "")),
        Err(ReportError::TooManyPolicies { limit: 1000 })
    );
    let small = Limits {
        max_failure_details: 3,
        ..limits()
    };
    let entry = |n: usize| {
        let details = vec![r#"{"result-type":"validation-failure","failed-session-count":1}"#; n];
        format!(
            r#"{{"policy":{{"policy-type":"sts","policy-domain":"example.com"}},"summary":{{"total-successful-session-count":0,"total-failure-session-count":{n}}},"failure-details":[{}]}}"#,
            details.join(",")
        )
    };
    let three = report_json(DAY, CONTACT, &format!("{},{}", entry(2), entry(1)), "");
    assert!(parse_json(three.as_bytes(), &small).is_ok());
    let four = report_json(DAY, CONTACT, &format!("{},{}", entry(2), entry(2)), "");
    assert_eq!(
        parse_json(four.as_bytes(), &small),
        Err(ReportError::TooManyFailureDetails { limit: 3 }),
        "counted over all policies"
    );
}

#[test]
fn inputs_over_their_size_limits() {
    let text = report_json(DAY, CONTACT, STS, "");
    let tight = Limits {
        max_uncompressed: 100,
        max_compressed: 100,
        max_mail: 1000,
        ..limits()
    };
    let too_large = |r: Result<Report, ReportError>| r.map_err(|e| e.reason());
    assert_eq!(
        too_large(parse_json(text.as_bytes(), &tight)),
        Err("TooLarge")
    );
    let gz = gzip(text.as_bytes());
    assert!(gz.len() > 100);
    assert_eq!(too_large(parse_gzip(&gz, &tight)), Err("TooLarge"));
    let roomy = Limits {
        max_compressed: 1000,
        ..tight.clone()
    };
    assert_eq!(
        parse_gzip(&gz, &roomy),
        Err(ReportError::InflatedTooLarge { limit: 100 })
    );
    let mail = mime_mail(&[Part {
        content_type: "application/tlsrpt+json",
        name: None,
        encoding: Encoding::Base64,
        body: text.into_bytes(),
    }]);
    assert_eq!(
        parse_mail(&mail, &tight)
            .map(|m| m.report)
            .map_err(|e| e.reason()),
        Err("TooLarge")
    );
}

// ---------------------------------------------------------------------------------------
// Report e-mails as senders build them.

enum Encoding {
    Base64,
    QuotedPrintable,
    SevenBit,
}

struct Part {
    content_type: &'static str,
    name: Option<&'static str>,
    encoding: Encoding,
    body: Vec<u8>,
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` for `=` and non-ASCII, soft breaks before 76.
fn quoted_printable(data: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in data {
        let piece = if (b' '..=b'~').contains(&b) && b != b'=' {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if line + piece.len() > 75 {
            out.push_str("=\r\n");
            line = 0;
        }
        line += piece.len();
        out.push_str(&piece);
    }
    out
}

fn mime_mail(parts: &[Part]) -> Vec<u8> {
    let boundary = "----=_tlsrpt_boundary_42";
    let mut mail = format!(
        "From: TLS reports <tlsrpt-noreply@reporter.example>\r\n\
         To: tlsrpt@example.com\r\n\
         Subject: Report Domain: example.com Submitter: reporter.example Report-ID: <r1@reporter.example>\r\n\
         Message-ID: <m1@reporter.example>\r\n\
         TLS-Report-Domain: example.com\r\n\
         TLS-Report-Submitter: reporter.example\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\
         \r\n\
         This is an aggregate TLS report from reporter.example\r\n"
    );
    for part in parts {
        mail.push_str(&format!(
            "--{boundary}\r\nContent-Type: {}",
            part.content_type
        ));
        if let Some(name) = part.name {
            mail.push_str(&format!(
                "; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\""
            ));
        }
        mail.push_str("\r\n");
        let body = match part.encoding {
            Encoding::Base64 => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&part.body);
                let lines: Vec<&str> = b64
                    .as_bytes()
                    .chunks(76)
                    .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
                    .collect();
                mail.push_str("Content-Transfer-Encoding: base64\r\n");
                lines.join("\r\n")
            }
            Encoding::QuotedPrintable => {
                mail.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
                quoted_printable(&part.body)
            }
            Encoding::SevenBit => String::from_utf8(part.body.clone()).expect("7bit text"),
        };
        mail.push_str(&format!("\r\n{body}\r\n"));
    }
    mail.push_str(&format!("--{boundary}--\r\n"));
    mail.into_bytes()
}

fn mail_report() -> String {
    report_json(
        DAY,
        r#""contact-info":"tls-reports@reporter.example","#,
        STS,
        "",
    )
}

#[test]
fn a_mail_with_a_base64_gzip_attachment() {
    let mail = mime_mail(&[Part {
        content_type: "application/tlsrpt+gzip",
        name: Some("reporter.example!example.com!1704758400!1704844799!001.json.gz"),
        encoding: Encoding::Base64,
        body: gzip(mail_report().as_bytes()),
    }]);
    let m = parse_mail(&mail, &limits()).expect("parses");
    assert_eq!(m.report, json(&mail_report()).expect("parses"));
    assert_eq!(m.from.as_deref(), Some("tlsrpt-noreply@reporter.example"));
    assert_eq!(m.tls_report_domain.as_deref(), Some("example.com"));
    assert_eq!(m.tls_report_submitter.as_deref(), Some("reporter.example"));
    assert_eq!(m.message_id.as_deref(), Some("m1@reporter.example"));
    assert_eq!(m.part_type, "application/tlsrpt+gzip");
    assert!(m.report.warnings.is_empty());
}

#[test]
fn a_mail_with_quoted_printable_json() {
    // Long lines and `=` make the encoding visible: soft breaks and =3D.
    let text = mail_report().replace("max_age: 86400", "max_age: 86400 = one day");
    let mail = mime_mail(&[Part {
        content_type: "application/tlsrpt+json",
        name: Some("reporter.example!example.com!1704758400!1704844799.json"),
        encoding: Encoding::QuotedPrintable,
        body: text.clone().into_bytes(),
    }]);
    assert!(String::from_utf8_lossy(&mail).contains("=3D"));
    assert!(String::from_utf8_lossy(&mail).contains("=\r\n"));
    let m = parse_mail(&mail, &limits()).expect("parses");
    assert_eq!(m.report, json(&text).expect("parses"));
    assert_eq!(
        m.report.policies[0].policy.sts_value("max_age"),
        Some("86400 = one day")
    );
}

#[test]
fn a_mail_with_the_non_standard_application_tlsrpt() {
    for (body, encoding) in [
        (mail_report().into_bytes(), Encoding::SevenBit),
        (gzip(mail_report().as_bytes()), Encoding::Base64),
    ] {
        let mail = mime_mail(&[Part {
            content_type: "application/tlsrpt",
            name: None,
            encoding,
            body,
        }]);
        let m = parse_mail(&mail, &limits()).expect("parses");
        assert_eq!(m.part_type, "application/tlsrpt");
        assert_eq!(m.report, json(&mail_report()).expect("parses"));
    }
}

#[test]
fn a_mail_with_a_json_gz_attachment_of_a_generic_type() {
    for content_type in ["application/gzip", "application/octet-stream"] {
        let mail = mime_mail(&[Part {
            content_type,
            name: Some("reporter.example!example.com!1704758400!1704844799!7.json.gz"),
            encoding: Encoding::Base64,
            body: gzip(mail_report().as_bytes()),
        }]);
        let m = parse_mail(&mail, &limits()).expect(content_type);
        assert_eq!(
            m.report,
            json(&mail_report()).expect("parses"),
            "{content_type}"
        );
    }
    // Without a report's name, a generic attachment is not taken for one.
    let mail = mime_mail(&[Part {
        content_type: "application/octet-stream",
        name: Some("invoice.pdf"),
        encoding: Encoding::Base64,
        body: gzip(mail_report().as_bytes()),
    }]);
    assert_eq!(parse_mail(&mail, &limits()), Err(ReportError::NoReportPart));
}

#[test]
fn the_declared_report_part_wins_over_a_generic_one() {
    let other = report_json(DAY, CONTACT, STS, "").replace("Example Org", "Decoy");
    let mail = mime_mail(&[
        Part {
            content_type: "application/octet-stream",
            name: Some("decoy.json"),
            encoding: Encoding::Base64,
            body: other.into_bytes(),
        },
        Part {
            content_type: "application/tlsrpt+gzip",
            name: Some("real.json.gz"),
            encoding: Encoding::Base64,
            body: gzip(mail_report().as_bytes()),
        },
    ]);
    let m = parse_mail(&mail, &limits()).expect("parses");
    assert_eq!(m.report.organization_name, "Example Org");
    assert_eq!(m.part_name.as_deref(), Some("real.json.gz"));
}

#[test]
fn a_forwarded_report_mail() {
    let inner = mime_mail(&[Part {
        content_type: "application/tlsrpt+gzip",
        name: Some("r.json.gz"),
        encoding: Encoding::Base64,
        body: gzip(mail_report().as_bytes()),
    }]);
    let outer = mime_mail(&[Part {
        content_type: "message/rfc822",
        name: None,
        encoding: Encoding::SevenBit,
        body: inner,
    }]);
    let m = parse_mail(&outer, &limits()).expect("parses");
    assert_eq!(m.report, json(&mail_report()).expect("parses"));
}

#[test]
fn mails_without_a_report_or_with_a_broken_one() {
    let plain = mime_mail(&[]);
    assert_eq!(
        parse_mail(&plain, &limits()),
        Err(ReportError::NoReportPart)
    );
    assert_eq!(
        parse_mail(b"", &limits()).map_err(|e| e.reason()),
        Err("NotAReport")
    );
    let mut gz = gzip(mail_report().as_bytes());
    gz.truncate(gz.len() - 3);
    let broken = mime_mail(&[Part {
        content_type: "application/tlsrpt+gzip",
        name: None,
        encoding: Encoding::Base64,
        body: gz,
    }]);
    assert_eq!(
        parse_mail(&broken, &limits()),
        Err(ReportError::TruncatedGzip)
    );
}

#[test]
fn a_submitter_that_is_not_the_contact_domain_is_flagged() {
    let text = report_json(
        DAY,
        r#""contact-info":"reports@elsewhere.example","#,
        STS,
        "",
    );
    let mail = mime_mail(&[Part {
        content_type: "application/tlsrpt+json",
        name: None,
        encoding: Encoding::SevenBit,
        body: text.into_bytes(),
    }]);
    let m = parse_mail(&mail, &limits()).expect("parses");
    assert_eq!(
        m.report.warnings,
        [Warning::SubmitterMismatch {
            submitter: "reporter.example".into(),
            contact: "reports@elsewhere.example".into()
        }]
    );
}

// ---------------------------------------------------------------------------------------
// Properties.

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 1970 to 2100, with and without fractions of a second.
    (
        0i64..4_102_444_800,
        prop_oneof![Just(0i32), 0i32..1_000_000_000],
    )
        .prop_map(|(s, ns)| Timestamp::new(s, ns).expect("in range"))
}

fn text() -> impl Strategy<Value = String> {
    // Any characters JSON must escape, and others.
    "[a-zA-Z0-9 .:@!_\"\\\\/\u{0}-\u{1f}é€😀-]{0,24}"
}

fn policy_type() -> impl Strategy<Value = PolicyType> {
    prop_oneof![
        Just(PolicyType::Sts),
        Just(PolicyType::Tlsa),
        Just(PolicyType::NoPolicyFound),
        "x-[a-z]{1,10}".prop_map(PolicyType::Other),
    ]
}

fn result_type() -> impl Strategy<Value = ResultType> {
    prop_oneof![
        (0..ResultType::KNOWN.len()).prop_map(|i| ResultType::KNOWN[i].clone()),
        "x-[a-z]{1,10}".prop_map(ResultType::Other),
    ]
}

fn detail() -> impl Strategy<Value = FailureDetail> {
    (
        result_type(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(t, a, b, c, d, n, e, f)| FailureDetail {
            result_type: t,
            sending_mta_ip: a,
            receiving_mx_hostname: b,
            receiving_mx_helo: c,
            receiving_ip: d,
            failed_session_count: n,
            additional_information: e,
            failure_reason_code: f,
        })
}

fn policy_result() -> impl Strategy<Value = PolicyResult> {
    (
        policy_type(),
        // No line starts with `[`: a single such line would be read as packed records.
        proptest::collection::vec("[a-zA-Z0-9_:. *-]{0,30}", 0..5),
        proptest::option::of("[a-z0-9.-]{1,30}"),
        proptest::collection::vec("[a-z0-9.*-]{1,30}", 0..3),
        any::<u64>(),
        0u64..10_000,
        proptest::collection::vec(detail(), 0..4),
    )
        .prop_map(|(t, lines, domain, mx, ok, failed, details)| PolicyResult {
            policy: Policy {
                policy_type: t,
                policy_string: lines,
                policy_domain: domain,
                mx_host: mx,
            },
            summary: Summary {
                total_successful_session_count: ok,
                total_failure_session_count: failed,
            },
            failure_details: details,
        })
}

fn report() -> impl Strategy<Value = Report> {
    (
        text(),
        timestamp(),
        prop_oneof![Just(86_399i64), Just(86_400), -100_000i64..1_000_000],
        proptest::option::of(text()),
        "[a-zA-Z0-9@+_.:-]{1,40}",
        proptest::collection::vec(policy_result(), 0..4),
    )
        .prop_map(|(org, start, length, contact, id, policies)| {
            let end = start
                .checked_add(jiff::SignedDuration::from_secs(length))
                .unwrap_or(start);
            let mut report = Report {
                organization_name: org,
                date_range: DateRange { start, end },
                contact_info: contact,
                report_id: id,
                policies,
                warnings: Vec::new(),
            };
            report.warnings = check(&report);
            report
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_report_renders_and_parses_back_the_same(report in report()) {
        let rendered = render(&report);
        let parsed = parse_json(rendered.as_bytes(), &limits());
        prop_assert_eq!(parsed.as_ref(), Ok(&report), "{}", rendered);
        // And through gzip.
        prop_assert_eq!(parse_gzip(&gzip(rendered.as_bytes()), &limits()), Ok(report));
    }

    #[test]
    fn damaged_input_is_refused_or_parsed_never_a_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let original = report_json(DAY, CONTACT, STS, "").into_bytes();
        let mut text = original.clone();
        for (at, byte) in &flips {
            let i = at.index(text.len());
            text[i] = *byte;
        }
        let _ = parse_json(&text, &limits());
        let mut gz = gzip(&original);
        let n = gz.len();
        for (at, byte) in &flips {
            gz[at.index(n)] ^= *byte;
        }
        let _ = parse_gzip(&gz, &limits());
        let _ = parse_gzip(&gz[..cut.index(n)], &limits());
        let mail = mime_mail(&[Part {
            content_type: "application/tlsrpt+gzip",
            name: None,
            encoding: Encoding::Base64,
            body: gz,
        }]);
        let _ = parse_mail(&mail[..cut.index(mail.len())], &limits());
    }
}

/// `mailsec report` over every sample file: each one a report line (none refused), the
/// domain lines the sums of their reports, the RFC's example failures named with their MX;
/// a file that is no report makes it exit 1 with the reason.
#[test]
fn mailsec_report_summarizes_every_sample_file() {
    let Some(dir) = samples() else { return };
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["json", "gz", "eml"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("samples dir") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .arg("report")
        .args(["-o", "json"])
        .args(&files)
        .output()
        .expect("run mailsec report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(summary["refused"], serde_json::json!([]));
    let reports = summary["reports"].as_array().expect("reports");
    for f in &files {
        assert!(
            reports.iter().any(|r| r["file"] == f.display().to_string()),
            "{} has no report line",
            f.display()
        );
    }
    for d in summary["domains"].as_array().expect("domains") {
        let mine: Vec<&serde_json::Value> = reports
            .iter()
            .filter(|r| r["policyDomain"] == d["domain"])
            .collect();
        assert_eq!(d["reports"], mine.len(), "{d}");
        let ok: u64 = mine
            .iter()
            .map(|r| r["successful"].as_u64().unwrap_or(0))
            .sum();
        let failed: u64 = mine.iter().map(|r| r["failed"].as_u64().unwrap_or(0)).sum();
        assert_eq!(
            (d["successful"].as_u64(), d["failed"].as_u64()),
            (Some(ok), Some(failed)),
            "{d}"
        );
    }
    let rfc = summary["domains"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["domain"] == "company-y.example"))
        .expect("the RFC 8460 example domain");
    assert_eq!(rfc["failures"][0]["resultType"], "starttls-not-supported");
    assert_eq!(rfc["failures"][0]["mx"], "mx2.mail.company-y.example");

    let junk = std::env::temp_dir().join(format!("not-a-report-{}.json", std::process::id()));
    std::fs::write(&junk, b"{\"organization-name\": 1}").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .arg("report")
        .arg(&files[0])
        .arg(&junk)
        .output()
        .expect("run mailsec report");
    let _ = std::fs::remove_file(&junk);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("FILE"), "{text}");
    assert!(
        text.contains("refused: ") && text.contains(&junk.display().to_string()),
        "{text}"
    );
}
