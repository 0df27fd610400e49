//! One MailDomain: dereference → validate → build → apply → status. The only place that writes
//! to DNS or to the MailDomain's status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::build::{self, PolicyFile};
use super::conditions::{self, DNS_PUBLISHED, ENFORCED, POLICY_HOSTED, READY};
use super::error::Error;
use super::hosting::{self, CERTIFICATE_READY, ConditionStatus, HostingConfig};
use super::provider::{self, Target};
use super::validate::{self, SecretData};
use super::verify;
use crate::api::{MailDomain, MailDomainStatus, RecordState, RecordStatus};
use crate::dns::ownership::{Owner, marker_name};
use crate::dns::plan::{self, Settings, State};
use crate::domain::mtasts::{Mode, Policy, StsRecord, WELL_KNOWN_PATH};
use crate::domain::name::DomainName;
use crate::domain::record::{RecordKind, TxtRecord};
use crate::metrics::Metrics;

pub const FINALIZER: &str = "mailsec.io/cleanup";
pub const FIELD_MANAGER: &str = "mailsec-operator";
/// Annotation that publishes `enforce` without waiting for the live checks.
pub const FORCE_ENFORCE: &str = "mailsec.io/force-enforce";
/// Annotation that skips the wait with a `mode: none` policy when MTA-STS is withdrawn.
pub const SKIP_WITHDRAWAL: &str = "mailsec.io/skip-withdrawal";
/// max_age of the `mode: none` policy published while withdrawing (RFC 8461 §8.3 suggests short).
const WITHDRAWAL_MAX_AGE: u32 = 86_400;
/// How often a settled MailDomain is looked at again.
const RESYNC: Duration = Duration::from_secs(600);
/// How soon to look again while the policy servers catch up.
const POLICY_POLL: Duration = Duration::from_secs(1);
/// How soon to look again while a Certificate is being issued.
const CERTIFICATE_POLL: Duration = Duration::from_secs(30);

/// Settings of one controller process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Identifies this installation in DNS ownership markers.
    pub owner_id: String,
    /// Where ClusterDNSProviders' Secrets live.
    pub operator_namespace: String,
    /// Base URL of the policy server (`mailsec serve`), used to confirm a new policy is served
    /// before its id is published. Without it the id follows the status write unconfirmed.
    pub policy_server: Option<url::Url>,
    /// Where the Ingresses created for `policyHost.ingress` send traffic.
    pub hosting: HostingConfig,
    /// The live checks behind the *Verified conditions; `None` turns them off.
    pub checks: Option<verify::Settings>,
}

/// Shared state of the reconciles.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub store: Store<Guarded>,
    pub http: reqwest::Client,
    /// Consecutive failures per object, for exponential backoff.
    pub failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
}

/// A MailDomain as watched: one that does not deserialize is reported, and does not stop the
/// watch for the others.
pub type Guarded = DeserializeGuard<MailDomain>;

pub async fn reconcile(guard: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(md) => reconcile_with_finalizer(md, &ctx).await,
        Err(invalid) => {
            let note = format!("cannot read this MailDomain: {invalid}");
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: "InvalidObject".into(),
                note: Some(note.clone()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &guard.object_ref(&())).await {
                tracing::debug!("could not publish event: {e}");
            }
            Err(Error::InvalidObject(note))
        }
    };
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
    .await?;
    Ok(())
}

/// Per-object exponential backoff: 5 s doubling to 5 min; errors only the user can fix wait for
/// a watch event (or the 5 min ceiling).
pub fn error_policy(md: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(maildomain = %md.name_any(), namespace = ?md.namespace(), category = error.category(), "{error}");
    if error.needs_user() {
        return Action::requeue(Duration::from_secs(300));
    }
    let attempts = match ctx.failures.lock() {
        Ok(mut failures) => {
            let n = failures.entry(ObjectRef::from_obj(&*md)).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    let delay = 5u64
        .saturating_mul(1 << attempts.min(7).saturating_sub(1))
        .min(300);
    Action::requeue(Duration::from_secs(delay))
}

/// What MTA-STS should look like in DNS and on the policy servers right now.
enum Sts {
    /// Publish this policy (first served, then its id).
    Publish(PolicyFile),
    /// Nothing (never published, or withdrawn).
    Off,
}

/// The outcome of one pass, before it is written to status.
struct Pass {
    records: Vec<RecordStatus>,
    policy_id: Option<String>,
    /// `None`: no MTA-STS; `Some(Ok)`: served; `Some(Err(msg))`: not (yet) served.
    hosted: Option<Result<(), (String, String)>>,
    dns: Result<DnsOutcome, Error>,
    requeue: Duration,
    /// Whether cleanup may finish (all records gone).
    done: bool,
    /// The policy host objects; `None` when the spec asks for none.
    hosting: Option<hosting::Hosting>,
    /// Whether this pass wrote DNS or handed a new policy to the policy servers.
    changed: bool,
    /// With `enforce` asked for and checks on: `Ok` when enforced, `Err(why)` when held.
    enforce: Option<Result<(), String>>,
    /// What this pass published, for the live checks to compare with.
    desired: Option<build::Desired>,
}

enum DnsOutcome {
    AllPublished,
    Manual,
    Conflicts(Vec<String>),
    Waiting,
}

/// What one pass leaves for the finalizer handling.
struct Outcome {
    action: Action,
    /// When deleting: whether everything is removed.
    done: bool,
    /// The object's resourceVersion after our status write.
    resource_version: Option<String>,
}

/// One pass: plan, write, record status.
async fn reconcile_domain(
    md: &MailDomain,
    ctx: &Context,
    deleting: bool,
) -> Result<Outcome, Error> {
    let mut status = md.status.clone().unwrap_or_default();
    let generation = md.metadata.generation;
    let pass = run_pass(md, ctx, &mut status, deleting).await;
    let mut action = Action::requeue(pass.requeue);
    if let (Some(settings), false, Ok(_)) = (&ctx.config.checks, deleting, &pass.dns) {
        // A failing check is retried sooner: right after a change, resolvers may still serve
        // what they cached before it.
        let failing = status
            .conditions
            .iter()
            .any(|c| verify::is_verification(&c.type_) && c.status == "False");
        let interval = if failing {
            settings.interval.min(verify::RETRY)
        } else {
            settings.interval
        };
        let next = verify::jittered(interval, &md.uid().unwrap_or_default());
        let now = k8s_openapi::jiff::Timestamp::now();
        let due = pass.changed
            || status.observed_generation != generation
            || status
                .last_checked
                .as_ref()
                .is_none_or(|t| now.duration_since(t.0).unsigned_abs() >= next);
        if due && let Ok(domain) = DomainName::parse(&md.spec.domain) {
            // Bounded concurrency: a permit per running check, across all MailDomains.
            let _permit = settings.limit.acquire().await;
            let findings = crate::checks::run::check(
                domain.as_str(),
                pass.desired.as_ref(),
                &settings.options,
            )
            .await;
            verify::apply(&mut status.conditions, &findings, generation);
            status.last_checked = Some(Time(now));
        }
        action = Action::requeue(pass.requeue.min(next));
    }
    set_conditions(&mut status, &pass, generation);
    status.records = pass.records.clone();
    status.policy_id = pass.policy_id.clone();
    status.observed_generation = generation;
    let written = write_status(md, ctx, status).await?;
    match pass.dns {
        Err(e) => {
            publish_event(ctx, md, EventType::Warning, e.category(), &e.to_string()).await;
            Err(e)
        }
        Ok(_) => Ok(Outcome {
            action,
            done: pass.done,
            resource_version: written.or_else(|| md.resource_version()),
        }),
    }
}

async fn run_pass(
    md: &MailDomain,
    ctx: &Context,
    status: &mut MailDomainStatus,
    deleting: bool,
) -> Pass {
    let mut pass = Pass {
        records: status.records.clone(),
        policy_id: status.policy_id.clone(),
        hosted: None,
        dns: Ok(DnsOutcome::Waiting),
        requeue: RESYNC,
        done: false,
        hosting: None,
        changed: false,
        enforce: None,
        desired: None,
    };
    // Dereference and validate. Nothing is written to DNS unless all of it succeeds.
    let prepared = match prepare(md, ctx, deleting).await {
        Ok(p) => p,
        Err(e) => {
            pass.dns = Err(e);
            return pass;
        }
    };
    let Prepared {
        mut desired,
        target,
    } = prepared;
    if ctx.config.checks.is_some() {
        pass.enforce = hold_enforce(md, status, &mut desired);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let skip_wait = md
        .annotations()
        .get(SKIP_WITHDRAWAL)
        .is_some_and(|v| v == "true");

    // MTA-STS: decide the policy, keep the policy servers ahead of the id.
    let sts = match (&desired.policy, deleting) {
        (Some(policy), false) => {
            status.withdraw_until = None;
            Sts::Publish(policy.clone())
        }
        _ if status.policy_id.is_none() || skip_wait => Sts::Off,
        _ => match withdrawal(status, now) {
            Some(policy) => Sts::Publish(policy),
            None => Sts::Off,
        },
    };
    let mut records: Vec<TxtRecord> = desired
        .records
        .iter()
        .filter(|r| r.kind != RecordKind::MtaSts)
        .cloned()
        .collect();
    if deleting {
        records.clear();
    }
    match &sts {
        Sts::Publish(policy) => {
            let before = status.served_policy.clone();
            let served = ensure_served(md, ctx, status, policy).await;
            pass.changed |= status.served_policy != before;
            let id = if served.is_ok() {
                Some(policy.id.to_string())
            } else {
                status.policy_id.clone()
            };
            if served.is_err() {
                pass.requeue = POLICY_POLL;
            }
            pass.hosted = Some(served);
            if let (Some(id), Ok(domain)) = (id, DomainName::parse(&md.spec.domain)) {
                let id = crate::domain::mtasts::PolicyId::parse(&id).ok();
                if let Some(id) = id {
                    records.insert(
                        0,
                        TxtRecord {
                            name: domain.child("_mta-sts"),
                            kind: RecordKind::MtaSts,
                            ttl: md.spec.ttl,
                            value: StsRecord { id }.render(),
                        },
                    );
                }
            }
        }
        Sts::Off => {
            status.served_policy = None;
            status.withdraw_until = None;
        }
    }

    // Policy host objects: kept in line while MTA-STS is active, kept as they are while it is
    // being withdrawn (the mode none policy must stay reachable), removed once it is off.
    let hosting_result = match (&sts, desired.policy.is_some() && !deleting) {
        (Sts::Publish(_), true) => {
            hosting::ensure(&ctx.client, md, &desired.domain, &ctx.config.hosting)
                .await
                .map(Some)
        }
        (Sts::Publish(_), false) => Ok(None),
        (Sts::Off, _) => hosting::remove(&ctx.client, md).await.map(|_| None),
    };
    match hosting_result {
        Ok(h) => {
            if h.as_ref()
                .and_then(|h| h.certificate.as_ref())
                .is_some_and(|c| c.status != ConditionStatus::True)
            {
                // Nothing watches Certificates (cert-manager may be absent): look again soon.
                pass.requeue = pass.requeue.min(CERTIFICATE_POLL);
            }
            // Objects with our names that are not ours are left alone; say so (the recorder
            // folds repeats into one event series).
            for conflict in h.iter().flat_map(|h| h.conflicts.iter()) {
                publish_event(ctx, md, EventType::Warning, "PolicyHostConflict", conflict).await;
            }
            pass.hosting = h;
        }
        Err(e) => {
            pass.dns = Err(e.into());
            return pass;
        }
    }
    if let Some(until) = &status.withdraw_until {
        let left = until.0.duration_since(now).as_secs().max(1) as u64;
        pass.requeue = pass.requeue.min(Duration::from_secs(left));
    }

    // DNS: plan against what the provider holds, apply in one update.
    let retired: Vec<(String, RecordKind)> = status
        .records
        .iter()
        .filter(|r| !records.iter().any(|d| d.name == r.name))
        .filter_map(|r| {
            RecordKind::ALL
                .into_iter()
                .find(|k| k.matches(&r.value))
                .map(|k| (r.name.clone(), k))
        })
        .collect();
    let mut names: Vec<String> = records
        .iter()
        .map(|r| r.name.clone())
        .chain(retired.iter().map(|(n, _)| n.clone()))
        .collect();
    names.extend(names.clone().iter().map(|n| marker_name(n)));
    names.sort();
    names.dedup();
    let resource = format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any());
    let settings = Settings {
        owner: Owner::new(&target.owner, resource),
        policy: target.policy,
        adopt: md.spec.adopt_existing,
    };
    let current = match target.provider.read(&names).await {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics.dns(target.provider.kind(), e.category(), 0);
            pass.dns = Err(e.into());
            return pass;
        }
    };
    let plan = plan::plan(&records, &retired, &current, &settings);
    if !plan.operations.is_empty() {
        pass.changed = true;
        if let Err(e) = target.provider.apply(&target.zone, &plan.operations).await {
            ctx.metrics.dns(target.provider.kind(), e.category(), 0);
            pass.dns = Err(e.into());
            return pass;
        }
        ctx.metrics
            .dns(target.provider.kind(), "ok", plan.operations.len());
        let note = format!(
            "{} TXT change(s) in zone {} via {}",
            plan.operations.len(),
            target.zone,
            target.provider.kind()
        );
        publish_event(ctx, md, EventType::Normal, "DNSUpdated", &note).await;
    }
    let manual = matches!(target.provider, crate::dns::provider::Provider::Manual);
    let mut conflicts = Vec::new();
    pass.records = plan
        .outcomes
        .iter()
        .map(|o| {
            let (state, message) = match (&o.state, manual) {
                (State::Conflict(m), _) => {
                    conflicts.push(m.clone());
                    (RecordState::Conflict, Some(m.clone()))
                }
                (_, true) => (
                    RecordState::Pending,
                    Some(
                        "the manual provider writes nothing: publish this record by hand"
                            .to_owned(),
                    ),
                ),
                (State::Published | State::Pending, false) => (RecordState::Published, None),
            };
            RecordStatus {
                name: o.record.name.clone(),
                record_type: "TXT".into(),
                value: o.record.value.clone(),
                state,
                message,
            }
        })
        .collect();
    pass.policy_id = pass
        .records
        .iter()
        .find(|r| r.state == RecordState::Published && RecordKind::MtaSts.matches(&r.value))
        .and_then(|r| StsRecord::parse(&r.value).ok())
        .map(|r| r.id.to_string());
    pass.done = deleting && matches!(sts, Sts::Off) && pass.records.is_empty();
    pass.desired = Some(desired);
    pass.dns = Ok(if !conflicts.is_empty() {
        DnsOutcome::Conflicts(conflicts)
    } else if manual {
        DnsOutcome::Manual
    } else if matches!(pass.hosted, Some(Err(_))) {
        DnsOutcome::Waiting
    } else {
        DnsOutcome::AllPublished
    });
    pass
}

struct Prepared {
    desired: build::Desired,
    target: Target,
}

async fn prepare(md: &MailDomain, ctx: &Context, deleting: bool) -> Result<Prepared, Error> {
    let ns = md.namespace().unwrap_or_default();
    let secrets = dkim_secrets(md, ctx, &ns).await?;
    let valid =
        validate::validate(&md.spec, &secrets).map_err(|e| Error::InvalidSpec(e.to_string()));
    // A MailDomain being deleted may have become invalid; its records must still go.
    let desired = match (valid, deleting) {
        (Ok(v), _) => build::build(&v.config),
        (Err(_), true) => build::Desired {
            domain: md.spec.domain.to_ascii_lowercase(),
            records: Vec::new(),
            policy: None,
        },
        (Err(e), false) => return Err(e),
    };
    if !deleting {
        check_domain_claim(md, ctx, &desired.domain)?;
    }
    let target = provider::dereference(md, ctx, &desired.domain).await?;
    Ok(Prepared { desired, target })
}

/// Safe enforce: `enforce` is published only once the live checks show every MX covered and
/// offering valid STARTTLS; until then the policy stays `testing`, so no mail is refused.
/// The annotation `mailsec.io/force-enforce: "true"` skips the wait.
fn hold_enforce(
    md: &MailDomain,
    status: &MailDomainStatus,
    desired: &mut build::Desired,
) -> Option<Result<(), String>> {
    let policy = desired.policy.as_ref()?;
    let parsed = Policy::parse(&policy.text).ok()?.value;
    if parsed.mode != Mode::Enforce {
        return None;
    }
    if md
        .annotations()
        .get(FORCE_ENFORCE)
        .is_some_and(|v| v == "true")
    {
        return Some(Ok(()));
    }
    let blockers: Vec<String> = ["MXCovered", "SMTPTLSVerified"]
        .iter()
        .filter_map(|t| match status.conditions.iter().find(|c| c.type_ == *t) {
            Some(c) if c.status == "True" => None,
            Some(c) => Some(format!("{t} is {} ({}): {}", c.status, c.reason, c.message)),
            None => Some(format!("{t} has not been checked yet")),
        })
        .collect();
    if blockers.is_empty() {
        return Some(Ok(()));
    }
    let testing = Policy {
        mode: Mode::Testing,
        ..parsed
    };
    desired.policy = Some(build::PolicyFile {
        text: testing.render(),
        id: testing.id(),
    });
    Some(Err(blockers.join("; ")))
}

/// Two MailDomains for one domain: the older one wins, the other writes nothing.
fn check_domain_claim(md: &MailDomain, ctx: &Context, domain: &str) -> Result<(), Error> {
    let key = |m: &MailDomain| {
        (
            m.creation_timestamp().map(|t| t.0),
            m.namespace(),
            m.name_any(),
        )
    };
    let mine = key(md);
    let all = ctx.store.state();
    let winner = all
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|other| other.uid() != md.uid() && other.metadata.deletion_timestamp.is_none())
        .filter(|other| DomainName::parse(&other.spec.domain).is_ok_and(|d| d.as_str() == domain))
        .map(key)
        .filter(|k| *k < mine)
        .min();
    match winner {
        Some((_, ns, name)) => Err(Error::DomainConflict(format!(
            "{domain} is already managed by MailDomain {}/{name}; this one writes nothing until that one is deleted",
            ns.unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

async fn dkim_secrets(md: &MailDomain, ctx: &Context, ns: &str) -> Result<SecretData, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut data = SecretData::new();
    for reference in md
        .spec
        .dkim
        .iter()
        .filter_map(|d| d.key_secret_ref.as_ref())
    {
        if data.contains_key(&reference.name) {
            continue;
        }
        if let Some(secret) = api.get_opt(&reference.name).await? {
            let entries: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.insert(reference.name.clone(), entries);
        }
    }
    Ok(data)
}

/// Makes sure the policy servers return `policy` before its id is published: the status field
/// they serve from is set first, then confirmed over HTTP.
async fn ensure_served(
    md: &MailDomain,
    ctx: &Context,
    status: &mut MailDomainStatus,
    policy: &PolicyFile,
) -> Result<(), (String, String)> {
    if status.served_policy.as_deref() != Some(policy.text.as_str()) {
        status.served_policy = Some(policy.text.clone());
        return Err((
            "PolicyPending".into(),
            format!(
                "policy {} handed to the policy servers; its id is published once they serve it",
                policy.id
            ),
        ));
    }
    let Some(base) = &ctx.config.policy_server else {
        return Ok(());
    };
    let host = format!(
        "mta-sts.{}",
        DomainName::parse(&md.spec.domain)
            .map(|d| d.to_string())
            .unwrap_or_default()
    );
    let url = base
        .join(WELL_KNOWN_PATH)
        .map_err(|e| ("PolicyServerUnreachable".to_owned(), e.to_string()))?;
    let response = ctx
        .http
        .get(url.clone())
        .header(reqwest::header::HOST, &host)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| {
            (
                "PolicyServerUnreachable".to_owned(),
                format!("{url} (Host: {host}): {e}"),
            )
        })?;
    let code = response.status();
    let body = response.text().await.unwrap_or_default();
    if code.as_u16() == 200 && body == policy.text {
        Ok(())
    } else {
        Err((
            "PolicyNotServed".into(),
            format!(
                "the policy server does not return policy {} yet for {host} (HTTP {code})",
                policy.id
            ),
        ))
    }
}

/// The `mode: none` policy that replaces the current one while MTA-STS is withdrawn, or None
/// once the withdrawal period is over. The period starts when the old policy stops being served:
/// no sender can have cached it after that, so its max_age from then covers every cache.
fn withdrawal(
    status: &mut MailDomainStatus,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<PolicyFile> {
    let previous = status
        .served_policy
        .as_deref()
        .and_then(|p| Policy::parse(p).ok())
        .map(|p| p.value);
    if status.withdraw_until.is_none() {
        let seconds = previous
            .as_ref()
            .filter(|p| p.mode != Mode::None)
            .map_or(WITHDRAWAL_MAX_AGE, |p| p.max_age);
        status.withdraw_until = now
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                seconds,
            )))
            .ok()
            .map(Time);
    }
    if status
        .withdraw_until
        .as_ref()
        .is_some_and(|until| until.0 <= now)
    {
        return None;
    }
    let policy = Policy {
        mode: Mode::None,
        mx: previous.map(|p| p.mx).unwrap_or_default(),
        max_age: WITHDRAWAL_MAX_AGE,
    };
    Some(PolicyFile {
        text: policy.render(),
        id: policy.id(),
    })
}

fn set_conditions(status: &mut MailDomainStatus, pass: &Pass, generation: Option<i64>) {
    let c = &mut status.conditions;
    let dns_ok = match &pass.dns {
        Ok(DnsOutcome::AllPublished) => {
            conditions::set(
                c,
                DNS_PUBLISHED,
                true,
                "Published",
                "all records are published",
                generation,
            );
            true
        }
        Ok(DnsOutcome::Waiting) => {
            conditions::set(
                c,
                DNS_PUBLISHED,
                false,
                "WaitingForPolicy",
                "the _mta-sts id changes once the new policy is served",
                generation,
            );
            false
        }
        Ok(DnsOutcome::Manual) => {
            conditions::set(
                c,
                DNS_PUBLISHED,
                false,
                "ManualProvider",
                "publish the records in status.records by hand",
                generation,
            );
            false
        }
        Ok(DnsOutcome::Conflicts(list)) => {
            conditions::set(
                c,
                DNS_PUBLISHED,
                false,
                "Conflict",
                list.join("; "),
                generation,
            );
            false
        }
        Err(e) => {
            conditions::set(
                c,
                DNS_PUBLISHED,
                false,
                e.category(),
                e.to_string(),
                generation,
            );
            false
        }
    };
    let hosted_ok = match &pass.hosted {
        None => {
            c.retain(|x| x.type_ != POLICY_HOSTED);
            true
        }
        Some(Ok(())) => {
            conditions::set(
                c,
                POLICY_HOSTED,
                true,
                "Served",
                "the policy servers return the current policy",
                generation,
            );
            true
        }
        Some(Err((reason, message))) => {
            conditions::set(c, POLICY_HOSTED, false, reason, message.clone(), generation);
            false
        }
    };
    let cert_ok = match pass.hosting.as_ref().and_then(|h| h.certificate.as_ref()) {
        None => {
            c.retain(|x| x.type_ != CERTIFICATE_READY);
            true
        }
        Some(cert) => {
            match cert.status {
                ConditionStatus::Unknown => conditions::set_unknown(
                    c,
                    CERTIFICATE_READY,
                    &cert.reason,
                    cert.message.clone(),
                    generation,
                ),
                status => conditions::set(
                    c,
                    CERTIFICATE_READY,
                    status == ConditionStatus::True,
                    &cert.reason,
                    cert.message.clone(),
                    generation,
                ),
            }
            cert.status == ConditionStatus::True
        }
    };
    match &pass.enforce {
        None => c.retain(|x| x.type_ != ENFORCED),
        Some(Ok(())) => conditions::set(
            c,
            ENFORCED,
            true,
            "Enforced",
            "the policy is published in enforce mode",
            generation,
        ),
        Some(Err(why)) => conditions::set(
            c,
            ENFORCED,
            false,
            "HeldInTesting",
            format!(
                "enforce is held back, the policy stays in testing until: {why} (annotate {FORCE_ENFORCE}: \"true\" to enforce anyway)"
            ),
            generation,
        ),
    }
    let verified_ok = !c
        .iter()
        .any(|x| verify::is_verification(&x.type_) && x.status == "False");
    if dns_ok && hosted_ok && cert_ok && verified_ok {
        conditions::set(
            c,
            READY,
            true,
            "Published",
            "records published and policy served",
            generation,
        );
    } else {
        let why = c
            .iter()
            .filter(|x| x.type_ != READY && x.status != "True")
            .map(|x| format!("{}: {}", x.type_, x.reason))
            .collect::<Vec<_>>()
            .join(", ");
        conditions::set(c, READY, false, "NotReady", why, generation);
    }
}

/// Patches status only when something other than transition times changed.
async fn write_status(
    md: &MailDomain,
    ctx: &Context,
    status: MailDomainStatus,
) -> Result<Option<String>, Error> {
    let old = md.status.clone().unwrap_or_default();
    let unchanged = old.observed_generation == status.observed_generation
        && old.policy_id == status.policy_id
        && old.served_policy == status.served_policy
        && old.withdraw_until == status.withdraw_until
        && old.last_checked == status.last_checked
        && old.records == status.records
        && conditions::same(&old.conditions, &status.conditions);
    if unchanged {
        return Ok(None);
    }
    let api: Api<MailDomain> =
        Api::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
    let patch = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "status": status});
    let written = api
        .patch_status(
            &md.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics.status_writes.inc();
    Ok(written.resource_version())
}

async fn publish_event(ctx: &Context, md: &MailDomain, type_: EventType, reason: &str, note: &str) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &md.object_ref(&())).await {
        tracing::debug!("could not publish event: {e}");
    }
}
