//! The DNS server restarted mid-run: a BIND 9 of this test's own (the environment's serves
//! the other tests), the controller (the `mailsec` binary) publishing four MailDomains to it.
//! BIND is killed with SIGKILL; while it is down the MailDomains change and a fifth is
//! applied, and the failure shows as `DNSPublished=False` with reason `DNSUnreachable`. BIND
//! comes back with its zone file and journal; the controller then converges exactly: every
//! MailDomain published for its current generation, each name holding exactly its one value
//! in BIND, the old values gone, the foreign value untouched.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use support::controller_process::{Controller, bind_maildomain, bind_provider_for};
use support::maildomain::{condition, published, wait_for};
use support::{DnsSettings, random_suffix};

const FOREIGN: &str = "\"google-site-verification=restart\"";

/// A BIND 9 on a loopback port of its own, primary for the environment's zone name with the
/// environment's TSIG key; killed with SIGKILL when dropped.
struct Bind {
    dir: PathBuf,
    dns: DnsSettings,
    child: Option<Child>,
}

impl Bind {
    fn start(template: &DnsSettings) -> Bind {
        let dir = std::env::temp_dir().join(format!("mailsec-dns-restart-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("dir");
        let port = support::free_addr().port();
        let zone = &template.zone;
        let d = dir.display();
        std::fs::write(
            dir.join("tsig.key"),
            format!(
                "key \"{}\" {{ algorithm {}; secret \"{}\"; }};\n",
                template.tsig_key_name, template.tsig_algorithm, template.tsig_secret
            ),
        )
        .expect("key");
        std::fs::write(
            dir.join(format!("{zone}.zone")),
            format!(
                "$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 60 )\n@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
            ),
        )
        .expect("zone");
        std::fs::write(
            dir.join("named.conf"),
            format!(
                r#"options {{
	directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";
	managed-keys-directory "{d}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
	recursion no; allow-query {{ 127.0.0.1; }}; allow-transfer {{ none; }}; notify no;
	dnssec-validation no; empty-zones-enable no;
}};
controls {{ }};
include "{d}/tsig.key";
zone "{zone}" {{ type primary; file "{d}/{zone}.zone"; update-policy {{ grant {key} zonesub ANY; }}; }};
"#,
                key = template.tsig_key_name
            ),
        )
        .expect("named.conf");
        let dns = DnsSettings {
            server: SocketAddr::from(([127, 0, 0, 1], port)),
            ..template.clone()
        };
        let mut bind = Bind {
            dir,
            dns,
            child: None,
        };
        bind.run();
        bind
    }

    /// Starts named on the directory as it is (zone file and journal) and waits for its SOA.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("named.log"))
            .expect("log");
        let child = Command::new("named")
            .args(["-g", "-4", "-n", "1", "-c"])
            .arg(self.dir.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("named (Debian's bind9: run `make tools`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "named did not answer: {}",
                tail(&self.dir.join("named.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether it answers the zone's SOA (dig exits non-zero while nothing listens).
    fn answers(&self) -> bool {
        Command::new("dig")
            .arg(format!("@{}", self.dns.server.ip()))
            .args([
                "-p",
                &self.dns.server.port().to_string(),
                "+time=1",
                "+tries=1",
            ])
            .args(["+short", &self.dns.zone, "SOA"])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_dns_server_restart_it_converges_exactly() {
    let Some(env) = support::env() else { return };
    let mut bind = Bind::start(&env.dns);
    let client = env.client().await;
    let ns = env.namespace(&client, "dnsrestart").await;
    let n = ns.name().to_owned();
    bind_provider_for(&bind.dns, &client, &n).await;
    let log = std::env::temp_dir().join(format!("mailsec-dns-restart-{n}.log"));
    eprintln!("controller log: {}", log.display());
    let (_, policy_server) = support::controller_process::policy_server(&client).await;
    let _controller = Controller::start(
        env,
        &n,
        &log,
        &["--policy-server-url", policy_server.as_str()],
    );

    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);
    let apply = |i: usize, domain: String, dmarc: &'static str| {
        let api = api.clone();
        async move {
            let name = format!("md{i}");
            api.patch(
                &name,
                &PatchParams::apply("dns-restart-test").force(),
                &Patch::Apply(bind_maildomain(&name, &domain, dmarc)),
            )
            .await
            .expect("apply")
        }
    };
    let domains: Vec<String> = (0..5)
        .map(|i| format!("rs{i}-{}.{}", random_suffix(), env.dns.zone))
        .collect();
    for d in &domains {
        bind.dns
            .update(&format!("update add {d}. 300 TXT {FOREIGN}\n"));
    }
    for (i, d) in domains.iter().enumerate().take(4) {
        apply(i, d.clone(), "none").await;
    }
    for i in 0..4 {
        wait_for(&api, &format!("md{i}"), "published", published).await;
    }

    bind.kill();
    let down = Instant::now();
    for (i, d) in domains.iter().enumerate() {
        apply(i, d.clone(), "quarantine").await;
    }
    let md = wait_for(&api, "md4", "DNSUnreachable while BIND is down", |md| {
        condition(md, "DNSPublished").is_some_and(|c| c.0 == "False" && c.1 == "DNSUnreachable")
    })
    .await;
    let message = condition(&md, "DNSPublished").map(|c| c.2.to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains(&bind.dns.server.to_string())),
        "the message names the server: {message:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    bind.run();
    let up = Instant::now();
    for i in 0..5 {
        wait_for(
            &api,
            &format!("md{i}"),
            "published after the restart",
            published,
        )
        .await;
    }
    eprintln!(
        "BIND down for {:.1} s; all five published {:.1} s after it was back",
        (up - down).as_secs_f64(),
        up.elapsed().as_secs_f64()
    );
    for d in &domains {
        assert_eq!(
            bind.dns.txt(&format!("_dmarc.{d}")),
            ["v=DMARC1; p=quarantine"],
            "{d}: exactly the new DMARC value"
        );
        let mut apex = bind.dns.txt(d);
        apex.sort();
        assert_eq!(
            apex,
            ["google-site-verification=restart", "v=spf1 mx -all"],
            "{d}: one SPF, the foreign value kept"
        );
        assert_eq!(bind.dns.txt(&format!("_smtp._tls.{d}")).len(), 1, "{d}");
        assert_eq!(bind.dns.txt(&format!("_mta-sts.{d}")).len(), 1, "{d}");
    }
    ns.delete(&client).await;
}
