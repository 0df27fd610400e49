//! Dereference: the MailDomain's provider reference becomes a ready-to-use provider, after the
//! multi-tenancy checks (a DNSProvider serves its own namespace; a ClusterDNSProvider may be
//! limited to some namespaces and zones).

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::error::Error;
use super::reconcile::Context;
use crate::api::{
    ClusterDNSProvider, DNSProvider, MailDomain, ProviderKind, ProviderSettings, ProviderType,
    Rfc2136Spec, SecretKeyRef, SyncPolicy, TsigAlgorithm,
};
use crate::dns::plan::Policy;
use crate::dns::provider::{Provider, find_zone};
use crate::dns::rfc2136::{Algorithm, Rfc2136};

/// Where and how one MailDomain's records are written.
pub struct Target {
    pub provider: Provider,
    pub zone: String,
    pub policy: Policy,
    pub owner: String,
}

pub async fn dereference(md: &MailDomain, ctx: &Context, domain: &str) -> Result<Target, Error> {
    let ns = md.namespace().unwrap_or_default();
    let Some(reference) = &md.spec.dns_provider_ref else {
        return Ok(Target {
            provider: Provider::Manual,
            zone: domain.to_owned(),
            policy: Policy::Sync,
            owner: ctx.config.owner_id.clone(),
        });
    };
    // The provider's settings, and the namespace its Secrets live in.
    let (settings, secret_namespace): (ProviderSettings, String) = match reference.kind {
        ProviderKind::DnsProvider => {
            let api: Api<DNSProvider> = Api::namespaced(ctx.client.clone(), &ns);
            let provider = api.get_opt(&reference.name).await?.ok_or_else(|| {
                Error::ProviderNotFound(format!(
                    "DNSProvider {ns}/{} does not exist",
                    reference.name
                ))
            })?;
            (provider.spec.settings, ns.clone())
        }
        ProviderKind::ClusterDnsProvider => {
            let api: Api<ClusterDNSProvider> = Api::all(ctx.client.clone());
            let provider = api.get_opt(&reference.name).await?.ok_or_else(|| {
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
                provider.spec.settings,
                ctx.config.operator_namespace.clone(),
            )
        }
    };
    let zone = if settings.zones.is_empty() {
        domain.to_owned()
    } else {
        find_zone(domain, &settings.zones)
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::ProviderNotAllowed(format!(
                    "{domain} is in none of the zones of provider {} ({})",
                    reference.name,
                    settings.zones.join(", ")
                ))
            })?
    };
    let provider = match (settings.provider_type, &settings.rfc2136) {
        (ProviderType::Manual, _) => Provider::Manual,
        (ProviderType::Rfc2136, Some(spec)) => {
            Provider::Rfc2136(rfc2136(ctx, spec, &secret_namespace).await?)
        }
        (ProviderType::Rfc2136, None) => {
            return Err(Error::ProviderNotFound(format!(
                "provider {} has type rfc2136 but no rfc2136 settings",
                reference.name
            )));
        }
    };
    let policy = match settings.policy {
        SyncPolicy::Sync => Policy::Sync,
        SyncPolicy::UpsertOnly => Policy::UpsertOnly,
        SyncPolicy::CreateOnly => Policy::CreateOnly,
    };
    let owner = settings
        .owner_id
        .unwrap_or_else(|| ctx.config.owner_id.clone());
    Ok(Target {
        provider,
        zone,
        policy,
        owner,
    })
}

async fn rfc2136(
    ctx: &Context,
    spec: &Rfc2136Spec,
    secret_namespace: &str,
) -> Result<Rfc2136, Error> {
    let server = resolve_server(&spec.server)
        .await
        .map_err(|e| Error::Dns(crate::dns::DnsError::Unreachable(e)))?;
    let secret = secret_value(ctx, secret_namespace, &spec.tsig_secret_ref).await?;
    let text = String::from_utf8(secret)
        .map_err(|_| Error::SecretNotFound("the TSIG secret is not base64 text".into()))?;
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            Error::SecretNotFound(format!(
                "Secret {secret_namespace}/{} key {} is not base64",
                spec.tsig_secret_ref.name, spec.tsig_secret_ref.key
            ))
        })?;
    let algorithm = match spec.tsig_algorithm {
        TsigAlgorithm::HmacSha256 => Algorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => Algorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => Algorithm::HmacSha512,
    };
    Ok(Rfc2136::new(server, &spec.tsig_key_name, algorithm, key)?)
}

/// `host:port`, `[v6]:port` or a bare host (port 53).
async fn resolve_server(server: &str) -> Result<SocketAddr, String> {
    let has_port = server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok());
    let with_port = if has_port {
        server.to_owned()
    } else {
        format!("{server}:53")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("rfc2136 server `{server}` cannot be resolved: {e}"))?
        .next()
        .ok_or_else(|| format!("rfc2136 server `{server}` has no address"))
}

async fn secret_value(ctx: &Context, ns: &str, reference: &SecretKeyRef) -> Result<Vec<u8>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api.get_opt(&reference.name).await?.ok_or_else(|| {
        Error::SecretNotFound(format!("Secret {ns}/{} does not exist", reference.name))
    })?;
    secret
        .data
        .and_then(|mut d| d.remove(&reference.key))
        .map(|b| b.0)
        .ok_or_else(|| {
            Error::SecretNotFound(format!(
                "Secret {ns}/{} has no key {}",
                reference.name, reference.key
            ))
        })
}
