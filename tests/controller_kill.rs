//! The controller (the `mailsec` binary) killed with SIGKILL at random points while
//! MailDomains are created, updated, deleted and their MTA-STS policies rolled out, against
//! the real API server and BIND, with `mailsec serve` answering for the policies. The points
//! are drawn from a seed (printed; `KILL_SEED=<n>` repeats a run); `KILL_POINTS` sets how many
//! (20 here, 100 by `make test-kills`).
//!
//! While the controller is dead (the state frozen) at each point:
//! - the `_mta-sts` id in BIND is the id of a policy the policy server has served (RFC 8461
//!   §8: never ahead of the served policy),
//! - no name holds two values of one kind (two SPF records are a permerror; two STS ids
//!   leave senders guessing) nor a value twice,
//! - the foreign value beside our SPF is as it was.
//!
//! After the last point the controller runs to the end: every MailDomain that exists has
//! exactly its records in BIND, each once, as its status lists them; every one deleted has
//! no record and no ownership marker left.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use mailsec_operator::controller::names::{FORCE_ENFORCE, SKIP_WITHDRAWAL};
use sha2::{Digest, Sha256};
use support::controller_process::{BIND_PROVIDER, Controller, bind_provider};
use support::{DnsSettings, parse_txt_strings, random_suffix};

const DOMAINS: usize = 4;
const FOREIGN: &str = "\"foreign-verification=kept\"";

/// What the test asks of one MailDomain at a point.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    present: bool,
    enforce: bool,
    two_mx: bool,
    spf_octet: u8,
    dmarc_quarantine: bool,
}

impl Wanted {
    fn manifest(&self, name: &str, domain: &str) -> serde_json::Value {
        let mut mx = vec![format!("mx1.{domain}")];
        if self.two_mx {
            mx.push(format!("mx2.{domain}"));
        }
        serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": name, "annotations": {
                FORCE_ENFORCE: "true", SKIP_WITHDRAWAL: "true"}},
            "spec": {
                "domain": domain, "ttl": 60, "dnsProviderRef": {"name": BIND_PROVIDER},
                "mx": mx,
                "mtaSts": {"mode": if self.enforce { "enforce" } else { "testing" }, "maxAge": 86400},
                "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]},
                "spf": {"mechanisms": ["mx", format!("ip4:192.0.2.{}", self.spf_octet)], "all": "fail"},
                "dmarc": {"policy": if self.dmarc_quarantine { "quarantine" } else { "none" }}
            }
        })
    }
}

/// xorshift64: the seeded choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The policy id of a served policy file: 128 bits of SHA-256 of its bytes, as 32 hex digits,
/// computed here rather than by `Policy::id` so that the operator's own derivation is checked.
fn id_of(policy: &str) -> String {
    Sha256::digest(policy.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The TXT values at `name` in BIND, strings joined.
fn values(dns: &DnsSettings, name: &str) -> Vec<String> {
    let mut v: Vec<String> = dns
        .dig_short(name, "TXT")
        .iter()
        .map(|line| parse_txt_strings(line).concat())
        .collect();
    v.sort();
    v
}

/// The names a MailDomain for `domain` publishes TXT at.
fn names(domain: &str) -> [String; 4] {
    [
        domain.to_owned(),
        format!("_dmarc.{domain}"),
        format!("_mta-sts.{domain}"),
        format!("_smtp._tls.{domain}"),
    ]
}

/// The policy the server returns for `domain` now, if any.
async fn served(http: &reqwest::Client, listen: SocketAddr, domain: &str) -> Option<String> {
    let response = http
        .get(format!("http://{listen}/.well-known/mta-sts.txt"))
        .header("Host", format!("mta-sts.{domain}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// The frozen-state invariants (the controller is dead).
fn check_frozen(
    dns: &DnsSettings,
    point: usize,
    domains: &[String],
    ever_served: &BTreeSet<(String, String)>,
) {
    for domain in domains {
        for name in names(domain) {
            let v = values(dns, &name);
            let unique: BTreeSet<&String> = v.iter().collect();
            assert_eq!(
                unique.len(),
                v.len(),
                "point {point}: {name}: a value twice: {v:?}"
            );
            for tag in ["v=spf1", "v=DMARC1", "v=STSv1", "v=TLSRPTv1"] {
                assert!(
                    v.iter().filter(|x| x.starts_with(tag)).count() <= 1,
                    "point {point}: {name}: two {tag} values: {v:?}"
                );
            }
            if name == *domain {
                assert!(
                    v.iter().any(|x| x == "foreign-verification=kept"),
                    "point {point}: {name}: the foreign value is gone: {v:?}"
                );
            }
            if let Some(sts) = v.iter().find(|x| x.starts_with("v=STSv1")) {
                let id = sts
                    .split(';')
                    .find_map(|f| f.trim().strip_prefix("id="))
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    ever_served.contains(&(domain.clone(), id.clone())),
                    "point {point}: {name} names id {id}, a policy never served for {domain} \
                     (served: {ever_served:?})"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_it_converges_exactly() {
    let Some(env) = support::env() else { return };
    let points: usize = std::env::var("KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::process::id().into());
    eprintln!("KILL_SEED={seed} KILL_POINTS={points}");
    let mut rng = Rng(seed | 1);
    let client = env.client().await;
    let ns = env.namespace(&client, "kill").await;
    let n = ns.name().to_owned();
    bind_provider(env, &client, &n).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);
    let log = std::env::temp_dir().join(format!("mailsec-kill-{n}.log"));
    eprintln!("controller log: {}", log.display());

    // The policy server, and a poller that notes every policy it serves.
    let (listen, policy_server) = support::controller_process::policy_server(&client).await;
    let with_policy_server = ["--policy-server-url", policy_server.as_str()];
    let domains: Vec<String> = (0..DOMAINS)
        .map(|i| format!("kill{i}-{}.{}", random_suffix(), env.dns.zone))
        .collect();
    let ever_served: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let poller = {
        let (domains, ever_served) = (domains.clone(), ever_served.clone());
        tokio::spawn(async move {
            let http = support::http_client();
            loop {
                for d in &domains {
                    if let Some(policy) = served(&http, listen, d).await
                        && let Ok(mut seen) = ever_served.lock()
                    {
                        seen.insert((d.clone(), id_of(&policy)));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for d in &domains {
        env.dns
            .update(&format!("update add {d}. 300 TXT {FOREIGN}\n"));
    }

    let name = |i: usize| format!("md{i}");
    let mut wanted: Vec<Wanted> = (0..DOMAINS)
        .map(|_| Wanted {
            present: false,
            enforce: false,
            two_mx: false,
            spf_octet: 1,
            dmarc_quarantine: false,
        })
        .collect();
    let apply = |i: usize, w: Wanted| {
        let api = api.clone();
        let (name, domain) = (name(i), domains[i].clone());
        async move {
            api.patch(
                &name,
                &PatchParams::apply("kill-test").force(),
                &Patch::Apply(w.manifest(&name, &domain)),
            )
            .await
        }
    };
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let started = Instant::now();
    for point in 0..points {
        // What the user changes before this point: one MailDomain, one change.
        let i = (rng.next() % DOMAINS as u64) as usize;
        let mut w = wanted[i];
        let change = if !w.present {
            // Created anew only once the previous one is gone (its finalizer done).
            if api.get_opt(&name(i)).await.expect("get").is_some() {
                "wait-for-delete"
            } else {
                w.present = true;
                "create"
            }
        } else {
            match rng.next() % 5 {
                0 => {
                    w.enforce = !w.enforce;
                    "rollout-mode"
                }
                1 => {
                    w.two_mx = !w.two_mx;
                    "rollout-mx"
                }
                2 => {
                    w.spf_octet = w.spf_octet % 250 + 1;
                    "update-spf"
                }
                3 => {
                    w.dmarc_quarantine = !w.dmarc_quarantine;
                    "update-dmarc"
                }
                _ => {
                    w.present = false;
                    "delete"
                }
            }
        };
        *kinds.entry(change).or_default() += 1;
        match (change, w.present) {
            ("wait-for-delete", _) => {}
            (_, true) => {
                apply(i, w).await.expect("apply");
            }
            (_, false) => {
                api.delete(&name(i), &DeleteParams::default())
                    .await
                    .expect("delete");
            }
        }
        wanted[i] = w;
        let controller = Controller::start(env, &n, &log, &with_policy_server);
        // Up to 3 s: from before the controller has listed anything to well into its work.
        tokio::time::sleep(Duration::from_millis(rng.next() % 3000)).await;
        controller.kill();
        // Frozen: let the poller see what the server serves now, then look.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = ever_served.lock().map(|s| s.clone()).unwrap_or_default();
        check_frozen(&env.dns, point, &domains, &seen);
    }
    eprintln!(
        "{points} kill points in {:.1} s: {kinds:?}",
        started.elapsed().as_secs_f64()
    );

    // To the end: the desired state, exactly.
    let controller = Controller::start(env, &n, &log, &with_policy_server);
    let deadline = Instant::now() + Duration::from_secs(120);
    let converged = loop {
        let mut done = true;
        for (i, w) in wanted.iter().enumerate() {
            let md = api.get_opt(&name(i)).await.expect("get");
            done &= match (w.present, md) {
                (false, None) => true,
                (true, Some(md)) => {
                    md.status.as_ref().and_then(|s| s.observed_generation) == md.metadata.generation
                        && support::maildomain::condition(&md, "DNSPublished")
                            .is_some_and(|c| c.0 == "True")
                        && md.status.as_ref().is_some_and(|s| {
                            s.policy_id.as_deref().is_some_and(|id| {
                                s.served_policy.as_deref().map(id_of).as_deref() == Some(id)
                            })
                        })
                }
                _ => false,
            };
        }
        if done {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        converged,
        "converged within 120 s of the last restart (log: {})",
        log.display()
    );
    let seen = ever_served.lock().map(|s| s.clone()).unwrap_or_default();
    check_frozen(&env.dns, points, &domains, &seen);
    for (i, w) in wanted.iter().enumerate() {
        let d = &domains[i];
        if !w.present {
            for name in names(d) {
                let v = values(&env.dns, &name);
                let expected: Vec<String> = if name == *d {
                    vec!["foreign-verification=kept".to_owned()]
                } else {
                    Vec::new()
                };
                assert_eq!(v, expected, "{name}: deleted MailDomain's records gone");
                assert!(
                    values(&env.dns, &format!("_mailsec.{name}")).is_empty(),
                    "{name}: no marker left"
                );
            }
            continue;
        }
        let md = api.get(&name(i)).await.expect("get");
        let status = md.status.clone().unwrap_or_default();
        for name in names(d) {
            let mut ours: Vec<String> = status
                .records
                .iter()
                .filter(|r| r.record_type == "TXT" && r.name == name)
                .map(|r| r.value.clone())
                .collect();
            if name == *d {
                ours.push("foreign-verification=kept".to_owned());
            }
            ours.sort();
            assert_eq!(
                values(&env.dns, &name),
                ours,
                "{name}: exactly the status's records"
            );
        }
        let txt = |name: String| values(&env.dns, &name).join(" ");
        assert!(
            txt(d.clone()).contains(&format!("ip4:192.0.2.{} ", w.spf_octet)),
            "{d}: the last SPF: {}",
            txt(d.clone())
        );
        let p = if w.dmarc_quarantine {
            "p=quarantine"
        } else {
            "p=none"
        };
        assert!(
            txt(format!("_dmarc.{d}")).contains(p),
            "{d}: the last DMARC"
        );
        let policy = served(&support::http_client(), listen, d)
            .await
            .expect("a served policy");
        let mode = if w.enforce {
            "mode: enforce"
        } else {
            "mode: testing"
        };
        assert!(policy.contains(mode), "{d}: the last mode: {policy}");
        assert_eq!(
            policy.matches("mx: ").count(),
            if w.two_mx { 2 } else { 1 },
            "{d}: the last mx list: {policy}"
        );
        assert!(
            txt(format!("_mta-sts.{d}")).contains(&format!("id={}", id_of(&policy))),
            "{d}: _mta-sts names the served policy"
        );
    }
    controller.kill();
    poller.abort();
}
