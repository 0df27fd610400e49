//! DNS lookups for the checks, through a configurable recursive resolver (or, in tests, the
//! authoritative server itself).

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::domain::txt;

/// Why a lookup failed (an empty answer is not a failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error("DNS lookup of {name} {rtype} failed: {message}")]
pub struct LookupError {
    pub name: String,
    pub rtype: &'static str,
    pub message: String,
}

/// A resolver for the checks.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// Queries `server` (UDP, falling back to TCP for long answers), without caching between
    /// checks beyond the resolver's own.
    pub fn new(server: SocketAddr) -> Result<Dns, String> {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut c| {
                c.port = server.port();
                c
            })
            .collect();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            connections,
        )]);
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        options.attempts = 2;
        options.timeout = std::time::Duration::from_secs(3);
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Dns { resolver })
    }

    /// The TXT values at `name`, each joined from its character-strings.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let answers = self.lookup(name, RecordType::TXT, "TXT").await?;
        Ok(answers
            .iter()
            .filter_map(|r| match r {
                RData::TXT(t) => Some(txt::join(&t.txt_data)),
                _ => None,
            })
            .collect())
    }

    /// The MX hosts of `name`, lower case without the root dot, by preference.
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, LookupError> {
        let answers = self.lookup(name, RecordType::MX, "MX").await?;
        let mut hosts: Vec<(u16, String)> = answers
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((
                    mx.preference,
                    crate::domain::name::normalize_dns_name(&mx.exchange.to_ascii()),
                )),
                _ => None,
            })
            .collect();
        hosts.sort();
        Ok(hosts)
    }

    /// The addresses of `host` (A and AAAA).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(LookupError {
                name: host.to_owned(),
                rtype: "A/AAAA",
                message: e.to_string(),
            }),
        }
    }

    async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
        label: &'static str,
    ) -> Result<Vec<RData>, LookupError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(LookupError {
                name: name.to_owned(),
                rtype: label,
                message: e.to_string(),
            }),
        }
    }
}
