//! The controller and the policy server against the real API server and the real BIND: what
//! `kubectl apply` of a MailDomain does to DNS, to the served policy, and to status. DNS is
//! checked with `dig`, the policy with plain HTTP requests to `mailsec serve`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use mailsec_operator::controller::context::Config;
use mailsec_operator::controller::run::{self, Options};
use support::maildomain::{condition, ready, wait_for};
use support::{TestEnv, random_suffix};

const MANAGER: &str = "mailsec-test";
/// The report receiver the test controllers name for `tlsRpt.receive`.
const REPORT_URL: &str = "https://tlsrpt.example.test/v1/reports";

fn free_addr() -> SocketAddr {
    support::free_addr()
}

/// A controller and a policy server for one test namespace, as tasks of the test's runtime.
struct Operator {
    serve: SocketAddr,
    admin: SocketAddr,
    http: reqwest::Client,
}

impl Operator {
    async fn start(env: &TestEnv, ns: &str, leader_election: bool, identity: &str) -> Operator {
        Self::start_with_checks(env, ns, leader_election, identity, None).await
    }

    async fn start_with_checks(
        env: &TestEnv,
        ns: &str,
        leader_election: bool,
        identity: &str,
        checks: Option<mailsec_operator::controller::verify::Settings>,
    ) -> Operator {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,mailsec_operator=debug")
            .with_test_writer()
            .try_init();
        let client = env.client().await;
        let (serve, serve_admin, admin) = (free_addr(), free_addr(), free_addr());
        tokio::spawn(mailsec_operator::serve::run(
            client.clone(),
            serve,
            serve_admin,
            None,
        ));
        let http = support::http_client();
        support::wait_ready(serve_admin).await;
        let options = Options {
            config: Config {
                owner_id: "test".into(),
                operator_namespace: ns.into(),
                policy_server: Some(format!("http://{serve}/").parse().expect("url")),
                hosting: mailsec_operator::controller::hosting::HostingConfig {
                    service_name: "mailsec-serve".into(),
                    service_namespace: "mailsec-system".into(),
                    service_port: 80,
                    cluster_domain: "cluster.local".into(),
                },
                checks,
                report_url: Some(
                    mailsec_operator::domain::tlsrpt::ReportUri::parse(REPORT_URL)
                        .expect("report url"),
                ),
                report_retention: Default::default(),
            },
            admin_addr: admin,
            leader_election,
            lease_name: "mailsec-operator".into(),
            identity: identity.into(),
            watch_namespace: Some(ns.into()),
            reconcile_concurrency: 4,
        };
        let config = env.config().await;
        tokio::spawn(async move {
            if let Err(e) = run::run(config, options).await {
                eprintln!("controller stopped: {e}");
            }
        });
        Operator { serve, admin, http }
    }

    /// The policy body `mailsec serve` returns for `domain`, with the status code.
    async fn policy(&self, domain: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://{}/.well-known/mta-sts.txt", self.serve))
            .header("Host", format!("MTA-STS.{domain}:443"))
            .send()
            .await
            .expect("GET policy");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    /// One counter from the controller's /metrics (summed over labels).
    async fn metric(&self, name: &str) -> u64 {
        let body = self
            .http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        body.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

async fn apply_json(client: &Client, ns: &str, value: serde_json::Value) {
    support::apply_json(client, ns, MANAGER, value).await;
}

/// The TSIG Secret and a DNSProvider writing the test zone.
async fn provider(env: &TestEnv, client: &Client, ns: &str, secret: &str) {
    let dns = &env.dns;
    apply_json(client, ns, serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"}, "stringData": {"secret": secret}
    }))
    .await;
    apply_json(client, ns, serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "bind"},
        "spec": {"type": "rfc2136", "zones": [dns.zone], "rfc2136": {
            "server": dns.server.to_string(), "tsigKeyName": dns.tsig_key_name, "tsigAlgorithm": dns.tsig_algorithm,
            "tsigSecretRef": {"name": "tsig", "key": "secret"}}}
    }))
    .await;
}

fn mail_domain(domain: &str, mode: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "md"},
        "spec": {
            "domain": domain, "ttl": 60, "dnsProviderRef": {"name": "bind"},
            "mx": [format!("mx1.{domain}")],
            "mtaSts": {"mode": mode, "maxAge": 86400},
            "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]},
            "spf": {"mechanisms": ["mx"], "all": "fail"},
            "dmarc": {"policy": "none"}
        }
    })
}

fn expected_policy(mode: &str, domain: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: mx1.{domain}\r\nmax_age: 86400\r\n")
}

fn sts_id(values: &[String]) -> Option<String> {
    values
        .iter()
        .find_map(|v| v.strip_prefix("v=STSv1; id=").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_serves_updates_in_order_and_cleans_up() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "ctl").await;
    let domain = format!("c{}.{}", random_suffix(), env.dns.zone);
    // Someone else's value at the apex, which must survive everything.
    let seed = env.dns.nsupdate(
        &format!("update add {domain}. 300 TXT \"site-verification=keep-me\"\nsend\n"),
        &env.dns.tsig_secret,
    );
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );

    let operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "Ready", ready).await;

    let status = md.status.clone().expect("status");
    let id = status.policy_id.clone().expect("policy id");
    assert_eq!(
        sts_id(&env.dns.txt(&format!("_mta-sts.{domain}"))),
        Some(id.clone())
    );
    assert_eq!(
        env.dns.txt(&format!("_smtp._tls.{domain}")),
        [format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}")]
    );
    assert_eq!(
        env.dns.txt(&format!("_dmarc.{domain}")),
        ["v=DMARC1; p=none"]
    );
    assert_eq!(
        env.dns.txt(&domain),
        ["site-verification=keep-me", "v=spf1 mx -all"]
    );
    assert_eq!(
        operator.policy(&domain).await,
        (200, expected_policy("testing", &domain))
    );
    assert_eq!(operator.policy(&format!("other.{domain}")).await.0, 404);
    assert!(
        status
            .records
            .iter()
            .all(|r| r.state == mailsec_operator::api::RecordState::Published)
    );

    // A reconcile with nothing changed writes nothing: no DNS update, no status patch.
    let (updates, writes, reconciles) = (
        operator.metric("mailsec_dns_updates_total").await,
        operator.metric("mailsec_status_writes_total").await,
        operator.metric("mailsec_reconciles_total").await,
    );
    let touch = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"annotations": {"touched": "1"}}});
    api.patch("md", &PatchParams::apply("toucher"), &Patch::Apply(&touch))
        .await
        .expect("touch");
    let deadline = Instant::now() + Duration::from_secs(10);
    while operator.metric("mailsec_reconciles_total").await <= reconciles {
        assert!(Instant::now() < deadline, "the touch caused no reconcile");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        operator.metric("mailsec_dns_updates_total").await,
        updates,
        "a no-op reconcile sent a DNS update"
    );
    assert_eq!(
        operator.metric("mailsec_status_writes_total").await,
        writes,
        "a no-op reconcile wrote status"
    );

    // Enforce: the policy servers return the new policy before the id changes in DNS.
    apply_json(&client, ns.name(), mail_domain(&domain, "enforce")).await;
    let new_policy = expected_policy("enforce", &domain);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut samples = 0;
    let new_id = loop {
        let dns_id = sts_id(&env.dns.txt(&format!("_mta-sts.{domain}")));
        let (_, served) = operator.policy(&domain).await;
        samples += 1;
        if dns_id.as_deref() != Some(id.as_str()) {
            assert_eq!(
                served, new_policy,
                "the id changed in DNS before the new policy was served"
            );
            break dns_id.expect("an id");
        }
        assert!(Instant::now() < deadline, "the id never changed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(samples > 1, "the change was not observed in progress");
    let md = wait_for(&api, "md", "Ready after enforce", |m| {
        ready(m) && m.status.as_ref().and_then(|s| s.policy_id.clone()) == Some(new_id.clone())
    })
    .await;
    assert_eq!(condition(&md, "PolicyHosted").map(|c| c.1), Some("Served"));

    // Delete, skipping the withdrawal wait: our records and markers go, the foreign value stays.
    support::delete_skipping_withdrawal(&api, "md", false).await;
    for name in [
        format!("_mta-sts.{domain}"),
        format!("_smtp._tls.{domain}"),
        format!("_dmarc.{domain}"),
        format!("_mailsec.{domain}"),
    ] {
        assert!(
            env.dns.txt(&name).is_empty(),
            "{name} still has {:?}",
            env.dns.txt(&name)
        );
    }
    assert_eq!(env.dns.txt(&domain), ["site-verification=keep-me"]);
    assert_eq!(operator.policy(&domain).await.0, 404);
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_mta_sts_record_is_a_conflict_until_adopted() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "conflict").await;
    let domain = format!("f{}.{}", random_suffix(), env.dns.zone);
    let seed = env.dns.nsupdate(
        &format!("update add _mta-sts.{domain}. 300 TXT \"v=STSv1; id=theirs1\"\nsend\n"),
        &env.dns.tsig_secret,
    );
    assert!(seed.status.success());
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "a Conflict", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "Conflict")
    })
    .await;
    let (_, _, message) = condition(&md, "DNSPublished").expect("condition");
    assert!(
        message.contains("v=STSv1; id=theirs1") && message.contains("adoptExisting"),
        "{message}"
    );
    assert_eq!(
        env.dns.txt(&format!("_mta-sts.{domain}")),
        ["v=STSv1; id=theirs1"]
    );
    assert!(
        env.dns
            .txt(&format!("_mailsec._mta-sts.{domain}"))
            .is_empty()
    );
    // The other records are not blocked by the conflict.
    assert_eq!(
        env.dns.txt(&format!("_dmarc.{domain}")),
        ["v=DMARC1; p=none"]
    );

    let mut adopted = mail_domain(&domain, "testing");
    adopted["spec"]["adoptExisting"] = true.into();
    apply_json(&client, ns.name(), adopted).await;
    let md = wait_for(&api, "md", "Ready after adopting", ready).await;
    let id = md.status.and_then(|s| s.policy_id).expect("id");
    assert_eq!(
        env.dns.txt(&format!("_mta-sts.{domain}")),
        [format!("v=STSv1; id={id}")]
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_credentials_and_missing_secrets_are_reported_and_recover() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "creds").await;
    let domain = format!("b{}.{}", random_suffix(), env.dns.zone);
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    provider(env, &client, ns.name(), wrong).await;
    let mut md = mail_domain(&domain, "testing");
    md["spec"]["dkim"] = serde_json::json!([{"selector": "s1", "keySecretRef": {"name": "dkim", "key": "public.pem"}}]);
    apply_json(&client, ns.name(), md).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());

    // The DKIM Secret is missing: the spec cannot be built, nothing is written.
    let got = wait_for(&api, "md", "InvalidSpec", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "InvalidSpec")
    })
    .await;
    assert!(
        condition(&got, "DNSPublished")
            .expect("c")
            .2
            .contains("Secret `dkim` was not found"),
        "{:?}",
        condition(&got, "DNSPublished")
    );
    assert_eq!(condition(&got, "Ready").map(|c| c.0), Some("False"));
    let key =
        std::fs::read_to_string(support::repo_root().join("tests/fixtures/dkim/rsa2048.pub.pem"))
            .expect("key");
    apply_json(&client, ns.name(), serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dkim"}, "stringData": {"public.pem": key}})).await;

    // Now the TSIG secret is wrong: an authentication failure, still nothing in DNS.
    let got = wait_for(&api, "md", "DNSAuthFailed", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "DNSAuthFailed")
    })
    .await;
    assert!(
        condition(&got, "DNSPublished")
            .expect("c")
            .2
            .contains("TSIG")
    );
    for name in [
        format!("_mta-sts.{domain}"),
        format!("_dmarc.{domain}"),
        format!("s1._domainkey.{domain}"),
        domain.clone(),
    ] {
        assert!(
            env.dns.txt(&name).is_empty(),
            "{name} was written with a bad key"
        );
    }

    // Fixed secret: everything is published, the long DKIM value included.
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    wait_for(&api, "md", "Ready after fixing the secret", ready).await;
    let dkim = env.dns.txt(&format!("s1._domainkey.{domain}"));
    assert_eq!(dkim.len(), 1);
    assert!(dkim[0].starts_with("v=DKIM1; k=rsa; p=MIIB") && dkim[0].len() > 255);
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_withdraws_mta_sts_with_mode_none_first() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "withdraw").await;
    let domain = format!("w{}.{}", random_suffix(), env.dns.zone);
    let operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "enforce")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "Ready", ready).await;
    let enforce_id = md.status.and_then(|s| s.policy_id).expect("id");

    api.delete("md", &DeleteParams::default())
        .await
        .expect("delete");
    let none_policy =
        format!("version: STSv1\r\nmode: none\r\nmx: mx1.{domain}\r\nmax_age: 86400\r\n");
    let md = wait_for(&api, "md", "the mode none policy published", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.withdraw_until.is_some() && s.policy_id.as_deref().is_some_and(|id| id != enforce_id)
        })
    })
    .await;
    assert_eq!(operator.policy(&domain).await, (200, none_policy));
    let id = md
        .status
        .as_ref()
        .and_then(|s| s.policy_id.clone())
        .expect("id");
    assert_eq!(
        env.dns.txt(&format!("_mta-sts.{domain}")),
        [format!("v=STSv1; id={id}")]
    );
    // The other records are gone at once; the MailDomain waits for the old max_age.
    assert!(env.dns.txt(&format!("_dmarc.{domain}")).is_empty());
    let until = md.status.and_then(|s| s.withdraw_until).expect("until").0;
    let wait = until
        .duration_since(k8s_openapi::jiff::Timestamp::now())
        .as_secs();
    assert!(
        (86_000..=86_400).contains(&wait),
        "withdrawal lasts the enforce policy's max_age, not {wait} s"
    );

    support::delete_skipping_withdrawal(&api, "md", true).await;
    assert!(env.dns.txt(&format!("_mta-sts.{domain}")).is_empty());
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_second_claim_on_a_domain_writes_nothing() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "claims").await;
    let domain = format!("d{}.{}", random_suffix(), env.dns.zone);
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    wait_for(&api, "md", "Ready", ready).await;
    let mut second = mail_domain(&domain, "enforce");
    second["metadata"]["name"] = "md2".into();
    second["spec"]["dmarc"]["policy"] = "reject".into();
    apply_json(&client, ns.name(), second).await;
    let md2 = wait_for(&api, "md2", "DomainConflict", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "DomainConflict")
    })
    .await;
    assert!(
        condition(&md2, "DNSPublished")
            .expect("c")
            .2
            .contains(&format!("{}/md", ns.name()))
    );
    assert_eq!(
        env.dns.txt(&format!("_dmarc.{domain}")),
        ["v=DMARC1; p=none"]
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_controllers_only_the_leader_writes() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "leader").await;
    let domain = format!("l{}.{}", random_suffix(), env.dns.zone);
    let a = Operator::start(env, ns.name(), true, "replica-a").await;
    let b = Operator::start(env, ns.name(), true, "replica-b").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    wait_for(&api, "md", "Ready", ready).await;

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), ns.name());
    let holder = leases
        .get("mailsec-operator")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("holder");
    let (leader, follower) = match holder.as_str() {
        "replica-a" => (&a, &b),
        "replica-b" => (&b, &a),
        other => panic!("unexpected lease holder {other}"),
    };
    assert!(
        leader.metric("mailsec_dns_updates_total").await > 0,
        "the leader wrote the records"
    );
    assert_eq!(
        follower.metric("mailsec_dns_updates_total").await,
        0,
        "the follower wrote to DNS"
    );
    assert_eq!(
        follower.metric("mailsec_reconciles_total").await,
        0,
        "the follower reconciled"
    );
    let leader_gauges = (
        leader.metric("mailsec_leader").await,
        follower.metric("mailsec_leader").await,
    );
    assert_eq!(
        leader_gauges,
        (1, 0),
        "mailsec_leader on the leader and on the follower"
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_dns_server_is_reported_and_recovers() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "unreach").await;
    let domain = format!("u{}.{}", random_suffix(), env.dns.zone);
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    let dead = free_addr();
    let patch = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "bind"},
        "spec": {"type": "rfc2136", "zones": [env.dns.zone], "rfc2136": {"server": dead.to_string(), "tsigKeyName": env.dns.tsig_key_name,
        "tsigAlgorithm": env.dns.tsig_algorithm, "tsigSecretRef": {"name": "tsig", "key": "secret"}}}});
    apply_json(&client, ns.name(), patch).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "DNSUnreachable", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "DNSUnreachable")
    })
    .await;
    assert!(
        condition(&md, "DNSPublished")
            .expect("c")
            .2
            .contains(&dead.to_string())
    );
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    wait_for(&api, "md", "Ready once the server is right", ready).await;
    assert_eq!(
        env.dns.txt(&format!("_dmarc.{domain}")),
        ["v=DMARC1; p=none"]
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_provider_limits_namespaces_and_zones() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "cluster").await;
    let domain = format!("k{}.{}", random_suffix(), env.dns.zone);
    let name = format!("bind-{}", random_suffix());
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    // The TSIG Secret lives in the operator's namespace (here: the test namespace).
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    let cluster: Api<mailsec_operator::api::ClusterDNSProvider> = Api::all(client.clone());
    let spec = |namespaces: serde_json::Value, zones: serde_json::Value| {
        serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "ClusterDNSProvider", "metadata": {"name": name},
            "spec": {"type": "rfc2136", "zones": zones, "allowedNamespaces": namespaces, "rfc2136": {"server": env.dns.server.to_string(),
            "tsigKeyName": env.dns.tsig_key_name, "tsigAlgorithm": env.dns.tsig_algorithm, "tsigSecretRef": {"name": "tsig", "key": "secret"}}}})
    };
    let apply = |v: serde_json::Value| {
        let cluster = cluster.clone();
        let name = name.clone();
        async move {
            cluster
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(v),
                )
                .await
                .expect("apply cluster provider")
        }
    };
    apply(spec(
        serde_json::json!(["somewhere-else"]),
        serde_json::json!([env.dns.zone]),
    ))
    .await;
    let mut md = mail_domain(&domain, "testing");
    md["spec"]["dnsProviderRef"] = serde_json::json!({"kind": "ClusterDNSProvider", "name": name});
    apply_json(&client, ns.name(), md).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let got = wait_for(&api, "md", "namespace refused", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "ProviderNotAllowed")
    })
    .await;
    assert!(
        condition(&got, "DNSPublished")
            .expect("c")
            .2
            .contains(&format!("does not allow namespace {}", ns.name()))
    );

    apply(spec(
        serde_json::json!([ns.name()]),
        serde_json::json!(["elsewhere.test"]),
    ))
    .await;
    let got = wait_for(&api, "md", "zone refused", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.2.contains("none of the zones"))
    })
    .await;
    assert_eq!(
        condition(&got, "DNSPublished").map(|c| c.1),
        Some("ProviderNotAllowed")
    );
    assert!(
        env.dns.txt(&format!("_dmarc.{domain}")).is_empty(),
        "nothing written while refused"
    );

    apply(spec(
        serde_json::json!([ns.name()]),
        serde_json::json!([env.dns.zone]),
    ))
    .await;
    wait_for(&api, "md", "Ready when allowed", ready).await;
    assert_eq!(
        env.dns.txt(&format!("_dmarc.{domain}")),
        ["v=DMARC1; p=none"]
    );
    support::delete_skipping_withdrawal(&api, "md", false).await;
    cluster
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete cluster provider");
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_provider_status_lists_the_records_to_publish() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "manual").await;
    let domain = format!("m{}.{}", random_suffix(), env.dns.zone);
    let operator = Operator::start(env, ns.name(), false, "solo").await;
    let mut md = mail_domain(&domain, "testing");
    md["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("dnsProviderRef");
    apply_json(&client, ns.name(), md).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let got = wait_for(&api, "md", "ManualProvider", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "ManualProvider")
            && condition(m, "PolicyHosted").is_some_and(|c| c.0 == "True")
    })
    .await;
    let status = got.status.expect("status");
    let names: Vec<&str> = status.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&format!("_mta-sts.{domain}").as_str()));
    assert!(
        status
            .records
            .iter()
            .all(|r| r.state == mailsec_operator::api::RecordState::Pending && r.message.is_some())
    );
    assert_eq!(
        condition(&api.get("md").await.expect("get"), "Ready").map(|c| c.0),
        Some("False")
    );
    assert_eq!(
        operator.policy(&domain).await,
        (200, expected_policy("testing", &domain))
    );
    assert!(
        env.dns.txt(&format!("_dmarc.{domain}")).is_empty(),
        "the manual provider wrote to DNS"
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_host_ingress_and_certificate_readiness() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting").await;
    let domain = format!("h{}.{}", random_suffix(), env.dns.zone);
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    let mut md = mail_domain(&domain, "testing");
    md["spec"]["mtaSts"]["policyHost"] = serde_json::json!({
        "ingress": {"className": "nginx"},
        "certificate": {"issuerRef": {"kind": "ClusterIssuer", "name": "letsencrypt"}}
    });
    apply_json(&client, ns.name(), md).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let got = wait_for(&api, "md", "records published, certificate pending", |m| {
        condition(m, "CertificateReady").is_some_and(|c| c.0 == "Unknown")
            && condition(m, "DNSPublished").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        condition(&got, "Ready").map(|c| c.0),
        Some("False"),
        "not Ready without a certificate"
    );

    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), ns.name());
    let ingress = ingresses.get("mta-sts-md").await.expect("the Ingress");
    let rule = &ingress
        .spec
        .as_ref()
        .and_then(|s| s.rules.clone())
        .expect("rules")[0];
    assert_eq!(
        rule.host.as_deref(),
        Some(format!("mta-sts.{domain}").as_str())
    );

    // cert-manager (simulated: its CRDs are installed, its controller is not) issues it.
    let certificates: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &mailsec_operator::controller::hosting::certificate_resource(),
    );
    let cert = certificates
        .get("mta-sts-md")
        .await
        .expect("the Certificate");
    let generation = cert.metadata.generation.unwrap_or(1);
    let status = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired",
         "observedGeneration": generation, "lastTransitionTime": "2026-11-22T00:00:00Z"}]}});
    certificates
        .patch_status(
            "mta-sts-md",
            &PatchParams::apply("cert-manager"),
            &Patch::Apply(&status),
        )
        .await
        .expect("certificate status");
    let got = wait_for(&api, "md", "Ready with the certificate", ready).await;
    assert_eq!(
        condition(&got, "CertificateReady").map(|c| (c.0, c.1)),
        Some(("True", "Ready"))
    );
    ns.delete(&client).await;
}

/// policyHost.address: the controller publishes `mta-sts.<domain>` through the DNS provider
/// (BIND), A/AAAA from the Ingress's load-balancer status (written here as an ingress
/// controller would), then a CNAME the user names; the records and their marker are gone when
/// the address is no longer asked for; status lists each record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_policy_host_address_follows_the_load_balancer_into_dns() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "address").await;
    let domain = format!("a{}.{}", random_suffix(), env.dns.zone);
    let host = format!("mta-sts.{domain}");
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    let mut md = mail_domain(&domain, "testing");
    md["spec"]["mtaSts"]["policyHost"] =
        serde_json::json!({"ingress": {}, "address": {"fromLoadBalancer": {}}});
    apply_json(&client, ns.name(), md.clone()).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    wait_for(&api, "md", "records published", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert!(
        env.dns.dig_short(&host, "A").is_empty(),
        "no address before the load balancer has one"
    );

    // The ingress controller reports its load balancer.
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), ns.name());
    let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.44"}, {"ip": "2001:db8::44"}]}}});
    ingresses
        .patch_status(
            "mta-sts-md",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("ingress status");
    let got = wait_for(&api, "md", "the address in status.records", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.records
                .iter()
                .any(|r| r.name == host && r.record_type == "A" && r.value == "192.0.2.44")
        })
    })
    .await;
    assert!(
        got.status
            .as_ref()
            .expect("status")
            .records
            .iter()
            .any(|r| r.record_type == "AAAA" && r.value == "2001:db8::44")
    );
    assert_eq!(env.dns.dig_short(&host, "A"), ["192.0.2.44"]);
    assert_eq!(env.dns.dig_short(&host, "AAAA"), ["2001:db8::44"]);
    assert_eq!(env.dns.txt(&format!("_mailsec.{host}")).len(), 1, "marked");

    // A CNAME the user names instead.
    md["spec"]["mtaSts"]["policyHost"]["address"] = serde_json::json!({"cname": "lb.example.net"});
    apply_json(&client, ns.name(), md.clone()).await;
    wait_for(&api, "md", "the CNAME in status.records", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.records
                .iter()
                .any(|r| r.name == host && r.record_type == "CNAME")
        })
    })
    .await;
    assert_eq!(env.dns.dig_short(&host, "CNAME"), ["lb.example.net."]);
    assert!(
        env.dns
            .dig(&["+noall", "+answer", &host, "A"])
            .stdout
            .split(|b| *b == b'\n')
            .all(|l| !String::from_utf8_lossy(l).contains("192.0.2.44")),
        "the A records are gone"
    );

    // No address asked for: ours and the marker go.
    md["spec"]["mtaSts"]["policyHost"] = serde_json::json!({"ingress": {}});
    apply_json(&client, ns.name(), md).await;
    wait_for(&api, "md", "no address in status.records", |m| {
        m.metadata.generation == m.status.as_ref().and_then(|s| s.observed_generation)
            && m.status
                .as_ref()
                .is_some_and(|s| s.records.iter().all(|r| r.name != host))
    })
    .await;
    assert!(env.dns.dig_short(&host, "CNAME").is_empty());
    assert!(env.dns.txt(&format!("_mailsec.{host}")).is_empty());
    ns.delete(&client).await;
}

/// What the live checks need for `domain`: mta-sts and mx1 on loopback in DNS, `mailsec serve`
/// over TLS and aiosmtpd with certificates from a test CA, and check settings pointing at them.
async fn live_check_setup(
    env: &TestEnv,
    client: &Client,
    domain: &str,
) -> (
    support::tls::Pki,
    support::tls::Fixture,
    mailsec_operator::controller::verify::Settings,
) {
    use support::tls::{Pki, Smtp};
    let pki = Pki::new();
    let seed = env.dns.nsupdate(
        &format!("update add {domain}. 300 MX 10 mx1.{domain}.\nupdate add mx1.{domain}. 300 A 127.0.0.1\nupdate add mta-sts.{domain}. 300 A 127.0.0.1\nsend\n"),
        &env.dns.tsig_secret,
    );
    assert!(seed.status.success());
    let (https, https_admin) = (free_addr(), free_addr());
    let tls = pki.leaf(&format!("mta-sts.{domain}"));
    tokio::spawn(mailsec_operator::serve::run(
        client.clone(),
        https,
        https_admin,
        Some(tls),
    ));
    let smtp = Smtp::start("starttls", &pki.leaf(&format!("mx1.{domain}")));
    let ca = std::fs::read(pki.dir.join("ca.pem")).expect("ca");
    let settings = mailsec_operator::controller::verify::Settings {
        options: mailsec_operator::checks::run::Options {
            resolvers: vec![env.dns.server],
            https_port: https.port(),
            smtp_port: smtp.port,
            roots: mailsec_operator::checks::tls::roots(Some(&ca)).expect("roots"),
            timeout: Duration::from_secs(5),
        },
        interval: Duration::from_secs(2),
        limit: std::sync::Arc::new(tokio::sync::Semaphore::new(2)),
    };
    (pki, smtp, settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_checks_become_verified_conditions() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "verify").await;
    let domain = format!("v{}.{}", random_suffix(), env.dns.zone);
    let (_pki, _smtp, settings) = live_check_setup(env, &client, &domain).await;
    let _operator =
        Operator::start_with_checks(env, ns.name(), false, "solo", Some(settings)).await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let verified = [
        "MTASTSVerified",
        "TLSRPTVerified",
        "MXCovered",
        "SMTPTLSVerified",
        "SPFVerified",
        "DMARCVerified",
    ];
    let md = wait_for(&api, "md", "every check verified", |m| {
        ready(m)
            && verified
                .iter()
                .all(|t| condition(m, t).is_some_and(|c| c.0 == "True"))
    })
    .await;
    assert!(
        condition(&md, "DKIMVerified").is_none(),
        "no DKIM in the spec, no DKIM condition"
    );
    assert!(
        condition(&md, "Enforced").is_none(),
        "testing asked for, nothing held"
    );
    assert!(
        md.status
            .as_ref()
            .and_then(|s| s.last_checked.clone())
            .is_some()
    );

    // An MX the policy does not cover: found at the next check, and Ready says so.
    let more = env.dns.nsupdate(
        &format!("update add {domain}. 300 MX 20 mx9.other.example.\nsend\n"),
        &env.dns.tsig_secret,
    );
    assert!(more.status.success());
    let md = wait_for(&api, "md", "MXCovered False", |m| {
        condition(m, "MXCovered").is_some_and(|c| c.1 == "MXNotCovered")
    })
    .await;
    assert!(
        condition(&md, "MXCovered")
            .expect("c")
            .2
            .contains("mx9.other.example not covered")
    );
    assert_eq!(condition(&md, "Ready").map(|c| c.0), Some("False"));
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enforce_waits_until_every_mx_passes() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "enforce").await;
    let domain = format!("e{}.{}", random_suffix(), env.dns.zone);
    let (_pki, _smtp, settings) = live_check_setup(env, &client, &domain).await;
    // A second MX outside the policy: enforce would make senders refuse to deliver to it.
    let extra = env.dns.nsupdate(
        &format!("update add {domain}. 300 MX 20 mx9.other.example.\nsend\n"),
        &env.dns.tsig_secret,
    );
    assert!(extra.status.success());
    let operator = Operator::start_with_checks(env, ns.name(), false, "solo", Some(settings)).await;
    provider(env, &client, ns.name(), &env.dns.tsig_secret).await;
    apply_json(&client, ns.name(), mail_domain(&domain, "enforce")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "enforce held", |m| {
        condition(m, "Enforced").is_some_and(|c| c.1 == "HeldInTesting")
            && condition(m, "MXCovered").is_some_and(|c| c.0 == "False")
    })
    .await;
    assert!(
        condition(&md, "Enforced")
            .expect("c")
            .2
            .contains("MXCovered"),
        "the blocker is named"
    );
    assert_eq!(
        operator.policy(&domain).await,
        (200, expected_policy("testing", &domain))
    );

    // The MX is fixed: the next check passes and enforce is published by itself.
    let fix = env.dns.nsupdate(
        &format!("update delete {domain}. MX 20 mx9.other.example.\nsend\n"),
        &env.dns.tsig_secret,
    );
    assert!(fix.status.success());
    let md = wait_for(&api, "md", "enforced", |m| {
        condition(m, "Enforced").is_some_and(|c| c.0 == "True") && ready(m)
    })
    .await;
    assert_eq!(
        operator.policy(&domain).await,
        (200, expected_policy("enforce", &domain))
    );
    let id = md.status.and_then(|s| s.policy_id).expect("id");
    assert_eq!(
        sts_id(&env.dns.txt(&format!("_mta-sts.{domain}"))),
        Some(id)
    );
    ns.delete(&client).await;
}

/// The same job through the powerdns provider: a DNSProvider of type powerdns with its API key
/// in a Secret; the records reach the real PowerDNS (read back with dig from its DNS side),
/// someone else's apex value stays, and deleting removes ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_through_the_powerdns_api() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "pdns").await;
    let pdns = &env.pdns;
    let domain = format!("p{}.{}", random_suffix(), pdns.dns.zone);
    let operator = Operator::start(env, ns.name(), false, "solo").await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pdns"}, "stringData": {"api-key": pdns.api_key}
    }))
    .await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "bind"},
        "spec": {"type": "powerdns", "zones": [pdns.dns.zone], "powerdns": {
            "url": pdns.api_url, "apiKeySecretRef": {"name": "pdns", "key": "api-key"}}}
    }))
    .await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "Ready", ready).await;
    let id = md.status.and_then(|s| s.policy_id).expect("policy id");
    assert_eq!(
        sts_id(&pdns.dns.txt(&format!("_mta-sts.{domain}"))),
        Some(id)
    );
    assert_eq!(pdns.dns.txt(&domain), ["v=spf1 mx -all"]);
    assert_eq!(
        pdns.dns.txt(&format!("_dmarc.{domain}")),
        ["v=DMARC1; p=none"]
    );
    assert!(env.dns.txt(&domain).is_empty(), "nothing went to BIND");
    // Every API request is counted, by provider and result.
    let requests = operator.metric("mailsec_dns_requests_total").await;
    assert!(requests >= 10, "PowerDNS API requests counted: {requests}");

    support::delete_skipping_withdrawal(&api, "md", false).await;
    for name in [
        domain.clone(),
        format!("_mta-sts.{domain}"),
        format!("_mailsec.{domain}"),
    ] {
        assert!(
            pdns.dns.txt(&name).is_empty(),
            "{name}: {:?}",
            pdns.dns.txt(&name)
        );
    }
    drop(operator);
    ns.delete(&client).await;
}

/// A wrong API key is an authentication failure named on the MailDomain, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_powerdns_key_is_reported_and_writes_nothing() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "pdnsbad").await;
    let pdns = &env.pdns;
    let domain = format!("q{}.{}", random_suffix(), pdns.dns.zone);
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pdns"}, "stringData": {"api-key": "not-the-key"}
    }))
    .await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "bind"},
        "spec": {"type": "powerdns", "powerdns": {
            "url": pdns.api_url, "apiKeySecretRef": {"name": "pdns", "key": "api-key"}}}
    }))
    .await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "DNSAuthFailed", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "DNSAuthFailed")
    })
    .await;
    let message = condition(&md, "DNSPublished").expect("c").2;
    assert!(
        message.contains("powerdns") && message.contains("API key"),
        "{message}"
    );
    assert!(pdns.dns.txt(&domain).is_empty());
    ns.delete(&client).await;
}

/// The cloudflare provider end to end against the fake of its API (`apiUrl` points at it):
/// the records are created as one record per value, and a second pass changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_through_the_cloudflare_api() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "cf").await;
    let fake = support::cloudflare::Fake::start(&env.dns.zone).await;
    let domain = format!("f{}.{}", random_suffix(), env.dns.zone);
    fake.add_raw(&domain, "\"site-verification=keep-me\"", 3600);
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cf"}, "stringData": {"token": fake.token}
    }))
    .await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "bind"},
        "spec": {"type": "cloudflare", "zones": [env.dns.zone], "cloudflare": {
            "apiUrl": fake.url, "apiTokenSecretRef": {"name": "cf", "key": "token"}}}
    }))
    .await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "Ready", ready).await;
    let id = md.status.and_then(|s| s.policy_id).expect("policy id");
    let contents = |name: &str| -> Vec<String> {
        let mut c: Vec<String> = fake.records(name).into_iter().map(|r| r.content).collect();
        c.sort();
        c
    };
    assert_eq!(
        contents(&format!("_mta-sts.{domain}")),
        [format!("\"v=STSv1; id={id}\"")]
    );
    assert_eq!(
        contents(&domain),
        ["\"site-verification=keep-me\"", "\"v=spf1 mx -all\""]
    );
    assert!(env.dns.txt(&domain).is_empty(), "nothing went to BIND");
    support::delete_skipping_withdrawal(&api, "md", false).await;
    assert_eq!(contents(&domain), ["\"site-verification=keep-me\""]);
    assert!(contents(&format!("_mailsec.{domain}")).is_empty());
    ns.delete(&client).await;
}

/// The route53 provider end to end against moto (strict): keys from a Secret, the hosted zone
/// found by name; someone else's apex value stays, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_through_route53() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "r53").await;
    let r53 = &env.route53;
    let zone = &env.dns.zone;
    let domain = format!("r{}.{zone}", random_suffix());
    r53.add_foreign(zone, &domain, 900, "\"site-verification=keep-me\"")
        .await;
    let _operator = Operator::start(env, ns.name(), false, "solo").await;
    let keys = support::route53::credentials();
    apply_json(
        &client,
        ns.name(),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"},
            "stringData": {"id": keys.access_key_id, "secret": keys.secret_access_key}
        }),
    )
    .await;
    apply_json(&client, ns.name(), serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "bind"},
        "spec": {"type": "route53", "zones": [zone], "route53": {
            "endpoint": r53.url,
            "accessKeyIDSecretRef": {"name": "aws", "key": "id"},
            "secretAccessKeySecretRef": {"name": "aws", "key": "secret"}}}
    }))
    .await;
    apply_json(&client, ns.name(), mail_domain(&domain, "testing")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = wait_for(&api, "md", "Ready", ready).await;
    let id = md.status.and_then(|s| s.policy_id).expect("policy id");
    let sts = r53
        .txt(zone, &format!("_mta-sts.{domain}"))
        .await
        .expect("_mta-sts");
    assert_eq!(sts.values, [format!("\"v=STSv1; id={id}\"")]);
    let apex = r53.txt(zone, &domain).await.expect("apex");
    assert_eq!(
        apex.values,
        ["\"site-verification=keep-me\"", "\"v=spf1 mx -all\""]
    );
    assert_eq!(apex.ttl, 900, "the set keeps its TTL");
    support::delete_skipping_withdrawal(&api, "md", false).await;
    let apex = r53.txt(zone, &domain).await.expect("apex");
    assert_eq!(apex.values, ["\"site-verification=keep-me\""]);
    assert!(r53.txt(zone, &format!("_mailsec.{domain}")).await.is_none());
    ns.delete(&client).await;
}
