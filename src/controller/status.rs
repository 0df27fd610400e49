//! Status: one pure function of the stage outputs ([`compute`]), and the write, which patches
//! only when the computed status differs from the object's in anything but transition times.
//! A stage that did not run (one before it failed) leaves its fields and conditions as the
//! previous pass wrote them; `Ready` is False whenever a stage failed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::conditions::{self, Report, Status, Type, reason};
use super::context::Context;
use super::error::Error;
use super::hosting::Hosting;
use super::names::{FIELD_MANAGER, FORCE_ENFORCE};
use super::publish::Published;
use super::rollout::{Enforce, Hosted, Rollout};
use super::verify::{self, Checked};
use crate::api::{MailDomain, MailDomainStatus, RecordState, RecordStatus};
use crate::domain::record::RecordKind;
use crate::model::validate::FieldError;

/// A stage that can fail and stop the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Dereference,
    Validate,
    Keys,
    Hosting,
    Dns,
}

/// What the stages of one pass produced; `None` for a stage that did not run.
#[derive(Debug, Default)]
pub struct Stages {
    /// Validation's advice; `None` when validation did not run or failed.
    pub warnings: Option<Vec<FieldError>>,
    pub rollout: Option<Rollout>,
    /// The policy host objects; `Some(None)` when the stage ran and wants none.
    pub hosting: Option<Option<Hosting>>,
    pub published: Option<Published>,
    /// Records listed in status before the DNS write (`publish::listed_ahead`): kept when
    /// the DNS stage fails, so the next pass still knows it may have written them.
    pub listed_ahead: Vec<RecordStatus>,
    pub checked: Option<Checked>,
    /// The managed DKIM keys; `None` when the stage did not run.
    pub keys: Option<super::keys::Keys>,
    /// The TLS reports; `None` when the stage did not run.
    pub reports: Option<super::reports::Reports>,
    /// The spec has no `tlsRpt`: the reports summary and its condition go.
    pub tls_rpt_off: bool,
    /// The stage that failed; the stages after it did not run.
    pub failed: Option<(Stage, Error)>,
}

/// The status after a pass. Pure: `now` is the only clock.
pub fn compute(
    old: &MailDomainStatus,
    stages: &Stages,
    generation: Option<i64>,
    now: Timestamp,
) -> MailDomainStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    let mut reports: Vec<(Type, Option<Report>)> = Vec::new();
    let mut reports_clean = None;

    if let Some(warnings) = &stages.warnings {
        let report = (!warnings.is_empty()).then(|| {
            let list: Vec<String> = warnings.iter().map(ToString::to_string).collect();
            Report::new(
                Type::SpecWarnings,
                Status::True,
                reason::SPEC_WARNINGS,
                list.join("; "),
            )
        });
        reports.push((Type::SpecWarnings, report));
    }
    if let Some(keys) = &stages.keys {
        status.dkim = keys.status.clone();
        status.dkim_rotated = keys.rotated.clone();
    }
    if let Some(reports) = &stages.reports {
        status.tls_reports = Some(reports.summary.clone());
        reports_clean = Some(reports.clean.clone());
    }
    if let Some(rollout) = &stages.rollout {
        status.served_policy = rollout.served_policy.clone();
        status.withdraw_until = rollout.decision.withdraw_until.clone();
        status.promoted_at = rollout.decision.promoted_at.clone();
        reports.push((Type::PolicyHosted, rollout.hosted.as_ref().map(hosted)));
        reports.push((
            Type::Enforced,
            rollout
                .decision
                .enforce
                .as_ref()
                .map(|e| enforced(e, rollout.decision.promoted_at.is_some())),
        ));
    }
    if let Some(hosting) = &stages.hosting {
        let certificate = hosting.as_ref().and_then(|h| h.certificate.as_ref());
        reports.push((
            Type::CertificateReady,
            certificate.map(|c| {
                Report::new(
                    Type::CertificateReady,
                    c.status,
                    &c.reason,
                    c.message.clone(),
                )
            }),
        ));
    }
    if stages.published.is_none() {
        status.records.extend(stages.listed_ahead.iter().cloned());
    }
    if let Some(published) = &stages.published {
        status.records = published.records.clone();
        status.policy_id = published
            .records
            .iter()
            .find(|r| r.state == RecordState::Published && RecordKind::MtaSts.matches(&r.value))
            .and(stages.rollout.as_ref())
            .and_then(|r| r.publish_id.as_ref())
            .map(ToString::to_string);
        let waiting = stages
            .rollout
            .as_ref()
            .is_some_and(|r| matches!(r.hosted, Some(Hosted::NotServed { .. })));
        reports.push((Type::DnsPublished, Some(dns_published(published, waiting))));
    }
    match &stages.failed {
        Some((Stage::Hosting, e)) => reports.push((
            Type::PolicyHosted,
            Some(Report::new(
                Type::PolicyHosted,
                Status::False,
                e.category(),
                e.to_string(),
            )),
        )),
        // Nothing is written to DNS when a stage before it fails, so DNSPublished says why.
        Some((_, e)) => reports.push((
            Type::DnsPublished,
            Some(Report::new(
                Type::DnsPublished,
                Status::False,
                e.category(),
                e.to_string(),
            )),
        )),
        None => {}
    }
    if stages.reports.is_some() || stages.tls_rpt_off {
        if stages.tls_rpt_off {
            status.tls_reports = None;
        }
        reports.push((Type::TlsReportsClean, reports_clean));
    }
    if let Some(checked) = &stages.checked {
        status.last_checked = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            checked.at,
        ));
        reports.extend(verify::reports(&checked.findings));
    }
    for (type_, report) in reports {
        match report {
            Some(r) => conditions::set(&mut status.conditions, r, generation, now),
            None => conditions::remove(&mut status.conditions, type_),
        }
    }
    let ready = ready(&status, stages.failed.is_none());
    conditions::set(&mut status.conditions, ready, generation, now);
    for (type_, report) in progress(&status) {
        match report {
            Some(r) => conditions::set(&mut status.conditions, r, generation, now),
            None => conditions::remove(&mut status.conditions, type_),
        }
    }
    status
}

/// `Reconciling` and `Stalled`, the conditions kstatus (Flux, `kubectl wait`, Argo CD's generic
/// health) understands: neither when Ready; otherwise `Stalled` when something in the way needs
/// the user ([`reason::NEEDS_USER`]), else `Reconciling`. Each is present only while True.
fn progress(status: &MailDomainStatus) -> [(Type, Option<Report>); 2] {
    let c = &status.conditions;
    if conditions::status_of(c, Type::Ready) == Some(Status::True) {
        return [(Type::Reconciling, None), (Type::Stalled, None)];
    }
    let blockers: Vec<&Condition> = Type::ALL
        .iter()
        .filter(|t| {
            !matches!(
                t,
                Type::Ready
                    | Type::SpecWarnings
                    | Type::Enforced
                    | Type::TlsReportsClean
                    | Type::Reconciling
                    | Type::Stalled
            )
        })
        .filter_map(|t| conditions::find(c, *t).map(|x| (*t, x)))
        .filter(|(t, x)| match Status::parse(&x.status) {
            Status::True => false,
            // An Unknown check does not hold Ready back.
            Status::Unknown => !t.is_verification(),
            Status::False => true,
        })
        .map(|(_, x)| x)
        .collect();
    let describe = |xs: &[&Condition]| {
        xs.iter()
            .map(|x| format!("{} {}: {}", x.type_, x.reason, x.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (user, passing): (Vec<&Condition>, Vec<&Condition>) = blockers
        .into_iter()
        .partition(|x| reason::NEEDS_USER.contains(&x.reason.as_str()));
    if let Some(first) = user.first() {
        let stalled = Report::new(Type::Stalled, Status::True, &first.reason, describe(&user));
        return [(Type::Reconciling, None), (Type::Stalled, Some(stalled))];
    }
    let why = passing
        .first()
        .map_or(reason::NOT_READY, |x| x.reason.as_str());
    let message = if passing.is_empty() {
        "waiting for the next pass".to_owned()
    } else {
        describe(&passing)
    };
    let reconciling = Report::new(Type::Reconciling, Status::True, why, message);
    [
        (Type::Reconciling, Some(reconciling)),
        (Type::Stalled, None),
    ]
}

fn hosted(hosted: &Hosted) -> Report {
    match hosted {
        Hosted::Served => Report::new(
            Type::PolicyHosted,
            Status::True,
            reason::SERVED,
            "the policy servers return the current policy",
        ),
        Hosted::NotServed { reason, message } => {
            Report::new(Type::PolicyHosted, Status::False, reason, message.clone())
        }
    }
}

fn enforced(enforce: &Enforce, promoted: bool) -> Report {
    match enforce {
        Enforce::Enforced if promoted => Report::new(
            Type::Enforced,
            Status::True,
            reason::PROMOTED,
            "promoted from testing to enforce on clean TLS reports (mtaSts.promote)",
        ),
        Enforce::Enforced => Report::new(
            Type::Enforced,
            Status::True,
            reason::ENFORCED,
            "the policy is published in enforce mode",
        ),
        Enforce::AwaitingReports(why) => Report::new(
            Type::Enforced,
            Status::False,
            reason::AWAITING_CLEAN_REPORTS,
            format!("testing until the TLS reports allow enforce (mtaSts.promote): {why}"),
        ),
        Enforce::Held(why) => Report::new(
            Type::Enforced,
            Status::False,
            reason::HELD_IN_TESTING,
            format!(
                "enforce is held back, the policy stays in testing until: {why} (annotate {FORCE_ENFORCE}: \"true\" to enforce anyway)"
            ),
        ),
    }
}

fn dns_published(published: &Published, waiting_for_policy: bool) -> Report {
    let (status, why, message) = if !published.conflicts.is_empty() {
        (
            Status::False,
            reason::CONFLICT,
            published.conflicts.join("; "),
        )
    } else if published.manual {
        (
            Status::False,
            reason::MANUAL_PROVIDER,
            "publish the records in status.records by hand".to_owned(),
        )
    } else if !published.by_hand.is_empty() {
        (
            Status::False,
            reason::PUBLISH_BY_HAND,
            format!(
                "the provider never writes these; publish them by hand: {}",
                published.by_hand.join("; ")
            ),
        )
    } else if !published.awaiting.is_empty() {
        (
            Status::False,
            reason::EXPORT_PENDING,
            published.awaiting.join("; "),
        )
    } else if waiting_for_policy {
        (
            Status::False,
            reason::WAITING_FOR_POLICY,
            "the _mta-sts id changes once the new policy is served".to_owned(),
        )
    } else {
        (
            Status::True,
            reason::PUBLISHED,
            "all records are published".to_owned(),
        )
    };
    Report::new(Type::DnsPublished, status, why, message)
}

/// Ready: records published, policy served, certificate ready, no live check failing, and no
/// stage failed. Otherwise the message lists every condition that is not True.
fn ready(status: &MailDomainStatus, no_failure: bool) -> Report {
    let c = &status.conditions;
    let true_or_absent = |t| matches!(conditions::status_of(c, t), None | Some(Status::True));
    let ok = no_failure
        && conditions::status_of(c, Type::DnsPublished) == Some(Status::True)
        && true_or_absent(Type::PolicyHosted)
        && true_or_absent(Type::CertificateReady)
        && !Type::VERIFICATIONS
            .iter()
            .any(|t| conditions::status_of(c, *t) == Some(Status::False));
    if ok {
        return Report::new(
            Type::Ready,
            Status::True,
            reason::PUBLISHED,
            "records published and policy served",
        );
    }
    let why = c
        .iter()
        .filter(|x| {
            ![
                Type::Ready,
                Type::SpecWarnings,
                Type::TlsReportsClean,
                Type::Reconciling,
                Type::Stalled,
            ]
            .iter()
            .any(|t| x.type_ == t.as_str())
        })
        .filter(|x| x.status != Status::True.as_str())
        .map(|x| format!("{}: {}", x.type_, x.reason))
        .collect::<Vec<_>>()
        .join(", ");
    Report::new(Type::Ready, Status::False, reason::NOT_READY, why)
}

/// Whether two statuses say the same: every field, conditions compared without their
/// transition times and order.
pub fn same(a: &MailDomainStatus, b: &MailDomainStatus) -> bool {
    let without_conditions = |s: &MailDomainStatus| MailDomainStatus {
        conditions: Vec::new(),
        ..s.clone()
    };
    without_conditions(a) == without_conditions(b) && conditions::same(&a.conditions, &b.conditions)
}

/// Patches status when it differs from the object's; returns the new resourceVersion.
pub async fn write(
    md: &MailDomain,
    ctx: &Context,
    status: &MailDomainStatus,
) -> Result<Option<String>, Error> {
    if same(&md.status.clone().unwrap_or_default(), status) {
        return Ok(None);
    }
    let api: Api<MailDomain> =
        Api::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": MailDomain::api_version(&()),
        "kind": MailDomain::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &md.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::Status)?;
    ctx.metrics.status_writes.inc();
    Ok(written.resource_version())
}

#[cfg(test)]
mod tests;
