//! Policy hosting against the real API server: the Ingress, the ExternalName Service and the
//! cert-manager Certificate that `controller::hosting` creates for a MailDomain, their updates,
//! the no-op pass that writes nothing, the Certificate's Ready condition, and removal. The
//! cert-manager CRDs are installed by scripts/env-up.sh; no cert-manager controller runs, so the
//! tests write the Certificate's status themselves, as cert-manager would.

mod support;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use mailsec_operator::api::MailDomain;
use mailsec_operator::controller::conditions::reason;
use mailsec_operator::controller::hosting::{
    self, CERT_MANAGER_GROUP, ConditionStatus, HostingConfig,
};
use mailsec_operator::controller::names::FIELD_MANAGER;
use serde_json::json;

const MANAGER: &str = "mailsec-test";
const NAME: &str = "example-org";
const DOMAIN: &str = "bücher.example";
const A_LABELS: &str = "xn--bcher-kva.example";
const HOST: &str = "mta-sts.xn--bcher-kva.example";

fn config(service_namespace: &str) -> HostingConfig {
    HostingConfig {
        service_name: "mailsec-serve".into(),
        service_namespace: service_namespace.into(),
        service_port: 8080,
        cluster_domain: "cluster.local".into(),
    }
}

/// Applies the MailDomain with this `policyHost` (`null`: none) and returns it as stored (with
/// its uid, for the owner references).
async fn apply_md(api: &Api<MailDomain>, policy_host: serde_json::Value) -> MailDomain {
    let mut mta_sts = json!({"mode": "enforce"});
    if !policy_host.is_null() {
        mta_sts["policyHost"] = policy_host;
    }
    let md = json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": NAME},
        "spec": {"domain": DOMAIN, "mx": ["mx1.example.org"], "mtaSts": mta_sts}
    });
    api.patch(
        NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&md),
    )
    .await
    .expect("apply MailDomain")
}

fn certificates(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &hosting::certificate_resource())
}

fn rv<K: kube::Resource>(object: &Option<K>) -> Option<String> {
    object.as_ref().and_then(|o| o.resource_version())
}

/// Writes the Certificate's Ready condition the way cert-manager does.
async fn set_ready(certs: &Api<DynamicObject>, name: &str, status: &str, reason: &str, msg: &str) {
    let generation = certs
        .get(name)
        .await
        .expect("get Certificate")
        .metadata
        .generation
        .expect("generation");
    let patch = json!({"status": {"conditions": [{
        "type": "Ready", "status": status, "reason": reason, "message": msg,
        "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"
    }]}});
    certs
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch Certificate status");
}

#[tokio::test]
async fn ingress_service_and_certificate_follow_the_spec() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting").await;
    let ns_name = ns.name().to_owned();
    let mds: Api<MailDomain> = Api::namespaced(client.clone(), &ns_name);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns_name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns_name);
    let certs = certificates(&client, &ns_name);
    let cfg = config("mailsec-system");
    let object = hosting::object_name(NAME);
    let secret = hosting::tls_secret_name(NAME);
    assert_eq!(object, "mta-sts-example-org");

    let md = apply_md(
        &mds,
        json!({"ingress": {"className": "nginx"},
               "certificate": {"issuerRef": {"kind": "ClusterIssuer", "name": "letsencrypt"}}}),
    )
    .await;
    let uid = md.uid().expect("uid");

    // First pass: all three objects are created.
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 3, "{out:?}");
    assert!(out.conflicts.is_empty(), "{out:?}");
    let cert_state = out.certificate.clone().expect("certificate state");
    assert_eq!(
        cert_state.status,
        ConditionStatus::Unknown,
        "{cert_state:?}"
    );
    assert_eq!(cert_state.reason, reason::CERTIFICATE_PENDING);

    let ing = ingresses.get(&object).await.expect("Ingress");
    let owners = ing.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str()
        ),
        ("MailDomain", NAME, uid.as_str())
    );
    assert_eq!(owners[0].controller, Some(true));
    assert!(
        ing.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")),
        "the Ingress is not server-side applied by {FIELD_MANAGER}"
    );
    let spec = ing.spec.clone().expect("Ingress spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let tls = spec.tls.clone().expect("tls");
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0].hosts.clone(), Some(vec![HOST.to_owned()]));
    assert_eq!(tls[0].secret_name.as_deref(), Some(secret.as_str()));
    let rules = spec.rules.clone().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].host.as_deref(), Some(HOST));
    let paths = &rules[0].http.as_ref().expect("http").paths;
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].path.as_deref(), Some("/.well-known/mta-sts.txt"));
    assert_eq!(paths[0].path_type, "Exact");
    let backend = paths[0].backend.service.clone().expect("service backend");
    assert_eq!(backend.name, object);
    assert_eq!(backend.port.and_then(|p| p.number), Some(8080));

    let svc = services.get(&object).await.expect("Service");
    assert_eq!(svc.owner_references()[0].uid, uid);
    let svc_spec = svc.spec.clone().expect("Service spec");
    assert_eq!(svc_spec.type_.as_deref(), Some("ExternalName"));
    assert_eq!(
        svc_spec.external_name.as_deref(),
        Some("mailsec-serve.mailsec-system.svc.cluster.local")
    );
    assert_eq!(svc_spec.ports.expect("ports")[0].port, 8080);

    let cert = certs.get(&object).await.expect("Certificate");
    assert_eq!(cert.owner_references()[0].uid, uid);
    assert_eq!(cert.owner_references()[0].controller, Some(true));
    assert_eq!(cert.data["spec"]["secretName"], json!(secret));
    assert_eq!(cert.data["spec"]["dnsNames"], json!([HOST]));
    assert_eq!(
        cert.data["spec"]["issuerRef"],
        json!({"group": CERT_MANAGER_GROUP, "kind": "ClusterIssuer", "name": "letsencrypt"})
    );

    // Second pass: nothing written, nothing changed.
    let before = (
        rv(&ingresses.get_opt(&object).await.expect("get")),
        rv(&services.get_opt(&object).await.expect("get")),
        rv(&certs.get_opt(&object).await.expect("get")),
    );
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 0, "a no-op pass wrote: {out:?}");
    let after = (
        rv(&ingresses.get_opt(&object).await.expect("get")),
        rv(&services.get_opt(&object).await.expect("get")),
        rv(&certs.get_opt(&object).await.expect("get")),
    );
    assert_eq!(before, after, "a no-op pass changed a resourceVersion");

    // cert-manager's Ready condition, as it reports issuance.
    set_ready(
        &certs,
        &object,
        "False",
        "Issuing",
        "Issuing certificate as Secret does not exist",
    )
    .await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    let state = out.certificate.clone().expect("state");
    assert_eq!(
        (state.status, state.reason.as_str()),
        (ConditionStatus::False, "Issuing"),
        "{state:?}"
    );
    assert!(state.message.contains("Secret does not exist"), "{state:?}");
    set_ready(
        &certs,
        &object,
        "True",
        "Ready",
        "Certificate is up to date and has not expired",
    )
    .await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    let state = out.certificate.clone().expect("state");
    assert_eq!(
        (state.status, state.reason.as_str()),
        (ConditionStatus::True, "Ready"),
        "{state:?}"
    );
    assert_eq!(out.writes, 0, "reading the status wrote: {out:?}");

    // The class and the certificate leave the spec: the Ingress loses its class, the
    // Certificate goes; the Service stays as it is.
    // (A merge patch: server-side apply would drop the emptied `ingress: {}` and the
    // MailDomain's "exactly one of ingress or external" rule would refuse the result.)
    let svc_rv = rv(&services.get_opt(&object).await.expect("get"));
    let unset = json!({"spec": {"mtaSts": {"policyHost": {"ingress": {"className": null}, "certificate": null}}}});
    let md = mds
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&unset))
        .await
        .expect("unset class and certificate");
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 2, "{out:?}");
    assert_eq!(out.certificate, None);
    let ing = ingresses.get(&object).await.expect("Ingress");
    assert_eq!(ing.spec.expect("spec").ingress_class_name, None);
    assert!(
        certs.get_opt(&object).await.expect("get").is_none(),
        "the Certificate is still there"
    );
    assert_eq!(rv(&services.get_opt(&object).await.expect("get")), svc_rv);
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 0, "{out:?}");

    // remove deletes what is left.
    let deleted = hosting::remove(&client, &md, &Default::default())
        .await
        .expect("remove");
    assert_eq!(deleted, 2);
    assert!(ingresses.get_opt(&object).await.expect("get").is_none());
    assert!(services.get_opt(&object).await.expect("get").is_none());
    assert_eq!(
        hosting::remove(&client, &md, &Default::default())
            .await
            .expect("remove again"),
        0
    );

    ns.delete(&client).await;
}

#[tokio::test]
async fn removing_the_policy_host_deletes_everything() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting-off").await;
    let ns_name = ns.name().to_owned();
    let mds: Api<MailDomain> = Api::namespaced(client.clone(), &ns_name);
    let cfg = config("mailsec-system");
    let object = hosting::object_name(NAME);

    let md = apply_md(
        &mds,
        json!({"ingress": {}, "certificate": {"issuerRef": {"name": "ca"}}}),
    )
    .await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 3, "{out:?}");
    let cert = certificates(&client, &ns_name)
        .get(&object)
        .await
        .expect("Certificate");
    assert_eq!(
        cert.data["spec"]["issuerRef"],
        json!({"group": CERT_MANAGER_GROUP, "kind": "Issuer", "name": "ca"})
    );

    let md = apply_md(&mds, serde_json::Value::Null).await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 3, "{out:?}");
    assert_eq!(out.certificate, None);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns_name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns_name);
    assert!(ingresses.get_opt(&object).await.expect("get").is_none());
    assert!(services.get_opt(&object).await.expect("get").is_none());
    assert!(
        certificates(&client, &ns_name)
            .get_opt(&object)
            .await
            .expect("get")
            .is_none()
    );
    ns.delete(&client).await;
}

#[tokio::test]
async fn in_the_policy_servers_namespace_the_ingress_uses_its_service() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting-same").await;
    let ns_name = ns.name().to_owned();
    let mds: Api<MailDomain> = Api::namespaced(client.clone(), &ns_name);
    let cfg = config(&ns_name);
    let object = hosting::object_name(NAME);

    let md = apply_md(&mds, json!({"ingress": {}})).await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 1, "only the Ingress: {out:?}");
    let ing = Api::<Ingress>::namespaced(client.clone(), &ns_name)
        .get(&object)
        .await
        .expect("Ingress");
    let rule = &ing.spec.expect("spec").rules.expect("rules")[0];
    let backend = rule.http.as_ref().expect("http").paths[0]
        .backend
        .service
        .clone()
        .expect("service");
    assert_eq!(backend.name, "mailsec-serve");
    assert!(
        Api::<Service>::namespaced(client.clone(), &ns_name)
            .get_opt(&object)
            .await
            .expect("get")
            .is_none()
    );
    ns.delete(&client).await;
}

#[tokio::test]
async fn objects_of_others_are_left_alone() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting-foreign").await;
    let ns_name = ns.name().to_owned();
    let mds: Api<MailDomain> = Api::namespaced(client.clone(), &ns_name);
    let cfg = config("mailsec-system");
    let object = hosting::object_name(NAME);

    // Someone's own Ingress and Certificate under our names.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns_name);
    let theirs: Ingress = serde_json::from_value(json!({
        "metadata": {"name": object},
        "spec": {"rules": [{"host": "other.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    }))
    .expect("ingress");
    let theirs = ingresses
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create foreign Ingress");
    let certs = certificates(&client, &ns_name);
    let their_cert = DynamicObject::new(&object, &hosting::certificate_resource()).data(json!({
        "spec": {"secretName": "theirs", "dnsNames": ["other.example"], "issuerRef": {"name": "x"}}
    }));
    let their_cert = certs
        .create(&PostParams::default(), &their_cert)
        .await
        .expect("create foreign Certificate");

    let md = apply_md(
        &mds,
        json!({"ingress": {}, "certificate": {"issuerRef": {"name": "ca"}}}),
    )
    .await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.conflicts.len(), 2, "{out:?}");
    assert!(
        out.conflicts.iter().any(|c| c.starts_with("Ingress ")),
        "{out:?}"
    );
    let state = out.certificate.clone().expect("state");
    assert_eq!(
        (state.status, state.reason.as_str()),
        (ConditionStatus::False, reason::CERTIFICATE_CONFLICT)
    );
    assert_eq!(out.writes, 1, "only our Service: {out:?}");
    assert_eq!(
        rv(&ingresses.get_opt(&object).await.expect("get")),
        theirs.resource_version()
    );
    assert_eq!(
        rv(&certs.get_opt(&object).await.expect("get")),
        their_cert.resource_version()
    );

    // Neither removal touches them either.
    let deleted = hosting::remove(&client, &md, &Default::default())
        .await
        .expect("remove");
    assert_eq!(deleted, 1, "only our Service");
    assert!(ingresses.get_opt(&object).await.expect("get").is_some());
    assert!(certs.get_opt(&object).await.expect("get").is_some());
    ns.delete(&client).await;
}

#[tokio::test]
async fn a_missing_certificate_api_says_install_cert_manager() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting-nocm").await;
    let mds: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = apply_md(
        &mds,
        json!({"ingress": {}, "certificate": {"issuerRef": {"name": "ca"}}}),
    )
    .await;
    // A group no API server serves stands in for cert-manager not being installed.
    let absent = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.invalid", "v1", "Certificate"),
        "certificates",
    );
    let out = hosting::ensure_with(
        &client,
        &md,
        A_LABELS,
        &config("mailsec-system"),
        &absent,
        &Default::default(),
    )
    .await
    .expect("ensure without the Certificate API");
    let state = out.certificate.clone().expect("state");
    assert_eq!(
        (state.status, state.reason.as_str()),
        (ConditionStatus::False, reason::CERTIFICATE_CRD_MISSING),
        "{state:?}"
    );
    assert!(state.message.contains("install cert-manager"), "{state:?}");
    // The rest is still created.
    assert_eq!(out.writes, 2, "{out:?}");
    ns.delete(&client).await;
}

/// policyHost.gatewayRoute: an HTTPRoute (Gateway API CRDs installed by scripts/env-up.sh) with
/// the ExternalName Service beside it, admitted by the real API server with the Gateway API's
/// own schema and CEL rules; a settled pass writes nothing; switching to an Ingress replaces the
/// route; removal deletes it. No Gateway controller runs here, as no ingress controller does.
#[tokio::test]
async fn an_http_route_follows_the_spec_like_the_ingress() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "hosting-gw").await;
    let ns_name = ns.name().to_owned();
    let mds: Api<MailDomain> = Api::namespaced(client.clone(), &ns_name);
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns_name, &hosting::http_route_resource());
    let services: Api<Service> = Api::namespaced(client.clone(), &ns_name);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns_name);
    let cfg = config("mailsec-system");
    let object = hosting::object_name(NAME);

    let md = apply_md(
        &mds,
        json!({"gatewayRoute": {"parentRefs": [
            {"name": "public", "namespace": "gateways", "sectionName": "https"}]}}),
    )
    .await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 2, "HTTPRoute and ExternalName Service: {out:?}");
    assert!(out.conflicts.is_empty(), "{out:?}");
    let route = routes.get(&object).await.expect("HTTPRoute");
    assert_eq!(route.data["spec"]["hostnames"], json!([HOST]));
    assert_eq!(
        route.data["spec"]["parentRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                "namespace": "gateways", "sectionName": "https"}])
    );
    let rule = &route.data["spec"]["rules"][0];
    assert_eq!(
        rule["matches"],
        json!([{"path": {"type": "Exact", "value": "/.well-known/mta-sts.txt"}}])
    );
    assert_eq!(rule["backendRefs"][0]["name"], object.as_str());
    assert_eq!(rule["backendRefs"][0]["port"], 8080);
    assert_eq!(route.owner_references()[0].uid, md.uid().expect("uid"));
    let svc = services.get(&object).await.expect("ExternalName Service");
    assert_eq!(
        svc.spec.and_then(|s| s.external_name).as_deref(),
        Some("mailsec-serve.mailsec-system.svc.cluster.local")
    );

    // Settled: nothing written, the stored route is what is wanted (API defaults included).
    let before = routes.get(&object).await.expect("get").resource_version();
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 0, "{out:?}");
    assert_eq!(
        routes.get(&object).await.expect("get").resource_version(),
        before
    );

    // Switching to an Ingress: the route goes, the Ingress comes, the Service stays.
    let md = apply_md(&mds, json!({"ingress": {}})).await;
    let out = hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    assert_eq!(out.writes, 2, "Ingress created, HTTPRoute deleted: {out:?}");
    assert!(routes.get_opt(&object).await.expect("get").is_none());
    assert!(ingresses.get_opt(&object).await.expect("get").is_some());

    // Back to the route, then removal deletes everything.
    let md = apply_md(
        &mds,
        json!({"gatewayRoute": {"parentRefs": [{"name": "public"}]}}),
    )
    .await;
    hosting::ensure(&client, &md, A_LABELS, &cfg)
        .await
        .expect("ensure");
    let route = routes.get(&object).await.expect("HTTPRoute");
    assert_eq!(
        route.data["spec"]["parentRefs"][0]["namespace"],
        ns_name.as_str(),
        "a Gateway in the MailDomain's namespace when none is named"
    );
    let removed = hosting::remove(&client, &md, &Default::default())
        .await
        .expect("remove");
    assert_eq!(removed, 2, "HTTPRoute and Service");
    assert!(routes.get_opt(&object).await.expect("get").is_none());

    // Admission refuses two ways at once.
    let both = json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "both"},
        "spec": {"domain": "both.example", "mx": ["mx1.example.org"], "mtaSts": {"mode": "testing",
            "policyHost": {"ingress": {}, "gatewayRoute": {"parentRefs": [{"name": "public"}]}}}}
    });
    let err = mds
        .patch("both", &PatchParams::apply(MANAGER), &Patch::Apply(&both))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("set exactly one of ingress, gatewayRoute or external"),
        "{err}"
    );
    ns.delete(&client).await;
}
