//! One MailDomain, as the stages of DESIGN §3 in the order they run:
//! dereference → validate → build → TLS reports → MTA-STS rollout → policy hosting → DNS →
//! live checks → status. Every stage but status hands a typed value on; a failed stage stops the ones after
//! it, and status is still written for the ones that ran. The only place that writes DNS or
//! the MailDomain's status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::names::{FINALIZER, FORCE_ENFORCE, SKIP_WITHDRAWAL};
use super::reports::{self, Evidence, Reports};
use super::rollout::Promotion;
use super::status::{self, Stage, Stages};
use super::{dereference, hosting, keys, publish, rollout, verify};
use crate::api::{Guarded, MailDomain, MailDomainStatus, MtaStsMode};
use crate::domain::name::DomainName;
use crate::model::desired::{self, Desired};
use crate::model::validate;

/// How often a settled MailDomain is looked at again.
const RESYNC: Duration = Duration::from_secs(600);
/// How soon to look again while a Certificate is being issued.
const CERTIFICATE_POLL: Duration = Duration::from_secs(30);
/// How soon to look again while DNS does not answer an export yet (external-dns syncs every
/// minute by default).
const EXPORT_POLL: Duration = Duration::from_secs(15);
/// How soon to look again for records to publish by hand (one read of their names).
const BY_HAND_POLL: Duration = Duration::from_secs(30);

pub async fn reconcile(guard: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(md) => reconcile_with_finalizer(md, &ctx).await,
        Err(invalid) => Err(Error::InvalidObject(format!(
            "cannot read this MailDomain: {invalid}"
        ))),
    };
    if let Err(e) = &result {
        event(
            &ctx,
            &guard.object_ref(&()),
            EventType::Warning,
            e.category(),
            &e.to_string(),
        )
        .await;
    }
    ctx.metrics.observe(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&ObjectRef::from_obj(&*guard));
    }
    result
}

/// The finalizer keeps a deleted MailDomain until its records are gone, which during an
/// MTA-STS withdrawal takes the old max_age; hence our own handling rather than kube's helper,
/// which removes the finalizer after the first successful cleanup.
async fn reconcile_with_finalizer(md: &MailDomain, ctx: &Context) -> Result<Action, Error> {
    let ours = md.finalizers().iter().any(|f| f == FINALIZER);
    if md.metadata.deletion_timestamp.is_some() {
        if !ours {
            return Ok(Action::await_change());
        }
        let outcome = reconcile_domain(md, ctx, true).await?;
        if outcome.done {
            let rest = md
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            set_finalizers(md, ctx, rest, outcome.resource_version).await?;
            return Ok(Action::await_change());
        }
        return Ok(outcome.action);
    }
    if !ours {
        let mut finalizers = md.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        // The update triggers the next reconcile, which then sees the finalizer.
        set_finalizers(md, ctx, finalizers, md.resource_version()).await?;
        return Ok(Action::await_change());
    }
    reconcile_domain(md, ctx, false).await.map(|o| o.action)
}

/// Replaces the finalizer list, guarded by a resourceVersion (ours after a status write), so a
/// concurrent change to the list is never lost.
async fn set_finalizers(
    md: &MailDomain,
    ctx: &Context,
    finalizers: Vec<String>,
    resource_version: Option<String>,
) -> Result<(), Error> {
    let api: Api<MailDomain> =
        Api::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}});
    api.patch(
        &md.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Finalizer)?;
    Ok(())
}

/// Per-object exponential backoff: 5 s doubling to 5 min; errors only the user can fix wait for
/// a watch event (or the 5 min ceiling). A provider's Retry-After is honoured.
pub fn error_policy(md: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(maildomain = %md.name_any(), namespace = ?md.namespace(), category = error.category(), "{error}");
    let attempts = match ctx.failures.lock() {
        Ok(mut failures) if !error.needs_user() => {
            let n = failures.entry(ObjectRef::from_obj(&*md)).or_insert(0);
            *n += 1;
            *n
        }
        _ => 0,
    };
    Action::requeue(backoff(error, attempts))
}

/// The wait after the `attempts`-th consecutive failure (0: the user must act).
fn backoff(error: &Error, attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::from_secs(300);
    }
    let delay = Duration::from_secs(
        5u64.saturating_mul(1 << attempts.min(7).saturating_sub(1))
            .min(300),
    );
    let asked = match error {
        Error::Dns { source, .. } => source.retry_after(),
        _ => None,
    };
    asked.map_or(delay, |a| delay.max(a.min(Duration::from_secs(3600))))
}

/// What one pass leaves for the finalizer handling.
struct Outcome {
    action: Action,
    /// When deleting: whether everything is removed.
    done: bool,
    /// The object's resourceVersion after our status write.
    resource_version: Option<String>,
}

/// One pass: the stages, then status.
async fn reconcile_domain(
    md: &MailDomain,
    ctx: &Context,
    deleting: bool,
) -> Result<Outcome, Error> {
    let old = md.status.clone().unwrap_or_default();
    let generation = md.metadata.generation;
    let now = Timestamp::now();
    let (stages, pass) = run_stages(md, ctx, &old, deleting, now).await;
    let status = status::compute(&old, &stages, generation, now);
    let written = status::write(md, ctx, &status).await?;
    report_events(md, ctx, &old, &status, &stages).await;
    if let Some((_, e)) = stages.failed {
        return Err(e);
    }
    let done = deleting
        && stages
            .rollout
            .as_ref()
            .is_some_and(|r| r.decision.serve.is_none())
        && status.records.is_empty();
    Ok(Outcome {
        action: Action::requeue(pass.requeue),
        done,
        resource_version: written.or_else(|| md.resource_version()),
    })
}

/// What the driver itself keeps from a pass.
struct Pass {
    requeue: Duration,
}

async fn run_stages(
    md: &MailDomain,
    ctx: &Context,
    old: &MailDomainStatus,
    deleting: bool,
    now: Timestamp,
) -> (Stages, Pass) {
    let mut stages = Stages::default();
    let mut pass = Pass { requeue: RESYNC };
    macro_rules! stop {
        ($stage:expr, $error:expr) => {{
            stages.failed = Some(($stage, $error.into()));
            return (stages, pass);
        }};
    }

    // Dereference (Secrets) → validate → build.
    let secrets = match dereference::secrets(md, &ctx.client).await {
        Ok(s) => s,
        Err(e) => stop!(Stage::Dereference, e),
    };
    let desired = match validate_and_build(md, &secrets, ctx, deleting, old) {
        Ok(Built::Desired(desired, warnings)) => {
            stages.warnings = warnings;
            desired
        }
        Ok(Built::NeverPublished) => {
            let decision = rollout::decide(old, &rollout_inputs(md, ctx, None, None, now));
            stages.rollout = Some(rollout::outcome(old, decision, None));
            return (stages, pass);
        }
        Err(invalid) => stop!(Stage::Validate, invalid),
    };

    // Dereference (domain claim, provider). Nothing is written anywhere before this succeeds.
    let target = match dereference::target(md, ctx, &desired.domain, deleting).await {
        Ok(t) => t,
        Err(e) => stop!(Stage::Dereference, e),
    };

    // Managed DKIM keys: made, rotated, handed to the mail server; their records published.
    let mut desired = desired;
    if !deleting && (!desired.managed_dkim.is_empty() || !old.dkim.is_empty()) {
        match keys::run(ctx, md, &desired, old, now).await {
            Ok(made) => {
                for (selector, key) in &made.records {
                    desired.add_managed_key(selector, key);
                }
                pass.wait(made.next.map(|d| d.max(Duration::from_secs(1))));
                stages.keys = Some(made);
            }
            Err(e) => stop!(Stage::Keys, e),
        }
    }

    // TLS reports: the summary, TLSReportsClean, the evidence mtaSts.promote waits for. Not a
    // stage that stops the others: unreadable reports only hold a promotion back.
    let read = if md.spec.tls_rpt.is_some() && !deleting {
        let today = jiff::tz::Offset::UTC.to_datetime(now).date();
        let served = old.served_policy.as_deref();
        match reports::run(ctx, md, old.tls_reports.as_ref(), served, today).await {
            Ok(read) => Some(Ok(read)),
            Err(e) => {
                tracing::warn!(error = %e, "reading the TLSReports failed");
                Some(Err(format!("the TLSReports could not be read: {e}")))
            }
        }
    } else {
        stages.tls_rpt_off = md.spec.tls_rpt.is_none();
        None
    };
    let promotion = promotion(md, old, read.as_ref(), now);
    stages.reports = read.and_then(Result::ok);

    // MTA-STS rollout: the policy to serve now and the id to publish.
    let inputs = rollout_inputs(md, ctx, desired.policy.as_ref(), promotion, now);
    let rollout = rollout::run(ctx, &desired.domain, old, &inputs).await;
    let mut changed = rollout.handed_over(old);
    let records = desired.with_sts_id(rollout.publish_id.as_ref());
    let expect = rollout.expected(&desired);
    let serving = rollout.decision.serve.is_some();
    pass.wait(rollout.requeue(now));
    stages.rollout = Some(rollout);

    // Policy hosting.
    let address;
    match host(md, ctx, &desired, serving).await {
        Ok(hosting) => {
            address = publish::Address::wanted(
                md,
                hosting.as_ref(),
                serving,
                desired.policy.is_some(),
                desired.ttl,
            );
            let issuing = hosting
                .as_ref()
                .and_then(|h| h.certificate.as_ref())
                .is_some_and(|c| c.status != super::conditions::Status::True);
            // Nothing watches Certificates (cert-manager may be absent): look again soon.
            pass.wait(issuing.then_some(CERTIFICATE_POLL));
            stages.hosting = Some(hosting);
        }
        Err(e) => stop!(Stage::Hosting, e),
    }

    // DNS: list what may be written, then read, plan, apply.
    let ahead = publish::listed_ahead(&records, &old.records);
    if !ahead.is_empty() && target.backend.writes() {
        let mut listed = old.clone();
        listed.records.extend(ahead.iter().cloned());
        if let Err(e) = status::write(md, ctx, &listed).await {
            stop!(Stage::Dns, e)
        }
        stages.listed_ahead = ahead;
    }
    let policy_host = crate::domain::mtasts::policy_host(&desired.domain);
    match publish_dns(md, ctx, &target, &records, (&policy_host, &address), old).await {
        Ok(published) => {
            changed |= published.changes > 0;
            // Nothing tells when external-dns has published an export, or a human a record
            // to publish by hand: look again soon.
            pass.wait((!published.awaiting.is_empty()).then_some(EXPORT_POLL));
            pass.wait((!published.by_hand.is_empty()).then_some(BY_HAND_POLL));
            stages.published = Some(published);
        }
        Err(e) => stop!(Stage::Dns, e),
    }

    // Live checks: after a change, for a new generation, and on an interval.
    if let (Some(settings), false) = (&ctx.config.checks, deleting) {
        let next = verify::next_in(settings, old, &md.uid().unwrap_or_default());
        if verify::due(old, md.metadata.generation, changed, next, now) {
            stages.checked = Some(verify::run(settings, &expect, now).await);
        }
        pass.wait(Some(next));
    }
    (stages, pass)
}

impl Pass {
    /// Looks again no later than `after`.
    fn wait(&mut self, after: Option<Duration>) {
        if let Some(after) = after {
            self.requeue = self.requeue.min(after);
        }
    }
}

/// What validate and build make of the spec.
enum Built {
    Desired(Desired, Option<Vec<validate::FieldError>>),
    /// Being deleted with a domain that never validated: nothing was ever published.
    NeverPublished,
}

/// Validate and build, pure. A MailDomain being deleted may have become invalid; its records
/// must still go, so it wants nothing at its domain.
fn validate_and_build(
    md: &MailDomain,
    secrets: &validate::SecretData,
    ctx: &Context,
    deleting: bool,
    old: &MailDomainStatus,
) -> Result<Built, validate::Invalid> {
    if !deleting {
        let valid = validate::validate(&md.spec, secrets, ctx.config.report_url.as_ref())?;
        let desired = desired::build(&valid.config);
        return Ok(Built::Desired(desired, Some(valid.warnings)));
    }
    match DomainName::parse(&md.spec.domain) {
        Ok(domain) => Ok(Built::Desired(Desired::nothing(domain, md.spec.ttl), None)),
        Err(_) if old.records.is_empty() && old.policy_id.is_none() => Ok(Built::NeverPublished),
        Err(e) => Err(validate::Invalid(vec![validate::FieldError {
            path: "spec.domain".into(),
            message: format!("`{}` {e}", md.spec.domain),
        }])),
    }
}

/// Policy hosting: the objects are kept in line while MTA-STS is active, kept as they are while
/// it is being withdrawn (the mode none policy must stay reachable), removed once it is off.
/// Objects with our names that are not ours are left alone, and reported as events (the
/// recorder folds repeats into one series).
async fn host(
    md: &MailDomain,
    ctx: &Context,
    desired: &Desired,
    serving: bool,
) -> Result<Option<hosting::Hosting>, Error> {
    let hosting = match (serving, desired.policy.is_some()) {
        (true, true) => {
            let domain = desired.domain.as_str();
            Some(
                hosting::ensure_known(&ctx.client, md, domain, &ctx.config.hosting, &ctx.made)
                    .await,
            )
            .transpose()
        }
        (true, false) => Ok(None),
        (false, _) => hosting::remove(&ctx.client, md, &ctx.made)
            .await
            .map(|_| None),
    }
    .map_err(Error::Hosting)?;
    for conflict in hosting.iter().flat_map(|h| h.conflicts.iter()) {
        let object = md.object_ref(&());
        event(
            ctx,
            &object,
            EventType::Warning,
            "PolicyHostConflict",
            conflict,
        )
        .await;
    }
    Ok(hosting)
}

/// The DNS stage, with its metrics and the event for what it changed.
async fn publish_dns(
    md: &MailDomain,
    ctx: &Context,
    target: &dereference::Target,
    records: &[crate::domain::record::TxtRecord],
    (host, address): (&str, &publish::Address),
    old: &MailDomainStatus,
) -> Result<publish::Published, Error> {
    let kind = target.backend.kind();
    let published = publish::run(target, records, host, address, &old.records)
        .await
        .map_err(|source| {
            ctx.metrics.dns(kind, source.category(), 0);
            Error::Dns {
                provider: kind,
                source,
            }
        })?;
    if published.changes > 0 {
        ctx.metrics.dns(kind, "ok", published.changes);
        let note = format!(
            "{} change(s) in zone {} via {kind}",
            published.changes, target.zone
        );
        event(
            ctx,
            &md.object_ref(&()),
            EventType::Normal,
            "DNSUpdated",
            &note,
        )
        .await;
    }
    Ok(published)
}

fn rollout_inputs<'a>(
    md: &MailDomain,
    ctx: &Context,
    wanted: Option<&'a desired::PolicyFile>,
    promotion: Option<Promotion>,
    now: Timestamp,
) -> rollout::Inputs<'a> {
    let annotated = |key: &str| md.annotations().get(key).is_some_and(|v| v == "true");
    rollout::Inputs {
        wanted,
        checks_on: ctx.config.checks.is_some(),
        force_enforce: annotated(FORCE_ENFORCE),
        skip_withdrawal: annotated(SKIP_WITHDRAWAL),
        generation: md.metadata.generation,
        promotion,
        now,
    }
}

/// `mtaSts.promote` on a `testing` policy: promoted before (the promotion holds), or what the
/// reports say now.
fn promotion(
    md: &MailDomain,
    old: &MailDomainStatus,
    read: Option<&Result<Reports, String>>,
    now: Timestamp,
) -> Option<Promotion> {
    let sts = md.spec.mta_sts.as_ref()?;
    let promote = sts.promote.as_ref()?;
    if sts.mode != MtaStsMode::Testing {
        return None;
    }
    if old.promoted_at.is_some() {
        return Some(Promotion::Promote);
    }
    let today = jiff::tz::Offset::UTC.to_datetime(now).date();
    Some(match read {
        None => Promotion::Waiting(
            "no TLS reports are read: set tlsRpt (with receive: true, or a mailbox the receiver reads)".into(),
        ),
        Some(Err(e)) => Promotion::Waiting(e.clone()),
        Some(Ok(read)) => {
            match reports::evidence(promote, &read.kept, old.served_policy.as_deref(), today) {
                Evidence::Enough { .. } => Promotion::Promote,
                Evidence::Waiting(why) => Promotion::Waiting(why),
            }
        }
    })
}

/// Events of a pass: managed DKIM keys made and their steps, each failure type new in the
/// reports' 30-day window, and a promotion.
async fn report_events(
    md: &MailDomain,
    ctx: &Context,
    old: &MailDomainStatus,
    new: &MailDomainStatus,
    stages: &Stages,
) {
    let object = md.object_ref(&());
    if let Some(keys) = &stages.keys {
        for selector in &keys.made {
            let note =
                format!("DKIM key {selector} made and published; it signs once DNS serves it");
            event(ctx, &object, EventType::Normal, "DKIMKeyPending", &note).await;
        }
        for selector in &keys.lost {
            let note = format!(
                "the private key of the active DKIM key {selector} was deleted (its Secret and the signing Secret); it retires and a new key is made"
            );
            event(ctx, &object, EventType::Warning, "DKIMKeyLost", &note).await;
        }
        for t in &keys.transitions {
            let note = format!("DKIM key {}: {:?} → {:?}", t.selector, t.from, t.to);
            let reason = format!("DKIMKey{:?}", t.to);
            event(ctx, &object, EventType::Normal, &reason, &note).await;
        }
    }
    if let Some(read) = &stages.reports {
        for kind in &read.new_failure_types {
            let row = read
                .summary
                .windows
                .iter()
                .flat_map(|w| w.failures.iter())
                .find(|f| &f.result_type == kind);
            let at = row.and_then(|f| f.mx.as_deref()).unwrap_or("an MX");
            let note = format!("TLS reports show {kind} at {at}");
            event(
                ctx,
                &object,
                EventType::Warning,
                "TLSFailureReported",
                &note,
            )
            .await;
        }
    }
    if old.promoted_at.is_none()
        && let Some(at) = &new.promoted_at
    {
        let note = format!(
            "promoted from testing to enforce at {} on clean TLS reports",
            at.0
        );
        event(ctx, &object, EventType::Normal, "Promoted", &note).await;
    }
}

async fn event(
    ctx: &Context,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, object).await {
        tracing::debug!("could not publish event: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::DnsError;

    #[test]
    fn backoff_doubles_to_five_minutes_and_honours_retry_after() {
        let server = || Error::Dns {
            provider: "rfc2136",
            source: DnsError::Server(String::new()),
        };
        let secs: Vec<u64> = (1..=9).map(|n| backoff(&server(), n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(&server(), 0).as_secs(), 300, "the user must act");
        let limited = |s| Error::Dns {
            provider: "cloud",
            source: DnsError::RateLimited {
                retry_after: Some(Duration::from_secs(s)),
                detail: String::new(),
            },
        };
        assert_eq!(backoff(&limited(42), 1).as_secs(), 42);
        assert_eq!(
            backoff(&limited(2), 3).as_secs(),
            20,
            "never sooner than the backoff"
        );
        assert_eq!(
            backoff(&limited(86_400), 1).as_secs(),
            3600,
            "capped at an hour"
        );
    }
}
