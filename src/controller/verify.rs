//! Check: the live checks of `mailsec check`, run by the controller on an interval (with jitter,
//! bounded concurrency) and right after a change, turned into `*Verified` conditions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::conditions;
use crate::checks::run::{Finding, Options, Outcome};

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

/// Each condition and the checks it summarises.
pub const GROUPS: [(&str, &[&str]); 7] = [
    ("MTASTSVerified", &["MTA-STS", "MTA-STS policy"]),
    ("TLSRPTVerified", &["TLS-RPT"]),
    ("MXCovered", &["MX coverage"]),
    ("SMTPTLSVerified", &["SMTP TLS"]),
    ("SPFVerified", &["SPF", "SPF lookups"]),
    ("DMARCVerified", &["DMARC"]),
    ("DKIMVerified", &["DKIM"]),
];

/// Sets one condition per group that has findings (the kinds the spec enables) and removes the
/// others. A failure makes it False with the first failure's reason; a warning alone (port 25
/// blocked where the controller runs) makes it Unknown.
pub fn apply(conditions: &mut Vec<Condition>, findings: &[Finding], generation: Option<i64>) {
    for (type_, checks) in GROUPS {
        let mine: Vec<&Finding> = findings
            .iter()
            .filter(|f| checks.contains(&f.check))
            .collect();
        if mine.is_empty() {
            conditions.retain(|c| c.type_ != type_);
            continue;
        }
        let describe = |fs: &[&&Finding]| {
            fs.iter()
                .map(|f| format!("{}: {}", f.subject, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let failed: Vec<&&Finding> = mine.iter().filter(|f| f.outcome == Outcome::Fail).collect();
        let warned: Vec<&&Finding> = mine.iter().filter(|f| f.outcome == Outcome::Warn).collect();
        if let Some(first) = failed.first() {
            conditions::set(
                conditions,
                type_,
                false,
                first.reason,
                describe(&failed),
                generation,
            );
        } else if let Some(first) = warned
            .first()
            .filter(|_| mine.iter().all(|f| f.outcome != Outcome::Pass))
        {
            conditions::set_unknown(
                conditions,
                type_,
                first.reason,
                describe(&warned),
                generation,
            );
        } else {
            let all: Vec<&&Finding> = mine.iter().collect();
            conditions::set(
                conditions,
                type_,
                true,
                "Verified",
                describe(&all),
                generation,
            );
        }
    }
}

/// Whether a condition type is one of the verification conditions.
pub fn is_verification(type_: &str) -> bool {
    GROUPS.iter().any(|(t, _)| *t == type_)
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
