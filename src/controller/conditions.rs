//! Status conditions in one place: every type the controller sets, every reason of its own,
//! the status values, and the update rules (`observedGeneration` is the generation the
//! condition was computed for; `lastTransitionTime` moves only when the status flips, so an
//! unchanged reconcile writes nothing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition types, in the order `kubectl describe` shows them once set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Type {
    /// The summary: True when every other condition is (Unknown live checks do not count).
    Ready,
    /// The DNS stage (and the stages before it: dereference, validation).
    DnsPublished,
    /// The policy servers return the policy to publish.
    PolicyHosted,
    /// cert-manager's `Ready` of the policy host's Certificate.
    CertificateReady,
    /// With `enforce` asked for: published, or held in testing (safe enforce).
    Enforced,
    /// The spec is valid but has advice (each warning names its field).
    SpecWarnings,
    MtaStsVerified,
    TlsRptVerified,
    MxCovered,
    SmtpTlsVerified,
    SpfVerified,
    DmarcVerified,
    DkimVerified,
    /// What the TLS reports of the last 7 days say; it does not hold Ready back.
    TlsReportsClean,
    /// While not Ready for a reason that passes by itself (a rollout, a retried error, a
    /// failing check); present only when True. kstatus (Flux) reads it as InProgress.
    Reconciling,
    /// While not Ready for a reason only the user can clear ([`reason::NEEDS_USER`]); present
    /// only when True. kstatus reads it as Failed, Argo CD's health script as Degraded.
    Stalled,
}

impl Type {
    pub const ALL: [Type; 16] = [
        Type::Ready,
        Type::DnsPublished,
        Type::PolicyHosted,
        Type::CertificateReady,
        Type::Enforced,
        Type::SpecWarnings,
        Type::MtaStsVerified,
        Type::TlsRptVerified,
        Type::MxCovered,
        Type::SmtpTlsVerified,
        Type::SpfVerified,
        Type::DmarcVerified,
        Type::DkimVerified,
        Type::TlsReportsClean,
        Type::Reconciling,
        Type::Stalled,
    ];

    /// The live-check conditions, each with the checks it summarises.
    pub const VERIFICATIONS: [Type; 7] = [
        Type::MtaStsVerified,
        Type::TlsRptVerified,
        Type::MxCovered,
        Type::SmtpTlsVerified,
        Type::SpfVerified,
        Type::DmarcVerified,
        Type::DkimVerified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Type::Ready => "Ready",
            Type::DnsPublished => "DNSPublished",
            Type::PolicyHosted => "PolicyHosted",
            Type::CertificateReady => "CertificateReady",
            Type::Enforced => "Enforced",
            Type::SpecWarnings => "SpecWarnings",
            Type::MtaStsVerified => "MTASTSVerified",
            Type::TlsRptVerified => "TLSRPTVerified",
            Type::MxCovered => "MXCovered",
            Type::SmtpTlsVerified => "SMTPTLSVerified",
            Type::SpfVerified => "SPFVerified",
            Type::DmarcVerified => "DMARCVerified",
            Type::DkimVerified => "DKIMVerified",
            Type::TlsReportsClean => "TLSReportsClean",
            Type::Reconciling => "Reconciling",
            Type::Stalled => "Stalled",
        }
    }

    pub fn is_verification(self) -> bool {
        Type::VERIFICATIONS.contains(&self)
    }

    #[cfg(test)]
    fn parse(s: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    pub fn parse(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }

    pub fn from_bool(ok: bool) -> Status {
        if ok { Status::True } else { Status::False }
    }
}

/// The controller's own reasons. Error reasons are the stable `category()` of the error (see
/// [`super::error::Error::CATEGORIES`]); the `*Verified` reasons are the live checks' own;
/// `CertificateReady` copies cert-manager's reason when it has one.
pub mod reason {
    pub const PUBLISHED: &str = "Published";
    pub const WAITING_FOR_POLICY: &str = "WaitingForPolicy";
    pub const MANUAL_PROVIDER: &str = "ManualProvider";
    pub const PUBLISH_BY_HAND: &str = "PublishByHand";
    pub const EXPORT_PENDING: &str = "ExportPending";
    pub const CONFLICT: &str = "Conflict";
    pub const SERVED: &str = "Served";
    pub const POLICY_PENDING: &str = "PolicyPending";
    pub const POLICY_NOT_SERVED: &str = "PolicyNotServed";
    pub const POLICY_SERVER_UNREACHABLE: &str = "PolicyServerUnreachable";
    pub const CERTIFICATE_PENDING: &str = "Pending";
    pub const CERTIFICATE_CRD_MISSING: &str = "CertificateCRDMissing";
    pub const CERTIFICATE_CONFLICT: &str = "CertificateConflict";
    pub const ENFORCED: &str = "Enforced";
    pub const HELD_IN_TESTING: &str = "HeldInTesting";
    pub const SPEC_WARNINGS: &str = "SpecWarnings";
    pub const VERIFIED: &str = "Verified";
    pub const NOT_READY: &str = "NotReady";
    pub const CLEAN: &str = "Clean";
    pub const FAILURES: &str = "FailuresReported";
    pub const NO_REPORTS: &str = "NoReports";
    pub const AWAITING_CLEAN_REPORTS: &str = "AwaitingCleanReports";
    pub const PROMOTED: &str = "Promoted";

    /// The reasons (of conditions and of errors) that only the user can clear: a spec to fix,
    /// a reference to make, credentials or zones to correct, someone else's record or object
    /// in the way, records to publish by hand, cert-manager to install. The DNS ones are
    /// retried, but retrying does not fix them.
    pub const NEEDS_USER: [&str; 16] = [
        "InvalidObject",
        "InvalidSpec",
        "DomainConflict",
        "ProviderNotFound",
        "ProviderNotAllowed",
        "SecretNotFound",
        "DNSAuthFailed",
        "DNSRefused",
        "DNSZoneNotFound",
        "DNSProviderInvalid",
        CONFLICT,
        MANUAL_PROVIDER,
        PUBLISH_BY_HAND,
        CERTIFICATE_CRD_MISSING,
        CERTIFICATE_CONFLICT,
        "SecretConflict",
    ];

    /// Every reason above, for the README test.
    pub const ALL: [&str; 23] = [
        PUBLISHED,
        WAITING_FOR_POLICY,
        MANUAL_PROVIDER,
        PUBLISH_BY_HAND,
        EXPORT_PENDING,
        CONFLICT,
        SERVED,
        POLICY_PENDING,
        POLICY_NOT_SERVED,
        POLICY_SERVER_UNREACHABLE,
        CERTIFICATE_PENDING,
        CERTIFICATE_CRD_MISSING,
        CERTIFICATE_CONFLICT,
        ENFORCED,
        HELD_IN_TESTING,
        SPEC_WARNINGS,
        VERIFIED,
        NOT_READY,
        CLEAN,
        FAILURES,
        NO_REPORTS,
        AWAITING_CLEAN_REPORTS,
        PROMOTED,
    ];
}

/// One condition as a stage reports it, before it is merged into the object's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub type_: Type,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl Report {
    pub fn new(type_: Type, status: Status, reason: &str, message: impl Into<String>) -> Self {
        Report {
            type_,
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// The status of condition `type_` in `conditions`, if it is there.
pub fn status_of(conditions: &[Condition], type_: Type) -> Option<Status> {
    find(conditions, type_).map(|c| Status::parse(&c.status))
}

pub fn find(conditions: &[Condition], type_: Type) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Sets `report` in `conditions`, keeping its transition time when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    report: Report,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = report.status.as_str();
    match conditions
        .iter_mut()
        .find(|c| c.type_ == report.type_.as_str())
    {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status.to_owned();
            c.reason = report.reason;
            c.message = report.message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: report.type_.as_str().to_owned(),
            status: status.to_owned(),
            reason: report.reason,
            message: report.message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

/// Removes condition `type_`.
pub fn remove(conditions: &mut Vec<Condition>, type_: Type) {
    conditions.retain(|c| c.type_ != type_.as_str());
}

/// Whether two condition lists say the same, ignoring transition times and order.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        let report =
            |status, reason: &str, message: &str| Report::new(Type::Ready, status, reason, message);
        set(
            &mut c,
            report(Status::False, "Pending", "waiting"),
            Some(1),
            at(0),
        );
        let first = c[0].last_transition_time.clone();
        set(
            &mut c,
            report(Status::False, "StillPending", "still waiting"),
            Some(2),
            at(5),
        );
        assert_eq!(c[0].last_transition_time, first);
        assert_eq!(c[0].reason, "StillPending");
        assert_eq!(c[0].observed_generation, Some(2));
        set(
            &mut c,
            report(Status::True, "Published", "done"),
            Some(2),
            at(9),
        );
        assert_eq!(c[0].last_transition_time, Time(at(9)));
        let mut d = c.clone();
        d[0].last_transition_time = first;
        assert!(same(&c, &d));
        set(
            &mut d,
            report(Status::True, "Published", "other text"),
            Some(2),
            at(10),
        );
        assert!(!same(&c, &d));
    }

    #[test]
    fn types_and_statuses_round_trip_their_names() {
        for t in Type::ALL {
            assert_eq!(Type::parse(t.as_str()), Some(t));
        }
        for s in [Status::True, Status::False, Status::Unknown] {
            assert_eq!(Status::parse(s.as_str()), s);
        }
        assert_eq!(
            Type::VERIFICATIONS
                .iter()
                .filter(|t| t.is_verification())
                .count(),
            7
        );
        assert!(!Type::Ready.is_verification());
    }
}
