//! Dereference: what the MailDomain names, fetched from the cluster. In two steps, because the
//! validation between them needs the first and the second needs its result:
//! - [`secrets`]: the DKIM key Secrets (validation checks the keys);
//! - [`target`]: the domain claim (two MailDomains for one domain) and the DNS provider, after
//!   the multi-tenancy checks (a DNSProvider serves its own namespace; a ClusterDNSProvider may
//!   be limited to some namespaces and zones), as a ready-to-use backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::context::Context;
use super::providers::{Key, SecretId};
use crate::api::{MailDomain, ProviderKind, SecretKeyRef, SyncPolicy};
use crate::dns::DnsError;
use crate::dns::backend::{
    ApiMeter, ConnectError, DnsBackend, Manual, SecretError, SecretSource, find_zone,
};
use crate::dns::ownership::Owner;
use crate::dns::plan::{Policy, Settings};
use crate::dns::registry;
use crate::domain::name::DomainName;
use crate::metrics::Metrics;
use crate::model::claim::{self, Purpose};
use crate::model::validate::SecretData;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    DomainConflict(String),
    #[error("{0}")]
    ProviderNotFound(String),
    #[error("{0}")]
    ProviderNotAllowed(String),
    #[error("{0}")]
    SecretNotFound(String),
    #[error("provider {provider}: {source}")]
    Dns { provider: String, source: DnsError },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A provider's Secret could not be read (the API server did not answer).
    #[error("{0}")]
    SecretUnavailable(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::DomainConflict(_) => "DomainConflict",
            Error::ProviderNotFound(_) => "ProviderNotFound",
            Error::ProviderNotAllowed(_) => "ProviderNotAllowed",
            Error::SecretNotFound(_) => "SecretNotFound",
            Error::Dns { source, .. } => source.category(),
            Error::Kube(_) | Error::SecretUnavailable(_) => "KubernetesError",
        }
    }

    /// Errors only the user can fix: retrying on a timer does not help.
    pub fn needs_user(&self) -> bool {
        !matches!(
            self,
            Error::Dns { .. } | Error::Kube(_) | Error::SecretUnavailable(_)
        )
    }
}

/// Where and how one MailDomain's records are written.
pub struct Target {
    pub backend: Arc<dyn DnsBackend>,
    pub zone: String,
    /// The plan's inputs besides the records: our owner marker, the provider's policy, adopt.
    pub settings: Settings,
}

/// The data of the Secrets the DKIM entries name (missing ones are left out: validation says
/// which field names them).
pub async fn secrets(md: &MailDomain, client: &Client) -> Result<SecretData, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace(md));
    let mut data = SecretData::new();
    for reference in md
        .spec
        .dkim
        .iter()
        .filter_map(|d| d.key_secret_ref.as_ref())
    {
        if data.contains_key(&reference.name) {
            continue;
        }
        if let Some(secret) = api.get_opt(&reference.name).await? {
            let entries: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.insert(reference.name.clone(), entries);
        }
    }
    Ok(data)
}

/// The provider for `domain`, once the domain claim is settled. A MailDomain being deleted
/// gives up its claim, so its claim is not checked.
pub async fn target(
    md: &MailDomain,
    ctx: &Context,
    domain: &DomainName,
    deleting: bool,
) -> Result<Target, Error> {
    if !deleting {
        check_claim(md, ctx, domain)?;
    }
    let ns = namespace(md);
    let owner = |id: &str| Owner::new(id, format!("{ns}/{}", md.name_any()));
    let Some(reference) = &md.spec.dns_provider_ref else {
        return Ok(Target {
            backend: Arc::new(Manual),
            zone: domain.to_string(),
            settings: Settings {
                owner: owner(&ctx.config.owner_id),
                policy: Policy::Sync,
                adopt: md.spec.adopt_existing,
            },
        });
    };
    if !ctx.providers.ready().await {
        return Err(Error::SecretUnavailable(
            "the DNSProvider and ClusterDNSProvider watches have not listed yet".into(),
        ));
    }
    // The provider's settings, and the namespace its Secrets live in.
    let (settings, secret_namespace, resource_version) = match reference.kind {
        ProviderKind::DnsProvider => {
            let provider = ctx
                .providers
                .dns_provider(&ns, &reference.name)
                .ok_or_else(|| {
                    Error::ProviderNotFound(format!(
                        "DNSProvider {ns}/{} does not exist",
                        reference.name
                    ))
                })?;
            (
                provider.spec.settings.clone(),
                ns.clone(),
                provider.resource_version(),
            )
        }
        ProviderKind::ClusterDnsProvider => {
            let provider = ctx
                .providers
                .cluster_dns_provider(&reference.name)
                .ok_or_else(|| {
                    Error::ProviderNotFound(format!(
                        "ClusterDNSProvider {} does not exist",
                        reference.name
                    ))
                })?;
            let allowed = &provider.spec.allowed_namespaces;
            if !allowed.is_empty() && !allowed.contains(&ns) {
                return Err(Error::ProviderNotAllowed(format!(
                    "ClusterDNSProvider {} does not allow namespace {ns} (allowedNamespaces: {})",
                    reference.name,
                    allowed.join(", ")
                )));
            }
            (
                provider.spec.settings.clone(),
                ctx.config.operator_namespace.clone(),
                provider.resource_version(),
            )
        }
    };
    let zone = if settings.zones.is_empty() {
        domain.to_string()
    } else {
        find_zone(domain.as_str(), &settings.zones)
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::ProviderNotAllowed(format!(
                    "{domain} is in none of the zones of provider {} ({})",
                    reference.name,
                    settings.zones.join(", ")
                ))
            })?
    };
    let key = Key {
        kind: reference.kind,
        namespace: (reference.kind == ProviderKind::DnsProvider).then(|| ns.clone()),
        name: reference.name.clone(),
    };
    let backend = match ctx.providers.cached(&key, resource_version.as_deref()) {
        Some(backend) => backend,
        None => {
            let epoch = ctx.providers.epoch();
            let secrets = KubeSecrets {
                client: ctx.client.clone(),
                namespace: secret_namespace,
                read: Mutex::new(BTreeSet::new()),
            };
            let meter = Arc::new(Meter(ctx.metrics.clone()));
            let made =
                registry::connect(&settings, &secrets, meter, Some(ctx.client.clone())).await;
            let read = secrets.read.into_inner().unwrap_or_default();
            ctx.providers.keep(
                key,
                resource_version,
                epoch,
                made.as_ref().ok().cloned(),
                read,
            );
            made.map_err(|e| match e {
                ConnectError::MissingSettings { provider_type } => {
                    Error::ProviderNotFound(format!(
                        "provider {} has type {provider_type} but no {provider_type} settings",
                        reference.name
                    ))
                }
                ConnectError::Secret(SecretError::NotFound(m)) => Error::SecretNotFound(m),
                ConnectError::Secret(e @ SecretError::Unavailable(_)) => {
                    Error::SecretUnavailable(e.to_string())
                }
                ConnectError::Dns(source) => Error::Dns {
                    provider: reference.name.clone(),
                    source,
                },
            })?
        }
    };
    let policy = match settings.policy {
        SyncPolicy::Sync => Policy::Sync,
        SyncPolicy::UpsertOnly => Policy::UpsertOnly,
        SyncPolicy::CreateOnly => Policy::CreateOnly,
    };
    let owner = owner(settings.owner_id.as_deref().unwrap_or(&ctx.config.owner_id));
    let backend = backend.scoped(&owner).unwrap_or(backend);
    Ok(Target {
        backend,
        zone,
        settings: Settings {
            owner,
            policy,
            adopt: md.spec.adopt_existing,
        },
    })
}

/// Two MailDomains for one domain: the holder ([`claim::holder`]) writes, the other nothing.
fn check_claim(md: &MailDomain, ctx: &Context, domain: &DomainName) -> Result<(), Error> {
    let all = ctx.store.state();
    let others = all
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|other| other.uid() != md.uid());
    match claim::holder(others.chain([md]), domain, Purpose::Publish) {
        Some(holder) if holder.uid() != md.uid() => Err(Error::DomainConflict(format!(
            "{domain} is already managed by MailDomain {}/{}; this one writes nothing until that one is deleted",
            holder.namespace().unwrap_or_default(),
            holder.name_any()
        ))),
        _ => Ok(()),
    }
}

fn namespace(md: &MailDomain) -> String {
    md.namespace().unwrap_or_default()
}

/// The controller's metrics as the backends' meter.
struct Meter(Arc<Metrics>);

impl ApiMeter for Meter {
    fn request(&self, provider: &'static str, result: &'static str) {
        self.0.dns_request(provider, result);
    }
}

/// A provider's Secrets in one namespace; remembers which it was asked for.
struct KubeSecrets {
    client: Client,
    namespace: String,
    read: Mutex<BTreeSet<SecretId>>,
}

impl SecretSource for KubeSecrets {
    fn value<'a>(
        &'a self,
        reference: &'a SecretKeyRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, SecretError>> {
        Box::pin(async move {
            let ns = &self.namespace;
            if let Ok(mut read) = self.read.lock() {
                read.insert((ns.clone(), reference.name.clone()));
            }
            let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
            let secret = api
                .get_opt(&reference.name)
                .await
                .map_err(|e| SecretError::Unavailable(e.to_string()))?
                .ok_or_else(|| {
                    SecretError::NotFound(format!("Secret {ns}/{} does not exist", reference.name))
                })?;
            secret
                .data
                .and_then(|mut d| d.remove(&reference.key))
                .map(|b| b.0)
                .ok_or_else(|| {
                    SecretError::NotFound(format!(
                        "Secret {ns}/{} has no key {}",
                        reference.name, reference.key
                    ))
                })
        })
    }
}
