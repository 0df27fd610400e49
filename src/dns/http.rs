//! What the HTTP API backends share: one client per backend (connections kept alive, TLS with
//! the Web PKI roots through rustls and ring, no redirects followed), and the reading of a
//! rate limit's `Retry-After`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::DnsError;

/// Makes ring the process's rustls provider, which reqwest needs before it builds any client
/// (it is built without a provider of its own, to avoid a second crypto library). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client whose every request ends within `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, DnsError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config()?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| DnsError::Config(format!("HTTP client: {e}")))
}

/// The TLS settings, made once per process (the root store is the costly part): backends,
/// and so their clients, are made anew for each reconcile. (The clients themselves are not
/// shared: their connections belong to the runtime that made them.)
fn tls_config() -> Result<rustls::ClientConfig, DnsError> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| DnsError::Config(format!("TLS settings: {e}")))
}

/// `Retry-After` in seconds (the form APIs send; an HTTP date is not read).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A transport error in few words: timeouts and refused connections say so.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "17".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
