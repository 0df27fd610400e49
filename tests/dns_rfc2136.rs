//! The rfc2136 provider and the plan against the real BIND 9 of the test environment. What we
//! write is read back with `dig`, an implementation that is not ours.

mod support;

use std::net::SocketAddr;

use base64::Engine;
use mailsec_operator::dns::DnsError;
use mailsec_operator::dns::ownership::Owner;
use mailsec_operator::dns::plan::{self, Operation, Policy, Settings, State};
use mailsec_operator::dns::rfc2136::{Algorithm, Rfc2136};
use mailsec_operator::domain::record::{RecordKind, TxtRecord};
use support::{DnsSettings, parse_txt_strings, random_suffix};

fn provider(dns: &DnsSettings, secret_b64: &str) -> Rfc2136 {
    let algorithm = match dns.tsig_algorithm.as_str() {
        "hmac-sha256" => Algorithm::HmacSha256,
        "hmac-sha384" => Algorithm::HmacSha384,
        "hmac-sha512" => Algorithm::HmacSha512,
        other => panic!("unexpected TSIG algorithm {other}"),
    };
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret_b64)
        .expect("base64 secret");
    Rfc2136::new(dns.server, &dns.tsig_key_name, algorithm, secret).expect("provider")
}

fn dkim_value() -> String {
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dkim/rsa2048.p.txt"
    ))
    .expect("fixture");
    format!("v=DKIM1; k=rsa; p={}", key.trim())
}

#[tokio::test]
async fn long_values_are_written_split_and_read_back_joined() {
    let Some(env) = support::env() else { return };
    let dns = &env.dns;
    let p = provider(dns, &dns.tsig_secret);
    let name = format!("s{}._domainkey.{}", random_suffix(), dns.zone);
    let value = dkim_value();
    assert!(value.len() > 255);
    p.apply(
        &dns.zone,
        &[Operation::Add {
            name: name.clone(),
            ttl: 300,
            value: value.clone(),
        }],
    )
    .await
    .expect("update");

    let strings: Vec<String> = dns
        .dig_short(&name, "TXT")
        .iter()
        .flat_map(|l| parse_txt_strings(l))
        .collect();
    assert_eq!(
        strings.len(),
        2,
        "dig sees two character-strings: {strings:?}"
    );
    assert_eq!(strings[0].len(), 255);
    assert_eq!(strings.concat(), value);

    let current = p.read(std::slice::from_ref(&name)).await.expect("read");
    assert_eq!(current[&name].values, vec![value.clone()]);
    assert_eq!(current[&name].ttl, 300);

    p.apply(
        &dns.zone,
        &[Operation::Remove {
            name: name.clone(),
            value,
        }],
    )
    .await
    .expect("remove");
    assert!(dns.dig_short(&name, "TXT").is_empty());
    assert!(
        p.read(std::slice::from_ref(&name))
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn plan_applied_twice_writes_once_and_keeps_foreign_values() {
    let Some(env) = support::env() else { return };
    let dns = &env.dns;
    let p = provider(dns, &dns.tsig_secret);
    let domain = format!("d{}.{}", random_suffix(), dns.zone);
    let foreign = "site-verification=abc123".to_owned();
    p.apply(
        &dns.zone,
        &[Operation::Add {
            name: domain.clone(),
            ttl: 900,
            value: foreign.clone(),
        }],
    )
    .await
    .expect("seed");

    let desired = vec![
        TxtRecord {
            name: domain.clone(),
            kind: RecordKind::Spf,
            ttl: 300,
            value: "v=spf1 mx -all".into(),
        },
        TxtRecord {
            name: format!("_dmarc.{domain}"),
            kind: RecordKind::Dmarc,
            ttl: 300,
            value: "v=DMARC1; p=none".into(),
        },
    ];
    let settings = Settings {
        owner: Owner::new("test", "ns/example"),
        policy: Policy::Sync,
        adopt: false,
    };
    let names = |d: &[TxtRecord]| -> Vec<String> {
        d.iter()
            .flat_map(|r| {
                [
                    r.name.clone(),
                    mailsec_operator::dns::ownership::marker_name(&r.name),
                ]
            })
            .collect()
    };

    let first = plan::plan(
        &desired,
        &[],
        &p.read(&names(&desired)).await.expect("read"),
        &settings,
    );
    assert!(first.outcomes.iter().all(|o| o.state == State::Pending));
    p.apply(&dns.zone, &first.operations).await.expect("apply");

    let second = plan::plan(
        &desired,
        &[],
        &p.read(&names(&desired)).await.expect("read"),
        &settings,
    );
    assert!(
        second.operations.is_empty(),
        "nothing left to do: {:?}",
        second.operations
    );
    assert!(second.outcomes.iter().all(|o| o.state == State::Published));

    let mut apex = dns.dig_short(&domain, "TXT");
    apex.sort();
    assert_eq!(apex, ["\"site-verification=abc123\"", "\"v=spf1 mx -all\""]);

    // Retiring both removes ours and the markers, and only those.
    let retired: Vec<(String, RecordKind)> =
        desired.iter().map(|r| (r.name.clone(), r.kind)).collect();
    let third = plan::plan(
        &[],
        &retired,
        &p.read(&names(&desired)).await.expect("read"),
        &settings,
    );
    p.apply(&dns.zone, &third.operations).await.expect("apply");
    assert_eq!(dns.dig_short(&domain, "TXT"), [format!("\"{foreign}\"")]);
    assert!(dns.dig_short(&format!("_dmarc.{domain}"), "TXT").is_empty());
    assert!(
        dns.dig_short(&format!("_mailsec.{domain}"), "TXT")
            .is_empty()
    );
}

#[tokio::test]
async fn a_wrong_tsig_secret_is_an_auth_error_and_changes_nothing() {
    let Some(env) = support::env() else { return };
    let dns = &env.dns;
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let p = provider(dns, &wrong);
    let name = format!("wrong-{}.{}", random_suffix(), dns.zone);
    let err = p
        .apply(
            &dns.zone,
            &[Operation::Add {
                name: name.clone(),
                ttl: 300,
                value: "v=DMARC1; p=none".into(),
            }],
        )
        .await
        .expect_err("the server must refuse a bad signature");
    assert_eq!(err.category(), "DNSAuthFailed", "{err}");
    assert!(dns.dig_short(&name, "TXT").is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_such() {
    let Some(env) = support::env() else { return };
    // A loopback port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dead = DnsSettings {
        server: SocketAddr::from(([127, 0, 0, 1], port)),
        ..env.dns.clone()
    };
    let p = provider(&dead, &env.dns.tsig_secret);
    let err = p
        .read(std::slice::from_ref(&env.dns.zone))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, DnsError::Unreachable(_)), "{err}");
}

/// Counts the messages a backend sends.
#[derive(Default)]
struct Counter(std::sync::atomic::AtomicUsize);

impl mailsec_operator::dns::backend::ApiMeter for Counter {
    fn request(&self, _provider: &'static str, _result: &'static str) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// 200 reconciles writing at once through one provider: one TCP connection, a handful of
/// UPDATE messages (the ones that arrive while one is on its way go together), every value
/// written exactly once; a write for a name outside the zone fails alone.
#[tokio::test]
async fn concurrent_writes_share_one_connection_and_go_in_few_updates() {
    let Some(env) = support::env() else { return };
    let dns = &env.dns;
    let counter = std::sync::Arc::new(Counter::default());
    let p = provider(dns, &dns.tsig_secret).with_meter(counter.clone());
    let run = random_suffix();
    let names: Vec<String> = (0..200)
        .map(|i| format!("w{i}-{run}.{}", dns.zone))
        .collect();
    let writes = names.iter().enumerate().map(|(i, name)| {
        let p = p.clone();
        let zone = dns.zone.clone();
        let op = Operation::Add {
            name: name.clone(),
            ttl: 300,
            value: format!("v=bench; n={i}"),
        };
        async move { p.apply(&zone, &[op]).await }
    });
    // One write that is not in the zone, among the others.
    let outside = {
        let p = p.clone();
        let zone = dns.zone.clone();
        async move {
            p.apply(
                &zone,
                &[Operation::Add {
                    name: format!("w-{run}.elsewhere.invalid"),
                    ttl: 300,
                    value: "v=bench".into(),
                }],
            )
            .await
        }
    };
    let (results, outside) = tokio::join!(futures_util::future::join_all(writes), outside);
    for (name, result) in names.iter().zip(&results) {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    assert!(outside.is_err(), "a name outside the zone is refused");
    let updates = counter.0.load(std::sync::atomic::Ordering::SeqCst);
    // 201 writes; alone they would be 201 messages (plus one each for the retry of a refused
    // batch's members, at most).
    assert!(
        updates <= 30,
        "{updates} update messages for 201 writes: they were not batched"
    );

    let current = p.read(&names).await.expect("read");
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            current.get(name).map(|r| r.values.clone()),
            Some(vec![format!("v=bench; n={i}")]),
            "{name}"
        );
    }
    assert_eq!(
        dns.dig_short(&names[137], "TXT"),
        vec!["\"v=bench; n=137\"".to_owned()]
    );
    assert_eq!(p.connections_opened(), 1, "one TCP connection for all");

    let removes: Vec<Operation> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Operation::Remove {
            name: name.clone(),
            value: format!("v=bench; n={i}"),
        })
        .collect();
    p.apply(&dns.zone, &removes).await.expect("clean up");
    assert!(p.read(&names).await.expect("read").is_empty());
}
