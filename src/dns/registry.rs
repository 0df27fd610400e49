//! The registry: a provider's settings (the `type` of a DNSProvider or ClusterDNSProvider and
//! its settings block) become a backend. Adding a provider is one arm here.

use std::sync::Arc;

use super::DnsError;
use super::backend::{DnsBackend, Manual, SecretError, SecretSource};
use super::rfc2136::Rfc2136;
use crate::api::{ProviderSettings, ProviderType};

/// Why a provider could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("type {provider_type} needs its `{provider_type}` settings block")]
    MissingSettings { provider_type: &'static str },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// The backend for `settings`, with its credentials read from `secrets`.
pub async fn connect(
    settings: &ProviderSettings,
    secrets: &dyn SecretSource,
) -> Result<Arc<dyn DnsBackend>, ConnectError> {
    let missing = |t: ProviderType| ConnectError::MissingSettings {
        provider_type: t.as_str(),
    };
    Ok(match settings.provider_type {
        ProviderType::Manual => Arc::new(Manual),
        t @ ProviderType::Rfc2136 => Arc::new(
            Rfc2136::from_spec(settings.rfc2136.as_ref().ok_or(missing(t))?, secrets).await?,
        ),
    })
}
