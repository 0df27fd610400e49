//! The controller as the `mailsec` binary, a process of its own, for the tests that kill it
//! with SIGKILL; and the BIND DNSProvider (RFC 2136 with the environment's TSIG key) those
//! tests' MailDomains name.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use kube::Client;

use super::TestEnv;

/// The name of the DNSProvider [`bind_provider`] applies.
pub const BIND_PROVIDER: &str = "bind";

/// A MailDomain `name` for `domain` on the BIND provider: MTA-STS testing, TLS-RPT, SPF and
/// DMARC with `dmarc` as its policy.
pub fn bind_maildomain(name: &str, domain: &str, dmarc: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
        "metadata": {"name": name},
        "spec": {
            "domain": domain, "ttl": 60, "dnsProviderRef": {"name": BIND_PROVIDER},
            "mx": [format!("mx1.{domain}")],
            "mtaSts": {"mode": "testing"},
            "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]},
            "spf": {"mechanisms": ["mx"], "all": "fail"},
            "dmarc": {"policy": dmarc}
        }
    })
}

/// A policy server (`mailsec serve`) as a task of the test, ready: its address, and its URL
/// for the controller's `--policy-server-url`.
pub async fn policy_server(client: &Client) -> (std::net::SocketAddr, String) {
    let (listen, admin) = (super::free_addr(), super::free_addr());
    tokio::spawn(mailsec_operator::serve::run(
        client.clone(),
        listen,
        admin,
        None,
    ));
    super::wait_ready(admin).await;
    (listen, format!("http://{listen}"))
}

/// The controller process, killed by its PID when dropped.
pub struct Controller {
    child: Child,
    /// Its `/livez`, `/readyz` and `/metrics`.
    pub admin: std::net::SocketAddr,
}

impl Controller {
    /// Starts `mailsec controller` for `ns` (its own namespace and the one it watches), with
    /// live checks asking BIND every 3 s, logging to `log`, plus `extra` arguments; without
    /// leader election.
    pub fn start(env: &TestEnv, ns: &str, log: &Path, extra: &[&str]) -> Controller {
        Self::spawn(env, ns, log, None, extra)
    }

    /// As [`Controller::start`], as the replica `identity` of several: it reconciles only
    /// while it holds the Lease `mailsec-operator` in `ns`.
    pub fn start_replica(
        env: &TestEnv,
        ns: &str,
        log: &Path,
        identity: &str,
        extra: &[&str],
    ) -> Controller {
        Self::spawn(env, ns, log, Some(identity), extra)
    }

    fn spawn(
        env: &TestEnv,
        ns: &str,
        log: &Path,
        replica: Option<&str>,
        extra: &[&str],
    ) -> Controller {
        let admin = super::free_addr();
        let election: &[&str] = match replica {
            Some(identity) => &["--leader-election", "true", "--identity", identity],
            None => &["--leader-election", "false"],
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mailsec"))
            .args(["controller", "--namespace", ns, "--watch-namespace", ns])
            .args(election)
            .args(["--admin-addr", &admin.to_string()])
            .args([
                "--check-resolver",
                &env.dns.server.to_string(),
                "--check-interval",
                "3",
            ])
            .args(["--check-timeout", "2"])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &env.kubeconfig)
            .env("MAILSEC_LOG", "info,mailsec_operator=debug,kube=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start mailsec controller");
        Controller { child, admin }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running (it has not exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The sum of one metric's samples on its `/metrics` (0 while it does not answer).
    pub async fn metric(&self, name: &str) -> u64 {
        let Ok(answer) = super::http_client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
        else {
            return 0;
        };
        let text = answer.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Applies, in `ns`, the TSIG Secret and the DNSProvider [`BIND_PROVIDER`] for the
/// environment's BIND.
pub async fn bind_provider(env: &TestEnv, client: &Client, ns: &str) {
    bind_provider_for(&env.dns, client, ns).await;
}

/// As [`bind_provider`], for the server `dns` describes.
pub async fn bind_provider_for(dns: &super::DnsSettings, client: &Client, ns: &str) {
    let apply = |value| super::apply_json(client, ns, "controller-process-test", value);
    apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"},
        "stringData": {"secret": dns.tsig_secret}
    }))
    .await;
    apply(serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider",
        "metadata": {"name": BIND_PROVIDER},
        "spec": {"type": "rfc2136", "zones": [dns.zone], "rfc2136": {
            "server": dns.server.to_string(), "tsigKeyName": dns.tsig_key_name,
            "tsigAlgorithm": dns.tsig_algorithm, "tsigSecretRef": {"name": "tsig", "key": "secret"}}}
    }))
    .await;
}
