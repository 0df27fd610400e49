//! Our CRDs on the real kube-apiserver: the examples round-trip, every invalid example that
//! admission can catch is refused by the API server itself with the field and message we expect,
//! the controller-only ones pass admission, and the status subresource behaves.

mod support;

use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use mailsec_operator::api::{MailDomain, MailDomainStatus};

const MANAGER: &str = "mailsec-test";

fn examples(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(support::repo_root().join(dir))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn header(text: &str, key: &str) -> String {
    let prefix = format!("# {key}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .expect("header")
        .trim()
        .to_owned()
}

/// Server-side applies one document into `ns`, with strict field validation (what
/// `kubectl apply --server-side` does).
async fn apply(
    client: &kube::Client,
    ns: &str,
    mut doc: serde_json::Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    doc["metadata"]["namespace"] = ns.into();
    let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
    let resource = match doc["kind"].as_str() {
        Some("MailDomain") => ApiResource::erase::<MailDomain>(&()),
        Some("Secret") => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        Some("DNSProvider") => ApiResource::erase::<mailsec_operator::api::DNSProvider>(&()),
        other => panic!("unexpected kind {other:?}"),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let mut params = PatchParams::apply(MANAGER).validation_strict();
    if dry_run {
        params = params.dry_run();
    }
    api.patch(&name, &params, &Patch::Apply(doc)).await
}

fn documents(path: &PathBuf) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read");
    serde_saphyr::from_multiple(&text).expect("yaml")
}

#[tokio::test]
async fn invalid_examples_are_refused_at_admission_as_documented() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "invalid").await;
    let mut refused = 0;
    for path in examples("examples/invalid") {
        let text = std::fs::read_to_string(&path).expect("read");
        let (field, admission) = (header(&text, "expect"), header(&text, "admission"));
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for doc in documents(&path) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let result = apply(&client, ns.name(), doc.clone(), true).await;
            if kind != "MailDomain" {
                result.unwrap_or_else(|e| panic!("{file}: the {kind} is valid: {e}"));
                continue;
            }
            if admission == "none" {
                result.unwrap_or_else(|e| {
                    panic!("{file}: documented as passing admission, refused: {e}")
                });
                continue;
            }
            let Err(kube::Error::Api(status)) = result else {
                panic!("{file}: the API server accepted it (admission: {admission})");
            };
            assert!(
                status.message.contains(&field),
                "{file}: the API server's message does not name `{field}`: {}",
                status.message
            );
            if admission == "cel" {
                // The message is the one our CEL rule carries, the same kube's engine gives.
                let md: MailDomain = serde_json::from_value(doc).expect("typed");
                let ours = format!("{:?}", kube::core::cel::validate_cel(&md));
                let rule_message = ours
                    .split("message: \"")
                    .nth(1)
                    .and_then(|m| m.split('"').next())
                    .expect("a CEL message");
                assert!(
                    status.message.contains(rule_message),
                    "{file}: expected `{rule_message}` in: {}",
                    status.message
                );
            }
            refused += 1;
        }
    }
    assert!(
        refused >= 15,
        "only {refused} examples were checked against admission"
    );
    ns.delete(&client).await;
}

#[tokio::test]
async fn valid_examples_round_trip_with_defaults_applied() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "roundtrip").await;
    for path in examples("examples") {
        for doc in documents(&path) {
            let sent = doc.clone();
            let stored = apply(&client, ns.name(), doc, false)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if sent["kind"] != "MailDomain" {
                continue;
            }
            let ours: MailDomain = serde_json::from_value(sent).expect("typed");
            let theirs: MailDomain =
                serde_json::from_value(serde_json::to_value(&stored).expect("json"))
                    .expect("typed");
            // Serde fills the same defaults the schema declares, so the two specs agree.
            assert_eq!(theirs.spec, ours.spec, "{}", path.display());
        }
    }
    let basic: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let stored = basic.get("example-com").await.expect("get");
    assert_eq!(stored.spec.ttl, 3600, "defaulted by the API server");
    ns.delete(&client).await;
}

#[tokio::test]
async fn status_is_a_subresource_and_shows_in_the_printer_columns() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "status").await;
    let doc = documents(&support::repo_root().join("examples/basic.yaml")).remove(0);
    apply(&client, ns.name(), doc, false).await.expect("apply");
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());

    // Writing status through the main resource is ignored...
    let patch = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "status": {"policyId": "sneaky"}});
    api.patch(
        "example-com",
        &PatchParams::apply("someone-else"),
        &Patch::Apply(&patch),
    )
    .await
    .expect("patch");
    assert_eq!(api.get("example-com").await.expect("get").status, None);

    // ...and through the status subresource it sticks, conditions keyed by type.
    let status = MailDomainStatus {
        observed_generation: Some(1),
        policy_id: Some("57c0b2e9044f1929fd313349db8c6c5d".into()),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Published".into(),
            message: "all records published".into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ),
        }],
        ..MailDomainStatus::default()
    };
    let patch = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "status": status});
    api.patch_status(
        "example-com",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("status");
    let got = api.get("example-com").await.expect("get");
    assert_eq!(
        got.status.as_ref().and_then(|s| s.policy_id.as_deref()),
        Some("57c0b2e9044f1929fd313349db8c6c5d")
    );

    let table = env.kubectl_ok(["get", "maildomains", "-n", ns.name()]);
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        head,
        ["NAME", "DOMAIN", "MODE", "POLICY-ID", "READY", "AGE"]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [
            "example-com",
            "example.com",
            "testing",
            "57c0b2e9044f1929fd313349db8c6c5d",
            "True"
        ]
    );

    let explain = env.kubectl_ok(["explain", "maildomain.spec.mtaSts.maxAge"]);
    assert!(
        explain.contains("How long senders may cache the policy"),
        "{explain}"
    );
    ns.delete(&client).await;
}

/// A DNSProvider's settings block must match its type, and the powerdns one must be complete:
/// the API server refuses the rest with our messages.
#[tokio::test]
async fn provider_settings_blocks_are_checked_at_admission() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "providers").await;
    let provider = |spec: serde_json::Value| {
        serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider",
            "metadata": {"name": "p"}, "spec": spec})
    };
    let key = serde_json::json!({"name": "pdns", "key": "api-key"});
    let ok = provider(serde_json::json!({"type": "powerdns",
        "powerdns": {"url": "http://pdns.dns.svc:8081", "apiKeySecretRef": key}}));
    let applied = apply(&client, ns.name(), ok, true)
        .await
        .expect("a complete powerdns block");
    assert_eq!(
        applied.data["spec"]["powerdns"]["serverId"], "localhost",
        "defaulted"
    );
    let refused = [
        (
            serde_json::json!({"type": "powerdns"}),
            "powerdns settings are required when type is powerdns",
        ),
        (
            serde_json::json!({"type": "rfc2136",
                "powerdns": {"url": "http://pdns:8081", "apiKeySecretRef": key}}),
            "rfc2136 settings are required when type is rfc2136",
        ),
        (
            serde_json::json!({"type": "powerdns",
                "powerdns": {"url": "pdns.dns.svc:8081", "apiKeySecretRef": key}}),
            "url must be http:// or https://",
        ),
        (
            serde_json::json!({"type": "powerdns", "powerdns": {"url": "http://pdns:8081"}}),
            "apiKeySecretRef",
        ),
        (
            serde_json::json!({"type": "route53", "route53": {
                "accessKeyIDSecretRef": {"name": "aws", "key": "id"}}}),
            "accessKeyIDSecretRef and secretAccessKeySecretRef go together",
        ),
        (
            serde_json::json!({"type": "route53"}),
            "route53 settings are required when type is route53",
        ),
        (
            serde_json::json!({"type": "cloudflare"}),
            "cloudflare settings are required when type is cloudflare",
        ),
        (
            serde_json::json!({"type": "cloudflare", "cloudflare": {
                "apiUrl": "api.cloudflare.com", "apiTokenSecretRef": key}}),
            "apiUrl must be an http:// or https:// URL",
        ),
    ];
    for (spec, message) in refused {
        let Err(kube::Error::Api(status)) =
            apply(&client, ns.name(), provider(spec.clone()), true).await
        else {
            panic!("accepted: {spec}");
        };
        assert!(
            status.message.contains(message),
            "{spec}: {}",
            status.message
        );
    }
    ns.delete(&client).await;
}
