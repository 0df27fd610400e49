//! Policy hosting: the Kubernetes objects that make `https://mta-sts.<domain>` reach the policy
//! server, for a MailDomain with `spec.mtaSts.policyHost`.
//!
//! - `policyHost.ingress`: an `networking.k8s.io/v1` Ingress for `mta-sts.<domain>` (A-labels)
//!   with one rule, path `/.well-known/mta-sts.txt` (`Exact`), and TLS from the Secret
//!   `<name>-tls`. An Ingress can only route to a Service of its own namespace; the policy
//!   server's Service ([`HostingConfig`]) usually lives in the operator's namespace. So when the
//!   MailDomain is elsewhere, a Service of type ExternalName is created next to the Ingress
//!   (one per MailDomain, named like the Ingress) that points at
//!   `<service_name>.<service_namespace>.svc.<cluster_domain>`: common ingress controllers
//!   (ingress-nginx, Traefik, HAProxy, Contour) proxy to ExternalName backends. In the policy
//!   server's own namespace the Ingress uses its Service directly and no Service is created.
//! - `policyHost.certificate`: a cert-manager `cert-manager.io/v1` Certificate for
//!   `mta-sts.<domain>` writing that same TLS Secret. Its `Ready` condition becomes the
//!   MailDomain's `CertificateReady` condition. Without a certificate the Secret is yours to
//!   provide (or the ingress controller's default certificate applies).
//! - `policyHost.gatewayRoute`: a Gateway API `gateway.networking.k8s.io/v1` HTTPRoute for
//!   `mta-sts.<domain>` attached to the given Gateways, one rule (the well-known path, `Exact`)
//!   to the policy server's Service, or to the same ExternalName Service as for an Ingress when
//!   the MailDomain is elsewhere (a cross-namespace backendRef would need a ReferenceGrant in the
//!   operator's namespace for every MailDomain namespace). TLS is the Gateway listener's.
//!   Without the Gateway API CRDs the route cannot be made; that is reported, not retried.
//! - `policyHost.external`: nothing is created; only a requested Certificate.
//!
//! Every object is server-side applied by [`FIELD_MANAGER`] with a controller owner reference to
//! the MailDomain (so the garbage collector removes it with the MailDomain), and is written only
//! when what is there differs from what is wanted: a settled reconcile writes nothing. Objects
//! with our names that this MailDomain does not control are never touched; they are reported
//! in [`Hosting::conflicts`].

use std::collections::BTreeMap;

use futures_util::FutureExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use super::conditions::Status as ConditionStatus;
use super::conditions::reason;
use super::names::FIELD_MANAGER;
use crate::api::{IssuerRef, MailDomain, PolicyHostSpec};
use crate::domain::mtasts::{self, WELL_KNOWN_PATH};
use crate::domain::name::DomainName;

/// Where the policy server (`mailsec serve`) is reachable inside the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostingConfig {
    /// Name of the policy server's Service.
    pub service_name: String,
    /// Namespace of the policy server's Service.
    pub service_namespace: String,
    /// Port of that Service that speaks plain HTTP (the Ingress terminates TLS).
    pub service_port: u16,
    /// The cluster's DNS domain, for the ExternalName Services (`cluster.local` almost always).
    pub cluster_domain: String,
}

/// The API group of the Gateway API.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The API group of cert-manager's issuers and certificates.
pub const CERT_MANAGER_GROUP: &str = "cert-manager.io";

/// Labels on every object created here.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mailsec-operator");
const COMPONENT: (&str, &str) = ("app.kubernetes.io/component", "mta-sts-policy-host");
/// Longest object name produced, so that `<name>-tls` is a DNS label too.
const MAX_NAME: usize = 59;

/// What `CertificateReady` should say: cert-manager's own `Ready` status, reason and
/// message where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateState {
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// The outcome of [`ensure`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosting {
    /// `None` when no Certificate is requested (remove the `CertificateReady` condition).
    pub certificate: Option<CertificateState>,
    /// Objects with our names that this MailDomain does not control: left untouched.
    pub conflicts: Vec<String>,
    /// Objects created, changed or deleted.
    pub writes: usize,
    /// Where the Ingress's or the Gateways' load balancer answers, as their status says.
    pub load_balancer: LoadBalancer,
}

/// A load balancer's addresses and host names (`status.loadBalancer.ingress` of an Ingress,
/// `status.addresses` of a Gateway).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadBalancer {
    pub ips: Vec<std::net::IpAddr>,
    pub hostnames: Vec<String>,
}

impl LoadBalancer {
    fn add_ip(&mut self, text: &str) {
        if let Ok(ip) = text.parse()
            && !self.ips.contains(&ip)
        {
            self.ips.push(ip);
        }
    }

    fn add_hostname(&mut self, text: &str) {
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !self.hostnames.contains(&name) {
            self.hostnames.push(name);
        }
    }

    /// From an Ingress's status.
    pub fn of_ingress(live: &Value) -> LoadBalancer {
        let mut lb = LoadBalancer::default();
        for entry in live
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = entry["ip"].as_str() {
                lb.add_ip(ip);
            }
            if let Some(name) = entry["hostname"].as_str() {
                lb.add_hostname(name);
            }
        }
        lb
    }

    /// From a Gateway's status (`type` IPAddress, the default, or Hostname).
    pub fn of_gateway(live: &Value, into: &mut LoadBalancer) {
        for entry in live
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(value) = entry["value"].as_str() else {
                continue;
            };
            match entry["type"].as_str().unwrap_or("IPAddress") {
                "Hostname" => into.add_hostname(value),
                _ => into.add_ip(value),
            }
        }
    }
}

/// `gateway.networking.k8s.io/v1` Gateway, read for its addresses.
pub fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "Gateway"),
        "gateways",
    )
}

/// The objects one MailDomain should have; `None` where it should have none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub ingress: Option<Ingress>,
    pub service: Option<Service>,
    pub route: Option<DynamicObject>,
    pub certificate: Option<DynamicObject>,
}

/// `gateway.networking.k8s.io/v1` HTTPRoute, without depending on a Gateway API crate.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// `cert-manager.io/v1` Certificate, without depending on a cert-manager crate.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(CERT_MANAGER_GROUP, "v1", "Certificate"),
        "certificates",
    )
}

/// The name of every object made for the MailDomain `md_name`: `mta-sts-<md_name>`, a DNS
/// label of at most 59 characters (dots become hyphens; a name that had dots or was too long
/// gets a hash of the original, so two MailDomains never share a name).
pub fn object_name(md_name: &str) -> String {
    let lower = md_name.to_ascii_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let plain = format!("mta-sts-{cleaned}");
    if cleaned == md_name && plain.len() <= MAX_NAME && !plain.ends_with('-') {
        return plain;
    }
    let digest = Sha256::digest(md_name.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = MAX_NAME - hash.len() - 1;
    let head = plain[..plain.len().min(keep)].trim_end_matches('-');
    format!("{head}-{hash}")
}

/// The TLS Secret of the Ingress, written by the Certificate.
pub fn tls_secret_name(md_name: &str) -> String {
    format!("{}-tls", object_name(md_name))
}

/// `mta-sts.<domain>` in A-labels.
pub fn policy_host(domain: &str) -> String {
    match DomainName::parse(domain) {
        Ok(d) => mtasts::policy_host(&d),
        Err(_) => format!("mta-sts.{}", domain.to_ascii_lowercase()),
    }
}

fn policy_host_spec(md: &MailDomain) -> Option<&PolicyHostSpec> {
    md.spec.mta_sts.as_ref()?.policy_host.as_ref()
}

fn metadata(md: &MailDomain) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(&md.name_any())),
        namespace: md.namespace(),
        labels: Some(BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (COMPONENT.0.to_owned(), COMPONENT.1.to_owned()),
        ])),
        owner_references: md.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// Whether the policy server's Service is in the MailDomain's namespace (no ExternalName
/// Service needed).
fn same_namespace(md: &MailDomain, config: &HostingConfig) -> bool {
    md.namespace().unwrap_or_default() == config.service_namespace
}

/// The Service an Ingress or HTTPRoute of this MailDomain routes to: the policy server's own,
/// or the ExternalName Service next to the MailDomain.
fn backend_service(md: &MailDomain, config: &HostingConfig) -> String {
    if same_namespace(md, config) {
        config.service_name.clone()
    } else {
        object_name(&md.name_any())
    }
}

/// The HTTPRoute for `mta-sts.<domain>`, attached to the spec's Gateways.
pub fn http_route(md: &MailDomain, domain: &str, config: &HostingConfig) -> DynamicObject {
    let parents: Vec<Value> = policy_host_spec(md)
        .and_then(|p| p.gateway_route.as_ref())
        .map(|g| g.parent_refs.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            // Spelled out as the API server defaults them, so that comparing finds no change.
            serde_json::json!({
                "group": GATEWAY_GROUP,
                "kind": "Gateway",
                "name": p.name,
                "namespace": p.namespace.clone().or_else(|| md.namespace()),
                "sectionName": p.section_name,
            })
        })
        .collect();
    let mut object = DynamicObject::new(&object_name(&md.name_any()), &http_route_resource()).data(
        serde_json::json!({
            "spec": {
                "parentRefs": parents,
                "hostnames": [policy_host(domain)],
                "rules": [{
                    "matches": [{"path": {"type": "Exact", "value": WELL_KNOWN_PATH}}],
                    "backendRefs": [{
                        "group": "",
                        "kind": "Service",
                        "name": backend_service(md, config),
                        "port": config.service_port,
                        "weight": 1,
                    }],
                }],
            }
        }),
    );
    object.metadata = metadata(md);
    object
}

/// The Ingress for `mta-sts.<domain>`.
pub fn ingress(md: &MailDomain, domain: &str, config: &HostingConfig) -> Ingress {
    let host = policy_host(domain);
    let backend_service = backend_service(md, config);
    let class = policy_host_spec(md)
        .and_then(|p| p.ingress.as_ref())
        .and_then(|i| i.class_name.clone());
    Ingress {
        metadata: metadata(md),
        spec: Some(IngressSpec {
            ingress_class_name: class,
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![host.clone()]),
                secret_name: Some(tls_secret_name(&md.name_any())),
            }]),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(WELL_KNOWN_PATH.to_owned()),
                        path_type: "Exact".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: backend_service,
                                port: Some(ServiceBackendPort {
                                    number: Some(i32::from(config.service_port)),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            default_backend: None,
        }),
        status: None,
    }
}

/// The ExternalName Service next to the Ingress, or `None` when the policy server's Service is
/// in the MailDomain's namespace.
pub fn service(md: &MailDomain, config: &HostingConfig) -> Option<Service> {
    if same_namespace(md, config) {
        return None;
    }
    let port = i32::from(config.service_port);
    Some(Service {
        metadata: metadata(md),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".to_owned()),
            external_name: Some(format!(
                "{}.{}.svc.{}",
                config.service_name,
                config.service_namespace,
                config.cluster_domain.trim_end_matches('.')
            )),
            // Spelled out as the API server would default them, so that comparing with what
            // is stored finds no difference.
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port,
                protocol: Some("TCP".to_owned()),
                target_port: Some(IntOrString::Int(port)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The cert-manager Certificate for `mta-sts.<domain>`, writing the Ingress's TLS Secret.
pub fn certificate(md: &MailDomain, domain: &str, issuer: &IssuerRef) -> DynamicObject {
    let mut object = DynamicObject::new(&object_name(&md.name_any()), &certificate_resource())
        .data(serde_json::json!({
            "spec": {
                "secretName": tls_secret_name(&md.name_any()),
                "dnsNames": [policy_host(domain)],
                "issuerRef": {
                    "group": CERT_MANAGER_GROUP,
                    "kind": issuer.kind,
                    "name": issuer.name,
                },
            }
        }));
    object.metadata = metadata(md);
    object
}

/// Everything the MailDomain's spec asks for.
pub fn desired(md: &MailDomain, domain: &str, config: &HostingConfig) -> Desired {
    let Some(host) = policy_host_spec(md) else {
        return Desired::default();
    };
    let routed = host.ingress.is_some() || host.gateway_route.is_some();
    Desired {
        ingress: host.ingress.as_ref().map(|_| ingress(md, domain, config)),
        service: if routed { service(md, config) } else { None },
        route: host
            .gateway_route
            .as_ref()
            .map(|_| http_route(md, domain, config)),
        certificate: host
            .certificate
            .as_ref()
            .map(|c| certificate(md, domain, &c.issuer_ref)),
    }
}

/// Whether `desired` is already in `live`: every field of `desired` is there with the same
/// value (objects recursively; lists element by element, same length). A `null` in `desired`
/// means "absent". Fields only in `live` (defaults, status, other managers) do not count.
pub fn up_to_date(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Null, live) => live.is_null(),
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(k, v)| {
            let there = have.get(k).unwrap_or(&Value::Null);
            up_to_date(v, there)
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| up_to_date(w, h))
        }
        (want, have) => want == have,
    }
}

/// Whether `meta` names the MailDomain with this uid as its controller.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r: &OwnerReference| r.uid == uid && r.controller == Some(true))
}

/// `CertificateReady` from a live Certificate: its `Ready` condition, `Unknown` while
/// cert-manager has not looked at the current generation.
pub fn certificate_state(live: &DynamicObject) -> CertificateState {
    let name = format!(
        "{}/{}",
        live.metadata.namespace.as_deref().unwrap_or_default(),
        live.metadata.name.as_deref().unwrap_or_default()
    );
    let ready = live
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        });
    let Some(ready) = ready else {
        return CertificateState {
            status: ConditionStatus::Unknown,
            reason: reason::CERTIFICATE_PENDING.to_owned(),
            message: format!(
                "cert-manager has not reported on Certificate {name} yet (is cert-manager running?)"
            ),
        };
    };
    let text = |k: &str| ready.get(k).and_then(Value::as_str).unwrap_or_default();
    let observed = ready.get("observedGeneration").and_then(Value::as_i64);
    if let (Some(observed), Some(generation)) = (observed, live.metadata.generation)
        && observed < generation
    {
        return CertificateState {
            status: ConditionStatus::Unknown,
            reason: reason::CERTIFICATE_PENDING.to_owned(),
            message: format!(
                "cert-manager has not processed the current spec of Certificate {name} yet"
            ),
        };
    }
    let status = match text("status") {
        "True" => ConditionStatus::True,
        "False" => ConditionStatus::False,
        _ => ConditionStatus::Unknown,
    };
    let reason = match text("reason") {
        "" => reason::CERTIFICATE_PENDING.to_owned(),
        r => r.to_owned(),
    };
    let message = match text("message") {
        "" => format!("Certificate {name}: Ready is {}", status.as_str()),
        m => format!("Certificate {name}: {m}"),
    };
    CertificateState {
        status,
        reason,
        message,
    }
}

fn crd_missing(namespace: &str) -> CertificateState {
    CertificateState {
        status: ConditionStatus::False,
        reason: reason::CERTIFICATE_CRD_MISSING.to_owned(),
        message: format!(
            "the cert-manager.io/v1 Certificate API is not served, so no Certificate can be \
             created in {namespace}: install cert-manager (https://cert-manager.io/docs/installation/)"
        ),
    }
}

fn api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// 404: no such object, or (with a plain-text `404 page not found` that kube cannot parse
/// into a Status) no such API at all.
fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// What the controller's watches (filtered by our managed-by label) have seen of the policy
/// host objects this operator made. A pass that wants no such object skips the GET when the
/// watch has none of that name: at 10,000 MailDomains without `policyHost` those are four
/// requests per reconcile saved. `Made::default()` knows nothing (every object is asked for).
#[derive(Clone, Default)]
pub struct Made {
    pub services: Option<Store<Service>>,
    pub ingresses: Option<Store<Ingress>>,
    pub certificates: Option<Store<DynamicObject>>,
    pub routes: Option<Store<DynamicObject>>,
}

/// The label every object the policy hosting makes carries, as a selector for the watches.
pub fn managed_by_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

impl Made {
    /// True when a watch that has listed has no object `kind` `namespace/name`.
    fn absent(&self, kind: &str, namespace: &str, name: &str) -> bool {
        fn none_in<K>(store: &Option<Store<K>>, namespace: &str, name: &str) -> bool
        where
            K: kube::Resource + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone + Default,
        {
            store.as_ref().is_some_and(|s| {
                s.wait_until_ready()
                    .now_or_never()
                    .is_some_and(|r| r.is_ok())
                    && s.get(&ObjectRef::new(name).within(namespace)).is_none()
            })
        }
        fn none_in_dynamic(
            store: &Option<Store<DynamicObject>>,
            namespace: &str,
            name: &str,
        ) -> bool {
            store.as_ref().is_some_and(|s| {
                s.wait_until_ready()
                    .now_or_never()
                    .is_some_and(|r| r.is_ok())
                    && !s.state().iter().any(|o| {
                        o.metadata.name.as_deref() == Some(name)
                            && o.metadata.namespace.as_deref() == Some(namespace)
                    })
            })
        }
        match kind {
            "Service" => none_in(&self.services, namespace, name),
            "Ingress" => none_in(&self.ingresses, namespace, name),
            "Certificate" => none_in_dynamic(&self.certificates, namespace, name),
            "HTTPRoute" => none_in_dynamic(&self.routes, namespace, name),
            _ => false,
        }
    }
}

/// What happened to one object.
enum Synced {
    /// It is as wanted (written or not); here is what the API server has.
    Present(Box<DynamicObject>),
    /// Not wanted, and not (or no longer) there.
    Absent,
    /// Someone else's object has our name.
    Conflict,
}

/// Makes the object `name` match `desired` (apply when it differs) or, when nothing is
/// desired, deletes it if this MailDomain controls it.
async fn sync(
    api: &Api<DynamicObject>,
    kind: &str,
    name: &str,
    desired: Option<Value>,
    uid: &str,
    (out, made): (&mut Hosting, &Made),
) -> Result<Synced, kube::Error> {
    if desired.is_none() && made.absent(kind, api.namespace().unwrap_or_default(), name) {
        return Ok(Synced::Absent);
    }
    let live = api.get_opt(name).await?;
    let ours = live
        .as_ref()
        .map(|l| controlled_by(&l.metadata, uid))
        .unwrap_or(true);
    let Some(desired) = desired else {
        return match live {
            Some(l) if ours => {
                delete(api, &l).await?;
                out.writes += 1;
                Ok(Synced::Absent)
            }
            _ => Ok(Synced::Absent),
        };
    };
    if !ours {
        out.conflicts.push(format!(
            "{kind} {}/{name} exists and is not controlled by this MailDomain; left untouched",
            api.namespace().unwrap_or_default()
        ));
        return Ok(Synced::Conflict);
    }
    if let Some(live) = live {
        let have = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if up_to_date(&desired, &have) {
            return Ok(Synced::Present(Box::new(live)));
        }
    }
    // `null` marks "absent" for the comparison; the patch leaves such fields out.
    let patch = strip_nulls(desired);
    let written = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    out.writes += 1;
    Ok(Synced::Present(Box::new(written)))
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Deletes `live`, only that very object (uid precondition); already gone is fine.
async fn delete(api: &Api<DynamicObject>, live: &DynamicObject) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&live.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> Result<Value, kube::Error> {
    serde_json::to_value(object).map_err(kube::Error::SerdeError)
}

/// Makes the MailDomain's policy hosting objects what its spec asks for: creates or updates
/// the Ingress, the ExternalName Service and the Certificate, and deletes those (of this
/// MailDomain) no longer asked for, including all of them when `policyHost` is gone. `domain` is
/// the MailDomain's domain (A-labels preferred; U-labels are converted). Writes only what
/// differs. A missing cert-manager API is reported in [`Hosting::certificate`], not as an error.
pub async fn ensure(
    client: &Client,
    md: &MailDomain,
    domain: &str,
    config: &HostingConfig,
) -> Result<Hosting, kube::Error> {
    ensure_with(
        client,
        md,
        domain,
        config,
        &certificate_resource(),
        &Made::default(),
    )
    .await
}

/// [`ensure`], skipping the GETs for objects not wanted that `made` knows are not there.
pub async fn ensure_known(
    client: &Client,
    md: &MailDomain,
    domain: &str,
    config: &HostingConfig,
    made: &Made,
) -> Result<Hosting, kube::Error> {
    ensure_with(client, md, domain, config, &certificate_resource(), made).await
}

/// [`ensure`] with another API resource standing in for cert-manager's Certificate; lets the
/// tests see how an API the server does not serve is reported.
#[doc(hidden)]
pub async fn ensure_with(
    client: &Client,
    md: &MailDomain,
    domain: &str,
    config: &HostingConfig,
    certificate_api: &ApiResource,
    made: &Made,
) -> Result<Hosting, kube::Error> {
    let mut out = Hosting::default();
    let ns = md.namespace().unwrap_or_default();
    let Some(uid) = md.uid() else {
        out.conflicts
            .push("the MailDomain has no uid yet; nothing created for its policy host".into());
        return Ok(out);
    };
    let name = object_name(&md.name_any());
    let want = desired(md, domain, config);

    let ingress_value = match &want.ingress {
        Some(i) => {
            let mut v = to_value(i)?;
            // A class removed from the spec must be removed from the Ingress too.
            if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("ingressClassName").or_insert(Value::Null);
            }
            Some(v)
        }
        None => None,
    };
    let service_value = want.service.as_ref().map(to_value).transpose()?;
    let certificate_value = match &want.certificate {
        Some(c) => {
            let mut v = to_value(c)?;
            v["apiVersion"] = Value::String(certificate_api.api_version.clone());
            v["kind"] = Value::String(certificate_api.kind.clone());
            Some(v)
        }
        None => None,
    };
    let certificate_wanted = certificate_value.is_some();
    let route_value = want.route.as_ref().map(to_value).transpose()?;
    let route_wanted = route_value.is_some();

    // Certificate first: the Ingress's TLS Secret is on its way before the Ingress exists.
    let cm = api(client, &ns, certificate_api);
    match sync(
        &cm,
        "Certificate",
        &name,
        certificate_value,
        &uid,
        (&mut out, made),
    )
    .await
    {
        Ok(Synced::Present(live)) => out.certificate = Some(certificate_state(&live)),
        Ok(Synced::Conflict) => {
            out.certificate = Some(CertificateState {
                status: ConditionStatus::False,
                reason: reason::CERTIFICATE_CONFLICT.to_owned(),
                message: format!(
                    "Certificate {ns}/{name} exists and is not controlled by this MailDomain"
                ),
            })
        }
        Ok(Synced::Absent) => {}
        // The API server answers 404 for a whole API group it does not serve: cert-manager
        // is not installed. Then there is no Certificate of ours to delete either.
        Err(e) if is_not_found(&e) => {
            if certificate_wanted {
                out.certificate = Some(crd_missing(&ns));
            }
        }
        Err(e) => return Err(e),
    }
    let services = api(client, &ns, &ApiResource::erase::<Service>(&()));
    sync(
        &services,
        "Service",
        &name,
        service_value,
        &uid,
        (&mut out, made),
    )
    .await?;
    let ingresses = api(client, &ns, &ApiResource::erase::<Ingress>(&()));
    if let Synced::Present(live) = sync(
        &ingresses,
        "Ingress",
        &name,
        ingress_value,
        &uid,
        (&mut out, made),
    )
    .await?
    {
        out.load_balancer = LoadBalancer::of_ingress(&to_value(&live)?);
    }
    let routes = api(client, &ns, &http_route_resource());
    match sync(
        &routes,
        "HTTPRoute",
        &name,
        route_value,
        &uid,
        (&mut out, made),
    )
    .await
    {
        Ok(Synced::Present(_)) => {
            let parents = policy_host_spec(md)
                .and_then(|p| p.gateway_route.as_ref())
                .map(|g| g.parent_refs.clone())
                .unwrap_or_default();
            for parent in parents {
                let gateway_ns = parent.namespace.clone().unwrap_or_else(|| ns.clone());
                let gateways = api(client, &gateway_ns, &gateway_resource());
                // A Gateway that is not there (yet) or may not be read has no address for us.
                if let Ok(Some(gateway)) = gateways.get_opt(&parent.name).await {
                    LoadBalancer::of_gateway(&gateway.data, &mut out.load_balancer);
                }
            }
        }
        Ok(_) => {}
        // No Gateway API in this cluster: nothing of ours to delete either.
        Err(e) if is_not_found(&e) => {
            if route_wanted {
                out.conflicts.push(format!(
                    "the gateway.networking.k8s.io/v1 HTTPRoute API is not served, so no \
                     HTTPRoute can be created in {ns}: install the Gateway API CRDs \
                     (https://gateway-api.sigs.k8s.io/guides/#installing-gateway-api)"
                ));
            }
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Deletes the MailDomain's policy hosting objects (only those it controls). Returns how many
/// were deleted. The TLS Secret written by cert-manager is cert-manager's to keep or delete.
pub async fn remove(client: &Client, md: &MailDomain, made: &Made) -> Result<usize, kube::Error> {
    let ns = md.namespace().unwrap_or_default();
    let Some(uid) = md.uid() else {
        return Ok(0);
    };
    let name = object_name(&md.name_any());
    let mut out = Hosting::default();
    let ingresses = api(client, &ns, &ApiResource::erase::<Ingress>(&()));
    sync(&ingresses, "Ingress", &name, None, &uid, (&mut out, made)).await?;
    let services = api(client, &ns, &ApiResource::erase::<Service>(&()));
    sync(&services, "Service", &name, None, &uid, (&mut out, made)).await?;
    let routes = api(client, &ns, &http_route_resource());
    match sync(&routes, "HTTPRoute", &name, None, &uid, (&mut out, made)).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e),
    }
    let cm = api(client, &ns, &certificate_resource());
    match sync(&cm, "Certificate", &name, None, &uid, (&mut out, made)).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(out.writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateSpec, IngressSpec as HostIngress, MailDomainSpec};

    fn config(namespace: &str) -> HostingConfig {
        HostingConfig {
            service_name: "mailsec-serve".into(),
            service_namespace: namespace.into(),
            service_port: 8080,
            cluster_domain: "cluster.local".into(),
        }
    }

    fn md(name: &str, host: Option<PolicyHostSpec>) -> MailDomain {
        let spec: MailDomainSpec = serde_json::from_value(serde_json::json!({
            "domain": "example.com",
            "mx": ["mx1.example.com"],
            "mtaSts": {"mode": "enforce"},
        }))
        .expect("spec");
        let mut md = MailDomain::new(name, spec);
        md.metadata.namespace = Some("mail".into());
        md.metadata.uid = Some("0b0e2a8c-1111-2222-3333-444455556666".into());
        if let Some(sts) = md.spec.mta_sts.as_mut() {
            sts.policy_host = host;
        }
        md
    }

    fn routed(class: Option<&str>, issuer: Option<(&str, &str)>) -> PolicyHostSpec {
        PolicyHostSpec {
            ingress: Some(HostIngress {
                class_name: class.map(str::to_owned),
            }),
            gateway_route: None,
            external: None,
            address: None,
            certificate: issuer.map(|(kind, name)| CertificateSpec {
                issuer_ref: IssuerRef {
                    kind: kind.into(),
                    name: name.into(),
                },
            }),
        }
    }

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn names_are_short_unique_dns_labels() {
        assert_eq!(object_name("example-com"), "mta-sts-example-com");
        assert_eq!(tls_secret_name("example-com"), "mta-sts-example-com-tls");
        let long = "a".repeat(253);
        let dotted = "example.com";
        let similar = "example-com";
        for n in [long.as_str(), dotted, "x".repeat(51).as_str(), "ab-", "Ab"] {
            let name = object_name(n);
            assert!(is_dns_label(&name), "{n} -> {name}");
            assert!(is_dns_label(&tls_secret_name(n)), "{n}");
            assert!(name.starts_with("mta-sts-"), "{name}");
        }
        assert_ne!(object_name(dotted), object_name(similar));
        assert_ne!(object_name(&long), object_name(&"a".repeat(252)));
        // Exactly at the limit the plain form is kept.
        let fits = "x".repeat(MAX_NAME - "mta-sts-".len());
        assert_eq!(object_name(&fits), format!("mta-sts-{fits}"));
        assert_eq!(object_name(&fits).len(), MAX_NAME);
    }

    #[test]
    fn policy_host_is_in_a_labels() {
        assert_eq!(
            policy_host("Bücher.Example"),
            "mta-sts.xn--bcher-kva.example"
        );
        assert_eq!(policy_host("example.com"), "mta-sts.example.com");
    }

    #[test]
    fn ingress_routes_the_well_known_path_exactly() {
        let md = md("example-com", Some(routed(Some("nginx"), None)));
        let ing = ingress(&md, "example.com", &config("mailsec-system"));
        assert_eq!(ing.metadata.name.as_deref(), Some("mta-sts-example-com"));
        assert_eq!(ing.metadata.namespace.as_deref(), Some("mail"));
        let owner = &ing.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.kind, "MailDomain");
        assert_eq!(owner.api_version, "mailsec.io/v1alpha1");
        assert_eq!(owner.name, "example-com");
        assert_eq!(owner.controller, Some(true));
        let spec = ing.spec.expect("spec");
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.expect("tls")[0];
        assert_eq!(
            tls.hosts.as_deref(),
            Some(&["mta-sts.example.com".to_owned()][..])
        );
        assert_eq!(tls.secret_name.as_deref(), Some("mta-sts-example-com-tls"));
        let rules = spec.rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].host.as_deref(), Some("mta-sts.example.com"));
        let paths = &rules[0].http.as_ref().expect("http").paths;
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].path.as_deref(), Some("/.well-known/mta-sts.txt"));
        assert_eq!(paths[0].path_type, "Exact");
        let backend = paths[0].backend.service.as_ref().expect("service backend");
        // Another namespace than the policy server's: the ExternalName Service of this MailDomain.
        assert_eq!(backend.name, "mta-sts-example-com");
        assert_eq!(backend.port.as_ref().and_then(|p| p.number), Some(8080));
    }

    #[test]
    fn ingress_in_the_policy_servers_namespace_uses_its_service() {
        let md = md("example-com", Some(routed(None, None)));
        let cfg = config("mail");
        let ing = ingress(&md, "example.com", &cfg);
        let spec = ing.spec.expect("spec");
        assert_eq!(spec.ingress_class_name, None);
        let rule = &spec.rules.expect("rules")[0];
        let backend = rule.http.as_ref().expect("http").paths[0]
            .backend
            .service
            .clone()
            .expect("service");
        assert_eq!(backend.name, "mailsec-serve");
        assert!(service(&md, &cfg).is_none());
        assert!(desired(&md, "example.com", &cfg).service.is_none());
    }

    #[test]
    fn external_name_service_points_at_the_policy_server() {
        let md = md("example-com", Some(routed(None, None)));
        let svc = service(&md, &config("mailsec-system")).expect("service");
        assert_eq!(svc.metadata.name.as_deref(), Some("mta-sts-example-com"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("mail"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
        assert_eq!(
            spec.external_name.as_deref(),
            Some("mailsec-serve.mailsec-system.svc.cluster.local")
        );
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(port.port, 8080);
        assert!(spec.selector.is_none());
    }

    #[test]
    fn certificate_names_the_issuer_and_the_tls_secret() {
        let md = md(
            "example-com",
            Some(routed(None, Some(("ClusterIssuer", "letsencrypt")))),
        );
        let want = desired(&md, "Bücher.Example", &config("mailsec-system"));
        let cert = want.certificate.expect("certificate");
        let v = serde_json::to_value(&cert).expect("json");
        assert_eq!(v["apiVersion"], "cert-manager.io/v1");
        assert_eq!(v["kind"], "Certificate");
        assert_eq!(v["metadata"]["name"], "mta-sts-example-com");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            v["spec"],
            serde_json::json!({
                "secretName": "mta-sts-example-com-tls",
                "dnsNames": ["mta-sts.xn--bcher-kva.example"],
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt"},
            })
        );
    }

    #[test]
    fn http_route_attaches_to_the_gateways_and_routes_the_well_known_path() {
        use crate::api::{GatewayParentRef, GatewayRouteSpec};
        let spec = PolicyHostSpec {
            ingress: None,
            gateway_route: Some(GatewayRouteSpec {
                parent_refs: vec![
                    GatewayParentRef {
                        name: "public".into(),
                        namespace: Some("gateways".into()),
                        section_name: Some("https".into()),
                    },
                    GatewayParentRef {
                        name: "local".into(),
                        namespace: None,
                        section_name: None,
                    },
                ],
            }),
            external: None,
            certificate: None,
            address: None,
        };
        let cfg = config("mailsec-system");
        let d = desired(&md("shop", Some(spec)), "Bücher.example", &cfg);
        assert!(d.ingress.is_none());
        let route = d.route.expect("a route");
        assert_eq!(
            route.types.as_ref().map(|t| t.kind.as_str()),
            Some("HTTPRoute")
        );
        let spec = &route.data["spec"];
        assert_eq!(
            spec["hostnames"],
            serde_json::json!(["mta-sts.xn--bcher-kva.example"])
        );
        assert_eq!(spec["parentRefs"][0]["namespace"], "gateways");
        assert_eq!(spec["parentRefs"][0]["sectionName"], "https");
        assert_eq!(
            spec["parentRefs"][1]["namespace"], "mail",
            "the MailDomain's namespace"
        );
        assert!(spec["parentRefs"][1]["sectionName"].is_null());
        let rule = &spec["rules"][0];
        assert_eq!(rule["matches"][0]["path"]["type"], "Exact");
        assert_eq!(rule["matches"][0]["path"]["value"], WELL_KNOWN_PATH);
        // Elsewhere than the policy server: through the ExternalName Service beside it.
        assert_eq!(rule["backendRefs"][0]["name"], object_name("shop"));
        assert_eq!(rule["backendRefs"][0]["port"], 8080);
        assert!(d.service.is_some());
    }

    #[test]
    fn what_is_desired_follows_the_spec() {
        let cfg = config("mailsec-system");
        assert_eq!(
            desired(&md("a", None), "a.example", &cfg),
            Desired::default()
        );
        let external = PolicyHostSpec {
            ingress: None,
            gateway_route: None,
            external: Some(Default::default()),
            certificate: None,
            address: None,
        };
        assert_eq!(
            desired(&md("a", Some(external.clone())), "a.example", &cfg),
            Desired::default()
        );
        // external with a certificate: only the Certificate.
        let with_cert = PolicyHostSpec {
            certificate: Some(CertificateSpec {
                issuer_ref: IssuerRef {
                    kind: "Issuer".into(),
                    name: "ca".into(),
                },
            }),
            ..external
        };
        let d = desired(&md("a", Some(with_cert)), "a.example", &cfg);
        assert!(d.ingress.is_none() && d.service.is_none() && d.certificate.is_some());
        let d = desired(&md("a", Some(routed(None, None))), "a.example", &cfg);
        assert!(d.ingress.is_some() && d.service.is_some() && d.certificate.is_none());
        let mut no_sts = md("a", None);
        no_sts.spec.mta_sts = None;
        assert_eq!(desired(&no_sts, "a.example", &cfg), Desired::default());
    }

    #[test]
    fn up_to_date_ignores_defaults_and_sees_changes() {
        let want = serde_json::json!({"spec": {"a": 1, "list": [{"x": "y"}], "gone": null}});
        let live = serde_json::json!({"spec": {"a": 1, "list": [{"x": "y", "default": 2}], "extra": true}, "status": {}});
        assert!(up_to_date(&want, &live));
        let changed = serde_json::json!({"spec": {"a": 2, "list": [{"x": "y"}]}});
        assert!(!up_to_date(&want, &changed));
        let longer = serde_json::json!({"spec": {"a": 1, "list": [{"x": "y"}, {"x": "z"}]}});
        assert!(!up_to_date(&want, &longer));
        let still_there = serde_json::json!({"spec": {"a": 1, "list": [{"x": "y"}], "gone": "x"}});
        assert!(!up_to_date(&want, &still_there));
        assert!(!up_to_date(&want, &serde_json::json!({})));
    }

    #[test]
    fn strip_nulls_removes_absent_markers() {
        let v = serde_json::json!({"spec": {"a": null, "b": [{"c": null, "d": 1}]}});
        assert_eq!(
            strip_nulls(v),
            serde_json::json!({"spec": {"b": [{"d": 1}]}})
        );
    }

    #[test]
    fn ownership_needs_the_controller_reference() {
        let md = md("example-com", Some(routed(None, None)));
        let ing = ingress(&md, "example.com", &config("x"));
        let uid = md.uid().expect("uid");
        assert!(controlled_by(&ing.metadata, &uid));
        assert!(!controlled_by(&ing.metadata, "other"));
        let mut meta = ing.metadata.clone();
        if let Some(refs) = meta.owner_references.as_mut() {
            refs[0].controller = None;
        }
        assert!(!controlled_by(&meta, &uid));
        assert!(!controlled_by(&ObjectMeta::default(), &uid));
    }

    fn live_certificate(status: Value, generation: i64) -> DynamicObject {
        let mut object = DynamicObject::new("mta-sts-x", &certificate_resource())
            .within("mail")
            .data(serde_json::json!({"spec": {}, "status": status}));
        object.metadata.generation = Some(generation);
        object
    }

    #[test]
    fn certificate_state_mirrors_cert_managers_ready_condition() {
        let issuing = live_certificate(
            serde_json::json!({"conditions": [
                {"type": "Issuing", "status": "True", "reason": "DoesNotExist", "message": "x"},
                {"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist", "observedGeneration": 1},
            ]}),
            1,
        );
        let s = certificate_state(&issuing);
        assert_eq!(s.status, ConditionStatus::False);
        assert_eq!(s.reason, "DoesNotExist");
        assert!(s.message.contains("Issuing certificate"), "{}", s.message);
        assert!(s.message.contains("mail/mta-sts-x"), "{}", s.message);

        let ready = live_certificate(
            serde_json::json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired"}]}),
            3,
        );
        let s = certificate_state(&ready);
        assert_eq!(
            (s.status, s.reason.as_str()),
            (ConditionStatus::True, "Ready")
        );

        let stale = live_certificate(
            serde_json::json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "m", "observedGeneration": 1}]}),
            2,
        );
        let s = certificate_state(&stale);
        assert_eq!(
            (s.status, s.reason.as_str()),
            (ConditionStatus::Unknown, reason::CERTIFICATE_PENDING)
        );

        let fresh = live_certificate(Value::Null, 1);
        let s = certificate_state(&fresh);
        assert_eq!(s.status, ConditionStatus::Unknown);
        assert!(s.message.contains("cert-manager"), "{}", s.message);

        let s = crd_missing("mail");
        assert_eq!(
            (s.status, s.reason.as_str()),
            (ConditionStatus::False, reason::CERTIFICATE_CRD_MISSING)
        );
        assert!(s.message.contains("install cert-manager"), "{}", s.message);
    }
}
