//! Check: the live checks of `mailsec check`, run by the controller on an interval (with jitter,
//! bounded concurrency) and right after a change, turned into `*Verified` conditions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::conditions::{self, Report, Status, Type, reason};
use crate::api::MailDomainStatus;
use crate::checks::run::{Finding, Options, Outcome, RESOLVER};
use crate::domain::mtasts::Mode;
use crate::domain::name::DomainName;
use crate::domain::record::RecordKind;
use crate::model::desired::Desired;

/// How the controller runs the checks.
#[derive(Clone, Debug)]
pub struct Settings {
    pub options: Options,
    /// How often a settled MailDomain is checked again.
    pub interval: Duration,
    /// At most this many checks run at once.
    pub limit: Arc<tokio::sync::Semaphore>,
}

/// How soon a failing check runs again.
pub const RETRY: Duration = Duration::from_secs(60);

/// Each condition, the record kind that enables it, and the checks it summarises.
pub const GROUPS: [(Type, RecordKind, &[&str]); 7] = [
    (
        Type::MtaStsVerified,
        RecordKind::MtaSts,
        &["MTA-STS", "MTA-STS policy"],
    ),
    (Type::TlsRptVerified, RecordKind::TlsRpt, &["TLS-RPT"]),
    (Type::MxCovered, RecordKind::MtaSts, &["MX coverage"]),
    (Type::SmtpTlsVerified, RecordKind::MtaSts, &["SMTP TLS"]),
    (Type::SpfVerified, RecordKind::Spf, &["SPF", "SPF lookups"]),
    (Type::DmarcVerified, RecordKind::Dmarc, &["DMARC"]),
    (Type::DkimVerified, RecordKind::Dkim, &["DKIM"]),
];

/// The stage's output: what the checks found, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub findings: Vec<Finding>,
    pub at: Timestamp,
}

/// When the checks of a MailDomain run next after the previous pass: the interval, or
/// [`RETRY`] while one of them fails (right after a change, resolvers may still serve what
/// they cached before it), spread by the object's uid.
pub fn next_in(settings: &Settings, previous: &MailDomainStatus, uid: &str) -> Duration {
    let failing = GROUPS
        .iter()
        .any(|(t, _, _)| conditions::status_of(&previous.conditions, *t) == Some(Status::False));
    let interval = if failing {
        settings.interval.min(RETRY)
    } else {
        settings.interval
    };
    jittered(interval, uid)
}

/// Whether the checks are due: after a change, for a new generation, or once `next` passed.
pub fn due(
    previous: &MailDomainStatus,
    generation: Option<i64>,
    changed: bool,
    next: Duration,
    now: Timestamp,
) -> bool {
    changed
        || previous.observed_generation != generation
        || previous
            .last_checked
            .as_ref()
            .is_none_or(|t| now.duration_since(t.0).unsigned_abs() >= next)
}

/// Runs the checks of `domain` against `expect` (what this pass published), holding one of
/// the bounded permits shared by all MailDomains.
pub async fn run(settings: &Settings, expect: &Desired, now: Timestamp) -> Checked {
    let _permit = settings.limit.acquire().await;
    let domain: &DomainName = &expect.domain;
    let findings = crate::checks::run::check(domain, Some(expect), &settings.options).await;
    Checked {
        findings: per_group(findings, expect),
        at: now,
    }
}

/// A pass that found only that the resolver does not answer says so in every condition the
/// spec enables (Unknown: nothing is known about the records), instead of hiding them.
fn per_group(findings: Vec<Finding>, expect: &Desired) -> Vec<Finding> {
    let Some(resolver) = findings.iter().find(|f| f.check == RESOLVER) else {
        return findings;
    };
    let sts_mode = expect.policy.as_ref().map(|p| p.policy.mode);
    GROUPS
        .iter()
        .filter(|(_, kind, _)| expect.records.iter().any(|r| r.kind == *kind))
        .filter(|(t, _, _)| *t != Type::MxCovered || sts_mode.is_some_and(|m| m != Mode::None))
        .map(|(_, _, checks)| Finding {
            check: checks[0],
            outcome: Outcome::Warn,
            ..resolver.clone()
        })
        .collect()
}

/// One report per group: `None` (remove the condition) when the spec does not enable it, so
/// it has no findings. A failure makes it False with the first failure's reason; a warning
/// alone (port 25 blocked where the controller runs) makes it Unknown.
pub fn reports(findings: &[Finding]) -> Vec<(Type, Option<Report>)> {
    GROUPS
        .iter()
        .map(|(type_, _, checks)| {
            let mine: Vec<&Finding> = findings
                .iter()
                .filter(|f| checks.contains(&f.check))
                .collect();
            (*type_, report(*type_, &mine))
        })
        .collect()
}

fn report(type_: Type, mine: &[&Finding]) -> Option<Report> {
    let describe = |fs: &[&&Finding]| {
        fs.iter()
            .map(|f| format!("{}: {}", f.subject, f.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if mine.is_empty() {
        return None;
    }
    let failed: Vec<&&Finding> = mine.iter().filter(|f| f.outcome == Outcome::Fail).collect();
    let warned: Vec<&&Finding> = mine.iter().filter(|f| f.outcome == Outcome::Warn).collect();
    Some(if let Some(first) = failed.first() {
        Report::new(type_, Status::False, first.reason, describe(&failed))
    } else if let Some(first) = warned
        .first()
        .filter(|_| mine.iter().all(|f| f.outcome != Outcome::Pass))
    {
        Report::new(type_, Status::Unknown, first.reason, describe(&warned))
    } else {
        let all: Vec<&&Finding> = mine.iter().collect();
        Report::new(type_, Status::True, reason::VERIFIED, describe(&all))
    })
}

/// The interval stretched or shrunk by up to a tenth, so checks of many domains spread out.
pub fn jittered(interval: Duration, seed: &str) -> Duration {
    let hash = seed
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let tenth = interval.as_millis() as u64 / 10;
    let offset = if tenth == 0 { 0 } else { hash % (2 * tenth) };
    Duration::from_millis(interval.as_millis() as u64 - tenth + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(check: &'static str, outcome: Outcome, reason: &'static str) -> Finding {
        Finding {
            check,
            subject: "x".into(),
            outcome,
            reason,
            message: reason.into(),
        }
    }

    /// The old interface of these tests: findings applied to a condition list.
    fn apply(
        c: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
        findings: &[Finding],
        generation: Option<i64>,
    ) {
        for (type_, report) in reports(findings) {
            match report {
                Some(r) => conditions::set(c, r, generation, Timestamp::now()),
                None => conditions::remove(c, type_),
            }
        }
    }

    #[test]
    fn findings_become_conditions() {
        let mut c = Vec::new();
        let findings = [
            f("MTA-STS", Outcome::Pass, "Valid"),
            f("MTA-STS policy", Outcome::Fail, "Redirect"),
            f("MX coverage", Outcome::Pass, "Covered"),
            f("SMTP TLS", Outcome::Warn, "Port25Unreachable"),
            f("SPF", Outcome::Pass, "Valid"),
            f("SPF lookups", Outcome::Pass, "WithinLimits"),
        ];
        apply(&mut c, &findings, Some(3));
        let get = |t: &str| {
            c.iter()
                .find(|x| x.type_ == t)
                .map(|x| (x.status.as_str(), x.reason.as_str()))
        };
        assert_eq!(get("MTASTSVerified"), Some(("False", "Redirect")));
        assert_eq!(get("MXCovered"), Some(("True", "Verified")));
        assert_eq!(
            get("SMTPTLSVerified"),
            Some(("Unknown", "Port25Unreachable"))
        );
        assert_eq!(get("SPFVerified"), Some(("True", "Verified")));
        assert_eq!(
            get("DMARCVerified"),
            None,
            "not enabled, not checked, no condition"
        );
    }

    #[test]
    fn an_unreachable_resolver_makes_every_enabled_condition_unknown() {
        let domain = DomainName::parse("example.com").expect("name");
        let record = |kind: RecordKind| crate::domain::record::TxtRecord {
            name: kind.owner(&domain, ""),
            kind,
            ttl: 300,
            value: String::new(),
        };
        let expect = Desired {
            records: vec![record(RecordKind::Spf), record(RecordKind::Dmarc)],
            ..Desired::nothing(domain.clone(), 300)
        };
        let dead = Finding {
            check: RESOLVER,
            subject: "example.com".into(),
            outcome: Outcome::Fail,
            reason: crate::checks::run::RESOLVER_UNREACHABLE,
            message: "the resolver 127.0.0.1:9 did not answer".into(),
        };
        let mut c = Vec::new();
        apply(&mut c, &per_group(vec![dead], &expect), Some(1));
        let got: Vec<(&str, &str, &str)> = c
            .iter()
            .map(|x| (x.type_.as_str(), x.status.as_str(), x.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("SPFVerified", "Unknown", "ResolverUnreachable"),
                ("DMARCVerified", "Unknown", "ResolverUnreachable"),
            ]
        );
        assert!(c[0].message.contains("127.0.0.1:9"), "{:?}", c[0].message);
        // Findings of a pass that reached the resolver are kept as they are.
        let ok = vec![f("SPF", Outcome::Pass, "Valid")];
        assert_eq!(per_group(ok.clone(), &expect), ok);
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let base = Duration::from_secs(600);
        for seed in ["a", "b", "example.com", "mail/x"] {
            let d = jittered(base, seed);
            assert!(
                d >= Duration::from_secs(540) && d < Duration::from_secs(660),
                "{d:?}"
            );
        }
        assert_ne!(jittered(base, "a"), jittered(base, "example.com"));
    }
}
