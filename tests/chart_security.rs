//! The Helm chart's security, judged by an independent scanner: checkov (PyPI, installed by
//! scripts/tools.d/checkov.sh) over the chart as `helm template` renders it.
//!
//! - With default values and the chart's `.checkov.yaml`, checkov fails no check, and passes
//!   more than it did before the chart had NetworkPolicies (217).
//! - Each check that `.checkov.yaml` skips still fails without the skip (none outlives its
//!   reason) and is justified in the file, in values.yaml and in the README's "Chart security";
//!   no other check fails. The digest-pinned chart that the release publishes passes the digest
//!   check; without the NetworkPolicies the NetworkPolicy check fails (the scanner sees them).
//! - What the NetworkPolicies allow, port by port, and the image pull policy.
//!
//! Needs no cluster: only helm and checkov from the tools directory (`scripts/tools.sh`). A
//! missing tool skips these tests loudly, or fails them with `CI=true`. checkov runs with
//! `--skip-download`, without its update check, from a scratch directory with its own HOME: it
//! asks no server and reads no configuration but the one given.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::process::Run;

use serde_json::{Value, json};

const CHART: &str = "charts/mailsec-operator";
const NAMESPACE: &str = "mailsec-system";
/// checkov's passed checks over the default rendering before the NetworkPolicies (3.3.30).
const PASSED_BEFORE: u64 = 217;

/// Scratch space under target/ (renderings, checkov's HOME, helm's home, outputs).
fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chart-security");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// A name unique within this process (tests run in parallel threads).
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// [`support::process::run_bounded`] with this file's scratch directory.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    support::process::run_bounded(cmd, limit, &scratch())
}

/// A tool of the tools bin directory (`scripts/tools.sh bindir`). `None`: the test is skipped,
/// said loudly on stderr; with `CI=true` it fails instead.
fn tool(name: &str) -> Option<PathBuf> {
    let why = match Command::new("bash")
        .arg(support::repo_root().join("scripts/tools.sh"))
        .arg("bindir")
        .output()
    {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(name);
            if path.is_file() {
                return Some(path);
            }
            format!("{} is missing", path.display())
        }
        Ok(out) => format!("scripts/tools.sh bindir failed: {}", out.status),
        Err(e) => format!("scripts/tools.sh bindir: {e}"),
    };
    assert!(
        !support::in_ci(),
        "{name} unavailable and CI=true, failing instead of skipping: {why} (scripts/tools.sh installs it)"
    );
    // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must show.
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(
        std::io::stderr().lock(),
        "## SKIPPED {test}: {why} (run scripts/tools.sh; with CI=true this fails)"
    );
    None
}

/// `helm template` of the chart with `--set` values: the YAML text.
fn render(helm: &Path, sets: &[&str]) -> String {
    let home = scratch().join("helm-home");
    let mut cmd = Command::new(helm);
    cmd.args(["template", "mso", CHART, "--namespace", NAMESPACE])
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(support::repo_root());
    for set in sets {
        cmd.args(["--set", set]);
    }
    let run = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        run.ok,
        "helm template --set {sets:?} failed ({}):\n{}",
        run.status, run.stderr
    );
    run.stdout
}

fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("valid YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Writes a rendering into a file of its own for checkov; the file's name.
fn rendering_file(dir: &Path, name: &str, text: &str) -> String {
    let file = format!("{name}.yaml");
    std::fs::write(dir.join(&file), text).expect("write the rendering");
    file
}

/// One checked resource of checkov's report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    file: String,
    check: String,
    resource: String,
}

struct Report {
    summary: Value,
    passed: Vec<Finding>,
    failed: Vec<Finding>,
}

/// Runs checkov (kubernetes framework, JSON) over `files` of `dir`, with the chart's
/// `.checkov.yaml` or without any configuration.
fn checkov(checkov: &Path, dir: &Path, files: &[String], with_config: bool) -> Report {
    let mut cmd = Command::new(checkov);
    cmd.args(["--skip-download", "--soft-fail", "--output", "json"]);
    if with_config {
        cmd.arg("--config-file")
            .arg(support::repo_root().join(CHART).join(".checkov.yaml"));
    } else {
        cmd.args(["--framework", "kubernetes"]);
    }
    for file in files {
        cmd.arg("--file").arg(file);
    }
    // Its own HOME and working directory: no ~/.checkov.yaml or ./.checkov.yaml is read.
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("checkov's home");
    cmd.current_dir(dir)
        .env("HOME", &home)
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
        .env("BC_SKIP_MAPPING", "TRUE");
    let run = run_bounded(&mut cmd, Duration::from_secs(300));
    assert!(
        run.ok,
        "checkov failed ({}):\n{}\n{}",
        run.status, run.stdout, run.stderr
    );
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("checkov's output is not JSON ({e}):\n{}", run.stdout));
    // One framework: one report object (several would make a list of them).
    let report = match report {
        Value::Array(reports) => reports
            .into_iter()
            .find(|r| r["check_type"] == "kubernetes")
            .expect("a kubernetes report"),
        report => report,
    };
    assert_eq!(report["check_type"], "kubernetes", "{report}");
    let findings = |key: &str| -> Vec<Finding> {
        report["results"][key]
            .as_array()
            .unwrap_or_else(|| panic!("no results.{key} in checkov's report"))
            .iter()
            .map(|c| Finding {
                file: c["file_path"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                check: c["check_id"].as_str().expect("check_id").to_owned(),
                resource: c["resource"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    };
    Report {
        summary: report["summary"].clone(),
        passed: findings("passed_checks"),
        failed: findings("failed_checks"),
    }
}

/// The checks `.checkov.yaml` skips, each asserted to come after a comment that names it.
fn skipped_checks() -> BTreeSet<String> {
    let path = support::repo_root().join(CHART).join(".checkov.yaml");
    let text = std::fs::read_to_string(&path).expect("read .checkov.yaml");
    let config: Value = serde_saphyr::from_str(&text).expect(".checkov.yaml is YAML");
    let skips: BTreeSet<String> = config["skip-check"]
        .as_array()
        .expect(".checkov.yaml has a skip-check list")
        .iter()
        .map(|c| c.as_str().expect("a check id").to_owned())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    for id in &skips {
        let at = lines
            .iter()
            .position(|l| l.trim() == format!("- {id}"))
            .unwrap_or_else(|| panic!(".checkov.yaml: {id} is not an item of its own line"));
        let reason: Vec<&str> = lines[..at]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with('#'))
            .copied()
            .collect();
        assert!(
            reason.iter().any(|l| l.contains(id.as_str())) && reason.len() >= 2,
            ".checkov.yaml: the skip of {id} is not preceded by a comment naming it and saying why"
        );
    }
    skips
}

/// The README's "Chart security" subsection.
fn readme_chart_security() -> String {
    let readme =
        std::fs::read_to_string(support::repo_root().join("README.md")).expect("read README.md");
    let start = readme
        .find("### Chart security")
        .expect("README.md has a \"### Chart security\" subsection");
    let rest = &readme[start + 3..];
    let end = rest.find("\n#").map_or(rest.len(), |e| e + 1);
    rest[..end].to_owned()
}

#[test]
fn checkov_fails_no_check_of_the_chart_with_default_values() {
    let (Some(helm), Some(checkov_bin)) = (tool("helm"), tool("checkov")) else {
        return;
    };
    let dir = scratch().join(unique("defaults"));
    std::fs::create_dir_all(&dir).expect("scratch");
    let file = rendering_file(&dir, "default", &render(&helm, &[]));
    let report = checkov(&checkov_bin, &dir, &[file], true);
    let summary = &report.summary;
    let _ = writeln!(
        std::io::stderr().lock(),
        "checkov over the default rendering: {summary}"
    );
    assert_eq!(summary["parsing_errors"], 0, "{summary}");
    assert!(
        report.failed.is_empty(),
        "checkov failed checks of the chart (fix them, or skip one in .checkov.yaml with the \
         reason, in values.yaml and in the README):\n{:#?}",
        report.failed
    );
    let passed = summary["passed"].as_u64().expect("summary.passed");
    assert_eq!(passed, report.passed.len() as u64, "{summary}");
    assert!(
        passed > PASSED_BEFORE,
        "checkov passed {passed} checks, no more than the {PASSED_BEFORE} before the NetworkPolicies"
    );
    // The fixed ones pass, for both roles.
    for check in ["CKV2_K8S_6", "CKV_K8S_15"] {
        let n = report.passed.iter().filter(|f| f.check == check).count();
        assert_eq!(n, 2, "{check} passes for both Deployments' pods: {n}");
    }
    // The skipped ones are not run at all.
    let skips = skipped_checks();
    assert!(
        report.passed.iter().all(|f| !skips.contains(&f.check)),
        "a skipped check was run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The report receiver as the chart renders it with a mailbox: checkov passes it like the
/// other roles, and its NetworkPolicy lets in reports and probes and out only the API server,
/// DNS and the IMAP server.
#[test]
fn the_report_receiver_passes_checkov_and_its_network_policy_is_tight() {
    let (Some(helm), Some(checkov_bin)) = (tool("helm"), tool("checkov")) else {
        return;
    };
    let sets = [
        "reports.receiver.enabled=true",
        "reports.receiver.url=https://tlsrpt.example.com/v1/reports",
        "reports.receiver.imap.server=imap.example.com:993",
        "reports.receiver.imap.user=tlsrpt",
        "reports.receiver.imap.passwordSecret.name=imap",
        "reports.dashboard.enabled=true",
    ];
    let text = render(&helm, &sets);
    let dir = scratch().join(unique("receiver"));
    std::fs::create_dir_all(&dir).expect("scratch");
    let file = rendering_file(&dir, "receiver", &text);
    let report = checkov(&checkov_bin, &dir, &[file], true);
    assert_eq!(report.summary["parsing_errors"], 0, "{}", report.summary);
    assert!(
        report.failed.is_empty(),
        "checkov failed checks of the receiver:\n{:#?}",
        report.failed
    );
    for check in ["CKV2_K8S_6", "CKV_K8S_15"] {
        let n = report.passed.iter().filter(|f| f.check == check).count();
        assert_eq!(n, 3, "{check} passes for the three Deployments' pods: {n}");
    }
    let docs = documents(&text);
    let receiver = "mso-mailsec-operator-receiver";
    let policy = &one(&docs, "NetworkPolicy", receiver)["spec"];
    assert_eq!(policy["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        all_ports(&policy["ingress"]),
        port_set(&[(8080, "TCP"), (8081, "TCP")])
    );
    assert_eq!(
        all_ports(&policy["egress"]),
        port_set(&[
            (443, "TCP"),
            (6443, "TCP"),
            (53, "UDP"),
            (53, "TCP"),
            (993, "TCP")
        ])
    );
    let deployment = one(&docs, "Deployment", receiver);
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--imap-server=imap.example.com:993"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--imap-password-file=/etc/mailsec/imap/password"),
        "{args:?}"
    );
    let controller = one(&docs, "Deployment", CONTROLLER);
    let controller_args =
        controller["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        controller_args.contains("--report-url=https://tlsrpt.example.com/v1/reports"),
        "{controller_args}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_skipped_check_still_fails_without_the_skip_and_is_justified() {
    let skips = skipped_checks();
    assert!(!skips.is_empty(), "nothing is skipped: remove the list");
    let readme = readme_chart_security();
    let values = std::fs::read_to_string(support::repo_root().join(CHART).join("values.yaml"))
        .expect("values.yaml");
    for id in &skips {
        assert!(
            readme.contains(id.as_str()),
            "README.md, Chart security: {id} is skipped but not justified there"
        );
        assert!(
            values.contains(id.as_str()),
            "values.yaml: {id} is skipped but not justified where its value is"
        );
    }

    let (Some(helm), Some(checkov_bin)) = (tool("helm"), tool("checkov")) else {
        return;
    };
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let renderings = [
        ("default", render(&helm, &[])),
        (
            "pinned",
            render(
                &helm,
                &[
                    "image.repository=registry.example/mailsec-operator",
                    &format!("image.digest={digest}"),
                ],
            ),
        ),
        (
            "no-network-policies",
            render(&helm, &["networkPolicy.enabled=false"]),
        ),
    ];
    // All of checkov's Kubernetes checks, nothing skipped; one run per rendering, as checkov's
    // graph checks (CKV2_*) relate the resources of all files of a run.
    let mut files = Vec::new();
    let mut failed = Vec::new();
    for (name, text) in &renderings {
        let dir = scratch().join(unique(name));
        std::fs::create_dir_all(&dir).expect("scratch");
        let file = rendering_file(&dir, name, text);
        failed.extend(checkov(&checkov_bin, &dir, std::slice::from_ref(&file), false).failed);
        let _ = std::fs::remove_dir_all(&dir);
        files.push(file);
    }
    let failed_in = |file: &str| -> BTreeSet<String> {
        failed
            .iter()
            .filter(|f| f.file == file)
            .map(|f| f.check.clone())
            .collect()
    };
    assert_eq!(
        failed_in(&files[0]),
        skips,
        "with default values, exactly the skipped checks must fail without the skip list: a \
         skip no longer needed is to be removed, a new failure to be fixed or justified"
    );
    for id in &skips {
        let resources: Vec<&Finding> = failed
            .iter()
            .filter(|f| f.file == files[0] && &f.check == id)
            .collect();
        assert_eq!(
            resources.len(),
            2,
            "{id} fails for both Deployments: {resources:#?}"
        );
    }
    // Pinned by digest (as the release workflow publishes it): the digest check passes, and so
    // does the pull policy (IfNotPresent is then right).
    let pinned = failed_in(&files[1]);
    let expected: BTreeSet<String> = skips
        .iter()
        .filter(|c| c.as_str() != "CKV_K8S_43")
        .cloned()
        .collect();
    assert_eq!(pinned, expected, "the digest-pinned chart");
    // Without the NetworkPolicies, the scanner misses them: it does look at ours.
    let without = failed_in(&files[2]);
    assert!(
        without.contains("CKV2_K8S_6"),
        "networkPolicy.enabled=false: CKV2_K8S_6 should fail, failed: {without:?}"
    );
    assert_eq!(
        failed
            .iter()
            .filter(|f| f.file == files[2] && f.check == "CKV2_K8S_6")
            .count(),
        2,
        "both roles' pods lack a NetworkPolicy then"
    );
}

/// `(port, protocol)` of a NetworkPolicy rule, which must list its ports (a rule without ports
/// allows every port).
fn ports(rule: &Value) -> BTreeSet<(u64, String)> {
    let list = rule["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("a rule without ports allows every port: {rule}"));
    assert!(!list.is_empty(), "a rule without ports: {rule}");
    list.iter()
        .map(|p| {
            (
                p["port"].as_u64().expect("a numbered port"),
                p["protocol"].as_str().expect("a protocol").to_owned(),
            )
        })
        .collect()
}

fn port_set(list: &[(u64, &str)]) -> BTreeSet<(u64, String)> {
    list.iter()
        .map(|(p, proto)| (*p, (*proto).to_owned()))
        .collect()
}

fn all_ports(rules: &Value) -> BTreeSet<(u64, String)> {
    rules
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(ports)
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The rule whose ports include `port`/`protocol`.
fn rule_with<'a>(rules: &'a Value, port: u64, protocol: &str) -> &'a Value {
    rules
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| ports(r).contains(&(port, protocol.to_owned())))
        .unwrap_or_else(|| panic!("no rule for {port}/{protocol} in {rules}"))
}

const SERVE: &str = "mso-mailsec-operator-serve";
const CONTROLLER: &str = "mso-mailsec-operator-controller";

#[test]
fn the_network_policies_allow_each_role_what_it_needs_and_nothing_else() {
    let Some(helm) = tool("helm") else { return };
    let docs = documents(&render(&helm, &[]));
    let policies: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), 2, "one NetworkPolicy per role");
    for name in [SERVE, CONTROLLER] {
        let policy = one(&docs, "NetworkPolicy", name);
        let deployment = one(&docs, "Deployment", name);
        assert_eq!(policy["metadata"]["namespace"], NAMESPACE);
        assert_eq!(
            policy["spec"]["policyTypes"],
            json!(["Ingress", "Egress"]),
            "{name}: both directions are restricted"
        );
        // It selects the role's pods, and only them.
        let selector = policy["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .expect("matchLabels");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector {
            assert_eq!(&pod_labels[k], v, "{name}: selects its Deployment's pods");
        }
        assert!(
            selector.contains_key("app.kubernetes.io/component"),
            "{name}"
        );
    }
    let serve = &one(&docs, "NetworkPolicy", SERVE)["spec"];
    let controller = &one(&docs, "NetworkPolicy", CONTROLLER)["spec"];
    let api_and_dns = [(443, "TCP"), (6443, "TCP"), (53, "UDP"), (53, "TCP")];

    // serve: the policy port and the admin port, from anywhere; out only to the API and DNS.
    assert_eq!(
        all_ports(&serve["ingress"]),
        port_set(&[(8080, "TCP"), (8081, "TCP")])
    );
    assert!(
        rule_with(&serve["ingress"], 8080, "TCP")
            .get("from")
            .is_none(),
        "senders come from anywhere"
    );
    assert_eq!(all_ports(&serve["egress"]), port_set(&api_and_dns));
    for (port, proto) in api_and_dns {
        assert!(
            rule_with(&serve["egress"], port, proto).get("to").is_none(),
            "{port}/{proto}: to any address by default"
        );
    }

    // controller: in only on its admin port; out to the API, DNS, the providers, the checks'
    // targets and the release's policy servers.
    assert_eq!(
        all_ports(&controller["ingress"]),
        port_set(&[(8081, "TCP")])
    );
    let mut expected = api_and_dns.to_vec();
    expected.extend([(8081, "TCP"), (25, "TCP"), (8080, "TCP")]);
    assert_eq!(all_ports(&controller["egress"]), port_set(&expected));
    let providers = rule_with(&controller["egress"], 8081, "TCP");
    assert_eq!(
        ports(providers),
        port_set(&[(53, "UDP"), (53, "TCP"), (443, "TCP"), (8081, "TCP")]),
        "the DNS providers' default ports"
    );
    assert_eq!(
        ports(rule_with(&controller["egress"], 25, "TCP")),
        port_set(&[(25, "TCP"), (443, "TCP")]),
        "the live checks' targets"
    );
    let to_serve = rule_with(&controller["egress"], 8080, "TCP");
    assert_eq!(ports(to_serve), port_set(&[(8080, "TCP")]));
    let serve_pods = &one(&docs, "NetworkPolicy", SERVE)["spec"]["podSelector"];
    assert_eq!(
        to_serve["to"],
        json!([{"podSelector": serve_pods}]),
        "the policy server's port only towards the policy server's pods"
    );

    // TLS in the policy server moves its port; the API server's CIDRs and the DNS and admin
    // peers are taken as given; checks off: no SMTP.
    let docs = documents(&render(
        &helm,
        &[
            "serve.tls.secretName=policy-tls",
            "networkPolicy.apiServer.cidrs={10.0.0.1/32,fd00::1/128}",
            "networkPolicy.apiServer.ports={6443}",
            "networkPolicy.dnsTo[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=kube-system",
            "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.team=monitoring",
            "controller.checks.enabled=false",
        ],
    ));
    let serve = &one(&docs, "NetworkPolicy", SERVE)["spec"];
    let controller = &one(&docs, "NetworkPolicy", CONTROLLER)["spec"];
    assert_eq!(
        all_ports(&serve["ingress"]),
        port_set(&[(8443, "TCP"), (8081, "TCP")])
    );
    assert_eq!(
        rule_with(&serve["ingress"], 8081, "TCP")["from"],
        json!([{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}])
    );
    for spec in [serve, controller] {
        let api = rule_with(&spec["egress"], 6443, "TCP");
        assert_eq!(ports(api), port_set(&[(6443, "TCP")]));
        assert_eq!(
            api["to"],
            json!([{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}])
        );
        assert_eq!(
            rule_with(&spec["egress"], 53, "UDP")["to"],
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}])
        );
    }
    let egress = all_ports(&controller["egress"]);
    assert!(!egress.contains(&(25, "TCP".to_owned())), "{egress:?}");
    assert!(egress.contains(&(8443, "TCP".to_owned())), "{egress:?}");
    assert!(!egress.contains(&(8080, "TCP".to_owned())), "{egress:?}");

    // Off: none.
    let docs = documents(&render(&helm, &["networkPolicy.enabled=false"]));
    assert!(docs.iter().all(|d| d["kind"] != "NetworkPolicy"));
    // No API server port would allow every port: refused.
    let home = scratch().join("helm-home");
    let run = run_bounded(
        Command::new(&helm)
            .args([
                "template",
                "mso",
                CHART,
                "--set",
                "networkPolicy.apiServer.ports=null",
            ])
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(support::repo_root()),
        Duration::from_secs(120),
    );
    assert!(
        !run.ok && run.stderr.contains("ports"),
        "networkPolicy.apiServer.ports=null was accepted:\n{}",
        run.stderr
    );
}

#[test]
fn the_image_is_pulled_always_by_tag_and_if_not_present_by_digest() {
    let Some(helm) = tool("helm") else { return };
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(support::repo_root().join(CHART).join("Chart.yaml"))
            .expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    let by_tag = format!(
        "mailsec-operator:{}",
        chart["appVersion"].as_str().expect("appVersion")
    );
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    for (sets, want_image, want_policy) in [
        (vec![], by_tag.clone(), "Always"),
        (
            vec![format!("image.digest={digest}")],
            format!("mailsec-operator@{digest}"),
            "IfNotPresent",
        ),
        (vec!["image.pullPolicy=Never".to_owned()], by_tag, "Never"),
    ] {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let docs = documents(&render(&helm, &sets));
        for name in [SERVE, CONTROLLER] {
            let container =
                &one(&docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["image"], want_image.as_str(), "{name} {sets:?}");
            assert_eq!(container["imagePullPolicy"], want_policy, "{name} {sets:?}");
        }
    }
}
