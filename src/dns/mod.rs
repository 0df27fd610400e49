//! DNS: the provider-agnostic plan, ownership markers, and the providers.

pub mod ownership;
pub mod plan;
pub mod provider;
pub mod rfc2136;

use hickory_proto::op::ResponseCode;

/// Why a DNS read or write failed. `category()` is stable: it names metrics and event reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS server unreachable: {0}")]
    Unreachable(String),
    #[error(
        "the DNS server refused the TSIG signature ({0}): check the key name, algorithm and secret"
    )]
    Auth(String),
    #[error(
        "the DNS server refused the request ({0}): check that the zone exists there and that the key may update it"
    )]
    Refused(String),
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
            DnsError::Server(_) => "DNSServerError",
            DnsError::Config(_) => "DNSProviderInvalid",
        }
    }

    fn from_rcode(code: ResponseCode, what: &str) -> DnsError {
        match code {
            ResponseCode::NotAuth
            | ResponseCode::BADSIG
            | ResponseCode::BADKEY
            | ResponseCode::BADTIME => DnsError::Auth(format!("{what}: {code}")),
            ResponseCode::Refused | ResponseCode::NotZone => {
                DnsError::Refused(format!("{what}: {code}"))
            }
            other => DnsError::Server(format!("{what}: {other}")),
        }
    }

    /// A transport-level failure; a TSIG failure shows up here when the server's answer cannot
    /// be verified.
    fn from_net(server: &std::net::SocketAddr, message: String) -> DnsError {
        let lower = message.to_ascii_lowercase();
        if lower.contains("tsig")
            || lower.contains("signature")
            || lower.contains("notauth")
            || lower.contains("badsig")
        {
            DnsError::Auth(format!("{server}: {message}"))
        } else {
            DnsError::Unreachable(format!("{server}: {message}"))
        }
    }
}
