//! The Helm chart (charts/mailsec-operator), installed the way users install it, and the
//! examples in examples/providers/:
//!
//! - the chart's CRDs are exactly what `mailsec crd` prints;
//! - `helm lint` and `helm template` pass with default and with other values, and what they
//!   render is checked (security contexts, probes, the PodDisruptionBudget, the controller's flags
//!   naming the policy server's Service, RBAC, the values schema);
//! - `helm install` into the real local API server creates the objects, `helm upgrade` changes
//!   them, `helm uninstall` removes them and keeps the CRDs;
//! - the RBAC is enough and no more: `mailsec controller` and `mailsec serve`, run out of cluster
//!   with the command lines and environment of the chart's Deployments, as the chart's
//!   ServiceAccounts (the kubeconfig's `as:` impersonation, which kube honours), reconcile the
//!   examples to Ready against the local BIND and serve the policy; `kubectl auth can-i` shows
//!   what each account must not do.
//!
//! No kubelet runs here, so the Deployments never get pods (expected); the two processes run on
//! loopback instead and are stopped by PID at the end.

mod support;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::process::Run;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use mailsec_operator::api::MailDomain;
use serde_json::{Value, json};
use support::maildomain::{condition, ready, wait_for};
use support::{TestEnv, random_suffix};

const CHART: &str = "charts/mailsec-operator";
/// The placeholder of the TSIG secret in examples/providers/.
const TSIG_PLACEHOLDER: &str = "REPLACE-WITH-THE-BASE64-TSIG-SECRET";
/// Labels and the annotation the chart adds to the CRDs of `mailsec crd`.
const CRD_LABELS: [&str; 3] = [
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
];
const KEEP: &str = "helm.sh/resource-policy";

fn chart() -> PathBuf {
    support::repo_root().join(CHART)
}

/// Scratch space of these tests under target/: helm's home, logs, kubeconfigs.
fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-tests");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// [`support::process::run_bounded`] with this file's scratch directory.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    support::process::run_bounded(cmd, limit, &scratch())
}

/// Runs helm (from the tools directory) against the environment, with a home of its own.
fn helm(env: &TestEnv, args: &[&str]) -> Run {
    let bin = env.tool("helm");
    assert!(
        bin.is_file(),
        "helm is not at {} (scripts/tools.sh builds it)",
        bin.display()
    );
    let home = scratch().join("helm-home");
    run_bounded(
        Command::new(bin)
            .args(args)
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(support::repo_root()),
        Duration::from_secs(180),
    )
}

fn helm_ok(env: &TestEnv, args: &[&str]) -> String {
    let run = helm(env, args);
    assert!(
        run.ok,
        "helm {} failed ({}):\n{}",
        args.join(" "),
        run.status,
        run.stderr
    );
    run.stdout
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("valid YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart with `--set` values; the rendered objects.
fn render(env: &TestEnv, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "mso", CHART, "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    yaml_documents(&helm_ok(env, &args))
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name_of(d) == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = docs
                .iter()
                .map(|d| format!("{} {}", d["kind"], name_of(d)))
                .collect();
            panic!("no {kind} {name}; rendered: {have:?}")
        })
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// The value of `--name=value` in a command line.
fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
}

/// Replaces `--name=...` (which must be there) with `--name=value`.
fn set_flag(args: &mut [String], name: &str, value: &str) {
    let prefix = format!("{name}=");
    let arg = args
        .iter_mut()
        .find(|a| a.starts_with(&prefix))
        .unwrap_or_else(|| panic!("the chart passes no {name}"));
    *arg = format!("{prefix}{value}");
}

/// `v` with every number as a float: `mailsec crd` writes `maximum: 100.0`, helm and the API
/// server write `100`, and to Kubernetes both are the same number.
fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The CRDs of `mailsec crd`, parsed.
fn mailsec_crds() -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .arg("crd")
        .output()
        .expect("run mailsec crd");
    assert!(out.status.success(), "mailsec crd failed");
    yaml_documents(&String::from_utf8_lossy(&out.stdout))
}

/// A rendered CRD without what the chart adds to it; asserts the additions are there.
fn without_chart_metadata(crd: &Value, keep: bool) -> Value {
    let mut crd = crd.clone();
    let meta = crd["metadata"].as_object_mut().expect("metadata");
    let labels = meta
        .get_mut("labels")
        .and_then(Value::as_object_mut)
        .expect("labels");
    for label in CRD_LABELS {
        assert!(labels.remove(label).is_some(), "CRD label {label} missing");
    }
    if labels.is_empty() {
        meta.remove("labels");
    }
    if keep {
        let annotations = meta
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
            .expect("annotations");
        assert_eq!(annotations.remove(KEEP), Some(json!("keep")));
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    } else {
        assert!(meta.get("annotations").and_then(|a| a.get(KEEP)).is_none());
    }
    crd
}

#[test]
fn the_charts_crds_are_what_mailsec_crd_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .arg("crd")
        .output()
        .expect("run mailsec crd");
    assert!(out.status.success());
    let file = chart().join("files/crds.yaml");
    let have = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(
        have == out.stdout,
        "{CHART}/files/crds.yaml differs from `mailsec crd`; regenerate it:\n  \
         cargo run -q -- crd > {CHART}/files/crds.yaml"
    );
}

/// Every rule of the chart's RBAC templates is preceded by a comment that says why.
#[test]
fn every_rbac_rule_says_why() {
    let mut rules = 0;
    for template in [
        "controller-rbac.yaml",
        "serve-rbac.yaml",
        "receiver-rbac.yaml",
    ] {
        let path = chart().join("templates").join(template);
        let text = std::fs::read_to_string(&path).expect("read the template");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("- apiGroups:") {
                continue;
            }
            rules += 1;
            let previous = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("{{"))
                .expect("a line before the rule");
            assert!(
                previous.trim_start().starts_with('#'),
                "{template}:{}: the rule has no comment saying why",
                i + 1
            );
        }
    }
    assert!(rules >= 12, "only {rules} rules found");
}

#[test]
fn the_chart_lints_and_renders_with_default_and_other_values() {
    let Some(env) = support::env() else { return };
    let lint = helm_ok(env, &["lint", "--strict", CHART]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let lint = helm_ok(
        env,
        &[
            "lint",
            "--strict",
            CHART,
            "--set",
            "serve.tls.secretName=policy-tls,controller.watchNamespace=mail,serviceMonitor.enabled=true",
        ],
    );
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    // Default values.
    let ns = "mailsec-system";
    let docs = render(env, ns, &[]);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    let expected = mailsec_crds();
    assert_eq!(crds.len(), expected.len(), "one CRD per `mailsec crd` CRD");
    for want in &expected {
        let got = crds
            .iter()
            .find(|c| name_of(c) == name_of(want))
            .unwrap_or_else(|| panic!("CRD {} not rendered", name_of(want)));
        assert!(
            numbers_as_floats(&without_chart_metadata(got, true)) == numbers_as_floats(want),
            "CRD {} differs from `mailsec crd`",
            name_of(want)
        );
    }
    let controller = one(&docs, "Deployment", "mso-mailsec-operator-controller");
    let serve = one(&docs, "Deployment", "mso-mailsec-operator-serve");
    let service = one(&docs, "Service", "mso-mailsec-operator-serve");
    assert_eq!(controller["spec"]["replicas"], 1);
    assert_eq!(serve["spec"]["replicas"], 2);
    for deployment in [controller, serve] {
        let pod = &deployment["spec"]["template"]["spec"];
        let c = container(deployment);
        let what = name_of(deployment);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{what}"
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez", "{what}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin", "{what}");
        let admin = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "admin")
            .expect("an admin port");
        let admin_addr = flag(&args_of(deployment), "--admin-addr").expect("--admin-addr");
        assert_eq!(
            admin_addr,
            format!("0.0.0.0:{}", admin["containerPort"]),
            "{what}: the probes' port is the admin address"
        );
        assert!(c["resources"]["requests"]["memory"].is_string(), "{what}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{what}");
        assert_eq!(
            pod["serviceAccountName"],
            format!("{what}"),
            "{what}: its own ServiceAccount"
        );
        one(&docs, "ServiceAccount", what);
    }
    let args = args_of(controller);
    assert_eq!(args[0], "controller");
    assert_eq!(flag(&args, "--leader-election").as_deref(), Some("true"));
    assert_eq!(flag(&args, "--owner-id").as_deref(), Some("default"));
    assert_eq!(flag(&args, "--watch-namespace"), None);
    // Live checks are on by default, through the pod's own resolvers (no --check-resolver).
    assert_eq!(flag(&args, "--check-resolver"), None);
    assert_eq!(flag(&args, "--check-interval").as_deref(), Some("600"));
    assert_eq!(flag(&args, "--check-timeout").as_deref(), Some("10"));
    // The controller is told the policy server's Service exactly as the chart makes it.
    let svc_port = &service["spec"]["ports"][0];
    assert_eq!(svc_port["name"], "http");
    assert_eq!(svc_port["port"], 80);
    assert_eq!(
        flag(&args, "--policy-service-name").as_deref(),
        Some(name_of(service))
    );
    assert_eq!(
        flag(&args, "--policy-service-namespace").as_deref(),
        Some(ns)
    );
    assert_eq!(flag(&args, "--policy-service-port").as_deref(), Some("80"));
    assert_eq!(
        flag(&args, "--policy-server-url"),
        Some(format!(
            "http://{}.{ns}.svc.cluster.local:80",
            name_of(service)
        ))
    );
    let env_vars = container(controller)["env"].as_array().expect("env");
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let v = env_vars
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("no {var}"));
        assert_eq!(v["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    // The Service reaches the serve pods' plain-HTTP port.
    let serve_args = args_of(serve);
    assert_eq!(serve_args[0], "serve");
    assert_eq!(
        flag(&serve_args, "--listen").as_deref(),
        Some("0.0.0.0:8080")
    );
    assert_eq!(flag(&serve_args, "--tls-secret"), None);
    let http = container(serve)["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "http")
        .expect("an http port");
    assert_eq!(http["containerPort"], 8080);
    assert_eq!(svc_port["targetPort"], "http");
    let serve_labels = &serve["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&serve_labels[k], v, "the Service selects the serve pods");
    }
    let controller_labels = &controller["spec"]["template"]["metadata"]["labels"];
    assert_ne!(
        controller_labels["app.kubernetes.io/component"],
        serve_labels["app.kubernetes.io/component"],
        "the Service must not select controller pods"
    );
    let pdb = one(&docs, "PodDisruptionBudget", "mso-mailsec-operator-serve");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    for (k, v) in pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&serve_labels[k], v, "the PDB selects the serve pods");
    }
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    // RBAC: serve reads MailDomains and nothing else; no Secret without TLS.
    let serve_role = one(&docs, "ClusterRole", "mso-mailsec-operator-serve");
    assert_eq!(
        serve_role["rules"],
        json!([{"apiGroups": ["mailsec.io"], "resources": ["maildomains"], "verbs": ["list", "watch"]}])
    );
    assert_eq!(of_kind(&docs, "Role").len(), 1, "only the Lease Role");
    let lease_role = one(&docs, "Role", "mso-mailsec-operator-controller");
    assert_eq!(lease_role["metadata"]["namespace"], ns);
    assert!(
        lease_role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .all(|r| r["resources"] == json!(["leases"]))
    );
    let binding = one(
        &docs,
        "ClusterRoleBinding",
        "mso-mailsec-operator-controller",
    );
    assert_eq!(
        binding["roleRef"]["name"],
        "mso-mailsec-operator-controller"
    );
    assert_eq!(
        binding["subjects"][0]["name"],
        "mso-mailsec-operator-controller"
    );
    assert_eq!(binding["subjects"][0]["namespace"], ns);

    // Other values.
    let docs = render(
        env,
        ns,
        &[
            "controller.replicas=3",
            "serve.replicas=4",
            "crds.install=false",
            "serviceMonitor.enabled=true",
            "serve.tls.secretName=policy-tls",
            "controller.watchNamespace=mail",
            "controller.ownerId=prod",
            "controller.leaderElection.leaseName=mailsec-prod",
            "image.repository=registry.example/mailsec",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "serve.podDisruptionBudget.minAvailable=50%",
            "controller.checks.resolver=10.96.0.10:53",
            "controller.checks.interval=300",
            "controller.checks.caConfigMap.name=corp-ca",
        ],
    );
    assert!(
        of_kind(&docs, "CustomResourceDefinition").is_empty(),
        "crds.install=false renders no CRD"
    );
    let controller = one(&docs, "Deployment", "mso-mailsec-operator-controller");
    let serve = one(&docs, "Deployment", "mso-mailsec-operator-serve");
    assert_eq!(controller["spec"]["replicas"], 3);
    assert_eq!(serve["spec"]["replicas"], 4);
    assert_eq!(
        container(controller)["image"],
        "registry.example/mailsec@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    let args = args_of(controller);
    assert_eq!(flag(&args, "--owner-id").as_deref(), Some("prod"));
    assert_eq!(flag(&args, "--watch-namespace").as_deref(), Some("mail"));
    assert_eq!(flag(&args, "--lease-name").as_deref(), Some("mailsec-prod"));
    assert_eq!(
        flag(&args, "--check-resolver").as_deref(),
        Some("10.96.0.10:53")
    );
    assert_eq!(flag(&args, "--check-interval").as_deref(), Some("300"));
    // The flags the chart writes are ones the binary takes.
    <mailsec_operator::cli::Cli as clap::Parser>::try_parse_from(
        std::iter::once("mailsec".to_owned()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("the chart's controller arguments: {e}"));
    assert_eq!(flag(&args, "--check-concurrency").as_deref(), Some("8"));
    assert_eq!(
        flag(&args, "--check-ca-file").as_deref(),
        Some("/etc/mailsec/check-ca/ca.crt")
    );
    assert_eq!(
        container(controller)["volumeMounts"],
        json!([{"name": "check-ca", "mountPath": "/etc/mailsec/check-ca", "readOnly": true}])
    );
    assert_eq!(
        controller["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "check-ca", "configMap": {"name": "corp-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}])
    );
    assert_eq!(
        flag(&args, "--policy-server-url"),
        None,
        "an HTTPS-only policy server cannot be checked by the controller"
    );
    let serve_args = args_of(serve);
    assert_eq!(
        flag(&serve_args, "--tls-secret").as_deref(),
        Some("mailsec-system/policy-tls")
    );
    assert_eq!(
        flag(&serve_args, "--listen").as_deref(),
        Some("0.0.0.0:8443")
    );
    let service = one(&docs, "Service", "mso-mailsec-operator-serve");
    assert_eq!(service["spec"]["ports"][0]["name"], "https");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        one(&docs, "PodDisruptionBudget", "mso-mailsec-operator-serve")["spec"]["minAvailable"],
        "50%"
    );
    // serve may read its TLS Secret, by name, and no other.
    let tls_role = one(&docs, "Role", "mso-mailsec-operator-serve-tls");
    assert_eq!(
        tls_role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["policy-tls"], "verbs": ["get"]}])
    );
    // With a watch namespace the namespaced rules are bound there only.
    let watch = one(
        &docs,
        "RoleBinding",
        "mso-mailsec-operator-controller-watch",
    );
    assert_eq!(watch["metadata"]["namespace"], "mail");
    assert_eq!(watch["roleRef"]["kind"], "ClusterRole");
    assert!(
        of_kind(&docs, "ClusterRoleBinding")
            .iter()
            .all(|b| b["roleRef"]["name"] != "mso-mailsec-operator-controller"),
        "the namespaced rules are not bound cluster-wide"
    );
    let lease_role = one(&docs, "Role", "mso-mailsec-operator-controller");
    let rules = lease_role["rules"].as_array().expect("rules");
    assert!(rules.contains(&json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["mailsec-prod"], "verbs": ["get", "patch"]})));
    assert!(
        rules.contains(&json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})),
        "ClusterDNSProvider Secrets in the operator's namespace are readable"
    );
    let monitor = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    assert_eq!(monitor[0]["spec"]["endpoints"][0]["port"], "metrics");
    let metrics = one(&docs, "Service", "mso-mailsec-operator-controller-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "admin");

    // crds.keep=false: the CRDs are the chart's to delete.
    let docs = render(env, ns, &["crds.keep=false"]);
    for crd in of_kind(&docs, "CustomResourceDefinition") {
        without_chart_metadata(crd, false);
    }

    // checks.enabled=false: the controller is told to run no check.
    let docs = render(env, ns, &["controller.checks.enabled=false"]);
    let args = args_of(one(&docs, "Deployment", "mso-mailsec-operator-controller"));
    assert_eq!(flag(&args, "--check-interval").as_deref(), Some("0"));
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--check-") && a != "--check-interval=0"),
        "{args:?}"
    );

    // The values schema refuses what would not work.
    for (set, complaint) in [
        ("controller.checks.timeout=0", "timeout"),
        ("controller.ownerId=Not_An_Id", "ownerId"),
        ("serve.replicas=two", "replicas"),
        ("controler.replicas=2", "controler"),
        ("logFormat=xml", "logFormat"),
        (
            "controller.policyServerUrl=https://x.example",
            "policyServerUrl",
        ),
        ("controller.checks.resolver=dns.google", "resolver"),
        ("controller.checks.concurrency=0", "concurrency"),
        ("serve.limits.maxHeaderBytes=512", "maxHeaderBytes"),
        ("reports.receiver.limits.headerTimeout=10", "headerTimeout"),
        ("serve.limits.maxConnections=0", "maxConnections"),
    ] {
        let run = helm(env, &["template", "mso", CHART, "--set", set]);
        assert!(!run.ok, "--set {set} was accepted");
        assert!(
            run.stderr.contains(complaint),
            "--set {set}: the error does not name {complaint}:\n{}",
            run.stderr
        );
    }
    let run = helm(
        env,
        &[
            "template",
            "mso",
            CHART,
            "--set",
            "controller.replicas=2,controller.leaderElection.enabled=false",
        ],
    );
    assert!(
        !run.ok && run.stderr.contains("leaderElection"),
        "{}",
        run.stderr
    );
}

/// A release of the chart, uninstalled when dropped (also when the test fails), together with
/// the cluster-scoped objects the test made.
struct Release {
    env: &'static TestEnv,
    name: String,
    namespace: String,
    /// `kind/name` of cluster-scoped objects to delete at the end.
    cluster_objects: Vec<String>,
    uninstalled: bool,
}

impl Release {
    /// `helm install <name> <chart> -n <namespace> <extra>`; returns the release and helm's
    /// output (with the NOTES).
    fn install(
        env: &'static TestEnv,
        name: &str,
        namespace: &str,
        extra: &[&str],
    ) -> (Self, String) {
        let mut args = vec![
            "install",
            name,
            CHART,
            "--namespace",
            namespace,
            "--timeout",
            "120s",
        ];
        args.extend_from_slice(extra);
        let release = Release {
            env,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            cluster_objects: Vec::new(),
            uninstalled: false,
        };
        let out = helm_ok(env, &args);
        (release, out)
    }

    /// `helm uninstall`; returns helm's output.
    fn uninstall(&mut self) -> String {
        self.uninstalled = true;
        helm_ok(
            self.env,
            &[
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--timeout",
                "120s",
            ],
        )
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        for object in &self.cluster_objects {
            let _ = self
                .env
                .kubectl(["delete", object, "--ignore-not-found", "--wait=false"]);
        }
        if !self.uninstalled {
            let _ = helm(
                self.env,
                &[
                    "uninstall",
                    &self.name,
                    "--namespace",
                    &self.namespace,
                    "--timeout",
                    "120s",
                ],
            );
        }
    }
}

/// `kubectl auth can-i <args> --as <who>`.
/// serve.limits and reports.receiver.limits become the flags of `mailsec serve` and `mailsec
/// receive`, with each command's defaults, and the binary takes them.
#[test]
fn the_connection_limits_render_as_flags_both_commands_take() {
    let Some(env) = support::env() else { return };
    let receiver = [
        "reports.receiver.enabled=true",
        "reports.receiver.url=https://tlsrpt.example.test/v1/reports",
    ];
    let docs = render(env, "mailsec-system", &receiver);
    let serve = args_of(one(&docs, "Deployment", "mso-mailsec-operator-serve"));
    let receive = args_of(one(&docs, "Deployment", "mso-mailsec-operator-receiver"));
    let expect = |args: &[String], pairs: &[(&str, &str)]| {
        for (name, value) in pairs {
            assert_eq!(
                flag(args, name).as_deref(),
                Some(*value),
                "{name} in {args:?}"
            );
        }
        <mailsec_operator::cli::Cli as clap::Parser>::try_parse_from(
            std::iter::once("mailsec".to_owned()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("the chart's arguments {args:?}: {e}"));
    };
    let common = [
        ("--header-timeout", "10s"),
        ("--idle-timeout", "15s"),
        ("--max-requests-per-connection", "1000"),
        ("--max-connection-age", "300s"),
    ];
    expect(&serve, &common);
    expect(
        &serve,
        &[
            ("--max-connections", "4096"),
            ("--max-header-bytes", "16384"),
        ],
    );
    assert_eq!(flag(&serve, "--body-timeout"), None);
    expect(&receive, &common);
    expect(
        &receive,
        &[
            ("--max-connections", "1024"),
            ("--max-header-bytes", "65536"),
            ("--body-timeout", "30s"),
        ],
    );

    let mut sets = receiver.to_vec();
    sets.extend([
        "serve.limits.maxConnections=2000000",
        "serve.limits.headerTimeout=4s",
        "serve.limits.maxConnectionAge=1h30m",
        "reports.receiver.limits.maxHeaderBytes=1024",
        "reports.receiver.limits.bodyTimeout=2m",
        "reports.receiver.limits.idleTimeout=500ms",
    ]);
    let docs = render(env, "mailsec-system", &sets);
    let serve = args_of(one(&docs, "Deployment", "mso-mailsec-operator-serve"));
    let receive = args_of(one(&docs, "Deployment", "mso-mailsec-operator-receiver"));
    expect(
        &serve,
        &[
            ("--max-connections", "2000000"),
            ("--header-timeout", "4s"),
            ("--max-connection-age", "1h30m"),
        ],
    );
    expect(
        &receive,
        &[
            ("--max-header-bytes", "1024"),
            ("--body-timeout", "2m"),
            ("--idle-timeout", "500ms"),
        ],
    );
}

fn can_i(env: &TestEnv, who: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend(["--as", who]);
    let out = env.kubectl(&all);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl {}: unexpected answer {other:?}: {}",
            all.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn assert_can(env: &TestEnv, who: &str, checks: &[&[&str]], expected: bool) {
    let wrong: Vec<String> = checks
        .iter()
        .filter(|args| can_i(env, who, args) != expected)
        .map(|args| args.join(" "))
        .collect();
    assert!(
        wrong.is_empty(),
        "{who} {} {wrong:?}",
        if expected { "cannot" } else { "can" }
    );
}

/// The objects of a release, as `kind/name` (kubectl's -o name form).
fn release_objects(env: &TestEnv, ns: &str, release: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut names: Vec<String> = env
        .kubectl_ok([
            "get",
            "deployments,serviceaccounts,services,poddisruptionbudgets,roles,rolebindings",
            "-n",
            ns,
            "-l",
            &selector,
            "-o",
            "name",
        ])
        .lines()
        .chain(
            env.kubectl_ok([
                "get",
                "clusterroles,clusterrolebindings",
                "-l",
                &selector,
                "-o",
                "name",
            ])
            .lines(),
        )
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_creates_the_objects_and_uninstall_keeps_the_crds() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "helm-install").await;
    let release = format!("mso-{}", random_suffix());
    let full = format!("{release}-mailsec-operator");
    // Default values, CRDs included. The environment applied the same CRDs with kubectl
    // already (scripts/env-up.sh), as a user upgrading from `kubectl apply -f crds/` would
    // have: --take-ownership lets the release adopt them.
    let (mut installed, out) = Release::install(env, &release, ns.name(), &["--take-ownership"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("kubectl get maildomains"),
        "NOTES tell the next step:\n{out}"
    );
    let mut expected: Vec<String> = [
        format!("deployment.apps/{full}-controller"),
        format!("deployment.apps/{full}-serve"),
        format!("serviceaccount/{full}-controller"),
        format!("serviceaccount/{full}-serve"),
        format!("service/{full}-serve"),
        format!("poddisruptionbudget.policy/{full}-serve"),
        format!("role.rbac.authorization.k8s.io/{full}-controller"),
        format!("rolebinding.rbac.authorization.k8s.io/{full}-controller"),
        format!("clusterrole.rbac.authorization.k8s.io/{full}-controller"),
        format!("clusterrole.rbac.authorization.k8s.io/{full}-controller-cluster"),
        format!("clusterrole.rbac.authorization.k8s.io/{full}-serve"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{full}-controller"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{full}-controller-cluster"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{full}-serve"),
    ]
    .into();
    expected.sort();
    assert_eq!(release_objects(env, ns.name(), &release), expected);
    for crd in mailsec_crds() {
        let got: Value =
            serde_json::from_str(&env.kubectl_ok(["get", "crd", name_of(&crd), "-o", "json"]))
                .expect("json");
        let annotations = &got["metadata"]["annotations"];
        assert_eq!(annotations[KEEP], "keep", "{}", name_of(&crd));
        assert_eq!(annotations["meta.helm.sh/release-name"], release.as_str());
        // Less what the API server fills in by default.
        let mut spec = got["spec"].clone();
        let spec_map = spec.as_object_mut().expect("spec");
        if spec_map.get("conversion") == Some(&json!({"strategy": "None"})) {
            spec_map.remove("conversion");
        }
        let list_kind = format!("{}List", spec["names"]["kind"].as_str().unwrap_or_default());
        if spec["names"]["listKind"] == list_kind.as_str() {
            spec["names"]
                .as_object_mut()
                .expect("names")
                .remove("listKind");
        }
        assert!(
            numbers_as_floats(&spec) == numbers_as_floats(&crd["spec"]),
            "{}: the installed CRD is not `mailsec crd`",
            name_of(&crd)
        );
    }

    // What each account must not do (and, as a check of the check, some of what it must).
    let ctl = format!("system:serviceaccount:{}:{full}-controller", ns.name());
    let srv = format!("system:serviceaccount:{}:{full}-serve", ns.name());
    let n = ns.name();
    assert_can(
        env,
        &ctl,
        &[
            &["list", "maildomains.mailsec.io", "-A"],
            &["patch", "maildomains.mailsec.io", "-n", "elsewhere"],
            &[
                "patch",
                "maildomains.mailsec.io",
                "--subresource=status",
                "-n",
                "x",
            ],
            &["get", "secrets", "-n", "elsewhere"],
            &["watch", "secrets", "-A"],
            // Managed DKIM keys and the signing Secret (controller.managedDkimKeys).
            &["create", "secrets", "-n", "x"],
            &["patch", "secrets", "-n", "x"],
            &["delete", "secrets", "-n", "x"],
            &["create", "ingresses.networking.k8s.io", "-n", "x"],
            &["delete", "certificates.cert-manager.io", "-n", "x"],
            &["create", "events.events.k8s.io", "-n", "x"],
            &["get", "clusterdnsproviders.mailsec.io"],
            &["create", "leases.coordination.k8s.io", "-n", n],
            &[
                "patch",
                "leases.coordination.k8s.io/mailsec-operator",
                "-n",
                n,
            ],
        ],
        true,
    );
    assert_can(
        env,
        &ctl,
        &[
            &["create", "maildomains.mailsec.io", "-n", "x"],
            &["update", "maildomains.mailsec.io", "-n", "x"],
            &["delete", "maildomains.mailsec.io", "-n", "x"],
            &[
                "update",
                "maildomains.mailsec.io",
                "--subresource=status",
                "-n",
                "x",
            ],
            &["patch", "dnsproviders.mailsec.io", "-n", "x"],
            &["delete", "dnsproviders.mailsec.io", "-n", "x"],
            &["create", "clusterdnsproviders.mailsec.io"],
            &["patch", "clusterdnsproviders.mailsec.io"],
            &["update", "secrets", "-n", "x"],
            &["update", "ingresses.networking.k8s.io", "-n", "x"],
            &["get", "configmaps", "-n", n],
            &["create", "pods", "-n", n],
            &["create", "pods/exec", "-n", n],
            &["create", "deployments.apps", "-n", n],
            &["delete", "namespaces"],
            &["create", "namespaces"],
            &["get", "leases.coordination.k8s.io", "-n", "kube-system"],
            &["patch", "leases.coordination.k8s.io/another-lease", "-n", n],
            &[
                "delete",
                "leases.coordination.k8s.io/mailsec-operator",
                "-n",
                n,
            ],
            &["create", "rolebindings.rbac.authorization.k8s.io", "-n", n],
            &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
            &["escalate", "clusterroles.rbac.authorization.k8s.io"],
            &["impersonate", "serviceaccounts", "-n", n],
            &["create", "customresourcedefinitions.apiextensions.k8s.io"],
        ],
        false,
    );
    assert_can(
        env,
        &srv,
        &[
            &["list", "maildomains.mailsec.io", "-A"],
            &["watch", "maildomains.mailsec.io", "-A"],
        ],
        true,
    );
    assert_can(
        env,
        &srv,
        &[
            &["create", "maildomains.mailsec.io", "-n", "x"],
            &["patch", "maildomains.mailsec.io", "-n", "x"],
            &["update", "maildomains.mailsec.io", "-n", "x"],
            &["delete", "maildomains.mailsec.io", "-n", "x"],
            &[
                "patch",
                "maildomains.mailsec.io",
                "--subresource=status",
                "-n",
                "x",
            ],
            &["get", "secrets", "-n", n],
            &["list", "secrets", "-A"],
            &["get", "dnsproviders.mailsec.io", "-n", "x"],
            &["list", "clusterdnsproviders.mailsec.io"],
            &["create", "events.events.k8s.io", "-n", "x"],
            &["get", "leases.coordination.k8s.io", "-n", n],
            &["create", "ingresses.networking.k8s.io", "-n", "x"],
            &["create", "services", "-n", n],
            &["create", "pods", "-n", n],
            &["get", "configmaps", "-n", n],
        ],
        false,
    );

    // An upgrade to TLS in the policy server: serve may read that one Secret, no other.
    helm_ok(
        env,
        &[
            "upgrade",
            &release,
            CHART,
            "--namespace",
            n,
            "--reuse-values",
            "--set",
            "serve.tls.secretName=policy-tls",
            "--timeout",
            "120s",
        ],
    );
    assert_can(env, &srv, &[&["get", "secrets/policy-tls", "-n", n]], true);
    assert_can(
        env,
        &srv,
        &[
            &["get", "secrets/other", "-n", n],
            &["list", "secrets", "-n", n],
            &["watch", "secrets", "-n", n],
            &["get", "secrets/policy-tls", "-n", "elsewhere"],
            &["patch", "secrets/policy-tls", "-n", n],
        ],
        false,
    );

    // The report receiver: its own ServiceAccount reads MailDomains and creates TLSReports,
    // nothing else; the controller reads and prunes TLSReports.
    helm_ok(
        env,
        &[
            "upgrade",
            &release,
            CHART,
            "--namespace",
            n,
            "--reuse-values",
            "--set",
            "reports.receiver.enabled=true",
            "--set",
            "reports.receiver.url=https://tlsrpt.example.test/v1/reports",
            "--timeout",
            "120s",
        ],
    );
    let objects = release_objects(env, n, &release);
    for want in [
        format!("deployment.apps/{full}-receiver"),
        format!("service/{full}-receiver"),
        format!("serviceaccount/{full}-receiver"),
        format!("clusterrole.rbac.authorization.k8s.io/{full}-receiver"),
    ] {
        assert!(objects.contains(&want), "{want} missing: {objects:?}");
    }
    let host = env.kubectl_ok([
        "get",
        "ingress",
        &format!("{full}-receiver"),
        "-n",
        n,
        "-o",
        "jsonpath={.spec.rules[0].host}{.spec.rules[0].http.paths[0].path}",
    ]);
    assert_eq!(host, "tlsrpt.example.test/v1/reports");
    let rcv = format!("system:serviceaccount:{n}:{full}-receiver");
    assert_can(
        env,
        &rcv,
        &[
            &["list", "maildomains.mailsec.io", "-A"],
            &["watch", "maildomains.mailsec.io", "-A"],
            &["create", "tlsreports.mailsec.io", "-n", "x"],
        ],
        true,
    );
    assert_can(
        env,
        &rcv,
        &[
            &["patch", "maildomains.mailsec.io", "-n", "x"],
            &[
                "patch",
                "maildomains.mailsec.io",
                "--subresource=status",
                "-n",
                "x",
            ],
            &["update", "tlsreports.mailsec.io", "-n", "x"],
            &["patch", "tlsreports.mailsec.io", "-n", "x"],
            &["delete", "tlsreports.mailsec.io", "-n", "x"],
            &["get", "secrets", "-n", n],
            &["list", "dnsproviders.mailsec.io", "-A"],
            &["create", "events.events.k8s.io", "-n", "x"],
        ],
        false,
    );
    assert_can(
        env,
        &ctl,
        &[
            &["list", "tlsreports.mailsec.io", "-A"],
            &["delete", "tlsreports.mailsec.io", "-n", "x"],
        ],
        true,
    );
    assert_can(
        env,
        &ctl,
        &[&["create", "tlsreports.mailsec.io", "-n", "x"]],
        false,
    );

    let out = installed.uninstall();
    assert!(out.contains("kept due to the resource policy"), "{out}");
    assert_eq!(release_objects(env, n, &release), Vec::<String>::new());
    for crd in mailsec_crds() {
        env.kubectl_ok(["get", "crd", name_of(&crd)]);
    }
    ns.delete(&client).await;
}

fn free_addr() -> SocketAddr {
    support::free_addr()
}

/// A kubeconfig that acts as `user` (the `as:` field of every user entry), written 0600 next to
/// the test's logs and removed when dropped.
struct Impersonating {
    path: PathBuf,
}

impl Impersonating {
    fn new(env: &TestEnv, user: &str) -> Self {
        let mut kc = Kubeconfig::read_from(&env.kubeconfig).expect("read the kubeconfig");
        for named in &mut kc.auth_infos {
            if let Some(info) = named.auth_info.as_mut() {
                info.impersonate = Some(user.to_owned());
            }
        }
        let path = scratch().join(format!("{}.kubeconfig", random_suffix()));
        let text = serde_json::to_string(&kc).expect("kubeconfig as JSON");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("write the kubeconfig");
            file.write_all(text.as_bytes()).expect("write");
        }
        Impersonating { path }
    }
}

impl Drop for Impersonating {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A `mailsec` process of this test, killed by its PID when dropped; its log is shown if the
/// test fails.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Runs `mailsec <args>` with exactly `vars` as its environment.
    fn start(args: &[String], vars: &[(String, String)], log: PathBuf) -> Self {
        let file = File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mailsec"))
            .args(args)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start mailsec");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("mailsec exited ({status}):\n{}", self.log());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- last lines of {} ----\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The release's controller and policy server Deployments, as the API server has them.
fn deployments(env: &TestEnv, ns: &str, full: &str) -> (Value, Value) {
    let get = |name: String| -> Value {
        serde_json::from_str(&env.kubectl_ok(["get", "deployment", &name, "-n", ns, "-o", "json"]))
            .expect("json")
    };
    (
        get(format!("{full}-controller")),
        get(format!("{full}-serve")),
    )
}

/// `mailsec serve` and `mailsec controller` run as the chart's Deployments would run them: the
/// containers' command lines and environments, as their ServiceAccounts; only the addresses
/// move to loopback, and the controller's policy server URL (the Service in a cluster) is the
/// loopback server.
struct Operator {
    serve: Process,
    controller: Process,
    listen: SocketAddr,
    http: reqwest::Client,
    /// The controller's pod name (its Lease identity).
    pod: String,
    /// The ServiceAccounts' kubeconfigs, kept while the processes run.
    _kubeconfigs: [Impersonating; 2],
}

impl Operator {
    async fn start(
        env: &TestEnv,
        op: &str,
        mail: &str,
        full: &str,
        suffix: &str,
        controller_deployment: &Value,
        serve_deployment: &Value,
    ) -> Operator {
        // The policy server, as the serve ServiceAccount, with the Deployment's command line; only
        // the addresses move to loopback.
        let serve_kc =
            Impersonating::new(env, &format!("system:serviceaccount:{}:{full}-serve", op));
        let (mut serve_args, mut serve_env) =
            pod_command(serve_deployment, &format!("{full}-serve-0"), op);
        let (listen, serve_admin) = (free_addr(), free_addr());
        set_flag(&mut serve_args, "--listen", &listen.to_string());
        set_flag(&mut serve_args, "--admin-addr", &serve_admin.to_string());
        serve_env.retain(|(k, _)| k != "MAILSEC_LOG");
        serve_env.push(("MAILSEC_LOG".into(), "info,mailsec_operator=debug".into()));
        serve_env.push(("KUBECONFIG".into(), serve_kc.path.display().to_string()));
        let mut serve = Process::start(
            &serve_args,
            &serve_env,
            scratch().join(format!("serve-{suffix}.log")),
        );
        let http = support::http_client();
        // Ready means its MailDomain watch has synced: it may list and watch them.
        wait_http_ok(&http, &format!("http://{serve_admin}/readyz"), &mut serve).await;

        // The controller, as the controller ServiceAccount, likewise. The policy server URL points
        // at the Service in the cluster; here it is the loopback server above.
        let controller_kc = Impersonating::new(
            env,
            &format!("system:serviceaccount:{}:{full}-controller", op),
        );
        let pod = format!("{full}-controller-0");
        let (mut args, mut vars) = pod_command(controller_deployment, &pod, op);
        assert_eq!(
            flag(&args, "--policy-server-url"),
            Some(format!("http://{full}-serve.{}.svc.cluster.local:80", op))
        );
        assert_eq!(flag(&args, "--watch-namespace").as_deref(), Some(mail));
        assert_eq!(flag(&args, "--leader-election").as_deref(), Some("true"));
        let admin = free_addr();
        set_flag(&mut args, "--admin-addr", &admin.to_string());
        set_flag(
            &mut args,
            "--policy-server-url",
            &format!("http://{listen}"),
        );
        vars.retain(|(k, _)| k != "MAILSEC_LOG");
        vars.push(("MAILSEC_LOG".into(), "info,mailsec_operator=debug".into()));
        vars.push((
            "KUBECONFIG".into(),
            controller_kc.path.display().to_string(),
        ));
        let mut controller = Process::start(
            &args,
            &vars,
            scratch().join(format!("controller-{suffix}.log")),
        );
        wait_http_ok(&http, &format!("http://{admin}/readyz"), &mut controller).await;
        Operator {
            serve,
            controller,
            listen,
            http,
            pod,
            _kubeconfigs: [serve_kc, controller_kc],
        }
    }
}

/// The command line and environment of a Deployment's container, as the kubelet would run it:
/// the downward API filled in for a pod named `pod` in `ns`.
fn pod_command(deployment: &Value, pod: &str, ns: &str) -> (Vec<String>, Vec<(String, String)>) {
    let args = args_of(deployment);
    let mut vars = Vec::new();
    for e in container(deployment)["env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = e["name"].as_str().expect("env name").to_owned();
        let value = match (
            &e["value"],
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Value::String(v), _) => v.clone(),
            (_, Some("metadata.name")) => pod.to_owned(),
            (_, Some("metadata.namespace")) => ns.to_owned(),
            other => panic!("env {name}: cannot fill in {other:?}"),
        };
        vars.push((name, value));
    }
    (args, vars)
}

async fn wait_http_ok(http: &reqwest::Client, url: &str, process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        process.assert_running();
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An example of examples/providers/, made to work here: `example_domain` becomes `domain`
/// (a fresh name under the test zone), providers point at the local BIND with its TSIG key,
/// namespaced objects go to `ns` (the operator's namespace objects to `operator_ns`), and the
/// ClusterDNSProvider gets a unique name allowed for `ns` only.
fn example(
    env: &TestEnv,
    file: &str,
    example_domain: &str,
    domain: &str,
    ns: &str,
    operator_ns: &str,
    cluster_provider: &str,
) -> Vec<Value> {
    let path = support::repo_root().join("examples/providers").join(file);
    let text = std::fs::read_to_string(&path).expect("read the example");
    let text = text.replace(example_domain, domain);
    let dns = &env.dns;
    let mut docs = yaml_documents(&text);
    for doc in &mut docs {
        let kind = doc["kind"].as_str().expect("kind").to_owned();
        if let Some(meta_ns) = doc["metadata"]["namespace"].as_str() {
            let target = if meta_ns == "mailsec-system" {
                operator_ns
            } else {
                ns
            };
            doc["metadata"]["namespace"] = json!(target);
        }
        match kind.as_str() {
            "Secret" => {
                if doc["stringData"]["secret"] == TSIG_PLACEHOLDER {
                    doc["stringData"]["secret"] = json!(dns.tsig_secret);
                }
            }
            "DNSProvider" | "ClusterDNSProvider" => {
                let spec = &mut doc["spec"];
                spec["zones"] = json!([dns.zone]);
                spec["rfc2136"]["server"] = json!(dns.server.to_string());
                spec["rfc2136"]["tsigKeyName"] = json!(dns.tsig_key_name);
                spec["rfc2136"]["tsigAlgorithm"] = json!(dns.tsig_algorithm);
                if kind == "ClusterDNSProvider" {
                    doc["metadata"]["name"] = json!(cluster_provider);
                    doc["spec"]["allowedNamespaces"] = json!([ns]);
                }
            }
            "MailDomain" => {
                if doc["spec"]["dnsProviderRef"]["kind"] == "ClusterDNSProvider" {
                    doc["spec"]["dnsProviderRef"]["name"] = json!(cluster_provider);
                }
            }
            other => panic!("{file}: unexpected kind {other}"),
        }
    }
    docs
}

/// `kubectl apply --server-side` of objects, as the admin.
fn apply(env: &TestEnv, docs: &[Value]) {
    let path = scratch().join(format!("{}.yaml", random_suffix()));
    let text: Vec<String> = docs.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n---\n")).expect("write the objects");
    let out = env.kubectl([
        "apply",
        "--server-side",
        "--field-manager=helm-test",
        "-f",
        path.to_str().expect("utf-8 path"),
    ]);
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charts_rbac_is_enough_for_controller_and_serve() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    // The operator's namespace (the release) and the namespace of the MailDomains: the controller
    // watches that one only, so it leaves other tests' MailDomains alone, and the
    // ClusterDNSProvider's Secret is outside its watch, as in a real multi-tenant install.
    let op = env.namespace(&client, "helm-op").await;
    let mail = env.namespace(&client, "helm-mail").await;
    let suffix = random_suffix();
    let release = format!("mso-{suffix}");
    let full = format!("{release}-mailsec-operator");
    let watch = format!("controller.watchNamespace={}", mail.name());
    // Checks off: out of a cluster the controller's own resolvers are this machine's, which
    // do not serve the test zone (a_default_install_runs_the_live_checks shows them on).
    let (mut installed, _) = Release::install(
        env,
        &release,
        op.name(),
        &[
            "--set",
            "crds.install=false",
            "--set",
            &watch,
            "--set",
            "controller.checks.enabled=false",
        ],
    );
    let cluster_provider = format!("helm-{suffix}");
    installed
        .cluster_objects
        .push(format!("clusterdnsproviders.mailsec.io/{cluster_provider}"));
    // Bound to the watched namespace: nothing of the kind elsewhere; in the operator's
    // namespace only its Lease and reading (not listing) Secrets.
    let ctl = format!("system:serviceaccount:{}:{full}-controller", op.name());
    let (m, o) = (mail.name(), op.name());
    assert_can(
        env,
        &ctl,
        &[
            &["list", "maildomains.mailsec.io", "-n", m],
            &["patch", "maildomains.mailsec.io", "-n", m],
            &["watch", "secrets", "-n", m],
            &["get", "secrets", "-n", o],
            &["create", "ingresses.networking.k8s.io", "-n", m],
            &["create", "events.events.k8s.io", "-n", m],
        ],
        true,
    );
    assert_can(
        env,
        &ctl,
        &[
            &["list", "maildomains.mailsec.io", "-A"],
            &["patch", "maildomains.mailsec.io", "-n", "default"],
            &["list", "secrets", "-A"],
            &["get", "secrets", "-n", "default"],
            &["list", "secrets", "-n", o],
            &["create", "ingresses.networking.k8s.io", "-n", o],
            &["create", "events.events.k8s.io", "-n", "default"],
        ],
        false,
    );
    let (controller_deployment, serve_deployment) = deployments(env, op.name(), &full);
    assert_eq!(
        controller_deployment["spec"]["template"]["spec"]["serviceAccountName"],
        format!("{full}-controller")
    );
    assert_eq!(
        serve_deployment["spec"]["template"]["spec"]["serviceAccountName"],
        format!("{full}-serve")
    );

    let Operator {
        mut serve,
        mut controller,
        listen,
        http,
        pod,
        _kubeconfigs,
    } = Operator::start(
        env,
        op.name(),
        mail.name(),
        &full,
        &suffix,
        &controller_deployment,
        &serve_deployment,
    )
    .await;

    // The examples: a DNSProvider with its TSIG Secret and a DKIM Secret; a ClusterDNSProvider
    // whose Secret is in the operator's namespace; a policy host with an Ingress and a
    // cert-manager Certificate.
    let base = format!("h{suffix}.{}", env.dns.zone);
    let examples = [
        ("rfc2136.yaml", "example.com", "example-com"),
        ("cluster-dns-provider.yaml", "example.org", "example-org"),
        (
            "policy-host-ingress.yaml",
            "example.com",
            "shop-example-com",
        ),
    ];
    for (i, (file, example_domain, _)) in examples.iter().enumerate() {
        let domain = format!("e{i}.{base}");
        apply(
            env,
            &example(
                env,
                file,
                example_domain,
                &domain,
                mail.name(),
                op.name(),
                &cluster_provider,
            ),
        );
    }
    let api: Api<MailDomain> = Api::namespaced(client.clone(), mail.name());
    for (_, _, name) in &examples[..2] {
        let md = wait_for(&api, name, "Ready", ready).await;
        let status = md.status.clone().expect("status");
        let id = status.policy_id.clone().expect("a policy id");
        assert_eq!(
            env.dns.txt(&format!("_mta-sts.{}", md.spec.domain)),
            [format!("v=STSv1; id={id}")],
            "{name}: the id is in DNS"
        );
        // The policy server (as its ServiceAccount) serves what the controller published.
        let response = http
            .get(format!("http://{listen}/.well-known/mta-sts.txt"))
            .header("Host", format!("mta-sts.{}", md.spec.domain))
            .send()
            .await
            .expect("GET the policy");
        assert_eq!(response.status().as_u16(), 200, "{name}");
        assert_eq!(
            Some(response.text().await.expect("body")),
            status.served_policy,
            "{name}"
        );
    }
    let dkim = env.dns.txt(&format!("s2026._domainkey.e0.{base}"));
    assert!(
        dkim.len() == 1 && dkim[0].starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"),
        "the DKIM key from its Secret is published: {dkim:?}"
    );

    // The policy host: Ingress, ExternalName Service (the MailDomain is not in the policy
    // server's namespace) and Certificate created; cert-manager (simulated) issues it.
    wait_for(
        &api,
        "shop-example-com",
        "records published, certificate pending",
        |m| {
            condition(m, "DNSPublished").is_some_and(|c| c.0 == "True")
                && condition(m, "CertificateReady").is_some_and(|c| c.0 == "Unknown")
        },
    )
    .await;
    let object = "mta-sts-shop-example-com";
    let service: Value = serde_json::from_str(&env.kubectl_ok([
        "get",
        "service",
        object,
        "-n",
        mail.name(),
        "-o",
        "json",
    ]))
    .expect("json");
    assert_eq!(
        service["spec"]["externalName"],
        format!("{full}-serve.{}.svc.cluster.local", op.name()),
        "the Ingress reaches the chart's policy server Service"
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    env.kubectl_ok(["get", "ingress", object, "-n", mail.name()]);
    let certificates: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        mail.name(),
        &mailsec_operator::controller::hosting::certificate_resource(),
    );
    let certificate = certificates.get(object).await.expect("the Certificate");
    let status = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired",
         "observedGeneration": certificate.metadata.generation.unwrap_or(1), "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    certificates
        .patch_status(
            object,
            &PatchParams::apply("cert-manager"),
            &Patch::Apply(&status),
        )
        .await
        .expect("certificate status");
    wait_for(
        &api,
        "shop-example-com",
        "Ready with its certificate",
        ready,
    )
    .await;
    // No more policy host: the controller deletes what it created.
    let patch = json!({"spec": {"mtaSts": {"policyHost": null}}});
    api.patch(
        "shop-example-com",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .expect("remove policyHost");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = ["ingress", "service", "certificates.cert-manager.io"]
            .iter()
            .filter(|kind| {
                env.kubectl(["get", kind, object, "-n", mail.name()])
                    .status
                    .success()
            })
            .map(|k| k.to_string())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller did not delete {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Leader election ran in the operator's namespace, under the pod's name.
    let lease = Api::<Lease>::namespaced(client.clone(), op.name())
        .get("mailsec-operator")
        .await
        .expect("the Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(pod.as_str())
    );
    // Events were recorded on the MailDomains.
    let events = Api::<Event>::namespaced(client.clone(), mail.name())
        .list(&ListParams::default())
        .await
        .expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DNSUpdated")
                && e.reporting_controller.as_deref() == Some("mailsec-operator")),
        "no DNSUpdated event"
    );

    // Deleting works too (the finalizer is the controller's to remove), and removes the records.
    for (_, _, name) in &examples {
        support::delete_skipping_withdrawal(&api, name, false).await;
    }
    assert!(env.dns.txt(&format!("_dmarc.e0.{base}")).is_empty());
    controller.assert_running();
    serve.assert_running();
    for process in [&controller, &serve] {
        let log = process.log().to_ascii_lowercase();
        assert!(
            !log.contains("forbidden"),
            "a call was refused; see {}",
            process.log.display()
        );
    }
    drop(controller);
    drop(serve);
    installed.uninstall();
    drop(installed);
    mail.delete(&client).await;
    op.delete(&client).await;
}

/// A default install runs the live checks with no check setting at all: the controller asks the
/// resolvers of its own /etc/resolv.conf (in a pod, the cluster DNS) and the *Verified
/// conditions appear. Out of a cluster that file is this machine's, which does not serve the
/// test zone: the conditions say what those resolvers answered (False or Unknown), and Ready
/// stays False only for a failed check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_default_install_runs_the_live_checks() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let op = env.namespace(&client, "helm-dop").await;
    let mail = env.namespace(&client, "helm-dmail").await;
    let suffix = random_suffix();
    let release = format!("mso-{suffix}");
    let full = format!("{release}-mailsec-operator");
    let watch = format!("controller.watchNamespace={}", mail.name());
    let (mut installed, _) = Release::install(
        env,
        &release,
        op.name(),
        &["--set", "crds.install=false", "--set", &watch],
    );
    let cluster_provider = format!("helm-{suffix}");
    let (controller_deployment, serve_deployment) = deployments(env, op.name(), &full);
    assert!(
        !args_of(&controller_deployment)
            .iter()
            .any(|a| a.starts_with("--check-resolver")),
        "no check setting in a default install"
    );
    let operator = Operator::start(
        env,
        op.name(),
        mail.name(),
        &full,
        &suffix,
        &controller_deployment,
        &serve_deployment,
    )
    .await;
    let domain = format!("d{suffix}.{}", env.dns.zone);
    apply(
        env,
        &example(
            env,
            "rfc2136.yaml",
            "example.com",
            &domain,
            mail.name(),
            op.name(),
            &cluster_provider,
        ),
    );
    let api: Api<MailDomain> = Api::namespaced(client.clone(), mail.name());
    // SMTPTLSVerified is there only when MX hosts are found: not with these resolvers.
    let verified = [
        "MTASTSVerified",
        "TLSRPTVerified",
        "MXCovered",
        "SPFVerified",
        "DMARCVerified",
        "DKIMVerified",
    ];
    let md = wait_for(&api, "example-com", "the *Verified conditions", |m| {
        verified.iter().all(|t| condition(m, t).is_some())
    })
    .await;
    let resolvers = mailsec_operator::checks::dns::system_resolvers().expect("resolv.conf");
    for t in verified {
        let (status, reason, message) = condition(&md, t).expect("present");
        assert!(
            ["True", "False", "Unknown"].contains(&status) && !reason.is_empty(),
            "{t}: {status} {reason}: {message}"
        );
    }
    let log = operator.controller.log();
    assert!(
        log.contains("live checks on")
            && log.contains(&mailsec_operator::checks::dns::describe(&resolvers)),
        "the controller names the resolvers of /etc/resolv.conf: {}",
        operator.controller.log.display()
    );
    support::delete_skipping_withdrawal(&api, "example-com", false).await;
    drop(operator);
    installed.uninstall();
    drop(installed);
    mail.delete(&client).await;
    op.delete(&client).await;
}

/// Every example of examples/providers/ renders (`mailsec render`) and the API server admits
/// it (server-side dry run, in the namespaces the examples name, created here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_examples_render_and_are_admitted() {
    let dir = support::repo_root().join("examples/providers");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/providers")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for want in [
        "rfc2136.yaml",
        "cluster-dns-provider.yaml",
        "manual.yaml",
        "policy-host-ingress.yaml",
        "policy-host-external.yaml",
        "policy-host-gateway.yaml",
        "powerdns.yaml",
        "cloudflare.yaml",
        "route53.yaml",
        "hetzner.yaml",
        "digitalocean.yaml",
        "azure.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "examples/providers/{want} is missing"
        );
    }
    for file in &files {
        let out = Command::new(env!("CARGO_BIN_EXE_mailsec"))
            .args(["render", "-f"])
            .arg(file)
            .output()
            .expect("run mailsec render");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The DNSProvider and its Secret are the same wherever an example repeats them.
    let providers: Vec<Vec<Value>> = files
        .iter()
        .map(|f| {
            yaml_documents(&std::fs::read_to_string(f).expect("read"))
                .into_iter()
                .filter(|d| {
                    (d["kind"] == "DNSProvider" && name_of(d) == "bind")
                        || (d["kind"] == "Secret" && name_of(d) == "tsig")
                })
                .collect()
        })
        .filter(|docs: &Vec<Value>| !docs.is_empty())
        .collect();
    assert!(providers.len() >= 3);
    assert!(
        providers.windows(2).all(|w| w[0] == w[1]),
        "the DNSProvider `bind` differs between examples"
    );

    let Some(env) = support::env() else { return };
    let client = env.client().await;
    // The examples name the namespaces `mail` and `mailsec-system`: rewritten to fresh ones.
    let mail = env.namespace(&client, "examples-mail").await;
    let system = env.namespace(&client, "examples-system").await;
    for file in &files {
        let mut docs = yaml_documents(&std::fs::read_to_string(file).expect("read"));
        for doc in &mut docs {
            match doc["metadata"]["namespace"].as_str() {
                Some("mail") => doc["metadata"]["namespace"] = json!(mail.name()),
                Some("mailsec-system") => doc["metadata"]["namespace"] = json!(system.name()),
                Some(other) => panic!("{}: unexpected namespace {other}", file.display()),
                None => {}
            }
        }
        let path = scratch().join(format!("{}.yaml", random_suffix()));
        let text: Vec<String> = docs.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n---\n")).expect("write");
        let out = env.kubectl([
            "apply",
            "--dry-run=server",
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{} is refused: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    mail.delete(&client).await;
    system.delete(&client).await;
}
