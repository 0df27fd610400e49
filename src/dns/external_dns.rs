//! The externalDNS export: for users whose DNS only external-dns can write. The records of the
//! names the operator owns alone (the names with an underscored label: `_mta-sts`,
//! `_smtp._tls`, `_dmarc`, `<selector>._domainkey`, `<selector>._bimi` and the `_mailsec`
//! markers) go into one `externaldns.k8s.io/v1alpha1` DNSEndpoint per MailDomain, in its
//! namespace and owned by it; an external-dns with the CRD source publishes them.
//!
//! external-dns replaces a name's whole RRset, so names shared with records of others (the
//! domain itself, where SPF sits among verification TXT records, and the policy host's address)
//! are never exported: status lists them to publish by hand. A name whose DNS answer holds a
//! value the export did not write is refused, with nothing written. A record counts as
//! published once the `resolver` answers it.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PostParams};
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};

use super::DnsError;
use super::address::AddressSet;
use super::backend::{ApiMeter, ConnectError, DnsBackend, NoMeter, Unpublished, result_of};
use super::content::value_of;
use super::ownership::Owner;
use super::plan::{Current, Operation, RRset, rrsets_after};
use super::rfc2136::{Rfc2136, resolve_server};
use crate::api::{ExternalDnsSpec, MailDomain};
use crate::domain::txt;

/// The label on every DNSEndpoint the export writes.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mailsec-operator");

/// The export, shared by the MailDomains of one provider; [`DnsBackend::scoped`] gives each
/// its view, bound to its DNSEndpoint.
pub struct ExternalDns {
    shared: Arc<Shared>,
}

struct Shared {
    client: kube::Client,
    labels: BTreeMap<String, String>,
    reader: Rfc2136,
    resolver: String,
    meter: Arc<dyn ApiMeter>,
}

/// One endpoint of a DNSEndpoint's `spec.endpoints`, as external-dns reads it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub dns_name: String,
    pub record_type: String,
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<u32>,
}

impl ExternalDns {
    pub async fn from_spec(
        spec: &ExternalDnsSpec,
        client: Option<kube::Client>,
    ) -> Result<Self, ConnectError> {
        let client = client.ok_or_else(|| {
            DnsError::Config("the externalDNS export needs the Kubernetes API".into())
        })?;
        let server = resolve_server(&spec.resolver)
            .await
            .map_err(DnsError::Unreachable)?;
        Ok(ExternalDns {
            shared: Arc::new(Shared {
                client,
                labels: spec.labels.clone(),
                reader: Rfc2136::reader(server),
                resolver: spec.resolver.clone(),
                meter: Arc::new(NoMeter),
            }),
        })
    }

    /// Reports every request (DNS query or Kubernetes call) to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        let s = &self.shared;
        ExternalDns {
            shared: Arc::new(Shared {
                client: s.client.clone(),
                labels: s.labels.clone(),
                reader: Rfc2136::reader(s.reader.server()).with_meter(meter.clone()),
                resolver: s.resolver.clone(),
                meter,
            }),
        }
    }
}

/// The resource the export writes.
pub fn dns_endpoint_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint"),
        "dnsendpoints",
    )
}

/// Why the export does not write at `name`, if it does not: every name it owns alone has a
/// label that starts with `_` (RFC 8552's underscored names: `_dmarc`, `s1._domainkey`, the
/// markers), the domain and the policy host have none.
pub fn not_exported(name: &str, record_type: &str) -> Option<String> {
    if record_type != "TXT" {
        return Some(format!(
            "the externalDNS export writes TXT records only; {name} is a host name that \
             external-dns publishes from the Ingress or Gateway (its ingress or gateway source)"
        ));
    }
    (!name.split('.').any(|label| label.starts_with('_'))).then(|| {
        format!(
            "external-dns replaces a name's whole TXT RRset, and {name} holds TXT records of \
             others too (verifications, other senders), so the export leaves it alone"
        )
    })
}

/// A DNSEndpoint target for a TXT value: quoted ≤255-byte strings, the zone-file form that
/// external-dns's rfc2136, pdns, aws and google providers pass on as they are.
pub fn target(value: &str) -> String {
    txt::to_presentation(value)
}

/// The DNSEndpoint of one MailDomain.
fn object_name(maildomain: &str) -> String {
    let name = format!("mailsec-{maildomain}");
    if name.len() <= 253 {
        return name;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(maildomain.as_bytes());
    let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &name[..240].trim_end_matches(['-', '.']))
}

/// The export as one MailDomain sees it, for one pass (`scoped` makes one per reconcile).
struct View {
    export: Arc<Shared>,
    namespace: String,
    maildomain: String,
    /// What DNS answered at this pass's read: `unpublished` compares with it instead of asking
    /// again. What this pass exports cannot be in DNS yet; what external-dns publishes between
    /// the read and the end of the pass is seen at the next pass (`ExportPending` polls).
    answered: std::sync::Mutex<Current>,
}

impl View {
    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.export.client.clone(),
            &self.namespace,
            &dns_endpoint_resource(),
        )
    }

    fn what(&self) -> String {
        format!(
            "DNSEndpoint {}/{}",
            self.namespace,
            object_name(&self.maildomain)
        )
    }

    /// The DNSEndpoint and its TXT endpoints, if it exists.
    async fn exported(&self) -> Result<Option<(DynamicObject, Vec<Endpoint>)>, DnsError> {
        let result = self
            .api()
            .get_opt(&object_name(&self.maildomain))
            .await
            .map_err(|e| kube_error(e, &self.what()));
        self.export.meter.request("externalDNS", result_of(&result));
        let Some(object) = result? else {
            return Ok(None);
        };
        let endpoints = object
            .data
            .pointer("/spec/endpoints")
            .cloned()
            .map(serde_json::from_value::<Vec<Endpoint>>)
            .transpose()
            .map_err(|e| DnsError::Server(format!("{}: spec.endpoints: {e}", self.what())))?
            .unwrap_or_default();
        Ok(Some((object, endpoints)))
    }

    /// The owner reference to the MailDomain, so the DNSEndpoint goes when it goes.
    async fn owner(
        &self,
    ) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference, DnsError> {
        let api: Api<MailDomain> = Api::namespaced(self.export.client.clone(), &self.namespace);
        let result = api.get(&self.maildomain).await.map_err(|e| {
            kube_error(
                e,
                &format!("MailDomain {}/{}", self.namespace, self.maildomain),
            )
        });
        self.export.meter.request("externalDNS", result_of(&result));
        let md = result?;
        use kube::Resource;
        md.controller_owner_ref(&()).ok_or_else(|| {
            DnsError::Server(format!(
                "MailDomain {}/{} has no uid",
                self.namespace, self.maildomain
            ))
        })
    }

    async fn write(
        &self,
        existing: Option<DynamicObject>,
        endpoints: Vec<Endpoint>,
    ) -> Result<(), DnsError> {
        let api = self.api();
        let name = object_name(&self.maildomain);
        let spec = serde_json::json!({ "endpoints": endpoints });
        let result = match existing {
            Some(object) if endpoints.is_empty() => {
                // Deleted only as read: someone else's change in between is a conflict.
                let params = kube::api::DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        resource_version: object.metadata.resource_version.clone(),
                        uid: object.metadata.uid.clone(),
                    }),
                    ..Default::default()
                };
                api.delete(&name, &params).await.map(|_| ())
            }
            None if endpoints.is_empty() => return Ok(()),
            Some(mut object) => {
                object.data["spec"] = spec;
                api.replace(&name, &PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
            None => {
                let mut labels = self.export.labels.clone();
                labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
                let object = DynamicObject {
                    types: Some(kube::core::TypeMeta {
                        api_version: "externaldns.k8s.io/v1alpha1".into(),
                        kind: "DNSEndpoint".into(),
                    }),
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(labels),
                        owner_references: Some(vec![self.owner().await?]),
                        ..Default::default()
                    },
                    data: serde_json::json!({ "spec": spec }),
                };
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
        };
        let result = result.map_err(|e| kube_error(e, &self.what()));
        self.export.meter.request("externalDNS", result_of(&result));
        result
    }
}

fn refused_address(name: &str) -> DnsError {
    DnsError::Refused(format!(
        "{name}: {}",
        not_exported(name, "CNAME").unwrap_or_default()
    ))
}

/// A Kubernetes API error as a DNS error, with what to do.
fn kube_error(error: kube::Error, what: &str) -> DnsError {
    match &error {
        kube::Error::Api(status) if status.code == 409 => DnsError::ConcurrentChange(format!(
            "{what} changed since it was read; the next pass reads it again"
        )),
        kube::Error::Api(status) if status.code == 404 => DnsError::Config(format!(
            "{what}: {}: is external-dns's DNSEndpoint CRD (externaldns.k8s.io/v1alpha1) installed?",
            status.message
        )),
        kube::Error::Api(status) if status.code == 403 => DnsError::Refused(format!(
            "{what}: {}: the operator's ServiceAccount needs get, create, update and delete on \
             dnsendpoints.externaldns.k8s.io (the chart grants them)",
            status.message
        )),
        kube::Error::Api(status) if status.code == 422 || status.code == 400 => DnsError::Config(
            format!("{what}: refused by the API server: {}", status.message),
        ),
        kube::Error::Api(status) => {
            DnsError::Server(format!("{what}: {} {}", status.code, status.message))
        }
        other => DnsError::Unreachable(format!("{what}: the Kubernetes API: {other}")),
    }
}

/// The exported values at each name (logical values, from the targets).
fn exported_values(endpoints: &[Endpoint]) -> BTreeMap<String, RRset> {
    endpoints
        .iter()
        .filter(|e| e.record_type == "TXT")
        .map(|e| {
            (
                e.dns_name.trim_end_matches('.').to_ascii_lowercase(),
                RRset {
                    ttl: e.record_ttl.unwrap_or(300),
                    values: e.targets.iter().map(|t| value_of(t)).collect(),
                },
            )
        })
        .collect()
}

/// The endpoints after `operations`: those of other names kept as they are, each name the
/// operations touch set to `after` (gone when empty). A value in `after` that is neither
/// exported already nor added here is someone else's: refused.
pub fn endpoints_after(
    endpoints: &[Endpoint],
    current: &Current,
    operations: &[Operation],
    resolver: &str,
) -> Result<Vec<Endpoint>, DnsError> {
    let exported = exported_values(endpoints);
    let after = rrsets_after(current, operations);
    for (name, rrset) in &after {
        if let Some(why) = not_exported(name, "TXT") {
            return Err(DnsError::Refused(format!("{name}: {why}")));
        }
        let added = |v: &String| {
            operations.iter().any(
                |op| matches!(op, Operation::Add { name: n, value, .. } if n == name && value == v),
            )
        };
        let ours = |v: &String| exported.get(name).is_some_and(|rr| rr.values.contains(v));
        if let Some(foreign) = rrset.values.iter().find(|v| !added(v) && !ours(v)) {
            return Err(DnsError::Refused(format!(
                "{name} holds a TXT value the operator did not export (\"{foreign}\", seen at \
                 {resolver}); external-dns would take over the whole RRset, so nothing is \
                 exported: remove that value, or publish through a provider that edits single \
                 values"
            )));
        }
    }
    let mut out: Vec<Endpoint> = endpoints
        .iter()
        .filter(|e| !after.contains_key(&e.dns_name.trim_end_matches('.').to_ascii_lowercase()))
        .cloned()
        .collect();
    for (name, rrset) in after {
        if rrset.values.is_empty() {
            continue;
        }
        out.push(Endpoint {
            dns_name: name,
            record_type: "TXT".into(),
            targets: rrset.values.iter().map(|v| target(v)).collect(),
            record_ttl: Some(rrset.ttl),
        });
    }
    out.sort_by(|a, b| a.dns_name.cmp(&b.dns_name));
    Ok(out)
}

impl DnsBackend for ExternalDns {
    fn kind(&self) -> &'static str {
        "externalDNS"
    }

    // Used only through a MailDomain's view (`scoped`); unscoped, it reads DNS and writes
    // nothing.
    fn read<'a>(
        &'a self,
        _zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(self.shared.reader.read(names))
    }

    fn apply<'a>(
        &'a self,
        _zone: &'a str,
        _current: &'a Current,
        _operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async {
            Err(DnsError::Config(
                "the externalDNS export writes only for a MailDomain".into(),
            ))
        })
    }

    fn read_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(self.shared.reader.read_address(name))
    }

    fn write_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
        _before: &'a AddressSet,
        _after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move { Err(refused_address(name)) })
    }

    fn scoped(&self, owner: &Owner) -> Option<Arc<dyn DnsBackend>> {
        let (namespace, maildomain) = owner.resource.split_once('/')?;
        Some(Arc::new(View {
            export: self.shared.clone(),
            namespace: namespace.to_owned(),
            maildomain: maildomain.to_owned(),
            answered: Default::default(),
        }))
    }
}

impl DnsBackend for View {
    fn kind(&self) -> &'static str {
        "externalDNS"
    }

    fn refuses(&self, name: &str, record_type: &str) -> Option<String> {
        not_exported(name, record_type)
    }

    /// What is exported where the DNSEndpoint has the name, else what DNS answers (foreign
    /// values; the shared names' records published by hand).
    fn read<'a>(
        &'a self,
        _zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(async move {
            let (answered, exported) =
                futures_util::future::join(self.export.reader.read(names), self.exported()).await;
            let mut current = answered?;
            if let Ok(mut kept) = self.answered.lock() {
                kept.clone_from(&current);
            }
            let exported = exported_values(&exported?.map(|(_, e)| e).unwrap_or_default());
            for name in names {
                if let Some(rrset) = exported.get(name) {
                    current.insert(name.clone(), rrset.clone());
                }
            }
            Ok(current)
        })
    }

    fn apply<'a>(
        &'a self,
        _zone: &'a str,
        current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let (object, endpoints) = match self.exported().await? {
                Some((object, endpoints)) => (Some(object), endpoints),
                None => (None, Vec::new()),
            };
            let after = endpoints_after(&endpoints, current, operations, &self.export.resolver)?;
            if object.is_some() && after == endpoints {
                return Ok(());
            }
            self.write(object, after).await
        })
    }

    fn unpublished<'a>(
        &'a self,
        _zone: &'a str,
        records: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<Unpublished>, DnsError>> {
        Box::pin(async move {
            let answered = self.answered.lock().map(|a| a.clone()).unwrap_or_default();
            Ok(Some(
                records
                    .iter()
                    .filter_map(|(name, value)| {
                        let values = answered.get(name).map(|rr| rr.values.as_slice());
                        if values == Some(std::slice::from_ref(value)) {
                            return None;
                        }
                        let answer = match values {
                            None | Some([]) => "does not answer it yet".to_owned(),
                            Some(values) => format!(
                                "answers {}",
                                values
                                    .iter()
                                    .map(|v| format!("\"{v}\""))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        Some((
                            name.clone(),
                            format!(
                                "exported in {}; waiting for external-dns to publish it ({} {answer})",
                                self.what(),
                                self.export.resolver
                            ),
                        ))
                    })
                    .collect(),
            ))
        })
    }

    fn read_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(self.export.reader.read_address(name))
    }

    fn write_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
        _before: &'a AddressSet,
        _after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move { Err(refused_address(name)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &str, value: &str) -> Operation {
        Operation::Add {
            name: name.into(),
            ttl: 60,
            value: value.into(),
        }
    }

    #[test]
    fn only_underscore_names_are_exported() {
        assert_eq!(not_exported("_dmarc.example.com", "TXT"), None);
        assert_eq!(not_exported("s1._domainkey.example.com", "TXT"), None);
        assert_eq!(not_exported("_mailsec._dmarc.example.com", "TXT"), None);
        assert!(not_exported("example.com", "TXT").is_some_and(|m| m.contains("whole TXT RRset")));
        assert!(not_exported("_mailsec.example.com", "TXT").is_none());
        assert!(not_exported("mta-sts.example.com", "CNAME").is_some());
    }

    #[test]
    fn long_values_become_quoted_strings_of_at_most_255_bytes() {
        let key = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let t = target(&key);
        assert!(t.starts_with("\"v=DKIM1; k=rsa; p=") && t.ends_with('"'));
        let strings = txt::parse_presentation(&t).expect("presentation form");
        assert_eq!(
            strings.iter().map(Vec::len).collect::<Vec<_>>(),
            [255, key.len() - 255]
        );
        assert_eq!(value_of(&t), key, "reads back as the same value");
        assert_eq!(target("v=DMARC1; p=none"), "\"v=DMARC1; p=none\"");
    }

    #[test]
    fn endpoints_follow_the_operations_and_keep_other_names() {
        let kept = Endpoint {
            dns_name: "_mta-sts.example.com".into(),
            record_type: "TXT".into(),
            targets: vec![target("v=STSv1; id=1")],
            record_ttl: Some(60),
        };
        let old_dmarc = Endpoint {
            dns_name: "_dmarc.example.com".into(),
            record_type: "TXT".into(),
            targets: vec![target("v=DMARC1; p=none")],
            record_ttl: Some(60),
        };
        let current: Current = exported_values(&[kept.clone(), old_dmarc.clone()]);
        let ops = [
            Operation::Remove {
                name: "_dmarc.example.com".into(),
                value: "v=DMARC1; p=none".into(),
            },
            add("_dmarc.example.com", "v=DMARC1; p=reject"),
        ];
        let after = endpoints_after(&[kept.clone(), old_dmarc], &current, &ops, "ns1").expect("ok");
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].dns_name, "_dmarc.example.com");
        assert_eq!(after[0].targets, [target("v=DMARC1; p=reject")]);
        assert_eq!(
            after[1], kept,
            "a name the operations do not touch is kept as it is"
        );
        // Removing the last value drops the endpoint.
        let gone = endpoints_after(
            &after,
            &exported_values(&after),
            &[Operation::Remove {
                name: "_mta-sts.example.com".into(),
                value: "v=STSv1; id=1".into(),
            }],
            "ns1",
        )
        .expect("ok");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].dns_name, "_dmarc.example.com");
    }

    #[test]
    fn a_foreign_value_at_a_name_refuses_the_export() {
        let mut current = Current::new();
        current.insert(
            "_dmarc.example.com".into(),
            RRset {
                ttl: 300,
                values: vec!["someone else's".into()],
            },
        );
        let err = endpoints_after(
            &[],
            &current,
            &[add("_dmarc.example.com", "v=DMARC1; p=none")],
            "ns1:53",
        )
        .expect_err("refused");
        assert_eq!(err.category(), "DNSRefused");
        assert!(err.to_string().contains("someone else's") && err.to_string().contains("ns1:53"));
        // The apex is never exported, whatever is there.
        let err = endpoints_after(
            &[],
            &Current::new(),
            &[add("example.com", "v=spf1 -all")],
            "ns1",
        )
        .expect_err("refused");
        assert!(err.to_string().contains("whole TXT RRset"));
    }

    #[test]
    fn long_names_of_maildomains_still_make_valid_object_names() {
        assert_eq!(object_name("shop"), "mailsec-shop");
        let long = "a".repeat(253);
        let name = object_name(&long);
        assert!(name.len() <= 253 && name.starts_with("mailsec-aaa"));
        assert_ne!(name, object_name(&"a".repeat(252)));
    }
}
