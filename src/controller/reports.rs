//! Stage: the received TLS reports. Reads the MailDomain's TLSReports, prunes those past
//! retention, and sums the rest into `status.tlsReports`, the `TLSReportsClean` condition and
//! the evidence `mtaSts.promote` waits for. The summing is pure ([`summarize`], [`evidence`]);
//! only [`run`] talks to the API server.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};

use super::conditions::{Report, Status, Type, reason};
use super::context::{Context, Retention};
use crate::api::{
    FailureCount, MailDomain, PromoteSpec, REPORT_MAILDOMAIN_LABEL, ReportWindow, TLSReport,
    TLSReportSpec, TlsReportsSummary,
};

/// The summary's windows, in UTC days up to today.
pub const WINDOWS: [u32; 3] = [1, 7, 30];
/// The window `TLSReportsClean` speaks about.
const CLEAN_WINDOW: u32 = 7;
/// Named reporters and failure rows per window, at most.
const MAX_REPORTERS: usize = 20;
const MAX_FAILURES: usize = 10;
/// Deletes per pass, so a backlog is pruned over a few passes, not in one burst.
const MAX_PRUNE: usize = 50;

/// The stage's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Reports {
    pub summary: TlsReportsSummary,
    pub clean: Report,
    /// Failure result types in the 30-day window that the previous summary did not have.
    pub new_failure_types: Vec<String>,
    /// The reports kept (pruned ones left out), for [`evidence`].
    pub kept: Vec<TLSReportSpec>,
    pub pruned: usize,
}

/// What the reports say about promoting a `testing` policy to `enforce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Enough clean days and reporters.
    Enough { days: u32, reporters: usize },
    /// Not yet: why, in words (`3 of 14 clean days, 1 of 2 reporters`).
    Waiting(String),
}

/// Reads, prunes and sums the MailDomain's TLSReports. `served` is the policy file served now
/// (the evidence counts only reports about it).
pub async fn run(
    ctx: &Context,
    md: &MailDomain,
    previous: Option<&TlsReportsSummary>,
    served: Option<&str>,
    today: Date,
) -> Result<Reports, kube::Error> {
    let api: Api<TLSReport> =
        Api::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
    let selector = format!("{REPORT_MAILDOMAIN_LABEL}={}", md.name_any());
    let uid = md.uid().unwrap_or_default();
    // Until the watch has listed them all, an empty index means nothing.
    let _ = ctx.reports.wait_until_ready().await;
    let any = ctx
        .reports
        .find(|r| r.owner_references().iter().any(|o| o.uid == uid))
        .is_some();
    let mut owned: Vec<TLSReport> = if any {
        api.list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|r| r.owner_references().iter().any(|o| o.uid == uid))
            .collect()
    } else {
        Vec::new()
    };
    let prune = past_retention(&owned, ctx.config.report_retention, today);
    for name in prune.iter().take(MAX_PRUNE) {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let pruned = prune.len().min(MAX_PRUNE);
    owned.retain(|r| !prune[..pruned].contains(&r.name_any()));
    let kept: Vec<TLSReportSpec> = owned.into_iter().map(|r| r.spec).collect();
    let summary = summarize(&kept, served, today);
    let new_failure_types = new_failure_types(previous, &summary);
    Ok(Reports {
        clean: clean(&summary),
        summary,
        new_failure_types,
        kept,
        pruned,
    })
}

/// The reports past retention: older than `days`, or beyond the newest `count`.
pub fn past_retention(reports: &[TLSReport], retention: Retention, today: Date) -> Vec<String> {
    let oldest = today
        .checked_sub(jiff::Span::new().days(i64::from(retention.days)))
        .unwrap_or(Date::MIN);
    let mut by_age: Vec<(&str, String)> = reports
        .iter()
        .map(|r| (r.spec.day.as_str(), r.name_any()))
        .collect();
    // Newest first; names break ties, so the choice is stable.
    by_age.sort_by(|a, b| b.cmp(a));
    by_age
        .into_iter()
        .enumerate()
        .filter(|(i, (day, _))| *i >= retention.count || parse_day(day).is_none_or(|d| d < oldest))
        .map(|(_, (_, name))| name)
        .collect()
}

fn parse_day(day: &str) -> Option<Date> {
    day.parse().ok()
}

/// The summary of `reports` over [`WINDOWS`] and the clean-day streak about `served`.
pub fn summarize(
    reports: &[TLSReportSpec],
    served: Option<&str>,
    today: Date,
) -> TlsReportsSummary {
    let windows = WINDOWS
        .iter()
        .map(|&days| window(reports, days, today))
        .collect();
    let streak = streak(reports, served);
    TlsReportsSummary {
        stored: u32::try_from(reports.len()).unwrap_or(u32::MAX),
        last_day: reports.iter().map(|r| r.day.clone()).max(),
        clean_days: streak.days,
        windows,
    }
}

fn window(reports: &[TLSReportSpec], days: u32, today: Date) -> ReportWindow {
    let first = today
        .checked_sub(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(Date::MIN);
    let within: Vec<&TLSReportSpec> = reports
        .iter()
        .filter(|r| parse_day(&r.day).is_some_and(|d| d >= first && d <= today))
        .collect();
    ReportWindow {
        days,
        ..sum(within)
    }
}

/// `reports` summed: reporters, sessions, failures by result type and MX (largest first).
/// `days` is left 0.
pub fn sum<'a>(reports: impl IntoIterator<Item = &'a TLSReportSpec>) -> ReportWindow {
    let mut out = ReportWindow::default();
    let mut reporters = BTreeSet::new();
    let mut failures: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
    for r in reports {
        out.reports += 1;
        reporters.insert(r.organization.clone());
        out.successful = out.successful.saturating_add(r.successful);
        out.failed = out.failed.saturating_add(r.failed);
        for f in r.policies.iter().flat_map(|p| p.failures.iter()) {
            let n = failures
                .entry((f.result_type.clone(), f.receiving_mx.clone()))
                .or_default();
            *n = n.saturating_add(f.sessions);
        }
        // A failed count without details still names its kind.
        if r.failed > 0 && r.policies.iter().all(|p| p.failures.is_empty()) {
            let n = failures.entry(("unspecified".into(), None)).or_default();
            *n = n.saturating_add(r.failed);
        }
    }
    out.reporters = reporters.into_iter().take(MAX_REPORTERS).collect();
    let mut rows: Vec<FailureCount> = failures
        .into_iter()
        .map(|((result_type, mx), sessions)| FailureCount {
            result_type,
            mx,
            sessions,
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.sessions));
    rows.truncate(MAX_FAILURES);
    out.failures = rows;
    out
}

/// Policy lines compared the way senders vary them: trimmed, `key:value` spacing and key
/// case ignored, order ignored.
fn policy_lines(lines: impl IntoIterator<Item = impl AsRef<str>>) -> BTreeSet<String> {
    lines
        .into_iter()
        .filter_map(|l| {
            let l = l.as_ref().trim();
            let (k, v) = l.split_once(':')?;
            Some(format!(
                "{}:{}",
                k.trim().to_ascii_lowercase(),
                v.trim().to_ascii_lowercase()
            ))
        })
        .collect()
}

/// Whether a report speaks about the served policy: one of its sts policies has its lines.
fn about(report: &TLSReportSpec, served: &BTreeSet<String>) -> bool {
    report
        .policies
        .iter()
        .any(|p| p.policy_type == "sts" && policy_lines(&p.policy_string) == *served)
}

struct Streak {
    days: u32,
    reporters: BTreeSet<String>,
}

/// Consecutive clean UTC days ending at the latest day with a report about the served policy:
/// a day is clean when it has such reports and none of them has a failed session; a day
/// without one ends the streak.
fn streak(reports: &[TLSReportSpec], served: Option<&str>) -> Streak {
    let mut out = Streak {
        days: 0,
        reporters: BTreeSet::new(),
    };
    let Some(served) = served.map(|s| policy_lines(s.lines())) else {
        return out;
    };
    let mut days: BTreeMap<Date, (bool, BTreeSet<String>)> = BTreeMap::new();
    for r in reports.iter().filter(|r| about(r, &served)) {
        let Some(day) = parse_day(&r.day) else {
            continue;
        };
        let entry = days.entry(day).or_insert((true, BTreeSet::new()));
        entry.0 &= r.failed == 0;
        entry.1.insert(r.organization.clone());
    }
    let mut expected: Option<Date> = None;
    for (day, (clean, reporters)) in days.iter().rev() {
        if !clean || expected.is_some_and(|e| e != *day) {
            break;
        }
        out.days += 1;
        out.reporters.extend(reporters.iter().cloned());
        expected = day.yesterday().ok();
    }
    out
}

/// Whether `reports` say a `testing` policy (served as `served`) may go to `enforce`. The
/// streak must reach yesterday or today: old clean days say nothing about now.
pub fn evidence(
    promote: &PromoteSpec,
    reports: &[TLSReportSpec],
    served: Option<&str>,
    today: Date,
) -> Evidence {
    let streak = streak(reports, served);
    let served_lines = served.map(|s| policy_lines(s.lines())).unwrap_or_default();
    let latest = reports
        .iter()
        .filter(|r| about(r, &served_lines))
        .filter_map(|r| parse_day(&r.day))
        .max();
    let recent = latest.is_some_and(|d| today.yesterday().is_ok_and(|y| d >= y));
    let days = if recent { streak.days } else { 0 };
    let need = promote.after_clean_days;
    let need_reporters = promote.min_reporters as usize;
    if days >= need && streak.reporters.len() >= need_reporters {
        return Evidence::Enough {
            days,
            reporters: streak.reporters.len(),
        };
    }
    let reporters = if recent { streak.reporters.len() } else { 0 };
    let mut why = format!(
        "{days} of {need} clean days ({} left), {reporters} of {need_reporters} reporters",
        need.saturating_sub(days)
    );
    if !recent {
        why.push_str(if latest.is_some() {
            "; no report about the served policy since the day before yesterday"
        } else {
            "; no report about the served policy yet"
        });
    }
    Evidence::Waiting(why)
}

/// `TLSReportsClean` from the last 7 days.
pub fn clean(summary: &TlsReportsSummary) -> Report {
    let week = summary.windows.iter().find(|w| w.days == CLEAN_WINDOW);
    match week {
        Some(w) if w.reports == 0 => Report::new(
            Type::TlsReportsClean,
            Status::Unknown,
            reason::NO_REPORTS,
            format!("no TLS report in the last {CLEAN_WINDOW} days"),
        ),
        Some(w) if w.failed == 0 => Report::new(
            Type::TlsReportsClean,
            Status::True,
            reason::CLEAN,
            format!(
                "{} reports from {} in the last {CLEAN_WINDOW} days: {} sessions, none failed",
                w.reports,
                w.reporters.join(", "),
                w.successful
            ),
        ),
        Some(w) => {
            let worst = w.failures.first().map_or_else(
                || "failed sessions".to_owned(),
                |f| match &f.mx {
                    Some(mx) => format!("{} at {mx} ({} sessions)", f.result_type, f.sessions),
                    None => format!("{} ({} sessions)", f.result_type, f.sessions),
                },
            );
            Report::new(
                Type::TlsReportsClean,
                Status::False,
                reason::FAILURES,
                format!(
                    "{worst}; {} of {} sessions failed in the last {CLEAN_WINDOW} days, reported by {}",
                    w.failed,
                    w.failed.saturating_add(w.successful),
                    w.reporters.join(", ")
                ),
            )
        }
        None => Report::new(
            Type::TlsReportsClean,
            Status::Unknown,
            reason::NO_REPORTS,
            "no TLS report yet",
        ),
    }
}

fn failure_types(summary: &TlsReportsSummary) -> BTreeSet<String> {
    summary
        .windows
        .iter()
        .filter(|w| w.days == 30)
        .flat_map(|w| w.failures.iter().map(|f| f.result_type.clone()))
        .collect()
}

fn new_failure_types(previous: Option<&TlsReportsSummary>, now: &TlsReportsSummary) -> Vec<String> {
    let before = previous.map(failure_types).unwrap_or_default();
    failure_types(now).difference(&before).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FailureGroup, RawReport, ReportPolicy, ReportReceipt};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const SERVED: &str = "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 604800\n";

    fn report(org: &str, day: &str, failed: u64, policy: &str) -> TLSReportSpec {
        let ts: jiff::Timestamp = format!("{day}T00:00:00Z").parse().unwrap();
        TLSReportSpec {
            policy_domain: "example.com".into(),
            organization: org.into(),
            contact_info: None,
            report_id: format!("{org}-{day}"),
            start: Time(ts),
            end: Time(ts),
            day: day.into(),
            successful: 10,
            failed,
            top_failure: None,
            policies: vec![ReportPolicy {
                policy_type: "sts".into(),
                mode: None,
                policy_string: policy.lines().map(|l| l.replace(": ", ":")).collect(),
                mx_hosts: vec![],
                successful: 10,
                failed,
                failures: (failed > 0)
                    .then(|| FailureGroup {
                        result_type: "certificate-expired".into(),
                        receiving_mx: Some("mx1.example.com".into()),
                        receiving_ip: None,
                        sessions: failed,
                        examples: vec![],
                    })
                    .into_iter()
                    .collect(),
                failures_omitted: 0,
            }],
            received: ReportReceipt {
                via: "https".into(),
                message_id: None,
                from: None,
                dkim: None,
                dkim_domain: None,
            },
            raw: RawReport {
                sha256: "0".repeat(64),
                size: 0,
                gzip: None,
            },
            warnings: vec![],
        }
    }

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn promote(days: u32, reporters: u32) -> PromoteSpec {
        PromoteSpec {
            after_clean_days: days,
            min_reporters: reporters,
        }
    }

    #[test]
    fn enough_clean_days_from_enough_reporters_and_not_one_day_before() {
        let p = promote(3, 2);
        let mut reports = vec![
            report("google", "2026-11-27", 0, SERVED),
            report("microsoft", "2026-11-28", 0, SERVED),
        ];
        assert!(matches!(
            evidence(&p, &reports, Some(SERVED), day("2026-11-29")),
            Evidence::Waiting(w) if w.starts_with("2 of 3 clean days (1 left), 2 of 2 reporters")
        ));
        reports.push(report("google", "2026-11-29", 0, SERVED));
        assert_eq!(
            evidence(&p, &reports, Some(SERVED), day("2026-11-30")),
            Evidence::Enough {
                days: 3,
                reporters: 2
            }
        );
        // One reporter is not enough.
        let solo: Vec<_> = reports
            .iter()
            .filter(|r| r.organization == "google")
            .cloned()
            .collect();
        assert!(matches!(
            evidence(&p, &solo, Some(SERVED), day("2026-11-30")),
            Evidence::Waiting(_)
        ));
    }

    #[test]
    fn a_failure_a_missing_day_or_another_policy_resets_the_streak() {
        let p = promote(2, 1);
        let clean = |d| report("google", d, 0, SERVED);
        // A late failure report for a day undoes it.
        let reports = vec![
            clean("2026-11-28"),
            clean("2026-11-29"),
            report("yahoo", "2026-11-29", 3, SERVED),
        ];
        assert!(
            matches!(evidence(&p, &reports, Some(SERVED), day("2026-11-30")), Evidence::Waiting(w) if w.starts_with("0 of 2"))
        );
        // A day without reports ends the streak.
        let reports = vec![
            clean("2026-11-26"),
            clean("2026-11-28"),
            clean("2026-11-29"),
        ];
        assert!(matches!(
            evidence(&p, &reports, Some(SERVED), day("2026-11-30")),
            Evidence::Enough { days: 2, .. }
        ));
        let reports = vec![clean("2026-11-27"), clean("2026-11-29")];
        assert!(
            matches!(evidence(&p, &reports, Some(SERVED), day("2026-11-30")), Evidence::Waiting(w) if w.starts_with("1 of 2"))
        );
        // Reports about another policy are no evidence.
        let other = SERVED.replace("mx1", "mx9");
        let reports = vec![
            report("google", "2026-11-28", 0, &other),
            report("google", "2026-11-29", 0, &other),
        ];
        assert!(
            matches!(evidence(&p, &reports, Some(SERVED), day("2026-11-30")), Evidence::Waiting(w) if w.contains("no report about the served policy yet"))
        );
        // Old clean days say nothing about now.
        let reports = vec![clean("2026-11-20"), clean("2026-11-21")];
        assert!(matches!(
            evidence(&p, &reports, Some(SERVED), day("2026-11-30")),
            Evidence::Waiting(_)
        ));
    }

    #[test]
    fn the_summary_and_the_condition_name_the_worst_failure() {
        let reports = vec![
            report("google", "2026-11-29", 0, SERVED),
            report("microsoft", "2026-11-29", 4, SERVED),
            report("google", "2026-10-01", 0, SERVED),
        ];
        let s = summarize(&reports, Some(SERVED), day("2026-11-30"));
        assert_eq!(s.stored, 3);
        assert_eq!(s.last_day.as_deref(), Some("2026-11-29"));
        let week = &s.windows[1];
        assert_eq!(
            (week.days, week.reports, week.successful, week.failed),
            (7, 2, 20, 4)
        );
        assert_eq!(week.reporters, ["google", "microsoft"]);
        assert_eq!(week.failures[0].result_type, "certificate-expired");
        let c = clean(&s);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (Status::False, reason::FAILURES)
        );
        assert!(
            c.message
                .starts_with("certificate-expired at mx1.example.com (4 sessions)"),
            "{}",
            c.message
        );
        let ok = summarize(&reports[..1], Some(SERVED), day("2026-11-30"));
        assert_eq!(clean(&ok).status, Status::True);
        let none = summarize(&reports[2..], Some(SERVED), day("2026-11-30"));
        assert_eq!(clean(&none).status, Status::Unknown);
        assert_eq!(new_failure_types(Some(&ok), &s), ["certificate-expired"]);
        assert!(new_failure_types(Some(&s), &s).is_empty());
    }

    #[test]
    fn retention_keeps_the_newest_within_age_and_count() {
        let object = |name: &str, d: &str| {
            let mut r = TLSReport::new(name, report("g", d, 0, SERVED));
            r.metadata.name = Some(name.into());
            r
        };
        let reports = vec![
            object("a", "2026-11-29"),
            object("b", "2026-11-28"),
            object("c", "2026-06-01"),
            object("d", "2026-11-27"),
        ];
        let prune = past_retention(
            &reports,
            Retention { days: 90, count: 2 },
            day("2026-11-30"),
        );
        assert_eq!(prune, ["d", "c"]);
    }
}
