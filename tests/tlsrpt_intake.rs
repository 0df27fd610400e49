//! TLS reports end to end: POSTed to the real receiver (`intake::https` with the Kubernetes
//! sink) → TLSReport objects in the real API server → the controller's `status.tlsReports`,
//! `TLSReportsClean` and, with `mtaSts.promote`, the switch to enforce; and the receiver's
//! bounds (rate limit, size, gzip bombs, stalled headers) against an in-memory sink.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use mailsec_operator::api::{MailDomain, TLSReport};
use mailsec_operator::intake::https::{self, Settings};
use mailsec_operator::intake::kube::KubeSink;
use mailsec_operator::intake::memory::MemorySink;
use mailsec_operator::metrics::ReportMetrics;
use support::maildomain::{condition, wait_for};
use support::{TestEnv, free_addr, random_suffix};

use support::operator::REPORT_URL;

/// A report about `domain`'s `testing` policy (as the controller serves it), with `ok`
/// successful sessions and `failures` as (result type, MX, sessions).
fn report(
    org: &str,
    id: &str,
    day: &str,
    domain: &str,
    ok: u64,
    failures: &[(&str, &str, u64)],
) -> String {
    let failed: u64 = failures.iter().map(|f| f.2).sum();
    let details: Vec<serde_json::Value> = failures
        .iter()
        .map(|(t, mx, n)| serde_json::json!({"result-type": t, "receiving-mx-hostname": mx, "receiving-ip": "192.0.2.25", "failed-session-count": n}))
        .collect();
    serde_json::json!({
        "organization-name": org,
        "date-range": {"start-datetime": format!("{day}T00:00:00Z"), "end-datetime": format!("{day}T23:59:59Z")},
        "contact-info": format!("tlsrpt@{org}.example"),
        "report-id": id,
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": domain,
                "policy-string": ["version: STSv1", "mode: testing", format!("mx: mx1.{domain}"), "max_age: 86400"],
                "mx-host": [format!("mx1.{domain}")]},
            "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
            "failure-details": details
        }]
    })
    .to_string()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// The UTC day `days_ago` days before today, `YYYY-MM-DD`.
fn day(days_ago: i64) -> String {
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    today
        .checked_sub(jiff::Span::new().days(days_ago))
        .expect("date")
        .to_string()
}

fn mail_domain(name: &str, domain: &str, promote: Option<serde_json::Value>) -> serde_json::Value {
    let mut sts = serde_json::json!({"mode": "testing", "maxAge": 86400});
    if let Some(p) = promote {
        sts["promote"] = p;
    }
    serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": name},
        "spec": {"domain": domain, "ttl": 60, "mx": [format!("mx1.{domain}")], "mtaSts": sts,
                 "tlsRpt": {"receive": true}}
    })
}

async fn apply(api: &Api<MailDomain>, value: serde_json::Value) {
    let name = value["metadata"]["name"].as_str().expect("name").to_owned();
    api.patch(
        &name,
        &PatchParams::apply("tlsrpt-test").force(),
        &Patch::Apply(value),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// A controller for `ns` (no DNS provider: records are listed for publishing by hand; no
/// live checks) and the report receiver with the Kubernetes sink.
struct Running {
    receiver: SocketAddr,
    receiver_admin: SocketAddr,
    http: reqwest::Client,
}

async fn start(env: &TestEnv, ns: &str) -> Running {
    support::operator::controller(env, ns).await;
    let client = env.client().await;
    let (receiver, receiver_admin) = (free_addr(), free_addr());
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(ReportMetrics::default());
    let admin = tokio::net::TcpListener::bind(receiver_admin)
        .await
        .expect("bind");
    tokio::spawn(mailsec_operator::admin::serve(
        admin,
        ready.clone(),
        Some(metrics.clone()),
    ));
    let store = mailsec_operator::serve::maildomain_store(client.clone(), ready);
    let listener = tokio::net::TcpListener::bind(receiver).await.expect("bind");
    let sink = KubeSink::new(client, store, metrics.clone());
    let settings = Settings {
        // Room for a gzip bomb to reach the inflate limit (the default refuses it earlier).
        limits: mailsec_operator::report::Limits {
            max_compressed: 4 << 20,
            ..Default::default()
        },
        ..Settings::default()
    };
    tokio::spawn(https::serve(listener, sink, settings, metrics));
    support::wait_ready(receiver_admin).await;
    Running {
        receiver,
        receiver_admin,
        http: support::http_client(),
    }
}

impl Running {
    async fn post(&self, content_type: &str, body: Vec<u8>) -> (u16, String) {
        let r = self
            .http
            .post(format!("http://{}/v1/reports", self.receiver))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    async fn post_json(&self, json: &str) -> (u16, String) {
        self.post("application/tlsrpt+json", json.as_bytes().to_vec())
            .await
    }

    /// The sum of the receiver's metric lines that start with `prefix`.
    async fn metric(&self, prefix: &str) -> u64 {
        let body = self
            .http
            .get(format!("http://{}/metrics", self.receiver_admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

async fn reports(client: &Client, ns: &str) -> Vec<TLSReport> {
    Api::<TLSReport>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list TLSReports")
        .items
}

fn summary_stored(md: &MailDomain) -> u32 {
    md.status
        .as_ref()
        .and_then(|s| s.tls_reports.as_ref())
        .map_or(0, |t| t.stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_posted_report_becomes_a_tlsreport_the_summary_the_condition_and_the_metric() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "tlsrpt").await;
    let domain = format!("r{}.example.test", random_suffix());
    let running = start(env, ns.name()).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    apply(&api, mail_domain("md", &domain, None)).await;
    // receive: true puts the receiver's URL into the _smtp._tls record.
    let md = wait_for(&api, "md", "the TLS-RPT record listed", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.records
                .iter()
                .any(|r| r.name == format!("_smtp._tls.{domain}") && r.value.contains(REPORT_URL))
        })
    })
    .await;
    assert_eq!(
        condition(&md, "TLSReportsClean").map(|c| (c.0, c.1)),
        Some(("Unknown", "NoReports"))
    );

    // Wait until the receiver's cache has the MailDomain: before, the domain is not ours.
    let clean = report("google", "g-1", &day(1), &domain, 120, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = running.post_json(&clean).await;
        if code == 201 {
            break;
        }
        assert_eq!(code, 403, "{body}");
        assert!(
            Instant::now() < deadline,
            "the receiver never knew {domain}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = reports(&client, ns.name()).await;
    assert_eq!(stored.len(), 1);
    let spec = &stored[0].spec;
    assert_eq!(
        (spec.organization.as_str(), spec.successful, spec.failed),
        ("google", 120, 0)
    );
    assert_eq!(spec.policy_domain, domain);
    assert_eq!(stored[0].owner_references()[0].name, "md");
    let md = wait_for(&api, "md", "TLSReportsClean True", |m| {
        condition(m, "TLSReportsClean").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(summary_stored(&md), 1);

    // A failure report, gzipped: the condition names the failure and its MX; the metric moves.
    let failing = report(
        "microsoft",
        "m-1",
        &day(1),
        &domain,
        50,
        &[("certificate-expired", &format!("mx1.{domain}"), 7)],
    );
    let before = running.metric("mailsec_tlsrpt_sessions_total{").await;
    assert_eq!(
        running
            .post("application/tlsrpt+gzip", gzip(failing.as_bytes()))
            .await
            .0,
        201
    );
    let md = wait_for(&api, "md", "TLSReportsClean False", |m| {
        condition(m, "TLSReportsClean").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&md, "TLSReportsClean").expect("condition");
    assert_eq!(reason, "FailuresReported");
    assert!(
        message.starts_with(&format!("certificate-expired at mx1.{domain} (7 sessions)")),
        "{message}"
    );
    let week = &md
        .status
        .as_ref()
        .and_then(|s| s.tls_reports.clone())
        .expect("summary")
        .windows[1];
    assert_eq!(
        (week.days, week.reports, week.successful, week.failed),
        (7, 2, 170, 7)
    );
    assert_eq!(week.reporters, ["google", "microsoft"]);
    assert_eq!(
        running.metric("mailsec_tlsrpt_sessions_total{").await,
        before + 57
    );
    assert!(
        running.metric(&format!("mailsec_tlsrpt_sessions_total{{domain=\"{domain}\",reporter=\"microsoft\",policy_type=\"sts\",result=\"certificate-expired\"}}")).await == 7
    );
    // The raw report is kept with its digest.
    let kept = reports(&client, ns.name()).await;
    assert!(
        kept.iter()
            .all(|r| r.spec.raw.gzip.is_some() && r.spec.raw.sha256.len() == 64)
    );

    // A TLSReport is immutable.
    let patched = Api::<TLSReport>::namespaced(client.clone(), ns.name())
        .patch(
            &kept[0].name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"successful": 1}})),
        )
        .await;
    assert!(
        matches!(&patched, Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains("immutable")),
        "{patched:?}"
    );

    // The same report again: stored once.
    let (code, body) = running.post_json(&failing).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(reports(&client, ns.name()).await.len(), 2);
    assert!(
        running
            .metric("mailsec_tlsrpt_reports_total{source=\"https\",outcome=\"duplicate\"")
            .await
            >= 1
    );

    // Not our domain, not a report, a bomb: refused with their reasons, nothing stored.
    let foreign = report("google", "g-2", &day(1), "not-managed.example", 1, &[]);
    let (code, body) = running.post_json(&foreign).await;
    assert_eq!(
        (code, body.starts_with("refused: NotOurDomain")),
        (403, true),
        "{body}"
    );
    let (code, body) = running.post_json("{\"organization-name\": \"x\"").await;
    assert_eq!(
        (code, body.starts_with("refused: TruncatedJson")),
        (400, true),
        "{body}"
    );
    let hwm_before = peak_rss_kib();
    let (code, body) = running.post("application/tlsrpt+gzip", bomb_1gib()).await;
    assert_eq!(
        (code, body.starts_with("refused: InflatedTooLarge")),
        (413, true),
        "{body}"
    );
    let growth_mib = peak_rss_kib().saturating_sub(hwm_before) / 1024;
    assert!(
        growth_mib < 100,
        "peak RSS grew by {growth_mib} MiB on a 1 GiB gzip bomb"
    );
    assert_eq!(reports(&client, ns.name()).await.len(), 2);
    ns.delete(&client).await;
}

/// A gzip that inflates to 1 GiB of zeros: 1,024 members of 1 MiB each (about 1 MiB in all).
fn bomb_1gib() -> Vec<u8> {
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).expect("gzip");
    let member = member.finish().expect("gzip");
    member.repeat(1024)
}

/// The process's peak resident set (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    let mut status = String::new();
    std::fs::File::open("/proc/self/status")
        .and_then(|mut f| f.read_to_string(&mut status))
        .expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promote_switches_to_enforce_on_the_day_the_reports_allow_and_a_failure_resets_it() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "promote").await;
    let suffix = random_suffix();
    let (a, b) = (
        format!("pa{suffix}.example.test"),
        format!("pb{suffix}.example.test"),
    );
    let running = start(env, ns.name()).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    apply(
        &api,
        mail_domain(
            "a",
            &a,
            Some(serde_json::json!({"afterCleanDays": 4, "minReporters": 2})),
        ),
    )
    .await;
    apply(
        &api,
        mail_domain(
            "b",
            &b,
            Some(serde_json::json!({"afterCleanDays": 2, "minReporters": 1})),
        ),
    )
    .await;
    let served_mode = |m: &MailDomain| {
        m.status
            .as_ref()
            .and_then(|s| s.served_policy.as_deref())
            .and_then(|p| {
                p.lines()
                    .find_map(|l| l.strip_prefix("mode: ").map(str::to_owned))
            })
    };
    let waiting = |m: &MailDomain, text: &str| {
        condition(m, "Enforced")
            .is_some_and(|c| c.0 == "False" && c.1 == "AwaitingCleanReports" && c.2.contains(text))
    };
    wait_for(&api, "a", "awaiting reports", |m| {
        waiting(m, "0 of 4 clean days")
    })
    .await;
    // The receiver's cache may lag the apply.
    let post = |json: String| {
        let running = &running;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (code, body) = running.post_json(&json).await;
                if code == 201 {
                    return;
                }
                assert!(code == 403 && Instant::now() < deadline, "{code} {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // A: one clean report per simulated day, from alternating reporters, the last one today.
    let reporters = ["google", "microsoft"];
    for (i, ago) in [3i64, 2, 1].into_iter().enumerate() {
        post(report(
            reporters[i % 2],
            &format!("a-{ago}"),
            &day(ago),
            &a,
            100,
            &[],
        ))
        .await;
    }
    // Three clean days reach yesterday: not yet.
    let md = wait_for(&api, "a", "3 of 4 clean days", |m| {
        waiting(m, "3 of 4 clean days (1 left), 2 of 2 reporters")
    })
    .await;
    assert_eq!(served_mode(&md).as_deref(), Some("testing"));
    assert!(md.status.as_ref().is_some_and(|s| s.promoted_at.is_none()));
    // The fourth: promoted, enforce served, and it says so.
    post(report("microsoft", "a-0", &day(0), &a, 100, &[])).await;
    let md = wait_for(&api, "a", "promoted", |m| {
        served_mode(m).as_deref() == Some("enforce")
    })
    .await;
    assert_eq!(
        condition(&md, "Enforced").map(|c| (c.0, c.1)),
        Some(("True", "Promoted"))
    );
    assert!(md.status.as_ref().is_some_and(|s| s.promoted_at.is_some()));
    let events = env.kubectl_ok([
        "get",
        "events",
        "-n",
        ns.name(),
        "--field-selector",
        "reason=Promoted",
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "no Promoted event");

    // B: yesterday clean, then a late failure report for yesterday undoes it; today's clean
    // report makes one clean day of the two needed.
    post(report("google", "b-1", &day(1), &b, 100, &[])).await;
    post(report(
        "yahoo",
        "b-1y",
        &day(1),
        &b,
        90,
        &[("starttls-not-supported", &format!("mx1.{b}"), 3)],
    ))
    .await;
    wait_for(&api, "b", "0 of 2 after the failure", |m| {
        summary_stored(m) == 2 && waiting(m, "0 of 2 clean days")
    })
    .await;
    post(report("google", "b-0", &day(0), &b, 100, &[])).await;
    let md = wait_for(&api, "b", "1 of 2", |m| waiting(m, "1 of 2 clean days")).await;
    assert_eq!(served_mode(&md).as_deref(), Some("testing"));
    let events = env.kubectl_ok([
        "get",
        "events",
        "-n",
        ns.name(),
        "--field-selector",
        "reason=TLSFailureReported",
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "no TLSFailureReported event");
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_bounds_clients_sizes_and_stalled_headers() {
    let addr = free_addr();
    let metrics = Arc::new(ReportMetrics::default());
    let sink = Arc::new(MemorySink::for_domains(["example.com"]));
    let settings = Settings {
        per_minute: std::num::NonZeroU32::new(6).expect("6"),
        burst: std::num::NonZeroU32::new(2).expect("2"),
        connections: mailsec_operator::conn::Limits {
            header_timeout: Duration::from_millis(500),
            ..mailsec_operator::conn::Limits::receive()
        },
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(https::serve(
        listener,
        sink.clone(),
        settings,
        metrics.clone(),
    ));
    let http = support::http_client();
    let post = |body: Vec<u8>, content_type: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("http://{addr}/"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("POST");
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (
                r.status().as_u16(),
                retry,
                r.text().await.unwrap_or_default(),
            )
        }
    };
    // Over the size limit of its type: 413, counted while read.
    let big = vec![b' '; (10 << 20) + 1];
    let (code, _, body) = post(big, "application/tlsrpt+json").await;
    assert_eq!(
        (code, body.starts_with("refused: TooLarge")),
        (413, true),
        "{body}"
    );
    // A GET: 405. Unsupported type: 415.
    let get = http
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status().as_u16(), 405);
    let (code, _, _) = post(b"x".to_vec(), "text/html").await;
    assert_eq!(code, 415);
    // Two requests were the burst (the GET was refused before the limiter): the next one is
    // rate limited.
    let (code, retry, body) = post(
        report("g", "1", "2026-11-30", "example.com", 1, &[]).into_bytes(),
        "application/tlsrpt+json",
    )
    .await;
    assert_eq!(code, 429, "{body}");
    assert!(
        retry
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s))
    );
    assert!(sink.stored().is_empty());

    // Stalled request headers: the connection is closed after the header timeout.
    let started = Instant::now();
    let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    let _ = stalled.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "a stalled request was held {waited:?}"
    );
    assert!(
        buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}
