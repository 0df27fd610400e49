//! GitOps health with the real evaluators: MailDomains in the real API server, in the states
//! the controller produces (each status computed by the controller's own pure stages and
//! `status::compute`, written with `patch_status` as the controller writes it, and read back),
//! judged by kstatus (`mailsec-kstatus`: sigs.k8s.io/cli-utils, what Flux reads; built by
//! scripts/tools.d/kstatus.sh) and by the Argo CD health script
//! (charts/mailsec-operator/files/argocd-health-maildomain.lua) under lua5.1 and lua5.4 (Argo CD
//! runs gopher-lua, Lua 5.1 semantics; scripts/tools.d/lua.sh installs both). They must agree:
//! Current = Healthy, InProgress = Progressing, Failed = Degraded.
//!
//! kstatus needs `Reconciling` / `Stalled` conditions for that (README "GitOps health"):
//! [`health_condition`] is their specification. While the controller does not set them yet,
//! the test adds them as specified; once it does, the test checks that it sets them so.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use mailsec_operator::api::{MailDomain, MailDomainStatus, RecordState, RecordStatus};
use mailsec_operator::checks::run::{Finding, Outcome};
use mailsec_operator::controller::conditions::{self, Status, Type, reason};
use mailsec_operator::controller::error::Error;
use mailsec_operator::controller::names::{FIELD_MANAGER, FINALIZER};
use mailsec_operator::controller::publish::Published;
use mailsec_operator::controller::rollout::{self, Hosted, Inputs};
use mailsec_operator::controller::status::{self, Stage, Stages};
use mailsec_operator::controller::verify::Checked;
use mailsec_operator::dns::DnsError;
use mailsec_operator::model::{desired, validate};
use serde_json::{Value, json};

const SCRIPT: &str = "charts/mailsec-operator/files/argocd-health-maildomain.lua";
const ARGO_KEY: &str = "resource.customizations.health.mailsec.io_MailDomain";

// ---------------------------------------------------------------------------------------------
// The specification of Reconciling and Stalled (README "GitOps health").

/// Reasons only the user can fix: `Stalled`. Every other reason of a condition that keeps
/// `Ready` from `True` is progress or a retried transient failure: `Reconciling`.
const USER_REASONS: [&str; 14] = [
    // Error::needs_user(): the spec, the claim, the provider reference and its Secret.
    "InvalidObject",
    "InvalidSpec",
    "DomainConflict",
    "ProviderNotFound",
    "ProviderNotAllowed",
    "SecretNotFound",
    // Retried on a timer, but only new credentials, permissions, settings or a zone help.
    "DNSAuthFailed",
    "DNSRefused",
    "DNSZoneNotFound",
    "DNSProviderInvalid",
    // DNSPublished: someone else's record; the manual provider waits for a human.
    reason::CONFLICT,
    reason::MANUAL_PROVIDER,
    // CertificateReady: no cert-manager; someone else's Certificate.
    reason::CERTIFICATE_CRD_MISSING,
    reason::CERTIFICATE_CONFLICT,
];

/// The conditions that keep `Ready` from `True`, in `Type::ALL` order: every condition but
/// Ready, SpecWarnings, Enforced (held in testing is Ready) and Reconciling/Stalled themselves
/// that is not True; for the live checks, only False (Unknown does not count for Ready).
fn blockers(conditions: &[Condition]) -> Vec<&Condition> {
    Type::ALL
        .iter()
        .filter(|t| !matches!(t, Type::Ready | Type::SpecWarnings | Type::Enforced))
        .filter_map(|t| conditions::find(conditions, *t).map(|c| (t, c)))
        .filter(|(_, c)| !is_health(c))
        .filter(|(t, c)| {
            if t.is_verification() {
                c.status == "False"
            } else {
                c.status != "True"
            }
        })
        .map(|(_, c)| c)
        .collect()
}

/// `(type, reason, message)` of the one health condition the controller sets with
/// `status: "True"` after computing `Ready`: none while Ready is True; `Stalled` when a blocker
/// has a user reason (its reason: the first such blocker's); `Reconciling` otherwise (the first
/// blocker's reason, `NotReady` if none). The message lists the blockers of that kind as
/// `<type> <reason>: <message>`, joined by `; `. Absent means False: each is removed when not
/// True, so kstatus never sees both.
fn health_condition(status: &MailDomainStatus) -> Option<(&'static str, String, String)> {
    let c = &status.conditions;
    if conditions::status_of(c, Type::Ready) == Some(Status::True) {
        return None;
    }
    let all = blockers(c);
    let user: Vec<&Condition> = all
        .iter()
        .copied()
        .filter(|b| USER_REASONS.contains(&b.reason.as_str()))
        .collect();
    let (kind, chosen) = if user.is_empty() {
        ("Reconciling", all)
    } else {
        ("Stalled", user)
    };
    let why = chosen
        .first()
        .map_or(reason::NOT_READY.to_owned(), |b| b.reason.clone());
    let message = chosen
        .iter()
        .map(|b| format!("{} {}: {}", b.type_, b.reason, b.message))
        .collect::<Vec<_>>()
        .join("; ");
    Some((kind, why, message))
}

fn is_health(c: &Condition) -> bool {
    c.type_ == "Reconciling" || c.type_ == "Stalled"
}

/// `status::compute`, with Reconciling/Stalled as specified. When `compute` sets them itself
/// (the controller implements the specification), they must say what the specification says;
/// until then they are added here as the controller will add them.
fn compute(
    old: &MailDomainStatus,
    stages: &Stages,
    generation: Option<i64>,
    now: Timestamp,
) -> MailDomainStatus {
    let mut bare = old.clone();
    bare.conditions.retain(|c| !is_health(c));
    let mut s = status::compute(&bare, stages, generation, now);
    let want = health_condition(&s);
    if s.conditions.iter().any(is_health) {
        let s = status::compute(old, stages, generation, now);
        for t in ["Reconciling", "Stalled"] {
            let set = s
                .conditions
                .iter()
                .find(|c| c.type_ == t && c.status == "True")
                .map(|c| c.reason.clone());
            let expected = want.as_ref().filter(|w| w.0 == t).map(|w| w.1.clone());
            assert_eq!(
                set, expected,
                "the controller's {t} differs from the specification; conditions: {:#?}",
                s.conditions
            );
        }
        return s;
    }
    if let Some((kind, why, message)) = want {
        let previous = old.conditions.iter().find(|c| c.type_ == kind);
        s.conditions.push(Condition {
            type_: kind.to_owned(),
            status: "True".to_owned(),
            reason: why,
            message,
            observed_generation: generation,
            last_transition_time: previous.map_or(Time(now), |c| c.last_transition_time.clone()),
        });
    }
    s
}

// ---------------------------------------------------------------------------------------------
// One controller pass, with the controller's pure stages; only what the world answers is told.

/// What DNS answered in a pass.
enum Dns {
    Published,
    /// Someone else's value at the first record.
    Conflict,
    Fails(DnsError),
}

struct World {
    /// The live checks run (the controller's default): safe enforce holds `enforce` back.
    checks_on: bool,
    dns: Dns,
    /// The live checks' findings, when they ran in this pass.
    findings: Option<Vec<Finding>>,
}

impl World {
    fn published() -> Self {
        World {
            checks_on: false,
            dns: Dns::Published,
            findings: None,
        }
    }
}

/// The status one pass of the controller writes: validate → build → MTA-STS rollout (the
/// policy servers return a policy once it was handed to them, as `rollout::run` confirms) →
/// policy hosting (none: the policy is hosted elsewhere) → DNS → live checks →
/// `status::compute`, then Reconciling/Stalled as specified.
fn pass(md: &MailDomain, old: &MailDomainStatus, world: &World) -> MailDomainStatus {
    let now = Timestamp::now();
    let generation = md.metadata.generation;
    let mut stages = Stages::default();
    let done = |stages: &Stages| compute(old, stages, generation, now);
    let valid = match validate::validate(&md.spec, &validate::SecretData::new(), None) {
        Ok(v) => v,
        Err(invalid) => {
            stages.failed = Some((Stage::Validate, Error::InvalidSpec(invalid)));
            return done(&stages);
        }
    };
    let desired = desired::build(&valid.config);
    stages.warnings = Some(valid.warnings);
    let inputs = Inputs {
        wanted: desired.policy.as_ref(),
        checks_on: world.checks_on,
        force_enforce: false,
        skip_withdrawal: false,
        generation,
        promotion: None,
        now,
    };
    let decision = rollout::decide(old, &inputs);
    // rollout::run without its HTTP confirmation, which here always succeeds.
    let hosted = decision.serve.as_ref().map(|serve| {
        if old.served_policy.as_deref() == Some(serve.text.as_str()) {
            Hosted::Served
        } else {
            Hosted::NotServed {
                reason: reason::POLICY_PENDING,
                message: format!(
                    "policy {} handed to the policy servers; its id is published once they serve it",
                    serve.id
                ),
            }
        }
    });
    let rollout = rollout::outcome(old, decision, hosted);
    let records = desired.with_sts_id(rollout.publish_id.as_ref());
    stages.rollout = Some(rollout);
    stages.hosting = Some(None);
    match &world.dns {
        Dns::Fails(e) => {
            stages.failed = Some((
                Stage::Dns,
                Error::Dns {
                    provider: "rfc2136",
                    source: e.clone(),
                },
            ));
            return done(&stages);
        }
        Dns::Published | Dns::Conflict => {
            let mut conflicts = Vec::new();
            let records = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let conflict = matches!(world.dns, Dns::Conflict) && i == 0;
                    let message = conflict.then(|| {
                        format!(
                            "{} already holds {} `v=STSv1; id=someoneelse` that this operator did not create; remove it or set spec.adoptExisting to take it over",
                            r.name, r.kind
                        )
                    });
                    conflicts.extend(message.clone());
                    RecordStatus {
                        name: r.name.clone(),
                        record_type: "TXT".into(),
                        value: r.value.clone(),
                        state: if conflict {
                            RecordState::Conflict
                        } else {
                            RecordState::Published
                        },
                        message,
                    }
                })
                .collect();
            stages.published = Some(Published {
                records,
                conflicts,
                manual: false,
                by_hand: Vec::new(),
                awaiting: Vec::new(),
                changes: 0,
            });
        }
    }
    stages.checked = world
        .findings
        .clone()
        .map(|findings| Checked { findings, at: now });
    done(&stages)
}

fn finding(check: &'static str, outcome: Outcome, reason: &'static str, message: &str) -> Finding {
    Finding {
        check,
        subject: "mta-sts".into(),
        outcome,
        reason,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The evaluators.

/// `(status, message)` from kstatus.
fn kstatus(tool: &Path, object: &Value) -> (String, String) {
    let out = run_with_stdin(&mut Command::new(tool), &object.to_string());
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kstatus output {out:?}: {e}"));
    (
        v["status"].as_str().unwrap_or_default().to_owned(),
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `(hs.status, hs.message)` from the Argo CD script, run as Argo CD runs it: `obj` is the
/// object as a Lua table, the chunk returns `hs`.
fn argo(lua: &Path, script: &Path, object: &Value) -> (String, String) {
    let harness = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
        lua_value(object),
        lua_string(&script.to_string_lossy())
    );
    let out = run_with_stdin(Command::new(lua).arg("-"), &harness);
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    (status.to_owned(), message.to_owned())
}

fn run_with_stdin(command: &mut Command, input: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A JSON value as a Lua 5.1 expression: objects and arrays as tables (arrays from 1), null
/// as nil, integers as integers.
fn lua_value(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => format!("{:?}", n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A Lua string literal of the same bytes: printable ASCII as is, the rest as `\ddd`.
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// An interpreter from PATH; missing is a failure (scripts/tools.d/lua.sh installs it).
fn interpreter(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/tools.sh (scripts/tools.d/lua.sh installs it)"
            )
        })
}

// ---------------------------------------------------------------------------------------------
// The states.

const KSTATUS_OF: [(&str, &str); 4] = [
    ("Current", "Healthy"),
    ("InProgress", "Progressing"),
    ("Failed", "Degraded"),
    // Argo CD has no Terminating: a MailDomain being deleted is still withdrawing its records.
    ("Terminating", "Progressing"),
];

struct Case {
    name: &'static str,
    spec: Value,
    /// The passes the controller made, each with what the world answered; none: no status.
    passes: Vec<World>,
    /// A new spec, applied before the status of the first one is written: the status is a
    /// generation behind.
    then_spec: Option<Value>,
    /// Deleted (the controller's finalizer holds it) before its status is written.
    deleted: bool,
    /// Conditions the status must show: (type, status, reason).
    shows: Vec<(&'static str, &'static str, &'static str)>,
    /// kstatus's verdict, and a text both evaluators' messages contain.
    kstatus: &'static str,
    says: &'static str,
    /// The Argo CD verdict when it is not kstatus's counterpart (a documented difference).
    argo_differs: Option<&'static str>,
}

fn spec(domain: &str, mode: &str, max_age: u32) -> Value {
    json!({
        "domain": domain,
        "mx": [format!("mx1.{domain}")],
        "mtaSts": {"mode": mode, "maxAge": max_age},
        "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]},
        "spf": {"mechanisms": ["mx"], "all": "fail"},
    })
}

/// The invalid example that admission lets through and the controller refuses.
fn invalid_spec() -> Value {
    let path = support::repo_root().join("examples/invalid/spf-too-many-lookups.yaml");
    let text = std::fs::read_to_string(&path).expect("the invalid example");
    assert!(
        text.lines().any(|l| l.trim() == "# admission: none"),
        "{} must be one the API server admits",
        path.display()
    );
    let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
    doc["spec"].clone()
}

fn cases(zone: &str) -> Vec<Case> {
    // Fresh domains each run: MailDomains of earlier runs stay in etcd (see support).
    let run = support::random_suffix();
    let d = |label: &str| format!("{label}-{run}.{zone}");
    let smtp_unknown = || {
        Some(vec![
            finding("MTA-STS", Outcome::Pass, "Valid", "v=STSv1"),
            finding("MTA-STS policy", Outcome::Pass, "Valid", "served"),
            finding(
                "MX coverage",
                Outcome::Pass,
                "Covered",
                "every MX is covered",
            ),
            finding(
                "SMTP TLS",
                Outcome::Warn,
                "Port25Unreachable",
                "port 25 timed out where the controller runs",
            ),
        ])
    };
    let fails = |e: DnsError| {
        vec![World {
            dns: Dns::Fails(e),
            ..World::published()
        }]
    };
    vec![
        Case {
            name: "ready",
            spec: spec(&d("ready"), "testing", 86400),
            passes: vec![World::published(), World::published()],
            then_spec: None,
            deleted: false,
            shows: vec![("Ready", "True", "Published"), ("PolicyHosted", "True", "Served")],
            kstatus: "Current",
            says: "Ready",
            argo_differs: None,
        },
        Case {
            name: "new-generation",
            spec: spec(&d("newgen"), "testing", 86400),
            passes: vec![World::published(), World::published()],
            then_spec: Some(spec(&d("newgen"), "testing", 172800)),
            deleted: false,
            shows: vec![("Ready", "True", "Published")],
            kstatus: "InProgress",
            says: "eneration",
            argo_differs: None,
        },
        Case {
            name: "mta-sts-rollout",
            spec: spec(&d("rollout"), "testing", 86400),
            passes: vec![World::published()],
            then_spec: None,
            deleted: false,
            shows: vec![
                ("Ready", "False", "NotReady"),
                ("PolicyHosted", "False", "PolicyPending"),
                ("DNSPublished", "False", "WaitingForPolicy"),
                ("Reconciling", "True", "WaitingForPolicy"),
            ],
            kstatus: "InProgress",
            says: "WaitingForPolicy",
            argo_differs: None,
        },
        Case {
            name: "held-in-testing",
            spec: spec(&d("held"), "enforce", 86400),
            passes: (0..3)
                .map(|i| World {
                    checks_on: true,
                    dns: Dns::Published,
                    findings: if i == 0 { None } else { smtp_unknown() },
                })
                .collect(),
            then_spec: None,
            deleted: false,
            shows: vec![
                ("Ready", "True", "Published"),
                ("Enforced", "False", "HeldInTesting"),
                ("SMTPTLSVerified", "Unknown", "Port25Unreachable"),
            ],
            kstatus: "Current",
            says: "Ready",
            argo_differs: None,
        },
        Case {
            name: "live-check-failing",
            spec: spec(&d("check"), "testing", 86400),
            passes: vec![
                World::published(),
                World {
                    findings: Some(vec![finding(
                        "SPF",
                        Outcome::Fail,
                        "Mismatch",
                        "published `v=spf1 -all`, expected `v=spf1 mx -all`",
                    )]),
                    checks_on: true,
                    dns: Dns::Published,
                },
            ],
            then_spec: None,
            deleted: false,
            shows: vec![
                ("Ready", "False", "NotReady"),
                ("DNSPublished", "True", "Published"),
                ("SPFVerified", "False", "Mismatch"),
                ("Reconciling", "True", "Mismatch"),
            ],
            kstatus: "InProgress",
            says: "Mismatch",
            argo_differs: None,
        },
        Case {
            name: "invalid-spec",
            spec: invalid_spec(),
            passes: vec![World::published()],
            then_spec: None,
            deleted: false,
            shows: vec![
                ("Ready", "False", "NotReady"),
                ("DNSPublished", "False", "InvalidSpec"),
                ("Stalled", "True", "InvalidSpec"),
            ],
            kstatus: "Failed",
            says: "spec.spf.mechanisms",
            argo_differs: None,
        },
        Case {
            name: "dns-unreachable",
            spec: spec(&d("unreach"), "testing", 86400),
            passes: fails(DnsError::Unreachable("127.0.0.1:9: connection timed out".into())),
            then_spec: None,
            deleted: false,
            shows: vec![
                ("DNSPublished", "False", "DNSUnreachable"),
                ("Reconciling", "True", "DNSUnreachable"),
            ],
            kstatus: "InProgress",
            says: "DNSUnreachable",
            argo_differs: None,
        },
        Case {
            name: "dns-auth-failed",
            spec: spec(&d("auth"), "testing", 86400),
            passes: fails(DnsError::Auth(
                "the DNS server refused the TSIG signature (update: BADKEY): check the key name, algorithm and secret".into(),
            )),
            then_spec: None,
            deleted: false,
            shows: vec![
                ("DNSPublished", "False", "DNSAuthFailed"),
                ("Stalled", "True", "DNSAuthFailed"),
            ],
            kstatus: "Failed",
            says: "DNSAuthFailed",
            argo_differs: None,
        },
        Case {
            name: "conflict",
            spec: spec(&d("conflict"), "testing", 86400),
            passes: vec![
                World::published(),
                World {
                    dns: Dns::Conflict,
                    ..World::published()
                },
            ],
            then_spec: None,
            deleted: false,
            shows: vec![
                ("DNSPublished", "False", "Conflict"),
                ("Stalled", "True", "Conflict"),
            ],
            kstatus: "Failed",
            says: "adoptExisting",
            argo_differs: None,
        },
        Case {
            name: "being-deleted",
            spec: spec(&d("deleted"), "testing", 86400),
            passes: vec![World::published(), World::published()],
            then_spec: None,
            deleted: true,
            shows: vec![("Ready", "True", "Published")],
            kstatus: "Terminating",
            says: "deletion",
            argo_differs: None,
        },
        // Before the controller's first write: kstatus calls an object without status Current
        // (its generic rules have nothing to go on); the Argo CD script says Progressing. A
        // CRD schema default `status: {observedGeneration: 0}` would make kstatus say
        // InProgress too: then this case expects agreement, and the README row goes.
        Case {
            name: "no-status-yet",
            spec: spec(&d("new"), "testing", 86400),
            passes: vec![],
            then_spec: None,
            deleted: false,
            shows: vec![],
            kstatus: "Current",
            says: "",
            argo_differs: Some("Progressing"),
        },
    ]
}

fn finalizers(list: Value) -> Value {
    json!({"metadata": {"finalizers": list}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_and_argo_cd_agree_on_every_state() {
    let Some(env) = support::env() else { return };
    let kstatus_tool = env.tool("mailsec-kstatus");
    assert!(
        kstatus_tool.is_file(),
        "{} is missing: run scripts/tools.sh (scripts/tools.d/kstatus.sh builds it)",
        kstatus_tool.display()
    );
    let luas = [interpreter("lua5.1"), interpreter("lua5.4")];
    let script = support::repo_root().join(SCRIPT);
    let client = env.client().await;
    let ns = env.namespace(&client, "gitops-health").await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::erase::<MailDomain>(&()),
    );
    let apply = |name: &str, spec: &Value| {
        json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
               "metadata": {"name": name}, "spec": spec})
    };

    let mut table = Vec::new();
    for case in cases(&env.dns.zone) {
        let name = case.name;
        let created = api
            .patch(
                name,
                &PatchParams::apply("gitops-test"),
                &Patch::Apply(&apply(name, &case.spec)),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: the API server must admit the spec: {e}"));
        let mut written = serde_json::to_value(&created).expect("JSON");
        // Each case ends with the status write, so the object under test is the one the API
        // server stored for it (even if a controller of someone else's runs in this
        // environment and reconciles MailDomains in every namespace).
        if let Some(spec) = &case.then_spec {
            let after = api
                .patch(
                    name,
                    &PatchParams::apply("gitops-test"),
                    &Patch::Apply(&apply(name, spec)),
                )
                .await
                .expect("new spec");
            assert_eq!(
                after.metadata.generation,
                created.metadata.generation.map(|g| g + 1),
                "{name}: a new generation"
            );
        }
        if case.deleted {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&finalizers(json!([FINALIZER]))),
            )
            .await
            .expect("finalizer");
            api.delete(name, &DeleteParams::default())
                .await
                .expect("delete");
        }
        // The passes see the spec the status is for: the first generation.
        let mut status = MailDomainStatus::default();
        for world in &case.passes {
            status = pass(&created, &status, world);
        }
        if !case.passes.is_empty() {
            // As status::write does.
            let patch = json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "status": status});
            let stored = raw
                .patch_status(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: write status: {e}"));
            written = serde_json::to_value(&stored).expect("JSON");
        }

        // Read back from the API server, as Flux and Argo CD see it.
        let got = serde_json::to_value(raw.get(name).await.expect("read back")).expect("JSON");
        let version = |o: &Value| o["metadata"]["resourceVersion"].clone();
        let object = if version(&got) == version(&written) {
            got
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "[gitops_health] {name}: changed after the test's write by someone else (a \
                 controller watching every namespace?): judging the object as stored by the write"
            );
            written
        };
        let conditions: Vec<Condition> =
            serde_json::from_value(object["status"]["conditions"].clone()).unwrap_or_default();
        for (t, s, r) in &case.shows {
            let c = conditions.iter().find(|c| c.type_ == *t);
            assert_eq!(
                c.map(|c| (c.status.as_str(), c.reason.as_str())),
                Some((*s, *r)),
                "{name}: condition {t}; all: {conditions:#?}"
            );
        }
        let health_true = conditions
            .iter()
            .filter(|c| (c.type_ == "Reconciling" || c.type_ == "Stalled") && c.status == "True")
            .count();
        assert!(
            health_true <= 1,
            "{name}: Reconciling and Stalled both True"
        );

        let (k, k_message) = kstatus(&kstatus_tool, &object);
        assert_eq!(k, case.kstatus, "{name}: kstatus says {k}: {k_message}");
        let argo_expected = case.argo_differs.unwrap_or_else(|| {
            KSTATUS_OF
                .iter()
                .find(|(ks, _)| *ks == k)
                .map(|(_, a)| *a)
                .unwrap_or_else(|| panic!("{name}: no Argo CD counterpart of {k}"))
        });
        assert!(
            k_message.contains(case.says),
            "{name}: kstatus message {k_message:?}"
        );
        let mut argo_said = Vec::new();
        for lua in &luas {
            let (a, a_message) = argo(lua, &script, &object);
            assert_eq!(
                a,
                argo_expected,
                "{name}: {} says {a}: {a_message}",
                lua.display()
            );
            assert!(
                a_message.contains(case.says),
                "{name}: {} message {a_message:?}",
                lua.display()
            );
            argo_said.push((a, a_message));
        }
        assert_eq!(
            argo_said[0], argo_said[1],
            "{name}: lua5.1 and lua5.4 differ"
        );
        if case.deleted {
            let removed = api
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&finalizers(Value::Null)),
                )
                .await;
            // Gone already: someone else's controller finished the deletion.
            if let Err(e) = removed {
                assert!(
                    matches!(&e, kube::Error::Api(s) if s.code == 404),
                    "{name}: remove the finalizer: {e}"
                );
            }
        }
        table.push(format!(
            "{name:<20} kstatus {k:<11} argo {:<12} {}",
            argo_said[0].0, argo_said[0].1
        ));
    }
    let _ = writeln!(std::io::stderr(), "{}", table.join("\n"));
    ns.delete(&client).await;
}

/// The README's argocd-cm snippet carries the shipped script, byte for byte.
#[test]
fn the_readme_snippet_is_the_shipped_script() {
    let root = support::repo_root();
    let script = std::fs::read_to_string(root.join(SCRIPT)).expect("the Lua script");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n## GitOps health")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a GitOps health section");
    let key = format!("{ARGO_KEY}: |");
    let mut lines = section.lines().skip_while(|l| l.trim() != key);
    let head = lines.next().expect("the argocd-cm key in the README");
    let indent = head.len() - head.trim_start().len() + 2;
    let mut snippet = String::new();
    for line in lines.take_while(|l| !l.trim_start().starts_with("```")) {
        let body = line.get(indent..).unwrap_or("");
        assert!(
            line.trim().is_empty() || line[..indent].trim().is_empty(),
            "README snippet line not indented under the key: {line:?}"
        );
        snippet.push_str(body);
        snippet.push('\n');
    }
    assert_eq!(
        snippet, script,
        "the README's argocd-cm snippet differs from {SCRIPT}"
    );
}
