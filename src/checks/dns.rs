//! DNS lookups for the checks, through the system's resolvers or configured ones (in tests, the
//! authoritative server itself), each lookup bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::domain::txt;

/// Why a lookup failed (an empty answer is not a failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error("DNS lookup of {name} {rtype} failed: {message}")]
pub struct LookupError {
    pub name: String,
    pub rtype: &'static str,
    pub message: String,
    /// No resolver answered at all (timeout, refused, no route), as opposed to an answer
    /// that says the lookup failed (SERVFAIL, REFUSED).
    pub unreachable: bool,
}

/// The resolvers of this machine (or pod: the cluster DNS), from `/etc/resolv.conf`.
pub fn system_resolvers() -> Result<Vec<SocketAddr>, String> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| format!("cannot read the system resolvers from /etc/resolv.conf: {e}"))?;
    servers_of(&config)
}

/// The distinct servers of a resolver configuration, on port 53 (resolv.conf has no ports).
fn servers_of(config: &ResolverConfig) -> Result<Vec<SocketAddr>, String> {
    let mut servers: Vec<SocketAddr> = Vec::new();
    for server in config.name_servers() {
        let addr = SocketAddr::new(server.ip, 53);
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    if servers.is_empty() {
        return Err("/etc/resolv.conf names no nameserver".into());
    }
    Ok(servers)
}

/// The resolvers as a person reads them: `127.0.0.1:53, [::1]:53`.
pub fn describe(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A resolver for the checks.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    /// Upper bound of one lookup, retries included.
    timeout: Duration,
}

impl Dns {
    /// Queries `servers` (UDP, falling back to TCP for long answers), without caching between
    /// checks beyond the resolver's own. Each lookup, retries included, ends within `timeout`.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Dns, String> {
        if servers.is_empty() {
            return Err("no resolver to ask".into());
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = server.port();
                        c
                    })
                    .collect();
                NameServerConfig::new(server.ip(), true, connections)
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        // Two tries within the bound: one lost datagram is not a failure.
        options.attempts = 2;
        options.timeout = (timeout / 2).max(Duration::from_millis(200));
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Dns { resolver, timeout })
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
        let error = |message: String, unreachable| LookupError {
            name: host.to_owned(),
            rtype: "A/AAAA",
            message,
            unreachable,
        };
        match tokio::time::timeout(self.timeout, self.resolver.lookup_ip(fqdn.as_str())).await {
            Err(_) => Err(error(self.no_answer(), true)),
            Ok(Ok(ips)) => Ok(ips.iter().collect()),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Ok(Err(e)) => Err(error(e.to_string(), unreachable(&e))),
        }
    }

    async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
        label: &'static str,
    ) -> Result<Vec<RData>, LookupError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let error = |message: String, unreachable| LookupError {
            name: name.to_owned(),
            rtype: label,
            message,
            unreachable,
        };
        match tokio::time::timeout(self.timeout, self.resolver.lookup(fqdn.as_str(), rtype)).await {
            Err(_) => Err(error(self.no_answer(), true)),
            Ok(Ok(lookup)) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Ok(Err(e)) => Err(error(e.to_string(), unreachable(&e))),
        }
    }

    fn no_answer(&self) -> String {
        format!("no answer within {:?}", self.timeout)
    }
}

/// Whether a failed lookup means that no server answered (as opposed to an answer that says
/// the lookup failed).
fn unreachable(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Timeout | NetError::NoConnections | NetError::Io(_) | NetError::Busy
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_servers_of_resolv_conf_in_order_once_each() {
        let text = "search svc.cluster.local cluster.local\noptions ndots:5\nnameserver 10.96.0.10\nnameserver fd00::a\nnameserver 10.96.0.10\n";
        let (config, _) =
            hickory_resolver::system_conf::parse_resolv_conf(text).expect("resolv.conf");
        let servers = servers_of(&config).expect("servers");
        assert_eq!(
            describe(&servers),
            "10.96.0.10:53, [fd00::a]:53",
            "{servers:?}"
        );
    }
}
