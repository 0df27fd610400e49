//! DNS: the provider-agnostic plan, ownership markers, and the backends that read and write a
//! provider's zones behind one trait ([`backend::DnsBackend`]); [`registry`] maps a
//! `DNSProvider`'s type to its backend.

pub mod address;
pub mod azure;
pub mod backend;
pub mod batch;
pub mod cloudflare;
pub mod content;
pub mod digitalocean;
pub mod external_dns;
pub mod google;
pub mod hetzner;
pub mod http;
pub mod memory;
pub mod ownership;
pub mod plan;
pub mod powerdns;
pub mod registry;
pub mod rfc2136;
pub mod route53;

use std::time::Duration;

/// Why a DNS read or write failed, in terms every provider shares; the backend puts its own
/// details (server, API error, what to check) in the text. `category()` is stable: it names
/// metrics, event and condition reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS server unreachable: {0}")]
    Unreachable(String),
    /// The credentials were refused (a TSIG signature, an API token).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The credentials are valid but may not make this change.
    #[error("permission denied: {0}")]
    Refused(String),
    #[error("zone not found: {0}")]
    ZoneNotFound(String),
    #[error("rate limited{}: {detail}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Someone changed the RRset between our read and our write; nothing of ours was written.
    #[error("concurrent change: {0}")]
    ConcurrentChange(String),
    #[error("the DNS server failed: {0}")]
    Server(String),
    #[error("invalid provider settings: {0}")]
    Config(String),
}

impl DnsError {
    pub fn category(&self) -> &'static str {
        match self {
            DnsError::Unreachable(_) => "DNSUnreachable",
            DnsError::Auth(_) => "DNSAuthFailed",
            DnsError::Refused(_) => "DNSRefused",
            DnsError::ZoneNotFound(_) => "DNSZoneNotFound",
            DnsError::RateLimited { .. } => "DNSRateLimited",
            DnsError::ConcurrentChange(_) => "DNSConcurrentChange",
            DnsError::Server(_) => "DNSServerError",
            DnsError::Config(_) => "DNSProviderInvalid",
        }
    }

    /// The same error with `more` added to its text (what was already done, say), its
    /// category and `retry_after` unchanged.
    pub fn with_detail(self, more: &str) -> DnsError {
        let add = |s: String| format!("{s}; {more}");
        match self {
            DnsError::Unreachable(s) => DnsError::Unreachable(add(s)),
            DnsError::Auth(s) => DnsError::Auth(add(s)),
            DnsError::Refused(s) => DnsError::Refused(add(s)),
            DnsError::ZoneNotFound(s) => DnsError::ZoneNotFound(add(s)),
            DnsError::RateLimited {
                retry_after,
                detail,
            } => DnsError::RateLimited {
                retry_after,
                detail: add(detail),
            },
            DnsError::ConcurrentChange(s) => DnsError::ConcurrentChange(add(s)),
            DnsError::Server(s) => DnsError::Server(add(s)),
            DnsError::Config(s) => DnsError::Config(add(s)),
        }
    }

    /// How long the provider asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DnsError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
