//! The registry: a provider's settings (the `type` of a DNSProvider or ClusterDNSProvider and
//! its settings block) become a backend. Adding a provider is one arm here.

use std::sync::Arc;

use super::azure::Azure;
use super::backend::{ApiMeter, ConnectError, DnsBackend, Manual, SecretSource};
use super::cloudflare::Cloudflare;
use super::digitalocean::DigitalOcean;
use super::external_dns::ExternalDns;
use super::google::Google;
use super::hetzner::Hetzner;
use super::powerdns::PowerDns;
use super::rfc2136::Rfc2136;
use super::route53::Route53;
use crate::api::{ProviderSettings, ProviderType};

/// The backend for `settings`, with its credentials read from `secrets`, reporting each of
/// its requests to `meter`; `cluster` for those that write Kubernetes objects (externalDNS).
pub async fn connect(
    settings: &ProviderSettings,
    secrets: &dyn SecretSource,
    meter: Arc<dyn ApiMeter>,
    cluster: Option<kube::Client>,
) -> Result<Arc<dyn DnsBackend>, ConnectError> {
    let missing = |t: ProviderType| ConnectError::MissingSettings {
        provider_type: t.as_str(),
    };
    Ok(match settings.provider_type {
        ProviderType::Manual => Arc::new(Manual),
        t @ ProviderType::Rfc2136 => Arc::new(
            Rfc2136::from_spec(settings.rfc2136.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::Cloudflare => Arc::new(
            Cloudflare::from_spec(settings.cloudflare.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::Route53 => Arc::new(
            Route53::from_spec(settings.route53.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::Hetzner => Arc::new(
            Hetzner::from_spec(settings.hetzner.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::DigitalOcean => Arc::new(
            DigitalOcean::from_spec(settings.digitalocean.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::Azure => Arc::new(
            Azure::from_spec(settings.azure.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::Google => Arc::new(
            Google::from_spec(settings.google.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::ExternalDns => Arc::new(
            ExternalDns::from_spec(settings.external_dns.as_ref().ok_or(missing(t))?, cluster)
                .await?
                .with_meter(meter),
        ),
        t @ ProviderType::PowerDns => Arc::new(
            PowerDns::from_spec(settings.powerdns.as_ref().ok_or(missing(t))?, secrets)
                .await?
                .with_meter(meter),
        ),
    })
}
