//! The examples/ directory, through the real `mailsec` binary: valid examples render, every
//! invalid example is refused with a message naming its field, and the CEL rules that the API
//! server will run agree (evaluated here by kube's client-side CEL engine).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailsec_operator::api::MailDomain;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mailsec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailsec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run mailsec")
}

/// A `# key: value` header line of an invalid example.
fn header(text: &str, key: &str) -> String {
    let prefix = format!("# {key}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("missing `{prefix}` header"))
        .trim()
        .to_owned()
}

fn invalid_examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/invalid"))
        .expect("examples/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "expected the full set of invalid examples, found {}",
        files.len()
    );
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .expect("inside the repo")
        .display()
        .to_string()
}

#[test]
fn every_invalid_example_is_refused_naming_its_field() {
    for path in invalid_examples() {
        let text = std::fs::read_to_string(&path).expect("read");
        let field = header(&text, "expect");
        let file = relative(&path);
        let out = mailsec(&["render", "-f", &file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} was accepted");
        assert!(out.stdout.is_empty(), "{file}: something was rendered");
        let named = [":", "[", "."]
            .iter()
            .any(|next| stderr.contains(&format!("): {field}{next}")));
        assert!(
            named,
            "{file}: the error does not name `{field}`:\n{stderr}"
        );
    }
}

#[test]
fn cel_rules_refuse_what_the_examples_say_admission_refuses() {
    for path in invalid_examples() {
        let text = std::fs::read_to_string(&path).expect("read");
        if header(&text, "admission") != "cel" {
            continue;
        }
        let md: MailDomain = serde_saphyr::from_str(&text).expect("a cel example is well-typed");
        let field = header(&text, "expect");
        let errors = format!("{:?}", kube::core::cel::validate_cel(&md));
        assert!(
            errors.contains(&format!("field_path: \"{field}")),
            "{}: the CRD's CEL rules do not refuse `{field}`: {errors}",
            relative(&path)
        );
    }
}

fn mail_domains(file: &str) -> Vec<MailDomain> {
    let text = std::fs::read_to_string(root().join(file)).expect("read");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    docs.into_iter()
        .filter(|d| d["kind"] == "MailDomain")
        .map(|d| serde_json::from_value(d).expect("MailDomain"))
        .collect()
}

#[test]
fn valid_examples_render_and_pass_the_cel_rules() {
    for file in ["examples/basic.yaml", "examples/full.yaml"] {
        let out = mailsec(&["render", "-f", file]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for md in mail_domains(file) {
            if let Err(e) = kube::core::cel::validate_cel(&md) {
                panic!("{file}: CEL refuses a valid MailDomain: {e:?}");
            }
        }
    }
}

#[test]
fn full_example_shows_a_long_dkim_key_joined_in_json_and_split_in_zone_lines() {
    let out = mailsec(&["render", "-f", "examples/full.yaml", "--output", "json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let domain = &json[0];
    assert_eq!(domain["domain"], "example.org");
    let dkim = domain["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["name"] == "s2026._domainkey.example.org")
        .expect("the s2026 DKIM record");
    assert_eq!(dkim["type"], "TXT");
    assert_eq!(dkim["ttl"], 3600);
    let value = dkim["value"].as_str().expect("value");
    assert!(
        value.len() > 255,
        "a 2048-bit key value is longer than one character-string"
    );
    assert!(value.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN") && !value.contains('"'));
    let policy = domain["policy"].as_str().expect("policy");
    assert!(policy.starts_with("version: STSv1\r\nmode: enforce\r\n"));

    let text = mailsec(&["render", "-f", "examples/full.yaml"]);
    let text = String::from_utf8(text.stdout).expect("utf-8");
    let line = text
        .lines()
        .find(|l| l.starts_with("s2026._domainkey.example.org. 3600 IN TXT "))
        .expect("zone line");
    let strings = mailsec_operator::domain::txt::parse_presentation(
        line.splitn(5, ' ').nth(4).expect("rdata"),
    )
    .expect("presentation");
    assert_eq!(strings.len(), 2);
    assert_eq!(strings[0].len(), 255);
    assert_eq!(mailsec_operator::domain::txt::join(&strings), value);
}

#[test]
fn basic_example_json_has_the_documented_shape() {
    let out = mailsec(&["render", "-f", "examples/basic.yaml", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = json[0]["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["_mta-sts.example.com", "_smtp._tls.example.com"]);
    let keys: Vec<&String> = json[0].as_object().expect("object").keys().collect();
    assert_eq!(keys, ["domain", "policy", "records"]);
}

#[test]
fn mta_sts_off_gives_a_null_policy() {
    let input = "apiVersion: mailsec.io/v1alpha1\nkind: MailDomain\nmetadata: {name: d}\nspec:\n  domain: example.net\n  dmarc: {policy: none}\n";
    let dir = std::env::temp_dir().join(format!("mailsec-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("dmarc-only.yaml");
    std::fs::write(&file, input).expect("write");
    let out = mailsec(&[
        "render",
        "-f",
        file.to_str().expect("utf-8 path"),
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(json[0]["policy"].is_null());
    assert_eq!(json[0]["records"][0]["value"], "v=DMARC1; p=none");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn committed_crds_match_the_code() {
    let out = mailsec(&["crd"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(root().join("crds/mailsec.io.yaml")).expect("crds/mailsec.io.yaml");
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "crds/ is stale: run `cargo run -- crd > crds/mailsec.io.yaml`"
    );
}

#[test]
fn the_tls_reports_example_publishes_the_receivers_url_and_passes_the_cel_rules() {
    let file = "examples/tls-reports.yaml";
    let url = "https://tlsrpt.example.com/v1/reports";
    let out = mailsec(&["render", "-f", file, "--report-url", url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("_smtp._tls.example.com."))
        .unwrap_or_else(|| panic!("no TLS-RPT record:\n{text}"));
    assert!(
        line.contains(&format!("rua=mailto:tlsrpt@example.com,{url}")),
        "{line}"
    );
    for md in mail_domains(file) {
        if let Err(e) = kube::core::cel::validate_cel(&md) {
            panic!("{file}: CEL refuses a valid MailDomain: {e:?}");
        }
    }
    // Without a receiver, receive is refused, naming the field.
    let out = mailsec(&["render", "-f", file]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.tlsRpt.receive"));
}

/// The DNSProviders of examples/providers/ pass the CRD's CEL rules (evaluated here by kube's
/// client-side CEL engine), and a settings block that does not match the type is refused: for
/// the hetzner and digitalocean examples, each with the other's block.
#[test]
fn provider_examples_pass_the_cel_rules_and_a_mismatched_block_is_refused() {
    use mailsec_operator::api::DNSProvider;
    let provider = |file: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(root().join(file)).expect("read");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
        docs.into_iter()
            .find(|d| d["kind"] == "DNSProvider")
            .expect("a DNSProvider")
    };
    for file in [
        "examples/providers/hetzner.yaml",
        "examples/providers/digitalocean.yaml",
        "examples/providers/azure.yaml",
        "examples/providers/google.yaml",
        "examples/providers/external-dns.yaml",
        "examples/providers/cloudflare.yaml",
        "examples/providers/powerdns.yaml",
    ] {
        let out = mailsec(&["render", "-f", file]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p: DNSProvider = serde_json::from_value(provider(file)).expect("DNSProvider");
        if let Err(e) = kube::core::cel::validate_cel(&p) {
            panic!("{file}: CEL refuses the example's DNSProvider: {e:?}");
        }
    }
    let hetzner = provider("examples/providers/hetzner.yaml");
    let mut crossed = provider("examples/providers/digitalocean.yaml");
    crossed["spec"]["type"] = serde_json::json!("hetzner");
    let p: DNSProvider = serde_json::from_value(crossed.clone()).expect("DNSProvider");
    let errors = format!("{:?}", kube::core::cel::validate_cel(&p));
    assert!(
        errors.contains("hetzner settings are required when type is hetzner"),
        "{errors}"
    );
    crossed["spec"]["hetzner"] = hetzner["spec"]["hetzner"].clone();
    let p: DNSProvider = serde_json::from_value(crossed).expect("DNSProvider");
    assert!(
        kube::core::cel::validate_cel(&p).is_err(),
        "two settings blocks"
    );
}

/// The azure settings take exactly one kind of credential: a client secret (with the tenant
/// and client ids it belongs to) or Workload Identity.
#[test]
fn azure_settings_need_exactly_one_credential() {
    use mailsec_operator::api::DNSProvider;
    let provider = |azure: serde_json::Value| -> DNSProvider {
        serde_json::from_value(serde_json::json!({"apiVersion": "mailsec.io/v1alpha1",
            "kind": "DNSProvider", "metadata": {"name": "az", "namespace": "mail"},
            "spec": {"type": "azure", "azure": azure}}))
        .expect("DNSProvider")
    };
    let errors =
        |azure: serde_json::Value| format!("{:?}", kube::core::cel::validate_cel(&provider(azure)));
    let secret = serde_json::json!({"subscriptionId": "s", "resourceGroup": "r",
        "tenantId": "t", "clientId": "c",
        "clientSecretSecretRef": {"name": "azure-dns", "key": "client-secret"}});
    assert!(
        kube::core::cel::validate_cel(&provider(secret.clone())).is_ok(),
        "{}",
        errors(secret.clone())
    );
    let wi =
        serde_json::json!({"subscriptionId": "s", "resourceGroup": "r", "workloadIdentity": true});
    assert!(
        kube::core::cel::validate_cel(&provider(wi.clone())).is_ok(),
        "{}",
        errors(wi)
    );
    let mut both = secret.clone();
    both["workloadIdentity"] = serde_json::json!(true);
    assert!(errors(both).contains("set either clientSecretSecretRef or workloadIdentity"));
    let neither = serde_json::json!({"subscriptionId": "s", "resourceGroup": "r"});
    assert!(errors(neither).contains("set either clientSecretSecretRef or workloadIdentity"));
    let mut no_ids = secret;
    no_ids.as_object_mut().expect("object").remove("tenantId");
    assert!(errors(no_ids).contains("needs tenantId and clientId"));
}

/// The google settings take exactly one kind of credential (a key Secret or Workload
/// Identity), and a project id, not a project number.
#[test]
fn google_settings_need_exactly_one_credential_and_a_project_id() {
    use mailsec_operator::api::DNSProvider;
    let errors = |google: serde_json::Value| {
        let p: DNSProvider = serde_json::from_value(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "DNSProvider",
            "metadata": {"name": "g", "namespace": "mail"},
            "spec": {"type": "google", "google": google}}))
        .expect("DNSProvider");
        kube::core::cel::validate_cel(&p).map_err(|e| format!("{e:?}"))
    };
    let key = serde_json::json!({"project": "my-project",
        "serviceAccountKeySecretRef": {"name": "google-dns", "key": "key.json"}});
    assert_eq!(errors(key.clone()), Ok(()));
    assert_eq!(
        errors(serde_json::json!({"project": "my-project", "workloadIdentity": true})),
        Ok(())
    );
    let mut both = key.clone();
    both["workloadIdentity"] = serde_json::json!(true);
    let e = errors(both).expect_err("both");
    assert!(e.contains("set either serviceAccountKeySecretRef"), "{e}");
    let e = errors(serde_json::json!({"project": "my-project"})).expect_err("neither");
    assert!(e.contains("set either serviceAccountKeySecretRef"), "{e}");
    let mut number = key;
    number["project"] = serde_json::json!("123456789012");
    let e = errors(number).expect_err("a project number");
    assert!(e.contains("project must be a project id"), "{e}");
}

/// examples/dkim/: the managed-keys MailDomain renders (its keys pending generation) and
/// passes the CEL rules; the OpenDKIM and rspamd examples mount its signing Secret at the
/// MailDomain's key directory and read the files the signing Secret holds.
#[test]
fn the_managed_dkim_examples_fit_together() {
    let file = "examples/dkim/managed-keys.yaml";
    let out = mailsec(&["render", "-f", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "rsa<YYYYMMDD>._domainkey.example.com. TXT: a managed rsa-2048 key, pending generation"
        ),
        "{text}"
    );
    assert!(!text.contains("PRIVATE"), "{text}");
    let mds = mail_domains(file);
    for md in &mds {
        if let Err(e) = kube::core::cel::validate_cel(md) {
            panic!("{file}: CEL refuses a valid MailDomain: {e:?}");
        }
    }
    let dir = mds[0]
        .spec
        .dkim_signing
        .as_ref()
        .expect("dkimSigning")
        .key_directory
        .clone();
    let secret = format!(
        "{}-dkim-signing",
        mds[0].metadata.name.as_deref().unwrap_or_default()
    );
    for (example, reads) in [
        ("examples/dkim/opendkim.yaml", ["KeyTable", "SigningTable"]),
        (
            "examples/dkim/rspamd.yaml",
            ["dkim_signing.conf", "dkim_signing.conf"],
        ),
    ] {
        let text = std::fs::read_to_string(root().join(example)).expect("read");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
        let all = serde_json::to_string(&docs).expect("json");
        assert!(
            all.contains(&format!("\"secretName\":\"{secret}\"")),
            "{example} does not mount {secret}"
        );
        assert!(
            all.contains(&format!("\"mountPath\":\"{dir}\"")),
            "{example} does not mount at {dir}"
        );
        for file in reads {
            assert!(
                text.contains(&format!("{dir}/{file}")),
                "{example} does not read {dir}/{file}"
            );
        }
    }
}

/// Bad managed-key settings are refused at admission: an unknown algorithm, a rotation not
/// longer than the overlap, a duration that is not one.
#[test]
fn bad_managed_key_settings_are_refused_by_the_cel_rules() {
    let base = |managed: serde_json::Value| -> MailDomain {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": "m", "namespace": "default"},
            "spec": {"domain": "example.com", "dkim": [{"selector": "s", "managed": managed}]}
        }))
        .expect("a MailDomain")
    };
    let refused = |managed: serde_json::Value, message: &str| {
        let errors = format!("{:?}", kube::core::cel::validate_cel(&base(managed)));
        assert!(errors.contains(message), "{errors}");
    };
    refused(
        serde_json::json!({"rotateEvery": "24h", "overlap": "48h"}),
        "rotateEvery must be longer than overlap",
    );
    refused(
        serde_json::json!({"rotateEvery": "180d"}),
        "rotateEvery must be a duration",
    );
    assert!(kube::core::cel::validate_cel(&base(serde_json::json!({"rotateEvery": "0s"}))).is_ok());
    // An unknown algorithm does not even deserialize (the schema's enum refuses it).
    let unknown: Result<MailDomain, _> = serde_json::from_value(serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "m"},
        "spec": {"domain": "example.com", "dkim": [{"selector": "s", "managed": {"algorithm": "dsa-1024"}}]}
    }));
    assert!(unknown.is_err());
}
