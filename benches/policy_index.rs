//! The policy server's index by domain (`mailsec_operator::serve::PolicyIndex`): the time to
//! build it from a watch cache of N MailDomains (after the watch's first list), to follow one
//! MailDomain's change, and to look a Host up.
//!
//!   cargo bench --bench policy_index -- [N...]     (default 1000 10000 100000)
//!
//! Every second MailDomain shares its domain with an older one (a claim the older one holds),
//! so the index must choose. Printed per N: the median of 5 rebuilds, the mean of 1,000
//! changes and of 100,000 lookups, and a line `index <N> <rebuild µs> <change µs> <lookup ns>`
//! for scripts; the ratio of rebuild times between sizes shows whether growth is linear.
//! Under `cargo test --all-targets` (no `--bench` argument) it is a smoke test at N = 2,000
//! that checks every lookup, so the benchmark cannot rot unnoticed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::Event;
use mailsec_operator::api::Guarded;
use mailsec_operator::serve::PolicyIndex;

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if !benchmarking {
        smoke(2_000);
        return;
    }
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    for n in sizes {
        bench(n);
    }
}

/// MailDomain `i` of `n`: domains `d<i/2>.example`, the even one created first.
fn maildomain(i: usize, policy: &str) -> Guarded {
    let value = serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
        "metadata": {"name": format!("md{i}"), "namespace": format!("ns{}", i % 50),
                     "uid": format!("u{i}"),
                     "creationTimestamp": if i.is_multiple_of(2) { "2026-01-01T00:00:00Z" } else { "2026-02-01T00:00:00Z" }},
        "spec": {"domain": format!("d{}.example", i / 2), "dmarc": {"policy": "none"}},
        "status": {"servedPolicy": format!("version: STSv1\r\nmode: {policy}\r\nmx: mx{i}.example\r\nmax_age: 86400\r\n")}
    });
    serde_json::from_value(value).expect("a MailDomain")
}

fn filled(n: usize) -> (Store<Guarded>, Writer<Guarded>) {
    let (store, mut writer) = reflector::store::<Guarded>();
    for i in 0..n {
        writer.apply_watcher_event(&Event::Apply(maildomain(i, "testing")));
    }
    (store, writer)
}

fn smoke(n: usize) {
    let (store, mut writer) = filled(n);
    let index = PolicyIndex::of(&store);
    for d in 0..n / 2 {
        let got = index
            .lookup(&format!("mta-sts.d{d}.example"))
            .expect("each domain served");
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(
            text.contains(&format!("mx: mx{}.example", 2 * d)),
            "d{d}: the older claimant's policy, not {text}"
        );
    }
    // A change to the holder shows at once; a change to the younger claimant does not.
    let holder = maildomain(0, "enforce");
    writer.apply_watcher_event(&Event::Apply(holder.clone()));
    index.changed(&store, &holder);
    let younger = maildomain(1, "none");
    writer.apply_watcher_event(&Event::Apply(younger.clone()));
    index.changed(&store, &younger);
    let got = index.lookup("mta-sts.d0.example").expect("d0");
    assert!(String::from_utf8_lossy(&got).contains("mode: enforce"));
    eprintln!("policy_index smoke test: {n} MailDomains, every lookup checked");
}

fn bench(n: usize) {
    let (store, mut writer) = filled(n);
    let mut rebuilds: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(PolicyIndex::of(&store));
            start.elapsed()
        })
        .collect();
    rebuilds.sort();
    let rebuild = rebuilds[2];
    let index = PolicyIndex::of(&store);
    let changes = 1_000.min(n);
    let start = Instant::now();
    for i in 0..changes {
        let g = maildomain(i * (n / changes), "enforce");
        writer.apply_watcher_event(&Event::Apply(g.clone()));
        index.changed(&store, &g);
    }
    let change = start.elapsed() / changes as u32;
    let hosts: Vec<String> = (0..1_000)
        .map(|i| format!("MTA-STS.d{}.example:443", (i * 7919) % (n / 2)))
        .collect();
    let lookups = 100_000u32;
    let start = Instant::now();
    for i in 0..lookups as usize {
        black_box(index.lookup(&hosts[i % hosts.len()]));
    }
    let lookup = start.elapsed() / lookups;
    println!(
        "{n:>7} MailDomains: rebuild {:>9.1} ms (median of 5), change {:>7.1} µs, lookup {:>5} ns",
        rebuild.as_secs_f64() * 1e3,
        change.as_secs_f64() * 1e6,
        lookup.as_nanos()
    );
    println!(
        "index {n} {} {} {}",
        rebuild.as_micros(),
        change.as_micros(),
        lookup.as_nanos()
    );
}
