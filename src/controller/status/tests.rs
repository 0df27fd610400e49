//! [`compute`] on its own: every condition and reason the stages can produce.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::RecordStatus;
use crate::checks::run::{Finding, Outcome};
use crate::controller::conditions::Status as S;
use crate::controller::dereference;
use crate::controller::hosting::CertificateState;
use crate::controller::rollout::Decision;
use crate::dns::DnsError;
use crate::domain::mtasts::{Mode, MxPattern, Policy, PolicyId};
use crate::model::desired::PolicyFile;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn policy(mode: Mode) -> PolicyFile {
    PolicyFile::new(Policy {
        mode,
        mx: vec![MxPattern::parse("mx.example.com").unwrap()],
        max_age: 604_800,
    })
}

fn record(name: &str, value: &str, state: RecordState) -> RecordStatus {
    RecordStatus {
        name: name.into(),
        record_type: "TXT".into(),
        value: value.into(),
        state,
        message: None,
    }
}

/// A pass where every stage ran and everything worked.
fn settled() -> Stages {
    let p = policy(Mode::Testing);
    Stages {
        warnings: Some(Vec::new()),
        rollout: Some(Rollout {
            decision: Decision {
                serve: Some(p.clone()),
                withdraw_until: None,
                enforce: None,
                promoted_at: None,
            },
            served_policy: Some(p.text.clone()),
            hosted: Some(Hosted::Served),
            publish_id: Some(p.id.clone()),
        }),
        hosting: Some(None),
        published: Some(Published {
            records: vec![record(
                "_mta-sts.example.com",
                &format!("v=STSv1; id={}", p.id),
                RecordState::Published,
            )],
            conflicts: Vec::new(),
            manual: false,
            by_hand: Vec::new(),
            awaiting: Vec::new(),
            changes: 0,
        }),
        listed_ahead: Vec::new(),
        checked: None,
        keys: None,
        reports: None,
        tls_rpt_off: false,
        failed: None,
    }
}

/// `(status, reason)` of a condition.
fn get(status: &MailDomainStatus, t: Type) -> Option<(S, String)> {
    conditions::find(&status.conditions, t).map(|c| (S::parse(&c.status), c.reason.clone()))
}

fn is(status: &MailDomainStatus, t: Type, s: S, reason: &str) {
    assert_eq!(
        get(status, t),
        Some((s, reason.to_owned())),
        "{}: {:?}",
        t.as_str(),
        status.conditions
    );
}

#[test]
fn a_settled_pass_is_ready_and_records_what_it_published() {
    let stages = settled();
    let status = compute(&MailDomainStatus::default(), &stages, Some(3), at(0));
    is(&status, Type::DnsPublished, S::True, "Published");
    is(&status, Type::PolicyHosted, S::True, "Served");
    is(&status, Type::Ready, S::True, "Published");
    assert_eq!(get(&status, Type::Enforced), None);
    assert_eq!(get(&status, Type::CertificateReady), None);
    assert_eq!(get(&status, Type::SpecWarnings), None);
    let rollout = stages.rollout.as_ref().unwrap();
    assert_eq!(
        status.policy_id,
        rollout.publish_id.as_ref().map(ToString::to_string)
    );
    assert_eq!(status.served_policy, rollout.served_policy);
    assert_eq!(status.records, stages.published.as_ref().unwrap().records);
    assert_eq!(status.observed_generation, Some(3));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
}

#[test]
fn transition_times_stay_while_nothing_flips_and_the_status_is_the_same() {
    let first = compute(&MailDomainStatus::default(), &settled(), Some(1), at(0));
    let again = compute(&first, &settled(), Some(1), at(60));
    assert_eq!(again, first, "same stages, same status, same times");
    assert!(same(&first, &again));
    // A new generation is a change (observedGeneration), but no transition.
    let next = compute(&first, &settled(), Some(2), at(120));
    assert!(!same(&first, &next));
    assert!(
        next.conditions
            .iter()
            .all(|c| c.last_transition_time == Time(at(0)))
    );
    // A flip moves only the flipped conditions.
    let mut failing = settled();
    failing.published.as_mut().unwrap().conflicts = vec!["x is taken".into()];
    let flipped = compute(&next, &failing, Some(2), at(180));
    let time = |t| conditions::find(&flipped.conditions, t).map(|c| c.last_transition_time.clone());
    assert_eq!(time(Type::DnsPublished), Some(Time(at(180))));
    assert_eq!(time(Type::Ready), Some(Time(at(180))));
    assert_eq!(time(Type::PolicyHosted), Some(Time(at(0))));
}

#[test]
fn dns_published_says_why_records_are_not_all_published() {
    let mut conflict = settled();
    conflict.published.as_mut().unwrap().conflicts = vec!["a".into(), "b".into()];
    let status = compute(&MailDomainStatus::default(), &conflict, None, at(0));
    is(&status, Type::DnsPublished, S::False, "Conflict");
    assert_eq!(
        conditions::find(&status.conditions, Type::DnsPublished)
            .unwrap()
            .message,
        "a; b"
    );
    is(&status, Type::Ready, S::False, "NotReady");

    let mut manual = settled();
    let published = manual.published.as_mut().unwrap();
    published.manual = true;
    published.records[0].state = RecordState::Pending;
    let status = compute(&MailDomainStatus::default(), &manual, None, at(0));
    is(&status, Type::DnsPublished, S::False, "ManualProvider");
    assert_eq!(
        status.policy_id, None,
        "nothing is published by the manual provider"
    );

    let mut waiting = settled();
    let old_id = PolicyId::parse("previous").unwrap();
    let rollout = waiting.rollout.as_mut().unwrap();
    rollout.hosted = Some(Hosted::NotServed {
        reason: reason::POLICY_PENDING,
        message: "handed over".into(),
    });
    rollout.publish_id = Some(old_id.clone());
    let status = compute(&MailDomainStatus::default(), &waiting, None, at(0));
    is(&status, Type::DnsPublished, S::False, "WaitingForPolicy");
    is(&status, Type::PolicyHosted, S::False, "PolicyPending");
    assert_eq!(
        status.policy_id.as_deref(),
        Some("previous"),
        "the id still in DNS"
    );
}

#[test]
fn a_failed_stage_is_reported_under_its_own_condition_and_keeps_the_rest() {
    let before = compute(&MailDomainStatus::default(), &settled(), Some(1), at(0));

    // Dereference and validation: nothing written, DNSPublished says why.
    let cases: [(Stage, Error, &str); 3] = [
        (
            Stage::Dereference,
            Error::Dereference(dereference::Error::ProviderNotFound(
                "no such provider".into(),
            )),
            "ProviderNotFound",
        ),
        (
            Stage::Validate,
            Error::InvalidSpec(crate::model::validate::Invalid(vec![FieldError {
                path: "spec.mx[0]".into(),
                message: "bad".into(),
            }])),
            "InvalidSpec",
        ),
        (
            Stage::Dns,
            Error::Dns {
                provider: "rfc2136",
                source: DnsError::Auth("TSIG".into()),
            },
            "DNSAuthFailed",
        ),
    ];
    for (stage, error, category) in cases {
        let stages = Stages {
            failed: Some((stage, error)),
            ..Stages::default()
        };
        let status = compute(&before, &stages, Some(2), at(10));
        is(&status, Type::DnsPublished, S::False, category);
        is(&status, Type::Ready, S::False, "NotReady");
        assert!(
            conditions::find(&status.conditions, Type::Ready)
                .unwrap()
                .message
                .contains(&format!("DNSPublished: {category}"))
        );
        // The stages that did not run leave what the last pass found.
        is(&status, Type::PolicyHosted, S::True, "Served");
        assert_eq!(status.records, before.records);
        assert_eq!(status.policy_id, before.policy_id);
        assert_eq!(status.served_policy, before.served_policy);
    }

    // A failed Ingress write sits under PolicyHosted, not DNSPublished.
    let mut hosting = settled();
    hosting.hosting = None;
    hosting.published = None;
    hosting.failed = Some((
        Stage::Hosting,
        Error::Hosting(kube::Error::LinesCodecMaxLineLengthExceeded),
    ));
    let status = compute(&before, &hosting, Some(2), at(10));
    is(&status, Type::PolicyHosted, S::False, "KubernetesError");
    is(&status, Type::DnsPublished, S::True, "Published");
    is(&status, Type::Ready, S::False, "NotReady");
}

#[test]
fn certificate_enforce_and_warnings_have_their_conditions() {
    let mut stages = settled();
    stages.hosting = Some(Some(Hosting {
        certificate: Some(CertificateState {
            status: S::Unknown,
            reason: reason::CERTIFICATE_PENDING.into(),
            message: "waiting for cert-manager".into(),
        }),
        ..Hosting::default()
    }));
    stages.rollout.as_mut().unwrap().decision.enforce =
        Some(Enforce::Held("MXCovered is False".into()));
    stages.warnings = Some(vec![FieldError {
        path: "spec.mtaSts.maxAge".into(),
        message: "short".into(),
    }]);
    let status = compute(&MailDomainStatus::default(), &stages, None, at(0));
    is(&status, Type::CertificateReady, S::Unknown, "Pending");
    is(&status, Type::Enforced, S::False, "HeldInTesting");
    is(&status, Type::SpecWarnings, S::True, "SpecWarnings");
    assert_eq!(
        conditions::find(&status.conditions, Type::SpecWarnings)
            .unwrap()
            .message,
        "spec.mtaSts.maxAge: short"
    );
    assert!(
        conditions::find(&status.conditions, Type::Enforced)
            .unwrap()
            .message
            .contains("mailsec.io/force-enforce")
    );
    is(&status, Type::Ready, S::False, "NotReady");
    let why = &conditions::find(&status.conditions, Type::Ready)
        .unwrap()
        .message;
    assert!(why.contains("CertificateReady: Pending") && why.contains("Enforced: HeldInTesting"));
    assert!(
        !why.contains("SpecWarnings"),
        "advice does not block: {why}"
    );

    // Certificate ready, enforce published, warnings gone: all removed or True.
    let mut fixed = settled();
    fixed.hosting = Some(Some(Hosting {
        certificate: Some(CertificateState {
            status: S::True,
            reason: "Ready".into(),
            message: "issued".into(),
        }),
        ..Hosting::default()
    }));
    fixed.rollout.as_mut().unwrap().decision.enforce = Some(Enforce::Enforced);
    let status = compute(&status, &fixed, None, at(5));
    is(&status, Type::CertificateReady, S::True, "Ready");
    is(&status, Type::Enforced, S::True, "Enforced");
    assert_eq!(get(&status, Type::SpecWarnings), None);
    is(&status, Type::Ready, S::True, "Published");
    // MTA-STS off: its conditions go.
    let mut off = settled();
    off.rollout = Some(Rollout {
        decision: Decision {
            serve: None,
            withdraw_until: None,
            enforce: None,
            promoted_at: None,
        },
        served_policy: None,
        hosted: None,
        publish_id: None,
    });
    off.published.as_mut().unwrap().records.clear();
    let status = compute(&status, &off, None, at(9));
    assert_eq!(get(&status, Type::PolicyHosted), None);
    assert_eq!(get(&status, Type::Enforced), None);
    assert_eq!((status.policy_id, status.served_policy), (None, None));
}

#[test]
fn live_checks_become_verified_conditions_and_failures_block_ready() {
    let finding = |check: &'static str, outcome, reason: &'static str| Finding {
        check,
        subject: "example.com".into(),
        outcome,
        reason,
        message: reason.into(),
    };
    let mut stages = settled();
    stages.checked = Some(Checked {
        findings: vec![
            finding("MTA-STS", Outcome::Pass, "Valid"),
            finding("MX coverage", Outcome::Fail, "MXNotCovered"),
            finding("SMTP TLS", Outcome::Warn, "Port25Unreachable"),
        ],
        at: at(30),
    });
    let status = compute(&MailDomainStatus::default(), &stages, None, at(30));
    is(&status, Type::MtaStsVerified, S::True, "Verified");
    is(&status, Type::MxCovered, S::False, "MXNotCovered");
    is(
        &status,
        Type::SmtpTlsVerified,
        S::Unknown,
        "Port25Unreachable",
    );
    assert_eq!(status.last_checked, Some(Time(at(30))));
    is(&status, Type::Ready, S::False, "NotReady");

    // A warning alone does not block Ready; a pass without checks keeps their conditions.
    stages.checked.as_mut().unwrap().findings.remove(1);
    let status = compute(&status, &stages, None, at(40));
    assert_eq!(
        get(&status, Type::MxCovered),
        None,
        "no findings, no condition"
    );
    is(&status, Type::Ready, S::True, "Published");
    let unchecked = compute(&status, &settled(), None, at(50));
    is(
        &unchecked,
        Type::SmtpTlsVerified,
        S::Unknown,
        "Port25Unreachable",
    );
    assert_eq!(unchecked.last_checked, Some(Time(at(30))));
}

#[test]
fn reconciling_and_stalled_say_whether_not_ready_passes_by_itself() {
    let ready = compute(&MailDomainStatus::default(), &settled(), Some(1), at(0));
    assert_eq!(get(&ready, Type::Reconciling), None);
    assert_eq!(get(&ready, Type::Stalled), None);

    // Only the user can fix these: Stalled, with the first such reason.
    for (error, category) in [
        (
            Error::InvalidSpec(crate::model::validate::Invalid(vec![FieldError {
                path: "spec.mx[0]".into(),
                message: "bad".into(),
            }])),
            "InvalidSpec",
        ),
        (
            Error::Dns {
                provider: "rfc2136",
                source: DnsError::Auth("TSIG".into()),
            },
            "DNSAuthFailed",
        ),
    ] {
        let stages = Stages {
            failed: Some((Stage::Dns, error)),
            ..Stages::default()
        };
        let status = compute(&ready, &stages, Some(2), at(10));
        is(&status, Type::Stalled, S::True, category);
        assert_eq!(get(&status, Type::Reconciling), None);
        let ready_message = &conditions::find(&status.conditions, Type::Ready)
            .unwrap()
            .message;
        assert!(!ready_message.contains("Stalled"), "{ready_message}");
    }

    // A retried error passes by itself: Reconciling; and once Ready again, neither.
    let stages = Stages {
        failed: Some((
            Stage::Dns,
            Error::Dns {
                provider: "rfc2136",
                source: DnsError::Unreachable("timeout".into()),
            },
        )),
        ..Stages::default()
    };
    let status = compute(&ready, &stages, Some(2), at(10));
    is(&status, Type::Reconciling, S::True, "DNSUnreachable");
    assert_eq!(get(&status, Type::Stalled), None);
    let again = compute(&status, &settled(), Some(2), at(20));
    is(&again, Type::Ready, S::True, "Published");
    assert_eq!(get(&again, Type::Reconciling), None);
}

#[test]
fn every_user_reason_is_a_reason_the_controller_sets() {
    for r in reason::NEEDS_USER {
        assert!(
            reason::ALL.contains(&r) || Error::CATEGORIES.contains(&r),
            "{r} is neither a condition reason nor an error category"
        );
    }
}

/// Records listed before a DNS write that then failed stay listed, so the next pass retires
/// them if the spec drops them (the write may have landed); a pass that publishes replaces
/// the list with what it found.
#[test]
fn records_listed_ahead_of_a_failed_dns_write_stay_listed() {
    let before = compute(&MailDomainStatus::default(), &settled(), Some(1), at(0));
    let ahead = record(
        "_dmarc.example.com",
        "v=DMARC1; p=none",
        RecordState::Pending,
    );
    let failed = Stages {
        listed_ahead: vec![ahead.clone()],
        failed: Some((
            Stage::Dns,
            Error::Dns {
                provider: "rfc2136",
                source: DnsError::Unreachable("no answer".into()),
            },
        )),
        ..Stages::default()
    };
    let status = compute(&before, &failed, Some(2), at(10));
    assert_eq!(status.records.len(), before.records.len() + 1);
    assert!(status.records.contains(&ahead));
    let published = Stages {
        listed_ahead: vec![ahead.clone()],
        ..settled()
    };
    let status = compute(&before, &published, Some(2), at(10));
    assert!(!status.records.contains(&ahead));
    assert_eq!(status.records, before.records);
}
