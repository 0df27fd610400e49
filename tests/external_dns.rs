//! The externalDNS export end to end: the operator writes one DNSEndpoint per MailDomain, and
//! external-dns's own plan, TXT registry and rfc2136 / pdns providers (v0.23.0, built from its
//! Go module into `mailsec-external-dns`; see tools/external-dns/main.go for why not its whole
//! binary) publish it to the environment's BIND and PowerDNS. `dig` then shows our values,
//! a 2048-bit DKIM key in two strings, the foreign value at a shared name untouched, and SPF,
//! never exported, reported for publishing by hand until it is in DNS.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Api;
use kube::api::DynamicObject;
use mailsec_operator::api::{MailDomain, RecordState};
use mailsec_operator::dns::external_dns::dns_endpoint_resource;
use support::maildomain::{condition, wait_for};
use support::{DnsSettings, TestEnv, random_suffix};

/// Where external-dns writes.
#[derive(Clone, Copy, Debug)]
enum Downstream {
    Bind,
    PowerDns,
}

impl Downstream {
    fn dns(self, env: &TestEnv) -> &DnsSettings {
        match self {
            Downstream::Bind => &env.dns,
            Downstream::PowerDns => &env.pdns.dns,
        }
    }

    /// external-dns's provider flags for this server.
    fn flags(self, env: &TestEnv) -> Vec<String> {
        match self {
            Downstream::Bind => vec![
                "--provider=rfc2136".into(),
                format!("--rfc2136-host={}", env.dns.server.ip()),
                format!("--rfc2136-port={}", env.dns.server.port()),
                format!("--rfc2136-zone={}", env.dns.zone),
                format!("--rfc2136-tsig-keyname={}", env.dns.tsig_key_name),
                format!("--rfc2136-tsig-secret={}", env.dns.tsig_secret),
                format!("--rfc2136-tsig-secret-alg={}", env.dns.tsig_algorithm),
                "--rfc2136-tsig-axfr".into(),
            ],
            Downstream::PowerDns => vec![
                "--provider=pdns".into(),
                format!("--pdns-server={}", env.pdns.api_url),
                format!("--pdns-api-key={}", env.pdns.api_key),
            ],
        }
    }

    /// Sets the TXT values at `name` as someone else would, outside the operator and
    /// external-dns.
    async fn put_txt(self, env: &TestEnv, name: &str, values: &[&str]) {
        match self {
            Downstream::Bind => {
                let adds: String = values
                    .iter()
                    .map(|v| format!("update add {name}. 300 TXT \"{v}\"\n"))
                    .collect();
                env.dns
                    .update(&format!("update delete {name}. TXT\n{adds}"));
            }
            Downstream::PowerDns => {
                let zone = format!("{}.", env.pdns.dns.zone);
                let records: Vec<serde_json::Value> = values
                    .iter()
                    .map(|v| serde_json::json!({"content": format!("\"{v}\""), "disabled": false}))
                    .collect();
                let body = serde_json::json!({"rrsets": [{
                    "name": format!("{name}."), "type": "TXT", "ttl": 300, "changetype": "REPLACE",
                    "records": records}]});
                let answer = support::http_client()
                    .patch(format!(
                        "{}/api/v1/servers/localhost/zones/{zone}",
                        env.pdns.api_url
                    ))
                    .header("X-API-Key", &env.pdns.api_key)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("the PowerDNS API");
                assert!(
                    answer.status().is_success(),
                    "PowerDNS refused the foreign value: {}",
                    answer.text().await.unwrap_or_default()
                );
            }
        }
    }
}

/// external-dns, killed by its PID when dropped.
struct ExternalDnsProcess(Child);

impl ExternalDnsProcess {
    fn start(env: &TestEnv, ns: &str, downstream: Downstream, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("log file");
        let child = Command::new(env.tool("mailsec-external-dns"))
            .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
            .arg(format!("--namespace={ns}"))
            .arg(format!("--domain-filter={}", downstream.dns(env).zone))
            .arg(format!("--txt-owner-id={ns}"))
            .args([
                "--managed-record-types=TXT",
                "--policy=sync",
                "--interval=1s",
            ])
            .args(downstream.flags(env))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("mailsec-external-dns (make tools builds it): {e}");
            });
        ExternalDnsProcess(child)
    }
}

impl Drop for ExternalDnsProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn apply(client: &kube::Client, ns: &str, value: serde_json::Value) {
    support::apply_json(client, ns, "external-dns-test", value).await;
}

fn dkim_key() -> String {
    std::fs::read_to_string(support::repo_root().join("tests/fixtures/dkim/rsa2048.pub.pem"))
        .expect("the 2048-bit key fixture")
}

fn dns_published(md: &MailDomain) -> Option<(String, String)> {
    condition(md, "DNSPublished").map(|c| (c.1.to_owned(), c.2.to_owned()))
}

/// The whole route for one downstream server.
async fn export_end_to_end(downstream: Downstream) {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "edns").await;
    let n = ns.name().to_owned();
    let dns = downstream.dns(env).clone();
    let _controller = support::operator::controller(env, &n).await;
    let log = std::env::temp_dir().join(format!("mailsec-external-dns-{n}.log"));
    eprintln!("external-dns log: {}", log.display());
    let _external_dns = ExternalDnsProcess::start(env, &n, downstream, &log);

    apply(
        &client,
        &n,
        serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider",
            "metadata": {"name": "external-dns"},
            "spec": {"type": "externalDNS", "zones": [dns.zone],
                     "externalDNS": {"resolver": dns.server.to_string()}}
        }),
    )
    .await;
    apply(
        &client,
        &n,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dkim"},
            "stringData": {"public.pem": dkim_key()}
        }),
    )
    .await;
    let domain = format!("x{}.{}", random_suffix(), dns.zone);
    // Someone else's TXT record at the domain itself, where SPF goes.
    downstream
        .put_txt(env, &domain, &["google-site-verification=edns-test"])
        .await;
    let manifest = |dmarc: &str| {
        serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": "md"},
            "spec": {
                "domain": domain, "ttl": 60, "dnsProviderRef": {"name": "external-dns"},
                "mx": [format!("mx1.{domain}")],
                "mtaSts": {"mode": "testing"},
                "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]},
                "spf": {"mechanisms": ["mx"], "all": "fail"},
                "dmarc": {"policy": dmarc},
                "dkim": [{"selector": "s1", "keySecretRef": {"name": "dkim", "key": "public.pem"}}]
            }
        })
    };
    apply(&client, &n, manifest("none")).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);

    // Everything but SPF goes out through external-dns; SPF waits for a human.
    let md = wait_for(&api, "md", "PublishByHand once the export is in DNS", |m| {
        dns_published(m).is_some_and(|(reason, _)| reason == "PublishByHand")
            && m.status.as_ref().is_some_and(|s| {
                s.records
                    .iter()
                    .filter(|r| r.name != domain)
                    .all(|r| r.state == RecordState::Published)
            })
    })
    .await;
    let (_, message) = dns_published(&md).expect("DNSPublished");
    assert!(
        message.contains(&format!("{domain} TXT \"v=spf1 mx -all\"")),
        "the message names the SPF record to publish: {message}"
    );
    let records = &md.status.as_ref().expect("status").records;
    let spf = records
        .iter()
        .find(|r| r.name == domain)
        .expect("SPF listed in status.records");
    assert_eq!(spf.state, RecordState::Pending);
    assert!(
        spf.message
            .as_deref()
            .unwrap_or_default()
            .contains("publish this record by hand"),
        "{spf:?}"
    );
    assert_eq!(
        dns.txt(&domain),
        ["google-site-verification=edns-test"],
        "the shared name holds only its foreign value: SPF was never exported"
    );
    assert_eq!(dns.txt(&format!("_dmarc.{domain}")), ["v=DMARC1; p=none"]);
    assert_eq!(
        dns.txt(&format!("_smtp._tls.{domain}")),
        [format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}")]
    );
    assert!(dns.txt(&format!("_mta-sts.{domain}"))[0].starts_with("v=STSv1; id="));
    let dkim = dns.dig_short(&format!("s1._domainkey.{domain}"), "TXT");
    assert_eq!(dkim.len(), 1, "one DKIM record: {dkim:?}");
    let strings = support::parse_txt_strings(&dkim[0]);
    assert_eq!(
        strings.len(),
        2,
        "a 2048-bit key in two strings: {strings:?}"
    );
    assert_eq!(strings[0].len(), 255, "split at 255 bytes: {strings:?}");
    assert!(strings.concat().starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
    // The markers went out too.
    assert_eq!(
        dns.txt(&format!("_mailsec._dmarc.{domain}")),
        [format!(
            "heritage=mailsec-operator,owner=test,resource={n}/md"
        )]
    );

    // The DNSEndpoint: one for the MailDomain, owned by it, without the shared name.
    let endpoints: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &n, &dns_endpoint_resource());
    let object = endpoints.get("mailsec-md").await.expect("the DNSEndpoint");
    let owner = &object.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("MailDomain", "md")
    );
    let names: Vec<&str> = object.data["spec"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["dnsName"].as_str())
        .collect();
    assert!(!names.contains(&domain.as_str()), "{names:?}");
    assert_eq!(names.len(), 8, "4 records and their 4 markers: {names:?}");

    // Published by hand: it counts once DNS has it, and the foreign value stays.
    downstream
        .put_txt(
            env,
            &domain,
            &["google-site-verification=edns-test", "v=spf1 mx -all"],
        )
        .await;
    wait_for(&api, "md", "DNSPublished True", |m| {
        dns_published(m).is_some_and(|(reason, _)| reason == "Published")
    })
    .await;

    // A change goes out the same way.
    apply(&client, &n, manifest("quarantine")).await;
    let dmarc = format!("_dmarc.{domain}");
    if let Downstream::Bind = downstream {
        // external-dns's rfc2136 provider reads TXT records back by AXFR without their quotes
        // and builds its deletions from that, so `v=DMARC1; p=none` goes out as `v=DMARC1`
        // (`;` starts a zone-file comment) and the old value is never removed. The operator
        // does not call that published: it says what DNS answers instead.
        let stuck = wait_for(&api, "md", "ExportPending naming both values", |m| {
            dns_published(m).is_some_and(|(reason, message)| {
                reason == "ExportPending"
                    && message.contains("\"v=DMARC1; p=none\", \"v=DMARC1; p=quarantine\"")
            })
        })
        .await;
        assert_eq!(
            dns.txt(&dmarc),
            ["v=DMARC1; p=none", "v=DMARC1; p=quarantine"],
            "{:?}",
            dns_published(&stuck)
        );
    } else {
        wait_for(&api, "md", "the new DMARC value published", |m| {
            dns_published(m).is_some_and(|(reason, _)| reason == "Published")
                && m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation
        })
        .await;
        assert_eq!(dns.txt(&dmarc), ["v=DMARC1; p=quarantine"]);
    }

    // A foreign value at a name the operator would own: refused, nothing exported for it.
    let other = format!("y{}.{}", random_suffix(), dns.zone);
    downstream
        .put_txt(env, &format!("_smtp._tls.{other}"), &["someone-elses=1"])
        .await;
    apply(
        &client,
        &n,
        serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": "other"},
            "spec": {"domain": other, "dnsProviderRef": {"name": "external-dns"},
                     "mx": [format!("mx1.{other}")],
                     "tlsRpt": {"rua": [format!("mailto:tlsrpt@{other}")]}}
        }),
    )
    .await;
    let refused = wait_for(&api, "other", "DNSRefused", |m| {
        dns_published(m).is_some_and(|(reason, _)| reason == "DNSRefused")
    })
    .await;
    let (_, message) = dns_published(&refused).expect("DNSPublished");
    assert!(
        message.contains("someone-elses=1") && message.contains("did not export"),
        "{message}"
    );
    assert!(
        endpoints
            .get_opt("mailsec-other")
            .await
            .expect("get")
            .is_none(),
        "nothing exported"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dns.txt(&format!("_smtp._tls.{other}")), ["someone-elses=1"]);

    // Deleted: the export goes, external-dns removes its records, the foreign value stays.
    support::delete_skipping_withdrawal(&api, "md", false).await;
    assert!(
        endpoints
            .get_opt("mailsec-md")
            .await
            .expect("get")
            .is_none(),
        "the DNSEndpoint is gone with its MailDomain"
    );
    if let Downstream::Bind = downstream {
        // Its deletions are built from the unquoted read-back too (above): values with
        // spaces stay in the zone. Not the operator's to remove: external-dns owns them now.
        ns.delete(&client).await;
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dns.txt(&format!("_dmarc.{domain}")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "_dmarc.{domain} still answers 60 s after the MailDomain was deleted; external-dns log: {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(dns.txt(&format!("s1._domainkey.{domain}")).is_empty());
    assert!(dns.txt(&format!("_mailsec._dmarc.{domain}")).is_empty());
    assert!(
        dns.txt(&domain)
            .contains(&"google-site-verification=edns-test".to_owned())
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exported_through_external_dns_to_bind() {
    export_end_to_end(Downstream::Bind).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exported_through_external_dns_to_powerdns() {
    export_end_to_end(Downstream::PowerDns).await;
}
