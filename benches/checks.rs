//! `make bench-checks`: how long the live checks take, for one domain and for many at once
//! with bounded concurrency, against real servers on loopback.
//!
//!   cargo bench --bench checks -- [DOMAINS] [CONCURRENCY ...]     (default 1000 and 8 32 128)
//!
//! Set-up: N domains `d<i>.<run>.<zone>` published in the local BIND (MX, mta-sts address,
//! `_mta-sts`, `_smtp._tls`, SPF, DMARC: what the operator publishes for them); one shared MX
//! host answered by aiosmtpd (a real SMTP server) with STARTTLS; the policies served by the
//! operator's own policy server (`mailsec serve`'s router and TLS listener over an in-memory
//! store of N MailDomains), each policy host on its own loopback address (127.1.x.y) with its
//! own test-CA certificate.
//! Each check is the full one the controller runs (DNS records compared with the expected
//! ones, policy fetched over HTTPS and compared, MX coverage, STARTTLS, SPF lookup tree).
//! Prints per-check latency and the wall time of all N at each concurrency, and the peak RSS
//! of this process; fails when a check does not pass (then the numbers would mean nothing).
//! Under `cargo test --all-targets` (no `--bench` argument) it runs as a smoke test: 20
//! domains at concurrency 4, so the benchmark cannot rot unnoticed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher;
use mailsec_operator::api::MailDomain;
use mailsec_operator::checks::run::{Options, Outcome, check};
use mailsec_operator::model::desired::{Desired, build};
use mailsec_operator::model::validate::{SecretData, validate};
use support::tls::{Pki, Smtp};

/// No run may take longer than this, whatever the machine.
const RUN_LIMIT: Duration = Duration::from_secs(600);
const MAX_DOMAINS: usize = 5000;

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let default_domains = if benchmarking { 1000 } else { 20 };
    let domains: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_domains);
    assert!(
        (1..=MAX_DOMAINS).contains(&domains),
        "DOMAINS must be 1..={MAX_DOMAINS}"
    );
    let mut concurrency: Vec<usize> = args[1.min(args.len())..]
        .iter()
        .filter_map(|a| a.parse().ok())
        .filter(|c| *c >= 1)
        .collect();
    if concurrency.is_empty() {
        concurrency = if benchmarking {
            vec![8, 32, 128]
        } else {
            vec![4]
        };
    }
    let env = support::env().expect("the local environment (scripts/env-up.sh) is needed");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sequential = if benchmarking { 20 } else { 3 };
    runtime.block_on(bench(env, domains, &concurrency, sequential));
}

async fn bench(env: &support::TestEnv, n: usize, concurrency: &[usize], sequential: usize) {
    let base = format!("ck{}.{}", support::random_suffix(), env.dns.zone);
    let mx = format!("mx.{base}");
    let names: Vec<String> = (0..n).map(|i| format!("d{i}.{base}")).collect();
    let desired: Vec<Desired> = names.iter().map(|d| desired(d, &mx)).collect();

    let started = Instant::now();
    publish(env, &desired, &mx);
    eprintln!(
        "set-up: {n} domains published in BIND in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let pki = Pki::new();
    let https = policy_servers(&desired, &pki).await;
    let smtp = Smtp::start("starttls", &pki.leaf(&mx));
    let ca = std::fs::read(pki.dir.join("ca.pem")).expect("ca");
    let options = Arc::new(Options {
        resolvers: vec![env.dns.server],
        https_port: https,
        smtp_port: smtp.port,
        roots: mailsec_operator::checks::tls::roots(Some(&ca)).expect("roots"),
        timeout: Duration::from_secs(10),
    });

    // One domain, one check after another: the latency of a full check.
    let mut one = Vec::new();
    for _ in 0..sequential {
        let t = Instant::now();
        assert_passes(&desired[0], &options).await;
        one.push(t.elapsed());
    }
    report(
        &format!("one domain, sequential ({sequential} checks)"),
        &mut one,
    );
    // Where the time of one check goes: the two network probes alone.
    let loopback = [std::net::IpAddr::from([127, 0, 0, 1])];
    let policy_host = [policy_ip(0)];
    let (mut fetch, mut probe) = (Vec::new(), Vec::new());
    for _ in 0..sequential {
        let t = Instant::now();
        mailsec_operator::checks::policy::fetch(
            desired[0].domain.as_str(),
            &policy_host,
            options.https_port,
            options.roots.clone(),
            options.timeout,
        )
        .await
        .expect("policy fetched");
        fetch.push(t.elapsed());
        let t = Instant::now();
        mailsec_operator::checks::smtp::probe(
            &mx,
            std::net::SocketAddr::new(loopback[0], options.smtp_port),
            options.roots.clone(),
            options.timeout,
        )
        .await
        .expect("STARTTLS");
        probe.push(t.elapsed());
    }
    report("  of which the HTTPS policy fetch", &mut fetch);
    report("  of which the SMTP STARTTLS probe", &mut probe);

    let mut results = Vec::new();
    for &c in concurrency {
        let desired = Arc::new(desired.clone());
        let started = Instant::now();
        let run = futures_util::stream::iter(0..n)
            .map(|i| {
                let (desired, options) = (desired.clone(), options.clone());
                async move {
                    let t = Instant::now();
                    assert_passes(&desired[i], &options).await;
                    t.elapsed()
                }
            })
            .buffer_unordered(c)
            .collect::<Vec<Duration>>();
        let mut each = tokio::time::timeout(RUN_LIMIT, run)
            .await
            .expect("the run exceeded its time limit");
        let wall = started.elapsed();
        report(
            &format!(
                "{n} domains, concurrency {c}: {:.2} s wall, {:.0} checks/s; per check",
                wall.as_secs_f64(),
                n as f64 / wall.as_secs_f64()
            ),
            &mut each,
        );
        results.push(serde_json::json!({
            "domains": n, "concurrency": c, "wall_ms": wall.as_millis(),
            "checks_per_s": (n as f64 / wall.as_secs_f64()).round(),
            "median_ms": percentile(&each, 50).as_millis(),
            "p90_ms": percentile(&each, 90).as_millis(),
        }));
    }
    println!(
        "peak RSS of the bench process: {} MiB",
        peak_rss_kib() / 1024
    );
    println!(
        "{}",
        serde_json::json!({"one_check_median_ms": percentile(&one, 50).as_millis(), "runs": results, "peak_rss_mib": peak_rss_kib() / 1024})
    );
    unpublish(env, &desired, &mx);
}

/// What the operator would publish for `domain` (MTA-STS enforce on the shared MX, TLS-RPT,
/// SPF, DMARC).
fn desired(domain: &str, mx: &str) -> Desired {
    let spec = serde_json::from_value(serde_json::json!({
        "domain": domain,
        "mx": [mx],
        "mtaSts": {"mode": "enforce", "maxAge": 86400},
        "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]},
        "spf": {"mechanisms": ["mx"], "all": "fail"},
        "dmarc": {"policy": "reject"},
    }))
    .expect("spec");
    let valid = validate(&spec, &SecretData::new(), None).expect("valid");
    build(&valid.config)
}

/// One nsupdate message per 40 domains (a message holds at most 64 KiB).
fn publish(env: &support::TestEnv, all: &[Desired], mx: &str) {
    let mut batches = vec![format!("update add {mx}. 300 A 127.0.0.1\n")];
    for (c, chunk) in all.chunks(40).enumerate() {
        let mut commands = String::new();
        for (j, d) in chunk.iter().enumerate() {
            let i = c * 40 + j;
            let domain = &d.domain;
            commands.push_str(&format!(
                "update add {domain}. 300 MX 10 {mx}.\nupdate add mta-sts.{domain}. 300 A {}\n",
                policy_ip(i)
            ));
            for r in &d.records {
                commands.push_str(&format!("update add {}. 300 TXT \"{}\"\n", r.name, r.value));
            }
        }
        batches.push(commands);
    }
    for commands in batches {
        env.dns.update(&commands);
    }
}

/// Removes every name the set-up added: the zone stays small for the tests.
fn unpublish(env: &support::TestEnv, all: &[Desired], mx: &str) {
    let mut names = vec![mx.to_owned()];
    for d in all {
        names.push(d.domain.to_string());
        names.push(format!("mta-sts.{}", d.domain));
        names.extend(d.records.iter().map(|r| r.name.clone()));
    }
    for chunk in names.chunks(200) {
        let commands: String = chunk
            .iter()
            .map(|n| format!("update delete {n}.\n"))
            .collect();
        let out = env
            .dns
            .nsupdate(&format!("{commands}send\n"), &env.dns.tsig_secret);
        if !out.status.success() {
            eprintln!(
                "clean-up: nsupdate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The loopback address of domain `i`'s policy host: each has its own, as on the internet,
/// so each can present a certificate for its own name.
fn policy_ip(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 1, (i / 200) as u8, (i % 200 + 1) as u8])
}

/// The operator's policy server (router and TLS listener) over a store holding one MailDomain
/// per domain, listening on each domain's own address with a certificate for its policy host;
/// returns the port, the same on every address.
async fn policy_servers(all: &[Desired], pki: &Pki) -> u16 {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for (i, d) in all.iter().enumerate() {
        let md: MailDomain = serde_json::from_value(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": format!("md{i}"), "namespace": "bench", "uid": format!("uid-{i}")},
            "spec": {"domain": d.domain.as_str(), "mx": ["x.example"], "mtaSts": {"mode": "enforce", "maxAge": 86400}},
            "status": {"servedPolicy": d.policy.as_ref().map(|p| p.text.clone())},
        }))
        .expect("MailDomain");
        writer.apply_watcher_event(&watcher::Event::InitApply(kube::core::DeserializeGuard(
            Ok(md),
        )));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let router = mailsec_operator::serve::router(mailsec_operator::serve::PolicyIndex::of(&store));
    let port = std::net::TcpListener::bind((policy_ip(0), 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    for (i, d) in all.iter().enumerate() {
        let listener = tokio::net::TcpListener::bind((policy_ip(i), port))
            .await
            .unwrap_or_else(|e| panic!("bind {}:{port}: {e}", policy_ip(i)));
        let tls = pki.leaf(&format!("mta-sts.{}", d.domain));
        tokio::spawn(mailsec_operator::serve::tls::serve(
            listener,
            router.clone(),
            tls,
            None,
        ));
    }
    port
}

async fn assert_passes(desired: &Desired, options: &Options) {
    let findings = check(&desired.domain, Some(desired), options).await;
    let failed: Vec<_> = findings
        .iter()
        .filter(|f| f.outcome != Outcome::Pass)
        .collect();
    assert!(
        failed.is_empty(),
        "{}: not every check passes: {failed:#?}",
        desired.domain
    );
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn report(what: &str, each: &mut [Duration]) {
    each.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: min {:.1} ms, median {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(each[0]),
        ms(percentile(each, 50)),
        ms(percentile(each, 90)),
        ms(percentile(each, 99)),
        ms(each[each.len() - 1])
    );
}

/// VmHWM of this process, in KiB (0 where /proc is missing).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
