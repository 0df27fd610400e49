//! The local kube-apiserver of the test environment: it answers, namespaces can be created and
//! deleted, and every CRD in crds/ is Established.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

#[tokio::test]
async fn api_server_answers() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let version = client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.major, "1", "unexpected version {version:?}");

    let namespaces = Api::<Namespace>::all(client)
        .list(&Default::default())
        .await
        .expect("list namespaces");
    let names: Vec<_> = namespaces
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for want in ["default", "kube-system"] {
        assert!(
            names.iter().any(|n| n == want),
            "no namespace {want} in {names:?}"
        );
    }
}

#[tokio::test]
async fn namespace_can_be_created_and_deleted() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let api = Api::<Namespace>::all(client.clone());

    let ns = env.namespace(&client, "harness").await;
    let name = ns.name().to_string();
    let got = api.get(&name).await.expect("get the new namespace");
    assert_eq!(
        got.status.and_then(|s| s.phase).as_deref(),
        Some("Active"),
        "new namespace is not Active"
    );
    assert_eq!(
        got.metadata
            .labels
            .and_then(|l| l.get(support::NAMESPACE_LABEL).cloned())
            .as_deref(),
        Some("true")
    );

    ns.delete(&client).await;
    assert!(
        api.get_opt(&name)
            .await
            .expect("get after delete")
            .is_none(),
        "namespace {name} still exists"
    );
}

#[tokio::test]
async fn dropped_namespace_guard_deletes_the_namespace() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let name = {
        let ns = env.namespace(&client, "harness-drop").await;
        ns.name().to_string()
    };
    let api = Api::<Namespace>::all(client);
    assert!(
        api.get_opt(&name).await.expect("get").is_none(),
        "{name} survived its guard"
    );
}

#[test]
fn kubectl_from_the_tools_dir_reaches_the_api_server() {
    let Some(env) = support::env() else { return };
    assert_eq!(env.kubectl_ok(["get", "--raw", "/readyz"]).trim(), "ok");
    let client_version = env.kubectl_ok(["version", "--client", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&client_version).expect("kubectl version json");
    assert!(
        v["clientVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("v1."))
    );
}

/// Every CRD in crds/ must have been applied by env-up.sh and be Established.
#[test]
fn every_crd_in_crds_dir_is_established() {
    let Some(env) = support::env() else { return };
    let dir = support::repo_root().join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| support::is_yaml(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        eprintln!(
            "note: {} has no YAML files; nothing to check",
            dir.display()
        );
        return;
    }
    let mut args = vec!["get".to_string(), "-o".into(), "json".into()];
    for f in &files {
        args.push("-f".into());
        args.push(f.display().to_string());
    }
    let out = env.kubectl_ok(&args);
    let json: serde_json::Value = serde_json::from_str(&out).expect("kubectl get -o json");
    let items = match json["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![json.clone()],
    };
    let crds: Vec<_> = items
        .iter()
        .filter(|i| i["kind"] == "CustomResourceDefinition")
        .collect();
    assert!(
        !crds.is_empty(),
        "crds/ contains no CustomResourceDefinition"
    );
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or("?");
        let established = crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(
            established,
            "CRD {name} is not Established: {}",
            crd["status"]
        );
    }
}
