//! `mailsec check` against real servers on loopback: the local BIND (records published with
//! nsupdate, not by us) and `mailsec serve` over TLS with a test CA.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use kube::api::{Api, Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use mailsec_operator::serve::tls::Source;
use support::tls::{Https, Pki, Smtp};
use support::{TestEnv, random_suffix};

fn free_addr() -> SocketAddr {
    support::free_addr()
}

fn maildomain_yaml(domain: &str) -> String {
    format!(
        "apiVersion: mailsec.io/v1alpha1\nkind: MailDomain\nmetadata: {{name: md}}\nspec:\n  domain: {domain}\n  mx: [mx1.{domain}]\n  \
         mtaSts: {{mode: enforce, maxAge: 86400}}\n  tlsRpt: {{rua: ['mailto:tlsrpt@{domain}']}}\n  spf: {{mechanisms: [mx], all: fail}}\n  \
         dmarc: {{policy: reject}}\n"
    )
}

fn nsupdate(env: &TestEnv, commands: &str) {
    env.dns.update(commands);
}

/// Publishes what `mailsec render` says the MailDomain needs, plus MX and address records.
fn publish(env: &TestEnv, domain: &str, expect: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .args(["render", "-o", "json", "-f"])
        .arg(expect)
        .output()
        .expect("render");
    let rendered: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut commands = format!(
        "update add {domain}. 300 MX 10 mx1.{domain}.\nupdate add mx1.{domain}. 300 A 127.0.0.1\nupdate add mta-sts.{domain}. 300 A 127.0.0.1\n"
    );
    for r in rendered[0]["records"].as_array().expect("records") {
        commands.push_str(&format!(
            "update add {}. 300 TXT \"{}\"\n",
            r["name"].as_str().expect("name"),
            r["value"].as_str().expect("value")
        ));
    }
    nsupdate(env, &commands);
    rendered[0]["policy"].as_str().expect("policy").to_owned()
}

/// A new domain `<prefix><random>.<zone>`, the expectation file for it, and its records
/// published; returns the domain, the file and the policy to serve.
fn published(env: &TestEnv, pki: &Pki, prefix: &str) -> (String, std::path::PathBuf, String) {
    let domain = format!("{prefix}{}.{}", random_suffix(), env.dns.zone);
    let expect = pki.dir.join(format!("{prefix}.yaml"));
    std::fs::write(&expect, maildomain_yaml(&domain)).expect("write");
    let policy = publish(env, &domain, &expect);
    (domain, expect, policy)
}

/// `mailsec serve` over TLS on a free port, serving `policy` for `domain`.
async fn serve(
    client: &kube::Client,
    ns: &str,
    domain: &str,
    policy: &str,
    tls: Source,
) -> SocketAddr {
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns);
    let name = format!("md-{}", random_suffix());
    let md = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": name},
        "spec": {"domain": domain, "mx": [format!("mx1.{domain}")], "mtaSts": {"mode": "enforce", "maxAge": 86400}}});
    api.patch(&name, &PatchParams::apply("test"), &Patch::Apply(&md))
        .await
        .expect("apply");
    let status = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "status": {"servedPolicy": policy}});
    api.patch_status(&name, &PatchParams::apply("test"), &Patch::Apply(&status))
        .await
        .expect("status");
    let (listen, admin) = (free_addr(), free_addr());
    tokio::spawn(mailsec_operator::serve::run(
        client.clone(),
        listen,
        admin,
        Some(tls),
    ));
    support::wait_ready(admin).await;
    listen
}

/// Runs `mailsec check` with nothing listening for SMTP.
fn check(
    env: &TestEnv,
    domain: &str,
    port: u16,
    pki: &Pki,
    expect: Option<&Path>,
) -> (bool, Vec<serde_json::Value>) {
    check_smtp(env, domain, port, free_addr().port(), pki, expect)
}

/// `mailsec check` for `domain` against the test DNS, CA and ports.
fn command(
    env: &TestEnv,
    domain: &str,
    port: u16,
    smtp: u16,
    pki: &Pki,
    expect: Option<&Path>,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailsec"));
    cmd.args([
        "check",
        domain,
        "--timeout",
        "5",
        "--resolver",
        &env.dns.server.to_string(),
        "--https-port",
        &port.to_string(),
        "--smtp-port",
        &smtp.to_string(),
    ])
    .arg("--ca-file")
    .arg(pki.dir.join("ca.pem"));
    if let Some(e) = expect {
        cmd.arg("--expect-file").arg(e);
    }
    cmd
}

/// Runs `mailsec check -o json`, returns the exit status and the findings.
fn check_smtp(
    env: &TestEnv,
    domain: &str,
    port: u16,
    smtp: u16,
    pki: &Pki,
    expect: Option<&Path>,
) -> (bool, Vec<serde_json::Value>) {
    let out = command(env, domain, port, smtp, pki, expect)
        .args(["-o", "json"])
        .output()
        .expect("run mailsec check");
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), findings)
}

fn failed(findings: &[serde_json::Value]) -> Vec<(&str, &str)> {
    findings
        .iter()
        .filter(|f| f["outcome"] == "fail")
        .map(|f| {
            (
                f["check"].as_str().unwrap_or(""),
                f["reason"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

/// The outcome and reason of the first finding of `check`.
fn outcome_of(findings: &[serde_json::Value], check: &str) -> (String, String) {
    let f = findings
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding: {findings:#?}"));
    let text = |k: &str| f[k].as_str().unwrap_or("").to_owned();
    (text("outcome"), text("reason"))
}

fn policy_finding(findings: &[serde_json::Value]) -> (String, String) {
    outcome_of(findings, "MTA-STS policy")
}

fn message_of(findings: &[serde_json::Value], check: &str) -> String {
    findings
        .iter()
        .filter(|f| f["check"] == check)
        .filter_map(|f| f["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_domain_passes_and_each_breakage_is_named() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "check").await;
    let pki = Pki::new();
    let (domain, expect, policy) = published(env, &pki, "k");
    let port = serve(
        &client,
        ns.name(),
        &domain,
        &policy,
        pki.leaf(&format!("mta-sts.{domain}")),
    )
    .await
    .port();
    let smtp = Smtp::start("starttls", &pki.leaf(&format!("mx1.{domain}")));

    let (ok, findings) = check_smtp(env, &domain, port, smtp.port, &pki, Some(&expect));
    assert!(ok, "the good variant fails: {findings:#?}");
    let checks: Vec<&str> = findings
        .iter()
        .map(|f| f["check"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        checks,
        [
            "MTA-STS",
            "MTA-STS policy",
            "MX coverage",
            "SMTP TLS",
            "TLS-RPT",
            "SPF",
            "SPF lookups",
            "DMARC"
        ]
    );
    assert!(
        findings.iter().all(|f| f["outcome"] == "pass"),
        "{findings:#?}"
    );

    // An MX the policy does not cover.
    nsupdate(
        env,
        &format!("update add {domain}. 300 MX 20 backup.example.net.\n"),
    );
    let (ok, findings) = check_smtp(env, &domain, port, smtp.port, &pki, Some(&expect));
    assert!(!ok);
    // backup.example.net cannot be resolved through this test DNS: its SMTP probe fails too.
    assert_eq!(
        failed(&findings),
        [
            ("MX coverage", "MXNotCovered"),
            ("SMTP TLS", "LookupFailed")
        ]
    );
    assert!(findings.iter().any(|f| {
        f["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("backup.example.net not covered"))
    }));
    nsupdate(
        env,
        &format!("update delete {domain}. MX 20 backup.example.net.\n"),
    );

    // Two STSv1 records: receivers ignore both.
    nsupdate(
        env,
        &format!("update add _mta-sts.{domain}. 300 TXT \"v=STSv1; id=second\"\n"),
    );
    let (ok, findings) = check_smtp(env, &domain, port, smtp.port, &pki, Some(&expect));
    assert!(!ok);
    assert_eq!(failed(&findings), [("MTA-STS", "MultipleRecords")]);
    nsupdate(
        env,
        &format!("update delete _mta-sts.{domain}. TXT \"v=STSv1; id=second\"\n"),
    );

    // Two SPF records, without an expectation: still caught.
    nsupdate(
        env,
        &format!("update add {domain}. 300 TXT \"v=spf1 -all\"\n"),
    );
    let (ok, findings) = check_smtp(env, &domain, port, smtp.port, &pki, None);
    assert!(!ok);
    assert_eq!(failed(&findings), [("SPF", "MultipleRecords")]);
    nsupdate(
        env,
        &format!("update delete {domain}. TXT \"v=spf1 -all\"\n"),
    );

    // A DMARC record that differs from the expectation.
    nsupdate(
        env,
        &format!(
            "update delete _dmarc.{domain}. TXT\nupdate add _dmarc.{domain}. 300 TXT \"v=DMARC1; p=none\"\n"
        ),
    );
    let (_, findings) = check_smtp(env, &domain, port, smtp.port, &pki, Some(&expect));
    assert_eq!(failed(&findings), [("DMARC", "Mismatch")]);
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_host_problems_are_named() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "checkpol").await;
    let pki = Pki::new();

    // A certificate for another name.
    let (domain, expect, policy) = published(env, &pki, "n");
    let port = serve(
        &client,
        ns.name(),
        &domain,
        &policy,
        pki.leaf("mta-sts.wrong.example"),
    )
    .await
    .port();
    let (ok, findings) = check(env, &domain, port, &pki, Some(&expect));
    assert!(!ok);
    assert!(
        failed(&findings).contains(&("MTA-STS policy", "CertificateNameMismatch")),
        "{findings:#?}"
    );

    // An expired certificate for the right name.
    let (domain, expect, policy) = published(env, &pki, "x");
    let host = format!("mta-sts.{domain}");
    let port = serve(
        &client,
        ns.name(),
        &domain,
        &policy,
        pki.expired_leaf(&host),
    )
    .await
    .port();
    let (ok, findings) = check(env, &domain, port, &pki, Some(&expect));
    assert!(!ok);
    assert_eq!(
        policy_finding(&findings),
        ("fail".into(), "CertificateExpired".into()),
        "{findings:#?}"
    );

    // A web server in front that redirects, labels the policy as HTML, or speaks only TLS 1.0:
    // senders refuse each, and each is named.
    let good = pki.leaf(&host);
    for (mode, reason, detail) in [
        (
            "redirect",
            "Redirect",
            "HTTP 301 to `https://www.example.net/.well-known/mta-sts.txt`",
        ),
        ("html", "ContentType", "`text/html; charset=utf-8`"),
        ("tls10", "TLSVersionTooOld", "it speaks TLS 1.0 at most"),
        ("noclose", "NoCloseNotify", "without TLS close_notify"),
    ] {
        let server = Https::start(mode, &good, &policy);
        let (ok, findings) = check(env, &domain, server.port, &pki, Some(&expect));
        assert!(!ok, "{mode}");
        assert_eq!(
            policy_finding(&findings),
            ("fail".into(), reason.into()),
            "{mode}"
        );
        assert!(
            message_of(&findings, "MTA-STS policy").contains(detail),
            "{mode}: {findings:#?}"
        );
        if mode != "redirect" {
            continue;
        }
        // The default output names the failed check and why, in a line a person reads.
        let out = command(
            env,
            &domain,
            server.port,
            free_addr().port(),
            &pki,
            Some(&expect),
        )
        .output()
        .expect("run mailsec check");
        assert_eq!(out.status.code(), Some(1));
        let table = String::from_utf8_lossy(&out.stdout);
        let line = table
            .lines()
            .find(|l| l.contains("MTA-STS policy"))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(line.starts_with("FAIL"), "{table}");
        assert!(
            line.contains(&format!("mta-sts.{domain}"))
                && line.contains("Redirect")
                && line.contains("do not follow redirects"),
            "{table}"
        );
        assert!(table.contains(" failed"), "{table}");
    }
    // The same server with text/plain passes: the failures above are about the answer alone.
    let plain = Https::start("ok", &good, &policy);
    let (_, findings) = check(env, &domain, plain.port, &pki, Some(&expect));
    assert_eq!(
        policy_finding(&findings),
        ("pass".into(), "Served".into()),
        "{findings:#?}"
    );

    // LF line ends: a warning, not a failure.
    let (domain, expect, policy) = published(env, &pki, "l");
    let policy = policy.replace("\r\n", "\n");
    let port = serve(
        &client,
        ns.name(),
        &domain,
        &policy,
        pki.leaf(&format!("mta-sts.{domain}")),
    )
    .await
    .port();
    let smtp = Smtp::start("starttls", &pki.leaf(&format!("mx1.{domain}")));
    let (ok, findings) = check_smtp(env, &domain, port, smtp.port, &pki, Some(&expect));
    assert!(ok, "LF only is a warning: {:#?}", failed(&findings));
    assert!(findings.iter().any(
        |f| f["outcome"] == "warn" && f["message"].as_str().is_some_and(|m| m.contains("CRLF"))
    ));

    // Nothing listens: the policy host is unreachable.
    let closed = free_addr().port();
    let (ok, findings) = check(env, &domain, closed, &pki, Some(&expect));
    assert!(!ok);
    assert!(
        failed(&findings).contains(&("MTA-STS policy", "Unreachable")),
        "{findings:#?}"
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_starttls_problems_are_named() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "checksmtp").await;
    let pki = Pki::new();
    let (domain, expect, policy) = published(env, &pki, "s");
    let https = pki.leaf(&format!("mta-sts.{domain}"));
    let port = serve(&client, ns.name(), &domain, &policy, https)
        .await
        .port();
    let smtp_finding = |findings: &[serde_json::Value]| outcome_of(findings, "SMTP TLS");
    let good = pki.leaf(&format!("mx1.{domain}"));
    let wrong = pki.leaf("mx.wrong.example");
    let expired = pki.expired_leaf(&format!("mx1.{domain}"));
    let variants = [
        ("starttls", &good, "pass", "STARTTLS"),
        ("plain", &good, "fail", "NoSTARTTLS"),
        // aiosmtpd (asyncio) hangs up without a protocol_version alert; the probe then asks
        // with an old hello and names the version the server speaks.
        ("tls10", &good, "fail", "TLSVersionTooOld"),
        ("tls11", &good, "fail", "TLSVersionTooOld"),
        ("starttls", &wrong, "fail", "CertificateNameMismatch"),
        ("starttls", &expired, "fail", "CertificateExpired"),
    ];
    for (mode, tls, outcome, reason) in variants {
        let smtp = Smtp::start(mode, tls);
        let (ok, findings) = check_smtp(env, &domain, port, smtp.port, &pki, Some(&expect));
        assert_eq!(
            smtp_finding(&findings),
            (outcome.to_owned(), reason.to_owned()),
            "{mode}: {findings:#?}"
        );
        assert_eq!(
            ok,
            outcome == "pass",
            "{mode}: the exit status follows the findings"
        );
        if let Some(old) = [("tls10", "TLS 1.0"), ("tls11", "TLS 1.1")]
            .iter()
            .find_map(|(m, v)| (*m == mode).then_some(*v))
        {
            let f = findings
                .iter()
                .find(|f| f["check"] == "SMTP TLS")
                .expect("finding");
            assert!(
                f["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("offers no TLS 1.2 or newer")
                        && m.contains(&format!("it speaks {old} at most"))),
                "{f}"
            );
        }
    }
    // Nothing listens on the SMTP port: refused, a failure of the host.
    let (_, findings) = check_smtp(env, &domain, port, free_addr().port(), &pki, Some(&expect));
    assert_eq!(
        smtp_finding(&findings),
        ("fail".to_owned(), "ConnectionRefused".to_owned())
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_limits_are_counted_across_includes() {
    let Some(env) = support::env() else { return };
    let pki = Pki::new();
    let d = format!("p{}.{}", random_suffix(), env.dns.zone);
    let spf_of = |findings: &[serde_json::Value]| {
        (
            outcome_of(findings, "SPF lookups").1,
            message_of(findings, "SPF lookups"),
        )
    };
    // 4 at the apex + 4 in i1 + 3 in i2 = 11 terms that query DNS.
    nsupdate(
        env,
        &format!(
            "update add {d}. 300 TXT \"v=spf1 mx include:i1.{d} include:i2.{d} a -all\"\n\
             update add i1.{d}. 300 TXT \"v=spf1 a mx a:x.{d} exists:x.{d} -all\"\n\
             update add i2.{d}. 300 TXT \"v=spf1 a mx ptr ip4:192.0.2.1 -all\"\n\
             update add x.{d}. 300 A 192.0.2.7\n"
        ),
    );
    let (ok, findings) = check(env, &d, free_addr().port(), &pki, None);
    assert!(!ok);
    let (reason, message) = spf_of(&findings);
    assert_eq!(reason, "TooManyLookups", "{message}");
    assert!(message.starts_with("11 DNS-querying terms"), "{message}");

    // Three names that answer nothing: over the void limit of 2.
    let v = format!("v{}.{}", random_suffix(), env.dns.zone);
    nsupdate(
        env,
        &format!("update add {v}. 300 TXT \"v=spf1 a:n1.{v} a:n2.{v} a:n3.{v} -all\"\n"),
    );
    let (_, findings) = check(env, &v, free_addr().port(), &pki, None);
    let (reason, message) = spf_of(&findings);
    assert_eq!(reason, "TooManyVoidLookups", "{message}");
    assert!(message.contains(&format!("n3.{v}")), "{message}");

    // An include that has no SPF record.
    let b = format!("i{}.{}", random_suffix(), env.dns.zone);
    nsupdate(
        env,
        &format!(
            "update add {b}. 300 TXT \"v=spf1 include:none.{b} -all\"\nupdate add none.{b}. 300 TXT \"hello\"\n"
        ),
    );
    let (_, findings) = check(env, &b, free_addr().port(), &pki, None);
    assert_eq!(spf_of(&findings).0, "BrokenInclude");
}

/// A resolver that does not answer: one finding that names it, within a small multiple of
/// `--timeout`, instead of a failed lookup per check. Needs no environment.
#[test]
fn a_dead_resolver_is_one_finding_within_the_timeout() {
    // A bound UDP socket that never answers: queries time out (nothing is refused).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .args(["check", "example.com", "--timeout", "2", "-o", "json"])
        .args(["--resolver", &addr.to_string()])
        .output()
        .expect("run mailsec check");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        findings[0]["reason"], "ResolverUnreachable",
        "{findings:#?}"
    );
    let message = findings[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?} with --timeout 2"
    );
    drop(silent);
}
