//! The policy server under load, for scripts/bench-serve.sh: `mailsec serve`'s serving path
//! (`serve::serve_index`: the accept loop of `mailsec_operator::conn` with the default
//! limits, the router, the policy index) over N MailDomains, fed from memory instead of the
//! watch, so that no API server shares the two cores with it.
//!
//!   cargo bench --bench serve_load -- --listen 127.0.0.1:PORT [--domains N] [--policy FILE]
//!
//! Every domain `d<i>.example` (i < N, default 10,000) serves the same policy (written to
//! FILE, so nginx can serve the same bytes); it prints `listening <addr>` and serves until
//! killed. Under `cargo test --all-targets` (no `--bench` argument) it is a smoke test: 100
//! domains, one GET checked.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use mailsec_operator::api::Guarded;
use mailsec_operator::conn::{self, Limits};
use mailsec_operator::metrics::ConnectionMetrics;
use mailsec_operator::serve::{self, PolicyIndex};

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: mx2.example.net\r\nmax_age: 604800\r\n";

fn index(n: usize) -> PolicyIndex {
    let (store, mut writer) = reflector::store::<Guarded>();
    for i in 0..n {
        let md: Guarded = serde_json::from_value(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": format!("md{i}"), "namespace": format!("ns{}", i % 50),
                         "uid": format!("u{i}"), "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"domain": format!("d{i}.example"), "dmarc": {"policy": "none"}},
            "status": {"servedPolicy": POLICY}
        }))
        .expect("a MailDomain");
        writer.apply_watcher_event(&Event::Apply(md));
    }
    PolicyIndex::of(&store)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if !benchmarking {
        runtime.block_on(smoke());
        return;
    }
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:8480".into())
        .parse()
        .expect("--listen ip:port");
    let n: usize = arg("--domains")
        .map_or(Ok(10_000), |v| v.parse())
        .expect("--domains N");
    if let Some(file) = arg("--policy") {
        std::fs::write(&file, POLICY).expect("--policy FILE");
    }
    runtime.block_on(async {
        let index = index(n);
        let listener = conn::bind(listen).expect("bind");
        println!("listening {listen} domains {n}");
        let metrics = Arc::new(ConnectionMetrics::default());
        if let Err(e) = serve::serve_index(listener, index, None, Limits::serve(), metrics).await {
            eprintln!("serve: {e}");
            std::process::exit(1);
        }
    });
}

async fn smoke() {
    let listener = conn::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = Arc::new(ConnectionMetrics::default());
    tokio::spawn(serve::serve_index(
        listener,
        index(100),
        None,
        Limits::serve(),
        metrics,
    ));
    let response = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.d42.example\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    })
    .await
    .expect("client");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(POLICY), "{response}");
}
