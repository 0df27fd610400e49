//! The provider contract: one set of scenarios, run through the DNS stage of the controller
//! (`publish::run`: read, plan, apply) against every backend, each against a real server of
//! the test environment where one exists: rfc2136 against BIND 9 and against Knot DNS,
//! powerdns against PowerDNS Authoritative (its HTTP API, sqlite3 backend), google against
//! Google's own in-memory Cloud DNS server (`LocalDnsHelper`) and against our fake of what that
//! one does not check, and cloudflare, hetzner, digitalocean and azure against the stateful
//! fakes of their APIs in `support/` (no such server runs outside those companies; each fake
//! says which documented behaviours it reproduces).
//! Foreign values are written through a side door (nsupdate, the PowerDNS API directly, the
//! fake's state) and checked with `dig` against the real servers, an implementation that is
//! not ours, or in the fake's records.

mod support;

/// The policy host of tests that publish no address.
const NO_HOST: &str = "mta-sts.invalid";

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use mailsec_operator::api::{RecordState, RecordStatus};
use mailsec_operator::controller::dereference::Target;
use mailsec_operator::controller::publish::{self, Published};
use mailsec_operator::dns::DnsError;
use mailsec_operator::dns::azure::{Azure, Credential};
use mailsec_operator::dns::backend::DnsBackend;
use mailsec_operator::dns::cloudflare::Cloudflare;
use mailsec_operator::dns::content::value_of as content_value;
use mailsec_operator::dns::digitalocean::DigitalOcean;
use mailsec_operator::dns::google::{self, Google};
use mailsec_operator::dns::hetzner::Hetzner;
use mailsec_operator::dns::ownership::Owner;
use mailsec_operator::dns::plan::{Policy, Settings};
use mailsec_operator::dns::powerdns::PowerDns;
use mailsec_operator::dns::rfc2136::{Algorithm, Rfc2136};
use mailsec_operator::dns::route53::Route53;
use mailsec_operator::domain::record::{RecordKind, TxtRecord};
use support::faults::{Fault, FaultProxy};
use support::{DnsSettings, PowerDnsSettings, TestEnv, parse_txt_strings, random_suffix};

/// How a test writes values the operator did not create, and sees what is published.
enum SideDoor {
    Nsupdate(DnsSettings),
    PowerDns(PowerDnsSettings),
    Cloudflare(support::cloudflare::Fake),
    Route53(support::route53::Route53),
    Hetzner(support::hetzner::Fake),
    DigitalOcean(support::digitalocean::Fake),
    Azure(support::azure::Fake),
    /// The Cloud DNS API itself (Google's server or our fake), kept running by `_server`.
    Google {
        api: support::google::Api,
        _server: GoogleServer,
    },
}

/// What serves a google subject.
#[allow(dead_code)] // held for their Drop: the processes and listeners live as long as it
enum GoogleServer {
    /// Google's LocalDnsHelper; our fake only as the metadata server that hands out tokens
    /// (LocalDnsHelper checks none).
    Local(support::google::LocalDns, support::google::Fake),
    Fake(support::google::Fake),
}

/// One backend against one server.
struct Subject {
    name: &'static str,
    backend: Arc<dyn DnsBackend>,
    /// The server's DNS side, for dig (for the fake: only its zone name is used).
    dns: DnsSettings,
    side: SideDoor,
}

fn rfc2136(dns: &DnsSettings, secret_b64: &str) -> Rfc2136 {
    assert_eq!(dns.tsig_algorithm, "hmac-sha256");
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret_b64)
        .expect("base64 secret");
    Rfc2136::new(
        dns.server,
        &dns.tsig_key_name,
        Algorithm::HmacSha256,
        secret,
    )
    .expect("rfc2136")
}

fn powerdns(pdns: &PowerDnsSettings, key: &str) -> PowerDns {
    PowerDns::new(&pdns.api_url, "localhost", key.to_owned()).expect("powerdns")
}

/// The hetzner backend against the fake, polling its Actions without the production pause.
fn hetzner(fake: &support::hetzner::Fake, token: &str) -> Hetzner {
    Hetzner::new(&fake.url, token.to_owned())
        .expect("hetzner")
        .with_first_poll(std::time::Duration::from_millis(5))
}

/// The azure backend against the fake, with a client secret.
fn azure(fake: &support::azure::Fake, secret: &str) -> Azure {
    azure_as(
        fake,
        Credential::ClientSecret {
            tenant_id: fake.tenant.clone(),
            client_id: fake.client_id.clone(),
            client_secret: secret.to_owned(),
        },
    )
}

fn azure_as(fake: &support::azure::Fake, credential: Credential) -> Azure {
    Azure::new(
        &fake.management_url,
        &fake.authority_url,
        &fake.subscription,
        &fake.resource_group,
        credential,
    )
    .expect("azure")
}

/// The google backend against our fake, with the fake's service-account key (the JWT route).
fn google_fake(fake: &support::google::Fake) -> Google {
    let key = google::Credential::service_account(&fake.service_account_key).expect("key file");
    Google::new(&fake.url, &fake.project, key).expect("google")
}

/// Google's LocalDnsHelper with a managed zone for `zone` (a name of its own per call), the
/// backend against it (tokens from a fake metadata server) and the side door.
async fn google_local(zone: &str) -> (Google, SideDoor) {
    let local = support::google::LocalDns::start();
    let tokens = support::google::Fake::start(zone).await;
    let managed = format!("mailsec-{}", random_suffix());
    let api = local.api(&managed);
    api.create_zone(&format!("{zone}.")).await;
    let backend = Google::new(
        &local.url,
        &local.project,
        google::Credential::metadata(&tokens.metadata_url),
    )
    .expect("google")
    .with_managed_zone(&managed);
    (
        backend,
        SideDoor::Google {
            api,
            _server: GoogleServer::Local(local, tokens),
        },
    )
}

async fn subjects(env: &TestEnv) -> Vec<Subject> {
    let fake = support::cloudflare::Fake::start(&env.dns.zone).await;
    let hz = support::hetzner::Fake::start(&env.dns.zone).await;
    let dgo = support::digitalocean::Fake::start(&env.dns.zone).await;
    let az = support::azure::Fake::start(&env.dns.zone).await;
    let gf = support::google::Fake::start(&env.dns.zone).await;
    let (local_google, local_side) = google_local(&env.dns.zone).await;
    vec![
        Subject {
            name: "google (LocalDnsHelper)",
            backend: Arc::new(local_google),
            dns: env.dns.clone(),
            side: local_side,
        },
        Subject {
            name: "google (fake)",
            backend: Arc::new(google_fake(&gf)),
            dns: env.dns.clone(),
            side: SideDoor::Google {
                api: gf.api(),
                _server: GoogleServer::Fake(gf),
            },
        },
        Subject {
            name: "azure (fake)",
            backend: Arc::new(azure(&az, &az.client_secret)),
            dns: env.dns.clone(),
            side: SideDoor::Azure(az),
        },
        Subject {
            name: "hetzner (fake)",
            backend: Arc::new(hetzner(&hz, &hz.token)),
            dns: env.dns.clone(),
            side: SideDoor::Hetzner(hz),
        },
        Subject {
            name: "digitalocean (fake)",
            backend: Arc::new(DigitalOcean::new(&dgo.url, dgo.token.clone()).expect("do")),
            dns: env.dns.clone(),
            side: SideDoor::DigitalOcean(dgo),
        },
        Subject {
            name: "route53 (moto, strict)",
            backend: Arc::new(
                Route53::with_keys(&env.route53.url, support::route53::credentials(), None)
                    .expect("route53"),
            ),
            dns: env.dns.clone(),
            side: SideDoor::Route53(env.route53.clone()),
        },
        Subject {
            name: "cloudflare (fake)",
            backend: Arc::new(Cloudflare::new(&fake.url, fake.token.clone()).expect("cloudflare")),
            dns: env.dns.clone(),
            side: SideDoor::Cloudflare(fake),
        },
        Subject {
            name: "rfc2136/BIND",
            backend: Arc::new(rfc2136(&env.dns, &env.dns.tsig_secret)),
            dns: env.dns.clone(),
            side: SideDoor::Nsupdate(env.dns.clone()),
        },
        Subject {
            name: "rfc2136/Knot",
            backend: Arc::new(rfc2136(&env.knot, &env.knot.tsig_secret)),
            dns: env.knot.clone(),
            side: SideDoor::Nsupdate(env.knot.clone()),
        },
        Subject {
            name: "powerdns",
            backend: Arc::new(powerdns(&env.pdns, &env.pdns.api_key)),
            dns: env.pdns.dns.clone(),
            side: SideDoor::PowerDns(env.pdns.clone()),
        },
    ]
}

impl Subject {
    fn target(&self, resource: &str) -> Target {
        target(self.backend.clone(), &self.dns.zone, resource)
    }

    /// Adds one TXT record with these character-strings (zone-file presentation, quoted) at
    /// `name`, beside whatever is there.
    async fn add_foreign(&self, name: &str, ttl: u32, presentation: &str) {
        match &self.side {
            SideDoor::Nsupdate(dns) => {
                dns.update(&format!("update add {name}. {ttl} TXT {presentation}\n"))
            }
            SideDoor::Cloudflare(fake) => fake.add_raw(name, presentation, ttl),
            SideDoor::Hetzner(fake) => fake.add_raw(name, "TXT", presentation, ttl),
            SideDoor::DigitalOcean(fake) => fake.add_raw(name, presentation, ttl),
            SideDoor::Azure(fake) => fake.add_raw(name, "TXT", presentation, ttl),
            SideDoor::Google { api, .. } => api.add_raw(name, "TXT", presentation, ttl).await,
            SideDoor::Route53(r53) => {
                r53.add_foreign(&self.dns.zone, name, ttl, presentation)
                    .await
            }
            SideDoor::PowerDns(p) => {
                let http = support::http_client();
                let zone_url = format!(
                    "{}/api/v1/servers/localhost/zones/{}.",
                    p.api_url, p.dns.zone
                );
                let body = http
                    .get(format!("{zone_url}?rrset_name={name}.&rrset_type=TXT"))
                    .header("X-API-Key", &p.api_key)
                    .send()
                    .await
                    .expect("GET")
                    .text()
                    .await
                    .expect("zone");
                let current: serde_json::Value = serde_json::from_str(&body).expect("zone JSON");
                let existing = current["rrsets"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["type"] == "TXT"))
                    .cloned();
                let mut records: Vec<serde_json::Value> = existing
                    .as_ref()
                    .and_then(|r| r["records"].as_array().cloned())
                    .unwrap_or_default();
                records.push(serde_json::json!({"content": presentation, "disabled": false}));
                let ttl = existing
                    .as_ref()
                    .and_then(|r| r["ttl"].as_u64())
                    .unwrap_or(u64::from(ttl));
                let body = serde_json::json!({"rrsets": [{
                    "name": format!("{name}."), "type": "TXT", "ttl": ttl,
                    "changetype": "REPLACE", "records": records}]});
                let status = http
                    .patch(&zone_url)
                    .header("X-API-Key", &p.api_key)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("PATCH")
                    .status();
                assert_eq!(status.as_u16(), 204, "{}: side-door write", self.name);
            }
        }
    }

    /// The TXT records at `name` as dig prints them (one line each, exact), sorted; for the
    /// fake, the records' stored content.
    async fn raw(&self, name: &str) -> Vec<String> {
        let mut lines = match &self.side {
            SideDoor::Route53(r53) => r53
                .txt(&self.dns.zone, name)
                .await
                .map(|set| set.values)
                .unwrap_or_default(),
            SideDoor::Cloudflare(fake) => {
                fake.records(name).into_iter().map(|r| r.content).collect()
            }
            SideDoor::Hetzner(fake) => fake.txt(name),
            SideDoor::DigitalOcean(fake) => fake.published(name),
            SideDoor::Azure(fake) => fake.txt(name),
            SideDoor::Google { api, .. } => api.txt(name).await,
            _ => self.dns.dig_short(name, "TXT"),
        };
        lines.sort();
        lines
    }

    /// The TTL of the TXT RRset at `name`, as the server answers it.
    async fn ttl(&self, name: &str) -> Option<u32> {
        if let SideDoor::Route53(r53) = &self.side {
            return r53.txt(&self.dns.zone, name).await.map(|set| set.ttl);
        }
        if let SideDoor::Cloudflare(fake) = &self.side {
            return fake.records(name).first().map(|r| r.ttl);
        }
        if let SideDoor::Hetzner(fake) = &self.side {
            return fake.rrset(name, "TXT").and_then(|r| r.ttl);
        }
        if let SideDoor::DigitalOcean(fake) = &self.side {
            return fake.records(name, "TXT").first().map(|r| r.ttl);
        }
        if let SideDoor::Azure(fake) = &self.side {
            return fake.set(name, "TXT").map(|s| s.ttl);
        }
        if let SideDoor::Google { api, .. } = &self.side {
            return api.rrset(name, "TXT").await.map(|s| s.ttl);
        }
        let out = self.dns.dig(&["+noall", "+answer", name, "TXT"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.split_whitespace().nth(1).and_then(|t| t.parse().ok()))
    }

    /// The TXT values at `name`, joined, sorted.
    async fn values(&self, name: &str) -> Vec<String> {
        if let SideDoor::Route53(r53) = &self.side {
            let mut v: Vec<String> = r53
                .txt(&self.dns.zone, name)
                .await
                .map(|set| set.values.iter().map(|x| content_value(x)).collect())
                .unwrap_or_default();
            v.sort();
            return v;
        }
        if let SideDoor::Cloudflare(fake) = &self.side {
            let mut v: Vec<String> = fake
                .records(name)
                .iter()
                .map(|r| content_value(&r.content))
                .collect();
            v.sort();
            return v;
        }
        if let SideDoor::Hetzner(fake) = &self.side {
            let mut v: Vec<String> = fake.txt(name).iter().map(|x| content_value(x)).collect();
            v.sort();
            return v;
        }
        if let SideDoor::DigitalOcean(fake) = &self.side {
            let mut v: Vec<String> = fake
                .records(name, "TXT")
                .into_iter()
                .map(|r| r.data)
                .collect();
            v.sort();
            return v;
        }
        if let SideDoor::Azure(fake) = &self.side {
            let mut v = fake.values(name);
            v.sort();
            return v;
        }
        if let SideDoor::Google { api, .. } = &self.side {
            let mut v = api.values(name).await;
            v.sort();
            return v;
        }
        self.dns.txt(name)
    }

    /// The address records at `name`, `TYPE value` each (CNAME targets with the root dot),
    /// sorted: by dig against the real servers, from moto's or the fake's store otherwise.
    async fn addresses(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for rtype in ["CNAME", "A", "AAAA"] {
            let values: Vec<String> = match &self.side {
                SideDoor::Route53(r53) => r53.values_of(&self.dns.zone, name, rtype).await,
                SideDoor::Cloudflare(fake) => fake
                    .all_records(name)
                    .into_iter()
                    .filter(|r| r.rtype == rtype)
                    .map(|r| {
                        if rtype == "CNAME" {
                            format!("{}.", r.content.trim_end_matches('.'))
                        } else {
                            r.content
                        }
                    })
                    .collect(),
                SideDoor::Hetzner(fake) => fake
                    .rrset(name, rtype)
                    .map(|r| r.values)
                    .unwrap_or_default(),
                SideDoor::Azure(fake) => fake
                    .set(name, rtype)
                    .map(|set| {
                        set.records
                            .iter()
                            .map(|r| {
                                let v = r.concat();
                                if rtype == "CNAME" {
                                    format!("{}.", v.trim_end_matches('.'))
                                } else {
                                    v
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                SideDoor::DigitalOcean(fake) => fake
                    .records(name, rtype)
                    .into_iter()
                    .map(|r| {
                        if rtype == "CNAME" {
                            format!("{}.", r.data)
                        } else {
                            r.data
                        }
                    })
                    .collect(),
                // Cloud DNS holds CNAME targets with the root dot, as they are sent.
                SideDoor::Google { api, .. } => api
                    .rrset(name, rtype)
                    .await
                    .map(|r| r.rrdatas)
                    .unwrap_or_default(),
                _ => {
                    let out = self.dns.dig(&["+noall", "+answer", name, rtype]);
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| {
                            let cols: Vec<&str> = l.split_whitespace().collect();
                            (cols.len() >= 5
                                && cols[0].trim_end_matches('.') == name
                                && cols[3] == rtype)
                                .then(|| cols[4].to_owned())
                        })
                        .collect()
                }
            };
            out.extend(values.into_iter().map(|v| format!("{rtype} {v}")));
        }
        out.sort();
        out
    }

    /// Makes an address record at `name` as someone else would.
    async fn add_foreign_address(&self, name: &str, rtype: &str, value: &str) {
        match &self.side {
            SideDoor::Nsupdate(dns) => {
                dns.update(&format!("update add {name}. 300 {rtype} {value}\n"))
            }
            SideDoor::Cloudflare(fake) => fake.add_raw_address(name, rtype, value),
            SideDoor::Hetzner(fake) => fake.add_raw(name, rtype, value, 300),
            SideDoor::DigitalOcean(fake) => fake.add_record(name, rtype, value, 300),
            SideDoor::Azure(fake) => fake.add_raw(name, rtype, value, 300),
            SideDoor::Google { api, .. } => {
                let value = if rtype == "CNAME" {
                    format!("{}.", value.trim_end_matches('.'))
                } else {
                    value.to_owned()
                };
                api.add_raw(name, rtype, &value, 300).await
            }
            SideDoor::Route53(r53) => {
                r53.add_foreign_address(&self.dns.zone, name, rtype, value)
                    .await
            }
            SideDoor::PowerDns(p) => {
                let body = serde_json::json!({"rrsets": [{
                    "name": format!("{name}."), "type": rtype, "ttl": 300,
                    "changetype": "REPLACE", "records": [{"content": value, "disabled": false}]}]});
                let status = support::http_client()
                    .patch(format!(
                        "{}/api/v1/servers/localhost/zones/{}.",
                        p.api_url, p.dns.zone
                    ))
                    .header("X-API-Key", &p.api_key)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("PATCH")
                    .status();
                assert_eq!(status.as_u16(), 204, "{}: side-door write", self.name);
            }
        }
    }

    /// The character-strings of the one TXT record at `name`.
    async fn strings(&self, name: &str) -> Vec<String> {
        let lines = self.raw(name).await;
        assert_eq!(
            lines.len(),
            1,
            "{}: one record at {name}: {lines:?}",
            self.name
        );
        parse_txt_strings(&lines[0])
    }
}

/// Where the contract's records go: `backend`, `zone`, owned by `resource`, policy sync.
fn target(backend: Arc<dyn DnsBackend>, zone: &str, resource: &str) -> Target {
    Target {
        backend,
        zone: zone.to_owned(),
        settings: Settings {
            owner: Owner::new("contract", resource),
            policy: Policy::Sync,
            adopt: false,
        },
    }
}

fn record(name: &str, kind: RecordKind, value: &str) -> TxtRecord {
    TxtRecord {
        name: name.to_owned(),
        kind,
        ttl: 300,
        value: value.to_owned(),
    }
}

fn dkim(bits: u32) -> String {
    let file = format!(
        "{}/tests/fixtures/dkim/rsa{bits}.p.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let key = std::fs::read_to_string(file).expect("fixture");
    format!("v=DKIM1; k=rsa; p={}", key.trim())
}

/// Every record kind for `domain`.
fn all_kinds(domain: &str) -> Vec<TxtRecord> {
    vec![
        record(
            &format!("_mta-sts.{domain}"),
            RecordKind::MtaSts,
            "v=STSv1; id=20261201a",
        ),
        record(
            &format!("_smtp._tls.{domain}"),
            RecordKind::TlsRpt,
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.test",
        ),
        record(domain, RecordKind::Spf, "v=spf1 mx -all"),
        record(
            &format!("_dmarc.{domain}"),
            RecordKind::Dmarc,
            "v=DMARC1; p=reject",
        ),
        record(
            &format!("s1._domainkey.{domain}"),
            RecordKind::Dkim,
            &dkim(2048),
        ),
        record(
            &format!("default._bimi.{domain}"),
            RecordKind::Bimi,
            "v=BIMI1; l=https://example.test/logo.svg",
        ),
    ]
}

async fn publish(
    s: &Subject,
    t: &Target,
    desired: &[TxtRecord],
    before: &[RecordStatus],
) -> Published {
    publish::run(t, desired, NO_HOST, &publish::Address::None, before)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", s.name))
}

#[tokio::test]
async fn every_kind_is_published_read_back_equal_and_settles() {
    let Some(env) = support::env() else { return };
    for s in subjects(env).await {
        let domain = format!("all-{}.{}", random_suffix(), s.dns.zone);
        let t = s.target("contract/all");
        let desired = all_kinds(&domain);
        let first = publish(&s, &t, &desired, &[]).await;
        assert!(first.changes > 0, "{}", s.name);
        assert!(
            first
                .records
                .iter()
                .all(|r| r.state == RecordState::Published),
            "{}: {:?}",
            s.name,
            first.records
        );
        for r in &desired {
            assert_eq!(
                s.values(&r.name).await,
                std::slice::from_ref(&r.value),
                "{}: {}",
                s.name,
                r.name
            );
        }
        let again = publish(&s, &t, &desired, &first.records).await;
        assert_eq!(again.changes, 0, "{}: a second pass writes nothing", s.name);
        let gone = publish(&s, &t, &[], &again.records).await;
        assert!(gone.records.is_empty());
        for r in &desired {
            assert!(
                s.values(&r.name).await.is_empty(),
                "{}: {} removed",
                s.name,
                r.name
            );
        }
    }
}

#[tokio::test]
async fn long_dkim_keys_are_split_into_strings_that_join_to_the_value_and_do_not_loop() {
    let Some(env) = support::env() else { return };
    for s in subjects(env).await {
        let t = s.target("contract/dkim");
        for bits in [2048, 4096] {
            let name = format!("k{bits}-{}._domainkey.{}", random_suffix(), s.dns.zone);
            let value = dkim(bits);
            assert!(value.len() > if bits == 2048 { 400 } else { 730 });
            let desired = [record(&name, RecordKind::Dkim, &value)];
            if s.name.starts_with("digitalocean") && bits == 4096 {
                // DigitalOcean refuses a TXT value over ~512 bytes once encoded: a 4096-bit
                // key (~750) cannot be published there. The pass says so and writes nothing.
                let err = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
                    .await
                    .expect_err("a 4096-bit key on DigitalOcean");
                assert_eq!(err.category(), "DNSProviderInvalid", "{err}");
                let text = err.to_string();
                assert!(text.contains(&name) && text.contains("limit"), "{text}");
                assert!(s.values(&name).await.is_empty(), "nothing written");
                assert!(s.values(&format!("_mailsec.{name}")).await.is_empty());
                continue;
            }
            let first = publish(&s, &t, &desired, &[]).await;
            let strings = s.strings(&name).await;
            assert!(strings.len() >= 2, "{}: split: {strings:?}", s.name);
            assert!(strings.iter().all(|x| x.len() <= 255), "{}", s.name);
            assert_eq!(strings.concat(), value, "{}: joined, exact", s.name);
            let second = publish(&s, &t, &desired, &first.records).await;
            assert_eq!(second.changes, 0, "{}: {bits}-bit read back equal", s.name);
            publish(&s, &t, &[], &second.records).await;
        }
    }
}

/// Foreign values at the apex, of every awkward shape, with a TTL of their own.
const FOREIGN: [&str; 3] = [
    r#""google-site-verification=abc123""#,
    r#""a value with spaces and a \"quote\"""#,
    r#""two" "strings""#,
];

#[tokio::test]
async fn foreign_values_and_their_ttl_survive_100_publish_update_delete_cycles() {
    let Some(env) = support::env() else { return };
    for s in subjects(env).await {
        let domain = format!("apex-{}.{}", random_suffix(), s.dns.zone);
        for f in FOREIGN {
            s.add_foreign(&domain, 900, f).await;
        }
        let foreign_before = s.raw(&domain).await;
        assert_eq!(foreign_before.len(), 3, "{}: {foreign_before:?}", s.name);
        let t = s.target("contract/apex");
        let mut before = Vec::new();
        for cycle in 0..100 {
            let spf = record(
                &domain,
                RecordKind::Spf,
                &format!("v=spf1 ip4:192.0.2.{cycle} -all"),
            );
            let published = publish(&s, &t, std::slice::from_ref(&spf), &before).await;
            let updated = record(
                &domain,
                RecordKind::Spf,
                &format!("v=spf1 ip4:198.51.100.{cycle} -all"),
            );
            let published =
                publish(&s, &t, std::slice::from_ref(&updated), &published.records).await;
            assert_eq!(
                s.values(&domain)
                    .await
                    .iter()
                    .filter(|v| v.starts_with("v=spf1"))
                    .collect::<Vec<_>>(),
                [&updated.value],
                "{}: cycle {cycle}: exactly our updated value",
                s.name
            );
            let gone = publish(&s, &t, &[], &published.records).await;
            before = gone.records;
            if cycle % 33 == 0 || cycle == 99 {
                assert_eq!(
                    s.raw(&domain).await,
                    foreign_before,
                    "{}: cycle {cycle}",
                    s.name
                );
                assert_eq!(
                    s.ttl(&domain).await,
                    Some(900),
                    "{}: cycle {cycle}: TTL",
                    s.name
                );
            }
        }
        assert!(
            s.values(&format!("_mailsec.{domain}")).await.is_empty(),
            "{}: marker gone",
            s.name
        );
    }
}

#[tokio::test]
async fn update_changes_exactly_our_value_and_delete_removes_ours_and_our_markers() {
    let Some(env) = support::env() else { return };
    for s in subjects(env).await {
        let domain = format!("upd-{}.{}", random_suffix(), s.dns.zone);
        let dmarc = format!("_dmarc.{domain}");
        s.add_foreign(&domain, 600, FOREIGN[0]).await;
        let t = s.target("contract/update");
        let v1 = [
            record(&domain, RecordKind::Spf, "v=spf1 mx -all"),
            record(&dmarc, RecordKind::Dmarc, "v=DMARC1; p=none"),
        ];
        let first = publish(&s, &t, &v1, &[]).await;
        let v2 = [
            v1[0].clone(),
            record(&dmarc, RecordKind::Dmarc, "v=DMARC1; p=quarantine"),
        ];
        let second = publish(&s, &t, &v2, &first.records).await;
        assert_eq!(second.changes, 2, "{}: one remove, one add", s.name);
        assert_eq!(
            s.values(&dmarc).await,
            ["v=DMARC1; p=quarantine"],
            "{}",
            s.name
        );
        assert_eq!(
            s.values(&domain).await,
            ["google-site-verification=abc123", "v=spf1 mx -all"],
            "{}",
            s.name
        );
        publish(&s, &t, &[], &second.records).await;
        assert_eq!(s.raw(&domain).await, [FOREIGN[0]], "{}", s.name);
        for name in [
            &dmarc,
            &format!("_mailsec.{domain}"),
            &format!("_mailsec.{dmarc}"),
        ] {
            assert!(s.values(name).await.is_empty(), "{}: {name}", s.name);
        }
    }
}

/// spec.mtaSts.policyHost.address: `mta-sts.<domain>` as a CNAME, then as A/AAAA, then gone,
/// each read back by dig (or from moto's and the fake's store), marked, settling with no write;
/// and someone else's address record at that name is a conflict, left exactly as it was.
#[tokio::test]
async fn the_policy_host_address_is_published_marked_and_never_over_foreign_records() {
    use mailsec_operator::controller::publish::Address;
    use mailsec_operator::dns::address::AddressSet;
    let Some(env) = support::env() else { return };
    for s in subjects(env).await {
        let domain = format!("host-{}.{}", random_suffix(), s.dns.zone);
        let host = format!("mta-sts.{domain}");
        let marker = format!("_mailsec.{host}");
        let t = s.target("contract/host");
        let run = |address: Address, before: Vec<RecordStatus>| {
            let (t, host) = (&t, &host);
            async move {
                publish::run(t, &[], host, &address, &before)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", s.name))
            }
        };
        let cname = Address::Set(AddressSet::cname("lb.example.net", 300));
        let first = run(cname.clone(), Vec::new()).await;
        assert_eq!(first.changes, 1, "{}: {first:?}", s.name);
        assert!(first.conflicts.is_empty(), "{}: {first:?}", s.name);
        assert_eq!(
            first
                .records
                .iter()
                .map(|r| (r.record_type.as_str(), r.value.as_str(), r.state))
                .collect::<Vec<_>>(),
            [("CNAME", "lb.example.net", RecordState::Published)],
            "{}",
            s.name
        );
        assert_eq!(
            s.addresses(&host).await,
            ["CNAME lb.example.net."],
            "{}",
            s.name
        );
        assert_eq!(
            s.values(&marker).await,
            [t.settings.owner.render()],
            "{}: marked",
            s.name
        );
        let settled = run(cname.clone(), first.records.clone()).await;
        assert_eq!(settled.changes, 0, "{}: nothing to write", s.name);

        // From a load balancer's addresses: the CNAME makes way for A and AAAA.
        let ips = [
            "192.0.2.80".parse().unwrap(),
            "2001:db8::80".parse().unwrap(),
        ];
        let by_ip = Address::Set(AddressSet::ips(&ips, 300));
        let second = run(by_ip, settled.records.clone()).await;
        assert_eq!(second.changes, 1, "{}", s.name);
        assert_eq!(
            s.addresses(&host).await,
            ["A 192.0.2.80", "AAAA 2001:db8::80"],
            "{}",
            s.name
        );

        // No longer wanted: ours and our marker go.
        let gone = run(Address::None, second.records.clone()).await;
        assert_eq!(gone.changes, 1, "{}", s.name);
        assert!(s.addresses(&host).await.is_empty(), "{}", s.name);
        assert!(
            s.values(&marker).await.is_empty(),
            "{}: marker removed",
            s.name
        );

        // Someone else's record at the name: a conflict, and it stays as it was.
        s.add_foreign_address(&host, "A", "198.51.100.7").await;
        let blocked = run(cname.clone(), Vec::new()).await;
        assert_eq!(blocked.changes, 0, "{}", s.name);
        assert!(
            blocked
                .conflicts
                .iter()
                .any(|c| c.contains("A 198.51.100.7")),
            "{}: {:?}",
            s.name,
            blocked.conflicts
        );
        assert_eq!(
            blocked.records[0].state,
            RecordState::Conflict,
            "{}",
            s.name
        );
        assert_eq!(s.addresses(&host).await, ["A 198.51.100.7"], "{}", s.name);
        assert!(s.values(&marker).await.is_empty(), "{}: not marked", s.name);
        // And removal leaves it too (it is not ours).
        run(Address::None, blocked.records.clone()).await;
        assert_eq!(s.addresses(&host).await, ["A 198.51.100.7"], "{}", s.name);
    }
}

#[tokio::test]
async fn a_foreign_change_between_our_read_and_our_write_is_never_lost() {
    let Some(env) = support::env() else { return };
    for s in subjects(env).await {
        let domain = format!("race-{}.{}", random_suffix(), s.dns.zone);
        s.add_foreign(&domain, 600, FOREIGN[0]).await;
        let t = s.target("contract/race");
        let spf = record(&domain, RecordKind::Spf, "v=spf1 mx -all");
        let names = vec![domain.clone(), format!("_mailsec.{domain}")];
        // The plan is made on what we read; then someone else writes; then we apply.
        let current = s.backend.read(&t.zone, &names).await.expect("read");
        let plan = mailsec_operator::dns::plan::plan(
            std::slice::from_ref(&spf),
            &[],
            &current,
            &t.settings,
        );
        s.add_foreign(&domain, 600, r#""late-arrival=1""#).await;
        let result = s.backend.apply(&t.zone, &current, &plan.operations).await;
        let values = s.values(&domain).await;
        assert!(
            values.contains(&"late-arrival=1".to_owned()),
            "{}: the concurrent value is kept: {values:?}",
            s.name
        );
        match (s.backend.writes(), &result) {
            // Value-level updates (RFC 2136, Hetzner's add/remove_records, one record per
            // value at Cloudflare and DigitalOcean) cannot lose it: ours is added beside it.
            _ if ["rfc2136", "cloudflare", "hetzner", "digitalocean"]
                .iter()
                .any(|p| s.name.starts_with(p)) =>
            {
                assert!(result.is_ok(), "{}: {result:?}", s.name);
                assert!(values.contains(&spf.value), "{}", s.name);
            }
            // An RRset-replacing API sees the change and writes nothing.
            _ => {
                assert_eq!(
                    result.as_ref().map_err(DnsError::category),
                    Err("DNSConcurrentChange"),
                    "{}",
                    s.name
                );
                assert!(
                    !values.contains(&spf.value),
                    "{}: nothing half-written",
                    s.name
                );
                // The next pass reads again and publishes.
                let next = publish(&s, &t, std::slice::from_ref(&spf), &[]).await;
                assert_eq!(next.records[0].state, RecordState::Published);
                assert!(s.values(&domain).await.contains(&spf.value), "{}", s.name);
            }
        }
    }
}

#[tokio::test]
async fn bad_credentials_unknown_zones_and_dead_servers_have_their_reasons_and_write_nothing() {
    let Some(env) = support::env() else { return };
    let wrong_secret = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], dead_port));
    // What, the backend, the zone it is asked to write, the reason, the server to dig.
    type Case = (
        &'static str,
        Arc<dyn DnsBackend>,
        String,
        &'static str,
        DnsSettings,
    );
    let cases: Vec<Case> = vec![
        (
            "rfc2136/BIND wrong TSIG",
            Arc::new(rfc2136(&env.dns, &wrong_secret)),
            env.dns.zone.clone(),
            "DNSAuthFailed",
            env.dns.clone(),
        ),
        (
            "rfc2136/Knot wrong TSIG",
            Arc::new(rfc2136(&env.knot, &wrong_secret)),
            env.knot.zone.clone(),
            "DNSAuthFailed",
            env.knot.clone(),
        ),
        (
            "rfc2136/BIND unknown zone",
            Arc::new(rfc2136(&env.dns, &env.dns.tsig_secret)),
            "nothere.test".into(),
            "DNSZoneNotFound",
            env.dns.clone(),
        ),
        (
            "rfc2136/Knot unknown zone",
            Arc::new(rfc2136(&env.knot, &env.knot.tsig_secret)),
            "nothere.test".into(),
            "DNSZoneNotFound",
            env.knot.clone(),
        ),
        (
            "rfc2136 dead server",
            Arc::new(rfc2136(
                &DnsSettings {
                    server: dead,
                    ..env.dns.clone()
                },
                &env.dns.tsig_secret,
            )),
            env.dns.zone.clone(),
            "DNSUnreachable",
            env.dns.clone(),
        ),
        (
            "route53 unknown zone",
            Arc::new(
                Route53::with_keys(&env.route53.url, support::route53::credentials(), None)
                    .expect("route53"),
            ),
            "nothere.test".into(),
            "DNSZoneNotFound",
            env.dns.clone(),
        ),
        (
            "route53 unknown hosted zone id",
            Arc::new(
                Route53::with_keys(
                    &env.route53.url,
                    support::route53::credentials(),
                    Some("Z0NOSUCHZONE".into()),
                )
                .expect("route53"),
            ),
            "nothere.test".into(),
            "DNSZoneNotFound",
            env.dns.clone(),
        ),
        (
            "route53 dead endpoint",
            Arc::new(
                Route53::with_keys(
                    &format!("http://{dead}"),
                    support::route53::credentials(),
                    None,
                )
                .expect("route53"),
            ),
            env.dns.zone.clone(),
            "DNSUnreachable",
            env.dns.clone(),
        ),
        (
            "powerdns wrong key",
            Arc::new(powerdns(&env.pdns, "wrong-key")),
            env.pdns.dns.zone.clone(),
            "DNSAuthFailed",
            env.pdns.dns.clone(),
        ),
        (
            "powerdns unknown zone",
            Arc::new(powerdns(&env.pdns, &env.pdns.api_key)),
            "nothere.test".into(),
            "DNSZoneNotFound",
            env.pdns.dns.clone(),
        ),
        (
            "powerdns dead server",
            Arc::new(
                PowerDns::new(&format!("http://{dead}"), "localhost", "k".into()).expect("pdns"),
            ),
            env.pdns.dns.zone.clone(),
            "DNSUnreachable",
            env.pdns.dns.clone(),
        ),
    ];
    for (what, backend, zone, category, dns) in cases {
        let name = format!("bad-{}.{zone}", random_suffix());
        let t = target(backend, &zone, "contract/bad");
        let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
        let err = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
            .await
            .expect_err(what);
        assert_eq!(err.category(), category, "{what}: {err}");
        if zone == dns.zone {
            assert!(
                dns.dig_short(&name, "TXT").is_empty(),
                "{what}: nothing written"
            );
        }
    }
}

/// The cloudflare fake's error paths, which no real server here can produce: each has its
/// reason, a rate limit's Retry-After comes through, and nothing is written.
#[tokio::test]
async fn cloudflare_errors_have_their_reasons_and_write_nothing() {
    let Some(env) = support::env() else { return };
    let fake = support::cloudflare::Fake::start(&env.dns.zone).await;
    let name = format!("cf-{}.{}", random_suffix(), fake.zone);
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let cf_target =
        |backend: Cloudflare, zone: &str| target(Arc::new(backend), zone, "contract/cf");
    let good = || Cloudflare::new(&fake.url, fake.token.clone()).expect("cloudflare");
    let desired = &desired;
    let run = |t: Target| async move {
        publish::run(&t, desired, NO_HOST, &publish::Address::None, &[]).await
    };

    let wrong = Cloudflare::new(&fake.url, "not-a-token".into()).expect("cloudflare");
    let err = run(cf_target(wrong, &fake.zone))
        .await
        .expect_err("wrong token");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(err.to_string().contains("10000"), "{err}");

    let err = run(cf_target(good(), "other.test"))
        .await
        .expect_err("a zone the token cannot see");
    assert_eq!(err.category(), "DNSZoneNotFound", "{err}");

    fake.throttle(1, 7);
    let err = run(cf_target(good(), &fake.zone))
        .await
        .expect_err("throttled");
    assert_eq!(
        (err.category(), err.retry_after()),
        ("DNSRateLimited", Some(std::time::Duration::from_secs(7)))
    );

    fake.break_next(1);
    let err = run(cf_target(good(), &fake.zone))
        .await
        .expect_err("broken");
    assert_eq!(err.category(), "DNSServerError", "{err}");
    assert!(
        fake.records(&name).is_empty(),
        "nothing written on any error"
    );

    // And then it works, in one batch: the API calls of a create and of a no-op pass.
    let t = cf_target(good(), &fake.zone);
    let before = fake.calls();
    let first = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish");
    let create_calls = fake.calls() - before;
    let before = fake.calls();
    let again = publish::run(
        &t,
        desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("again");
    let noop_calls = fake.calls() - before;
    assert_eq!(again.changes, 0);
    assert_eq!(fake.records(&name).len(), 1);
    // One record and its marker: the zone id (once per backend), 2 reads, 2 fresh reads for
    // the record ids and 1 batch; a no-op pass only reads.
    assert_eq!((create_calls, noop_calls), (6, 2));
}

/// The hetzner fake's error paths: each has its reason and writes nothing; an Action that
/// ends in `error` says so; a short rate limit is waited out (by `Retry-After`, or by
/// `RateLimit-Reset` when that is all Hetzner sends), a long one is handed back with its wait;
/// and a write waits for its Actions, polling until they succeed.
#[tokio::test]
async fn hetzner_errors_have_their_reasons_and_write_nothing() {
    let Some(env) = support::env() else { return };
    let fake = support::hetzner::Fake::start(&env.dns.zone).await;
    let name = format!("hz-{}.{}", random_suffix(), fake.zone);
    let marker = format!("_mailsec.{name}");
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let desired = &desired;
    let hz_target = |backend: Hetzner, zone: &str| target(Arc::new(backend), zone, "contract/hz");
    let run = |t: Target| async move {
        publish::run(&t, desired, NO_HOST, &publish::Address::None, &[]).await
    };
    let nothing_written = || {
        assert!(fake.txt(&name).is_empty(), "nothing written");
        assert!(fake.txt(&marker).is_empty(), "no marker written");
    };

    let err = run(hz_target(hetzner(&fake, "not-a-token"), &fake.zone))
        .await
        .expect_err("wrong token");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(err.to_string().contains("unauthorized"), "{err}");

    let err = run(hz_target(hetzner(&fake, &fake.token), "other.test"))
        .await
        .expect_err("a zone the project does not have");
    assert_eq!(err.category(), "DNSZoneNotFound", "{err}");
    assert!(err.to_string().contains("other.test"), "{err}");

    fake.throttle(1, 30, true);
    let err = run(hz_target(hetzner(&fake, &fake.token), &fake.zone))
        .await
        .expect_err("throttled for longer than is waited out");
    assert_eq!(
        (err.category(), err.retry_after()),
        ("DNSRateLimited", Some(std::time::Duration::from_secs(30))),
        "{err}"
    );

    fake.fail_actions(1);
    let err = run(hz_target(hetzner(&fake, &fake.token), &fake.zone))
        .await
        .expect_err("an Action that fails");
    assert_eq!(err.category(), "DNSServerError", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("action_failed") && text.contains("nothing was changed"),
        "{text}"
    );
    nothing_written();

    // Rate limited once with only RateLimit-Reset (a second ahead): waited out, then written,
    // each Action polled until it succeeded (the fake finishes one on its second poll).
    fake.throttle(1, 1, false);
    let t = hz_target(hetzner(&fake, &fake.token), &fake.zone);
    let log_before = fake.call_log().len();
    let first = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("published after the rate limit");
    let log: Vec<String> = fake.call_log()[log_before..].to_vec();
    let adds = log.iter().filter(|c| c.ends_with("add_records")).count();
    let polls = log.iter().filter(|c| *c == "GET /actions/{id}").count();
    assert_eq!(adds, 2, "the record and its marker: {log:?}");
    assert!(polls >= 2 * adds, "each Action polled to success: {log:?}");
    assert_eq!(fake.txt(&name), ["\"v=DMARC1; p=none\""]);
    assert_eq!(fake.txt(&marker).len(), 1);
    let before = fake.calls();
    let again = publish::run(
        &t,
        desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("again");
    assert_eq!(again.changes, 0);
    assert_eq!(fake.calls() - before, 2, "a no-op pass reads the two names");
    publish::run(&t, &[], NO_HOST, &publish::Address::None, &again.records)
        .await
        .expect("clean up");
    nothing_written();
}

/// The digitalocean fake's error paths, and DigitalOcean's length limit: a value over it is
/// refused before anything is written, naming the record; the fake itself refuses it too.
#[tokio::test]
async fn digitalocean_errors_have_their_reasons_and_write_nothing() {
    let Some(env) = support::env() else { return };
    let fake = support::digitalocean::Fake::start(&env.dns.zone).await;
    let name = format!("do-{}.{}", random_suffix(), fake.zone);
    let marker = format!("_mailsec.{name}");
    let good = || DigitalOcean::new(&fake.url, fake.token.clone()).expect("do");
    let do_target =
        |backend: DigitalOcean, zone: &str| target(Arc::new(backend), zone, "contract/do");
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let desired = &desired;
    let run = |t: Target| async move {
        publish::run(&t, desired, NO_HOST, &publish::Address::None, &[]).await
    };
    let nothing_written = |n: &str| {
        assert!(fake.records(n, "TXT").is_empty(), "nothing written at {n}");
    };

    let wrong = DigitalOcean::new(&fake.url, "not-a-token".into()).expect("do");
    let err = run(do_target(wrong, &fake.zone))
        .await
        .expect_err("wrong token");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(err.to_string().contains("unauthorized"), "{err}");

    let err = run(do_target(good(), "other.test"))
        .await
        .expect_err("a domain the account does not have");
    assert_eq!(err.category(), "DNSZoneNotFound", "{err}");

    fake.throttle(1, 30, true);
    let err = run(do_target(good(), &fake.zone))
        .await
        .expect_err("throttled for longer than is waited out");
    assert_eq!(
        (err.category(), err.retry_after()),
        ("DNSRateLimited", Some(std::time::Duration::from_secs(30))),
        "{err}"
    );
    nothing_written(&name);

    // Over the limit: refused before any write, naming the record and the numbers.
    let dkim_name = format!("k4096-{}._domainkey.{}", random_suffix(), fake.zone);
    let long = [record(&dkim_name, RecordKind::Dkim, &dkim(4096))];
    let t = do_target(good(), &fake.zone);
    let before = fake.calls();
    let err = publish::run(&t, &long, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("a 4096-bit key");
    assert_eq!(err.category(), "DNSProviderInvalid", "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&dkim_name) && text.contains("509") && text.contains("nothing was written"),
        "{text}"
    );
    assert_eq!(fake.calls() - before, 2, "only the two reads of the plan");
    nothing_written(&dkim_name);
    nothing_written(&format!("_mailsec.{dkim_name}"));
    // The fake refuses it as DigitalOcean does, with 422.
    let http = support::http_client();
    let answer = http
        .post(format!("{}/v2/domains/{}/records", fake.url, fake.zone))
        .bearer_auth(&fake.token)
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({"type": "TXT", "name": "direct", "data": dkim(4096), "ttl": 300})
                .to_string(),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status().as_u16(), 422);
    let body: serde_json::Value =
        serde_json::from_str(&answer.text().await.expect("body")).expect("JSON");
    assert_eq!(body["id"], "unprocessable_entity");

    // Rate limited once with only ratelimit-reset (a second ahead): waited out, then written.
    fake.throttle(1, 1, false);
    let t = do_target(good(), &fake.zone);
    let first = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("published after the rate limit");
    assert_eq!(
        fake.records(&name, "TXT")
            .iter()
            .map(|r| r.data.as_str())
            .collect::<Vec<_>>(),
        ["v=DMARC1; p=none"],
        "unquoted, joined"
    );
    assert_eq!(fake.records(&marker, "TXT").len(), 1);
    let before = fake.calls();
    let again = publish::run(
        &t,
        desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("again");
    assert_eq!(again.changes, 0);
    assert_eq!(fake.calls() - before, 2, "a no-op pass reads the two names");
    publish::run(&t, &[], NO_HOST, &publish::Address::None, &again.records)
        .await
        .expect("clean up");
    nothing_written(&name);
    nothing_written(&marker);
}

/// Paging: more records at a name than a page holds are all read (DigitalOcean's
/// `links.pages.next`, followed by page number), so a value on page two is seen and not
/// written twice.
#[tokio::test]
async fn digitalocean_reads_every_page() {
    let Some(env) = support::env() else { return };
    let fake = support::digitalocean::Fake::start(&env.dns.zone).await;
    let domain = format!("pages-{}.{}", random_suffix(), fake.zone);
    for n in 0..230 {
        fake.add_raw(&domain, &format!("\"verification-{n}\""), 300);
    }
    let t = target(
        Arc::new(DigitalOcean::new(&fake.url, fake.token.clone()).expect("do")),
        &fake.zone,
        "contract/pages",
    );
    let current = t
        .backend
        .read(&t.zone, std::slice::from_ref(&domain))
        .await
        .expect("read");
    assert_eq!(current[&domain].values.len(), 230, "both pages");
    let spf = [record(&domain, RecordKind::Spf, "v=spf1 -all")];
    let first = publish::run(&t, &spf, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish");
    let again = publish::run(&t, &spf, NO_HOST, &publish::Address::None, &first.records)
        .await
        .expect("again");
    assert_eq!(again.changes, 0);
    assert_eq!(fake.records(&domain, "TXT").len(), 231);
}

/// What the strictness layer is for: moto alone accepts a DELETE that does not match the
/// record set as it is (and so loses a value someone added), Route 53 and our strict moto
/// refuse it. Also an over-long string and a CREATE over an existing set.
#[tokio::test]
async fn route53_refuses_stale_deletes_where_plain_moto_does_not() {
    let Some(env) = support::env() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let tools = std::process::Command::new(support::repo_root().join("scripts/tools.sh"))
        .arg("motopath")
        .output()
        .expect("tools.sh motopath");
    let motopath = String::from_utf8_lossy(&tools.stdout).trim().to_owned();
    let mut plain_server = std::process::Command::new("python3")
        .arg(support::repo_root().join("scripts/route53-strict.py"))
        .args([
            "--plain",
            "--port",
            &port.to_string(),
            "--zone",
            &env.dns.zone,
        ])
        .env("PYTHONPATH", motopath)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start plain moto");
    let plain = support::route53::Route53 {
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "plain moto did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let zone = &env.dns.zone;
    for (server, strict) in [(&env.route53, true), (&plain, false)] {
        let name = format!("stale-{}.{zone}", random_suffix());
        server.add_foreign(zone, &name, 300, "\"ours=1\"").await;
        server.add_foreign(zone, &name, 300, "\"theirs=1\"").await;
        // A writer that read before `theirs` arrived deletes what it saw.
        let stale = support::route53::change("DELETE", &name, 300, &["\"ours=1\"".into()])
            + &support::route53::change("CREATE", &name, 300, &["\"ours=2\"".into()]);
        let (status, body) = server.change(zone, &stale).await;
        let left = server
            .txt(zone, &name)
            .await
            .map(|s| s.values)
            .unwrap_or_default();
        if strict {
            assert_eq!(status, 400, "{body}");
            assert!(
                body.contains("InvalidChangeBatch") && body.contains("do not match"),
                "{body}"
            );
            assert_eq!(left, ["\"ours=1\"", "\"theirs=1\""], "nothing applied");
        } else {
            assert_eq!(status, 200, "plain moto accepts the stale DELETE: {body}");
            assert!(
                !left.contains(&"\"theirs=1\"".to_owned()),
                "and loses their value: {left:?}"
            );
        }
        let long = format!("\"{}\"", "x".repeat(300));
        let (status, _) = server
            .change(
                zone,
                &support::route53::change("CREATE", &format!("long-{name}"), 300, &[long]),
            )
            .await;
        assert_eq!(
            status == 400,
            strict,
            "a 300-byte string (strict: {strict})"
        );
        let (status, _) = server
            .change(
                zone,
                &support::route53::change("CREATE", &name, 300, &["\"again\"".into()]),
            )
            .await;
        assert_eq!(
            status == 400,
            strict,
            "CREATE over an existing set (strict: {strict})"
        );
    }
    let _ = plain_server.kill();
    let _ = plain_server.wait();
}

/// IRSA: a web identity token exchanged with STS (moto's) for session credentials, which then
/// sign the Route 53 requests.
#[tokio::test]
async fn route53_works_with_a_web_identity() {
    let Some(env) = support::env() else { return };
    let token = std::env::temp_dir().join(format!("mailsec-token-{}", random_suffix()));
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln").expect("token file");
    let backend = Route53::with_web_identity(
        &env.route53.url,
        "arn:aws:iam::123456789012:role/mailsec",
        token.to_str().expect("path"),
        &env.route53.url,
        None,
    )
    .expect("route53");
    let name = format!("irsa-{}.{}", random_suffix(), env.dns.zone);
    let t = target(Arc::new(backend), &env.dns.zone, "contract/irsa");
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish with session credentials");
    assert_eq!(
        env.route53
            .txt(&env.dns.zone, &name)
            .await
            .map(|s| s.values),
        Some(vec!["\"v=DMARC1; p=none\"".to_owned()])
    );
    let _ = std::fs::remove_file(&token);
    // A missing token file is an authentication failure that names it.
    let missing = Route53::with_web_identity(
        &env.route53.url,
        "arn:aws:iam::123456789012:role/mailsec",
        "/nonexistent/token",
        &env.route53.url,
        None,
    )
    .expect("route53");
    let t = Target {
        backend: Arc::new(missing),
        ..t
    };
    let err = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("no token");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(err.to_string().contains("/nonexistent/token"), "{err}");
}

/// Counts requests, per provider.
#[derive(Default)]
struct Counter(std::sync::Mutex<u64>);

impl mailsec_operator::dns::backend::ApiMeter for Counter {
    fn request(&self, _provider: &'static str, _result: &'static str) {
        if let Ok(mut n) = self.0.lock() {
            *n += 1;
        }
    }
}

impl Counter {
    fn take(&self) -> u64 {
        self.0
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or(0)
    }
}

/// Politeness: how many requests one pass makes for a MailDomain with every record kind (six
/// records, six markers), publishing and then with nothing to do. A pass with nothing to do
/// reads each name once and writes nothing; the numbers are printed for the notes.
#[tokio::test]
async fn requests_per_pass_create_and_no_op() {
    let Some(env) = support::env() else { return };
    let fake = support::cloudflare::Fake::start(&env.dns.zone).await;
    let hz = support::hetzner::Fake::start(&env.dns.zone).await;
    let dgo = support::digitalocean::Fake::start(&env.dns.zone).await;
    let az = support::azure::Fake::start(&env.dns.zone).await;
    let gf = support::google::Fake::start(&env.dns.zone).await;
    let counter = Arc::new(Counter::default());
    let meter = || counter.clone() as Arc<dyn mailsec_operator::dns::backend::ApiMeter>;
    let backends: Vec<(&str, Arc<dyn DnsBackend>, u64)> = vec![
        (
            "rfc2136",
            Arc::new(rfc2136(&env.dns, &env.dns.tsig_secret).with_meter(meter())),
            0,
        ),
        (
            "powerdns",
            Arc::new(powerdns(&env.pdns, &env.pdns.api_key).with_meter(meter())),
            0,
        ),
        (
            "cloudflare",
            Arc::new(
                Cloudflare::new(&fake.url, fake.token.clone())
                    .expect("cf")
                    .with_meter(meter()),
            ),
            1,
        ),
        (
            "route53",
            Arc::new(
                Route53::with_keys(&env.route53.url, support::route53::credentials(), None)
                    .expect("route53")
                    .with_meter(meter()),
            ),
            1,
        ),
        (
            "hetzner",
            Arc::new(hetzner(&hz, &hz.token).with_meter(meter())),
            1,
        ),
        (
            "digitalocean",
            Arc::new(
                DigitalOcean::new(&dgo.url, dgo.token.clone())
                    .expect("do")
                    .with_meter(meter()),
            ),
            0,
        ),
        (
            // The token, fetched once per backend.
            "azure",
            Arc::new(azure(&az, &az.client_secret).with_meter(meter())),
            1,
        ),
        (
            // The token, then the managed zone by its DNS name, once per backend.
            "google",
            Arc::new(google_fake(&gf).with_meter(meter())),
            2,
        ),
    ];
    for (name, backend, zone_lookup) in backends {
        let domain = format!("calls-{}.{}", random_suffix(), env.dns.zone);
        let desired = all_kinds(&domain);
        let t = target(backend, &env.dns.zone, "contract/calls");
        counter.take();
        let first = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
            .await
            .expect("create");
        let create = counter.take();
        let again = publish::run(
            &t,
            &desired,
            NO_HOST,
            &publish::Address::None,
            &first.records,
        )
        .await
        .expect("no-op");
        let noop = counter.take();
        println!("{name}: create {create} requests, no-op {noop}");
        assert_eq!(again.changes, 0);
        assert_eq!(
            noop, 12,
            "{name}: a no-op pass reads each of the 12 names once"
        );
        assert!(create > 12 + zone_lookup, "{name}: {create}");
        publish::run(&t, &[], NO_HOST, &publish::Address::None, &again.records)
            .await
            .expect("clean up");
    }
}

/// EKS Pod Identity: credentials from the agent's container credentials endpoint (here a
/// stand-in answering as the agent documents: the projected token in `Authorization`, JSON
/// with `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`), fetched once and reused.
#[tokio::test]
async fn route53_works_with_eks_pod_identity() {
    let Some(env) = support::env() else { return };
    let token = std::env::temp_dir().join(format!("mailsec-pod-token-{}", random_suffix()));
    std::fs::write(&token, "pod-identity-token\n").expect("token file");
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = asked.clone();
    let agent = axum::Router::new().route(
        "/v1/credentials",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("pod-identity-token") {
                    return (axum::http::StatusCode::UNAUTHORIZED, "bad token".to_owned());
                }
                let expires = k8s_openapi::jiff::Timestamp::now()
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(6))
                    .expect("time");
                (
                    axum::http::StatusCode::OK,
                    serde_json::json!({"AccessKeyId": "ASIAPODIDENTITY", "SecretAccessKey": "pod-secret",
                        "Token": "pod-session", "AccountId": "111122223333", "Expiration": expires.to_string()})
                    .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, agent).await;
    });
    let backend = Route53::with_container_credentials(
        &env.route53.url,
        &format!("http://{addr}/v1/credentials"),
        token.to_str(),
        None,
    )
    .expect("route53");
    let t = target(Arc::new(backend), &env.dns.zone, "contract/pod");
    let name = format!("pod-{}.{}", random_suffix(), env.dns.zone);
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let first = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish");
    publish::run(
        &t,
        &desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("again");
    assert_eq!(
        env.route53
            .txt(&env.dns.zone, &name)
            .await
            .map(|s| s.values),
        Some(vec!["\"v=DMARC1; p=none\"".to_owned()])
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once, then reused"
    );
    let _ = std::fs::remove_file(&token);
}

/// The HTTP API backends behind a fault proxy each (`support::faults`; for azure in front of
/// ARM, its token service reached directly), their side doors reaching the API directly. rfc2136 is not among them: it speaks DNS, not HTTP.
async fn faulty_subjects(env: &TestEnv, percent: u64, seed: u64) -> Vec<(Subject, FaultProxy)> {
    let cf = support::cloudflare::Fake::start(&env.dns.zone).await;
    let hz = support::hetzner::Fake::start(&env.dns.zone).await;
    let dgo = support::digitalocean::Fake::start(&env.dns.zone).await;
    let proxy = async |url: &str, n: u64| FaultProxy::start(url, percent, seed ^ (n << 40)).await;
    let az = support::azure::Fake::start(&env.dns.zone).await;
    let p_az = proxy(&az.management_url, 6).await;
    let mut behind = az.clone();
    behind.management_url = p_az.url.clone();
    // The API behind the proxy; the key's token_uri (the fake's own) reached directly.
    let gf = support::google::Fake::start(&env.dns.zone).await;
    let p_g = proxy(&gf.url, 7).await;
    let google_behind = Google::new(
        &p_g.url,
        &gf.project,
        google::Credential::service_account(&gf.service_account_key).expect("key file"),
    )
    .expect("google");
    let (p_cf, p_hz, p_do, p_r53, p_pdns) = (
        proxy(&cf.url, 1).await,
        proxy(&hz.url, 2).await,
        proxy(&dgo.url, 3).await,
        proxy(&env.route53.url, 4).await,
        proxy(&env.pdns.api_url, 5).await,
    );
    vec![
        (
            Subject {
                name: "google (fake) behind faults",
                backend: Arc::new(google_behind),
                dns: env.dns.clone(),
                side: SideDoor::Google {
                    api: gf.api(),
                    _server: GoogleServer::Fake(gf),
                },
            },
            p_g,
        ),
        (
            Subject {
                name: "azure (fake) behind faults",
                backend: Arc::new(azure(&behind, &az.client_secret)),
                dns: env.dns.clone(),
                side: SideDoor::Azure(az),
            },
            p_az,
        ),
        (
            Subject {
                name: "cloudflare (fake) behind faults",
                backend: Arc::new(Cloudflare::new(&p_cf.url, cf.token.clone()).expect("cf")),
                dns: env.dns.clone(),
                side: SideDoor::Cloudflare(cf),
            },
            p_cf,
        ),
        (
            Subject {
                name: "hetzner (fake) behind faults",
                backend: Arc::new(
                    Hetzner::new(&p_hz.url, hz.token.clone())
                        .expect("hetzner")
                        .with_first_poll(std::time::Duration::from_millis(5)),
                ),
                dns: env.dns.clone(),
                side: SideDoor::Hetzner(hz),
            },
            p_hz,
        ),
        (
            Subject {
                name: "digitalocean (fake) behind faults",
                backend: Arc::new(DigitalOcean::new(&p_do.url, dgo.token.clone()).expect("do")),
                dns: env.dns.clone(),
                side: SideDoor::DigitalOcean(dgo),
            },
            p_do,
        ),
        (
            Subject {
                name: "route53 (moto, strict) behind faults",
                backend: Arc::new(
                    Route53::with_keys(&p_r53.url, support::route53::credentials(), None)
                        .expect("route53"),
                ),
                dns: env.dns.clone(),
                side: SideDoor::Route53(env.route53.clone()),
            },
            p_r53,
        ),
        (
            Subject {
                name: "powerdns behind faults",
                backend: Arc::new(
                    PowerDns::new(&p_pdns.url, "localhost", env.pdns.api_key.clone())
                        .expect("powerdns"),
                ),
                dns: env.pdns.dns.clone(),
                side: SideDoor::PowerDns(env.pdns.clone()),
            },
            p_pdns,
        ),
    ]
}

/// The four states a domain's records go through in the fault test, in turn: everything;
/// everything with three values changed; two records left; nothing.
fn fault_states(domain: &str) -> [Vec<TxtRecord>; 4] {
    let all = all_kinds(domain);
    let changed: Vec<TxtRecord> = all
        .iter()
        .map(|r| match r.kind {
            RecordKind::Spf => record(&r.name, r.kind, "v=spf1 ip4:192.0.2.7 mx -all"),
            RecordKind::Dmarc => record(&r.name, r.kind, "v=DMARC1; p=quarantine; pct=50"),
            RecordKind::MtaSts => record(&r.name, r.kind, "v=STSv1; id=20261202b"),
            _ => r.clone(),
        })
        .collect();
    let few = changed
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::MtaSts | RecordKind::TlsRpt))
        .cloned()
        .collect();
    [all, changed, few, Vec::new()]
}

/// Reasons a transient fault may show as: anything else (auth, zone not found, invalid
/// provider) would send a user looking in the wrong place.
const TRANSIENT: [&str; 4] = [
    "DNSUnreachable",
    "DNSRateLimited",
    "DNSServerError",
    "DNSConcurrentChange",
];

/// One backend through `reconciles` passes with faults on `percent` % of its API calls, the
/// desired records of `DOMAINS` domains moving on between passes as a user editing them
/// would (whether or not the last pass got through); then faults off, passes until nothing
/// changes, and the zone must hold exactly the desired values, once each, beside the foreign
/// values as they were, with no marker left for a domain that has no records.
async fn converges_through_faults(s: &Subject, proxy: &FaultProxy, reconciles: usize, seed: u64) {
    const DOMAINS: usize = 4;
    let t = s.target("contract/faults");
    let domains: Vec<String> = (0..DOMAINS)
        .map(|i| format!("faults{i}-{}.{}", random_suffix(), s.dns.zone))
        .collect();
    let mut foreign = Vec::new();
    for d in &domains {
        // Beside our SPF at the apex, and at a name we publish too.
        proxy.set_faulty(false);
        s.add_foreign(d, 900, FOREIGN[0]).await;
        s.add_foreign(&format!("_dmarc.{d}"), 900, FOREIGN[2]).await;
        foreign.push((s.raw(d).await, s.raw(&format!("_dmarc.{d}")).await));
    }
    proxy.set_faulty(true);
    let states: Vec<[Vec<TxtRecord>; 4]> = domains.iter().map(|d| fault_states(d)).collect();
    let mut state = [0usize; DOMAINS];
    let mut before: Vec<Vec<RecordStatus>> = vec![Vec::new(); DOMAINS];
    let mut errors: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut rng = seed | 1;
    for i in 0..reconciles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let d = i % DOMAINS;
        // A quarter of the time the spec has moved on since the last pass of this domain.
        if rng.is_multiple_of(4) {
            state[d] = (state[d] + 1) % 4;
        }
        let desired = &states[d][state[d]];
        // As the controller does: names about to be written are listed in status first.
        let ahead = publish::listed_ahead(desired, &before[d]);
        before[d].extend(ahead);
        match publish::run(&t, desired, NO_HOST, &publish::Address::None, &before[d]).await {
            Ok(p) => before[d] = p.records,
            Err(e) => {
                let reason = e.category();
                assert!(
                    TRANSIENT.contains(&reason),
                    "{}: pass {i}: a fault shows as {reason}: {e}",
                    s.name
                );
                assert!(!e.to_string().is_empty(), "{}: a message", s.name);
                *errors.entry(reason).or_default() += 1;
            }
        }
    }
    proxy.set_faulty(false);
    for (d, domain) in domains.iter().enumerate() {
        let desired = &states[d][state[d]];
        let mut settled = false;
        for _ in 0..4 {
            let p = publish::run(&t, desired, NO_HOST, &publish::Address::None, &before[d])
                .await
                .unwrap_or_else(|e| panic!("{}: faults off: {e}", s.name));
            before[d] = p.records;
            if p.changes == 0 {
                settled = true;
                break;
            }
        }
        assert!(settled, "{}: {domain} settles once the faults stop", s.name);
        let dmarc = format!("_dmarc.{domain}");
        // State 0 has every name this domain can have.
        for r in &states[d][0] {
            let ours: Vec<&str> = desired
                .iter()
                .filter(|w| w.name == r.name)
                .map(|w| w.value.as_str())
                .collect();
            let mut values = s.values(&r.name).await;
            if r.name == *domain || r.name == dmarc {
                values.retain(|v| v.starts_with("v="));
            }
            assert_eq!(
                values, ours,
                "{}: {}: exactly the desired values, once each (state {})",
                s.name, r.name, state[d]
            );
        }
        let (apex, at_dmarc) = &foreign[d];
        let foreign_now = |mut lines: Vec<String>| {
            lines.retain(|l| !l.contains("v=spf1") && !l.contains("v=DMARC1"));
            lines
        };
        assert_eq!(&foreign_now(s.raw(domain).await), apex, "{}", s.name);
        assert_eq!(&foreign_now(s.raw(&dmarc).await), at_dmarc, "{}", s.name);
        if desired.is_empty() {
            assert!(
                s.values(&format!("_mailsec.{domain}")).await.is_empty(),
                "{}: {domain}: no marker left",
                s.name
            );
        }
    }
    let faults = proxy.faults();
    let mut by_kind: BTreeMap<Fault, usize> = BTreeMap::new();
    for f in &faults {
        *by_kind.entry(*f).or_default() += 1;
    }
    eprintln!(
        "{}: {reconciles} passes, {} requests passed on, faults {by_kind:?}, errors {errors:?}",
        s.name,
        proxy.passed()
    );
    assert!(
        by_kind.len() == Fault::ALL.len(),
        "{}: every kind of fault was injected: {by_kind:?}",
        s.name
    );
    assert!(!errors.is_empty(), "{}: faults showed as errors", s.name);
}

/// Faults on 30 % of the API calls of every HTTP backend, `FAULT_RECONCILES` passes each
/// (default 100, so 600 in all; `make test-faults` runs more): the end state is the desired
/// state, exactly, no foreign value touched, every error a transient reason.
#[tokio::test]
async fn thirty_percent_faulty_api_calls_still_converge_exactly() {
    let Some(env) = support::env() else { return };
    let reconciles: usize = std::env::var("FAULT_RECONCILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::process::id().into());
    eprintln!("fault test: FAULT_SEED={seed} FAULT_RECONCILES={reconciles}");
    let subjects = faulty_subjects(env, 30, seed).await;
    futures_util::future::join_all(
        subjects
            .iter()
            .map(|(s, proxy)| converges_through_faults(s, proxy, reconciles, seed)),
    )
    .await;
}

/// The azure fake's error paths: a wrong client secret is refused at the token service
/// (nothing asked of ARM, nothing written); an unknown zone or resource group is a missing
/// zone; a foreign write that lands between our read and our PUT fails the PUT's `If-Match`
/// (412), loses nothing and writes nothing of ours, and the next pass publishes; a long rate
/// limit is handed back with its wait, a short one waited out; every write is conditioned on
/// an etag (or on no set there), and the token is fetched once.
#[tokio::test]
async fn azure_errors_have_their_reasons_and_write_nothing() {
    let Some(env) = support::env() else { return };
    let fake = support::azure::Fake::start(&env.dns.zone).await;
    let name = format!("az-{}.{}", random_suffix(), fake.zone);
    let marker = format!("_mailsec.{name}");
    let desired = [record(&name, RecordKind::Spf, "v=spf1 mx -all")];
    let desired = &desired;
    let az_target = |backend: Azure, zone: &str| target(Arc::new(backend), zone, "contract/az");
    let run = |t: Target| async move {
        publish::run(&t, desired, NO_HOST, &publish::Address::None, &[]).await
    };
    let nothing_of_ours = || {
        assert!(
            !fake.values(&name).contains(&desired[0].value),
            "nothing of ours written"
        );
        assert!(fake.values(&marker).is_empty(), "no marker written");
    };

    let err = run(az_target(azure(&fake, "wrong-secret"), &fake.zone))
        .await
        .expect_err("wrong secret");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("AADSTS7000215") && text.contains("invalid_client"),
        "{text}"
    );
    assert!(
        !text.contains("Trace ID"),
        "one line of the description: {text}"
    );
    assert!(
        fake.calls().is_empty(),
        "ARM never asked: {:?}",
        fake.calls()
    );
    nothing_of_ours();

    let elsewhere = [record(
        &format!("az-{}.other.test", random_suffix()),
        RecordKind::Dmarc,
        "v=DMARC1; p=none",
    )];
    let t = az_target(azure(&fake, &fake.client_secret), "other.test");
    let err = publish::run(&t, &elsewhere, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("a zone the resource group does not have");
    assert_eq!(err.category(), "DNSZoneNotFound", "{err}");
    assert!(err.to_string().contains("ParentResourceNotFound"), "{err}");

    let elsewhere = Azure::new(
        &fake.management_url,
        &fake.authority_url,
        &fake.subscription,
        "rg-elsewhere",
        Credential::ClientSecret {
            tenant_id: fake.tenant.clone(),
            client_id: fake.client_id.clone(),
            client_secret: fake.client_secret.clone(),
        },
    )
    .expect("azure");
    let err = run(az_target(elsewhere, &fake.zone))
        .await
        .expect_err("another resource group");
    assert_eq!(err.category(), "DNSZoneNotFound", "{err}");
    assert!(err.to_string().contains("ResourceGroupNotFound"), "{err}");

    fake.throttle(1, 30);
    let err = run(az_target(azure(&fake, &fake.client_secret), &fake.zone))
        .await
        .expect_err("throttled for longer than is waited out");
    assert_eq!(
        (err.category(), err.retry_after()),
        ("DNSRateLimited", Some(std::time::Duration::from_secs(30))),
        "{err}"
    );
    nothing_of_ours();

    // The race: someone's value lands after our fresh read, before our PUT of that set.
    fake.add_raw(&name, "TXT", FOREIGN[0], 900);
    let t = az_target(azure(&fake, &fake.client_secret), &fake.zone);
    fake.race_next_write(&name, r#""late-arrival=1""#);
    let err = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("the PUT's etag is stale");
    assert_eq!(err.category(), "DNSConcurrentChange", "{err}");
    assert!(err.to_string().contains("412"), "{err}");
    assert_eq!(fake.preconditions_failed(), 1);
    let mut values = fake.values(&name);
    values.sort();
    assert_eq!(
        values,
        ["google-site-verification=abc123", "late-arrival=1"],
        "theirs kept, ours not written"
    );
    // The next pass reads again and publishes beside both, on the new etag.
    let first = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("the next pass");
    let mut values = fake.values(&name);
    values.sort();
    assert_eq!(
        values,
        [
            "google-site-verification=abc123",
            "late-arrival=1",
            "v=spf1 mx -all"
        ]
    );
    assert_eq!(fake.set(&name, "TXT").map(|s| s.ttl), Some(900), "TTL kept");
    let writes: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("PUT") || c.starts_with("DELETE"))
        .collect();
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|c| c.ends_with(" if-match") || c.ends_with(" if-none-match")),
        "every write is conditioned: {writes:?}"
    );

    // Rate limited once for a second: waited out, then the no-op pass reads its two names.
    fake.throttle(1, 1);
    let before = fake.calls().len();
    let again = publish::run(
        &t,
        desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("after a short rate limit");
    assert_eq!(again.changes, 0);
    assert_eq!(
        fake.calls().len() - before,
        3,
        "two reads, one of them repeated after the 429: {:?}",
        &fake.calls()[before..]
    );
    publish::run(&t, &[], NO_HOST, &publish::Address::None, &again.records)
        .await
        .expect("clean up");
    nothing_of_ours();
    assert_eq!(fake.values(&name).len(), 2, "theirs stay");
    assert_eq!(
        fake.token_requests(),
        ["secret"; 5],
        "one token per backend: the wrong secret, the two bad places, the throttled one, `t`"
    );
}

/// AKS Workload Identity: the projected token in a file is exchanged (client assertion) for
/// an ARM token, which is reused until shortly before it expires and then fetched again with
/// the file read anew; an assertion the tenant does not accept, or a missing file, is an
/// authentication failure that says which.
#[tokio::test]
async fn azure_works_with_workload_identity() {
    let Some(env) = support::env() else { return };
    let fake = support::azure::Fake::start(&env.dns.zone).await;
    let dir = std::env::temp_dir().join(format!("mailsec-azure-wi-{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("azure-identity-token");
    std::fs::write(&file, format!("{}\n", fake.federated_token)).expect("token file");
    let identity = |token_file: std::path::PathBuf| Credential::WorkloadIdentity {
        tenant_id: fake.tenant.clone(),
        client_id: fake.client_id.clone(),
        token_file,
    };
    // Tokens that last 2 s are renewed after 1 s (half their life).
    fake.token_lifetime(2);
    let t = target(
        Arc::new(azure_as(&fake, identity(file.clone()))),
        &fake.zone,
        "contract/wi",
    );
    let name = format!("wi-{}.{}", random_suffix(), fake.zone);
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let first = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish with the federated token");
    assert_eq!(fake.values(&name), ["v=DMARC1; p=none"]);
    let again = publish::run(
        &t,
        &desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("again");
    assert_eq!(fake.token_requests(), ["assertion"], "reused");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    publish::run(
        &t,
        &desired,
        NO_HOST,
        &publish::Address::None,
        &again.records,
    )
    .await
    .expect("after renewal");
    assert_eq!(
        fake.token_requests(),
        ["assertion", "assertion"],
        "renewed before it expired"
    );

    // A token the federated credential does not match.
    std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.e30.bm90LXRoaXMtb25l").expect("token file");
    let t = target(
        Arc::new(azure_as(&fake, identity(file.clone()))),
        &fake.zone,
        "contract/wi",
    );
    let other = format!("wi-other-{}.{}", random_suffix(), fake.zone);
    let desired = [record(&other, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let err = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("not accepted");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(
        err.to_string().contains("AADSTS70021") && err.to_string().contains("federated"),
        "{err}"
    );
    assert!(fake.values(&other).is_empty(), "nothing written");

    // No file at all.
    let missing = dir.join("missing");
    let t = target(
        Arc::new(azure_as(&fake, identity(missing.clone()))),
        &fake.zone,
        "contract/wi",
    );
    let err = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("no token file");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The registry makes an azure backend from a DNSProvider's settings, its client secret read
/// through the provider's Secrets (white space around it trimmed).
#[tokio::test]
async fn azure_is_made_from_its_settings_and_secret() {
    use mailsec_operator::api::{ProviderSettings, SecretKeyRef};
    use mailsec_operator::dns::backend::{NoMeter, SecretError, SecretSource};
    let Some(env) = support::env() else { return };
    let fake = support::azure::Fake::start(&env.dns.zone).await;
    struct Secrets(String);
    impl SecretSource for Secrets {
        fn value<'a>(
            &'a self,
            reference: &'a SecretKeyRef,
        ) -> futures_util::future::BoxFuture<'a, Result<Vec<u8>, SecretError>> {
            Box::pin(async move {
                if (reference.name.as_str(), reference.key.as_str())
                    == ("azure-dns", "client-secret")
                {
                    Ok(self.0.clone().into_bytes())
                } else {
                    Err(SecretError::NotFound(format!(
                        "no Secret {}",
                        reference.name
                    )))
                }
            })
        }
    }
    let spec = serde_json::json!({"type": "azure", "zones": [fake.zone], "azure": {
        "subscriptionId": fake.subscription, "resourceGroup": fake.resource_group,
        "tenantId": fake.tenant, "clientId": fake.client_id,
        "clientSecretSecretRef": {"name": "azure-dns", "key": "client-secret"},
        "managementEndpoint": fake.management_url, "authorityHost": fake.authority_url}});
    let settings: ProviderSettings = serde_json::from_value(spec).expect("settings");
    let backend = mailsec_operator::dns::registry::connect(
        &settings,
        &Secrets(format!("{}\n", fake.client_secret)),
        Arc::new(NoMeter),
        None,
    )
    .await
    .expect("an azure backend");
    assert_eq!(backend.kind(), "azure");
    let name = format!("reg-{}.{}", random_suffix(), fake.zone);
    let t = target(backend, &fake.zone, "contract/registry");
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish");
    assert_eq!(fake.values(&name), ["v=DMARC1; p=none"]);
}

/// The google fake's error paths, each with its reason and nothing of ours written: a key
/// Google does not know (the JWT refused at the token endpoint, the API never asked), a zone
/// the project has no managed zone for, a quota, a rate limit longer than is waited out; a
/// foreign write between our read and our change fails the whole change (412) and loses
/// nothing, the next pass publishes; a short rate limit is waited out, a pending change polled
/// until done, and the token fetched once per backend.
#[tokio::test]
async fn google_errors_have_their_reasons_and_write_nothing() {
    let Some(env) = support::env() else { return };
    let fake = support::google::Fake::start(&env.dns.zone).await;
    let name = format!("gg-{}.{}", random_suffix(), fake.zone);
    let marker = format!("_mailsec.{name}");
    let desired = [record(&name, RecordKind::Spf, "v=spf1 mx -all")];
    let desired = &desired;
    let g_target = |backend: Google, zone: &str| target(Arc::new(backend), zone, "contract/gg");
    let run = |t: Target| async move {
        publish::run(&t, desired, NO_HOST, &publish::Address::None, &[]).await
    };
    let nothing_of_ours = || {
        assert!(
            !fake.values(&name).contains(&desired[0].value),
            "nothing of ours written"
        );
        assert!(fake.values(&marker).is_empty(), "no marker written");
    };

    // Another key under the same account's name: the fake's token endpoint refuses the JWT.
    let mut stranger: serde_json::Value =
        serde_json::from_str(&fake.service_account_key).expect("key file");
    let other = support::google::new_rsa_key();
    stranger["private_key"] = serde_json::json!(
        rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&other, rsa::pkcs8::LineEnding::LF)
            .expect("pem")
            .as_str()
    );
    let backend = Google::new(
        &fake.url,
        &fake.project,
        google::Credential::service_account(&stranger.to_string()).expect("key file"),
    )
    .expect("google");
    let err = run(g_target(backend, &fake.zone))
        .await
        .expect_err("a key Google does not know");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert!(
        fake.calls().is_empty(),
        "API never asked: {:?}",
        fake.calls()
    );
    nothing_of_ours();

    let elsewhere = [record(
        &format!("gg-{}.other.test", random_suffix()),
        RecordKind::Dmarc,
        "v=DMARC1; p=none",
    )];
    let t = g_target(google_fake(&fake), "other.test");
    let err = publish::run(&t, &elsewhere, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("a zone the project does not have");
    assert_eq!(err.category(), "DNSZoneNotFound", "{err}");
    assert!(err.to_string().contains("other.test."), "{err}");

    fake.quota(support::google::Quota {
        total_rrdata_size_per_change: 10,
        ..support::google::Quota::default()
    });
    let err = run(g_target(google_fake(&fake), &fake.zone))
        .await
        .expect_err("over the change size quota");
    assert_eq!(err.category(), "DNSRefused", "{err}");
    assert!(err.to_string().contains("quotaExceeded"), "{err}");
    nothing_of_ours();
    fake.quota(support::google::Quota::default());

    // 429s outlasting the retries (a second each, two retries): handed back.
    fake.throttle(10);
    let err = run(g_target(google_fake(&fake), &fake.zone))
        .await
        .expect_err("throttled for longer than is waited out");
    assert_eq!(err.category(), "DNSRateLimited", "{err}");
    assert!(err.to_string().contains("rateLimitExceeded"), "{err}");
    nothing_of_ours();
    fake.throttle(0);

    // The race: someone's value lands after our fresh read, before our change.
    fake.add_raw(&name, "TXT", FOREIGN[0], 900);
    let t = g_target(google_fake(&fake), &fake.zone);
    fake.race_next_write(&name, "TXT", r#""late-arrival=1""#);
    let err = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect_err("the deletion as read is stale");
    assert_eq!(err.category(), "DNSConcurrentChange", "{err}");
    assert!(err.to_string().contains("412"), "{err}");
    let mut values = fake.values(&name);
    values.sort();
    assert_eq!(
        values,
        ["google-site-verification=abc123", "late-arrival=1"],
        "theirs kept, ours not written (the marker neither: one change)"
    );
    assert!(fake.values(&marker).is_empty(), "no marker written");
    // The next pass reads again and publishes beside both, its change pending for two polls.
    fake.pending(2, std::time::Duration::ZERO);
    let before = fake.calls().len();
    let first = publish::run(&t, desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("the next pass");
    let polls = fake.calls()[before..]
        .iter()
        .filter(|c| c.starts_with("GET") && c.contains("/changes/"))
        .count();
    assert!(
        polls >= 2,
        "polled until done: {:?}",
        &fake.calls()[before..]
    );
    fake.pending(0, std::time::Duration::ZERO);
    let mut values = fake.values(&name);
    values.sort();
    assert_eq!(
        values,
        [
            "google-site-verification=abc123",
            "late-arrival=1",
            "v=spf1 mx -all"
        ]
    );
    assert_eq!(
        fake.rrset(&name, "TXT").map(|s| s.ttl),
        Some(900),
        "TTL kept"
    );
    let changes = fake.calls()[before..]
        .iter()
        .filter(|c| c.starts_with("POST"))
        .count();
    assert_eq!(changes, 1, "the value and its marker in one change");

    // Rate limited once: waited out, then the no-op pass reads its two names.
    fake.throttle(1);
    let before = fake.calls().len();
    let again = publish::run(
        &t,
        desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("after a short rate limit");
    assert_eq!(again.changes, 0);
    assert_eq!(
        fake.calls().len() - before,
        3,
        "two reads, one of them repeated after the 429: {:?}",
        &fake.calls()[before..]
    );
    publish::run(&t, &[], NO_HOST, &publish::Address::None, &again.records)
        .await
        .expect("clean up");
    nothing_of_ours();
    assert_eq!(fake.values(&name).len(), 2, "theirs stay");
    let jwt: Vec<String> = fake.token_requests();
    assert_eq!(
        jwt.iter().filter(|r| r.as_str() == "jwt ok").count(),
        4,
        "one token per backend (the unknown zone, the quota, the throttled one, the race's `t`; none for the stranger): {jwt:?}"
    );
    assert_eq!(jwt.first().map(String::as_str), Some("jwt invalid_grant"));
}

/// GKE Workload Identity: tokens from the metadata server (with `Metadata-Flavor: Google`),
/// fetched once and renewed when they near their end.
#[tokio::test]
async fn google_works_with_workload_identity() {
    let Some(env) = support::env() else { return };
    let fake = support::google::Fake::start(&env.dns.zone).await;
    fake.token_lifetime(2);
    let backend = Google::new(
        &fake.url,
        &fake.project,
        google::Credential::metadata(&fake.metadata_url),
    )
    .expect("google");
    let t = target(Arc::new(backend), &fake.zone, "contract/gke");
    let name = format!("gke-{}.{}", random_suffix(), fake.zone);
    let desired = [record(&name, RecordKind::Dmarc, "v=DMARC1; p=none")];
    let first = publish::run(&t, &desired, NO_HOST, &publish::Address::None, &[])
        .await
        .expect("publish with the metadata server's token");
    assert_eq!(fake.values(&name), ["v=DMARC1; p=none"]);
    assert_eq!(
        fake.token_requests(),
        ["metadata ok"],
        "one token for the pass"
    );
    // Past half its two-second life the token is fetched again.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    publish::run(
        &t,
        &desired,
        NO_HOST,
        &publish::Address::None,
        &first.records,
    )
    .await
    .expect("the next pass");
    assert_eq!(fake.token_requests(), ["metadata ok"; 2]);
    // Without the metadata server: an error that names it.
    let gone = Google::new(
        &fake.url,
        &fake.project,
        google::Credential::metadata("127.0.0.1:9"),
    )
    .expect("google");
    let err = publish::run(
        &target(Arc::new(gone), &fake.zone, "contract/gke"),
        &desired,
        NO_HOST,
        &publish::Address::None,
        &[],
    )
    .await
    .expect_err("no metadata server");
    assert_eq!(err.category(), "DNSUnreachable", "{err}");
    assert!(err.to_string().contains("metadata server"), "{err}");
}
