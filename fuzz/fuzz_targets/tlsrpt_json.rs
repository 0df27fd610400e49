//! TLS-RPT report JSON (RFC 8460 §4.4), as an HTTPS endpoint or a mailbox receives it, read
//! under tight limits. Properties: no limit is exceeded by what parses (policies, failure
//! details, warnings); a parsed report renders to JSON that parses to the same report (the
//! warnings aside: the rendered form is the clean one).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailsec_operator::report::{Limits, Report, parse_json, render};

fn limits() -> Limits {
    Limits {
        max_uncompressed: 64 << 10,
        max_depth: 8,
        max_policies: 8,
        max_failure_details: 32,
        max_warnings: 4,
        ..Limits::default()
    }
}

fn without_warnings(mut r: Report) -> Report {
    r.warnings.clear();
    r
}

fuzz_target!(|json: &[u8]| {
    let limits = limits();
    let Ok(report) = parse_json(json, &limits) else {
        return;
    };
    assert!(report.policies.len() <= limits.max_policies);
    let details: usize = report
        .policies
        .iter()
        .map(|p| p.failure_details.len())
        .sum();
    assert!(details <= limits.max_failure_details);
    // The last one may be MoreWarnings, counting the rest.
    assert!(report.warnings.len() <= limits.max_warnings + 1);
    assert!(!report.report_id.is_empty());

    let rendered = render(&report);
    let again = parse_json(rendered.as_bytes(), &Limits::default())
        .unwrap_or_else(|e| panic!("rendered report does not parse: {e}\n{rendered}"));
    assert_eq!(render(&again), rendered);
    assert_eq!(without_warnings(again), without_warnings(report));
});
