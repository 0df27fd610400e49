//! Fetching `https://mta-sts.<domain>/.well-known/mta-sts.txt` the way RFC 8461 §3.3 says a
//! sender must: a certificate valid for that name, status 200 only (redirects are not
//! followed), at most 64 KiB, bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;

use crate::domain::mtasts::{MAX_POLICY_BYTES, WELL_KNOWN_PATH};

/// What the policy host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    /// At most 64 KiB + 1 byte: more means too large.
    pub body: Vec<u8>,
}

/// Why nothing usable was fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("{host}: certificate refused: {message}")]
    Certificate {
        host: String,
        message: String,
        /// Stable reason, e.g. `CertificateExpired`.
        reason: &'static str,
    },
    #[error("{host} offers no TLS 1.2 or newer: it speaks {old} at most")]
    TlsVersion { host: String, old: String },
    #[error("TLS with {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("HTTP exchange with {0}")]
    Http(String),
    #[error(
        "{0} ended the policy by closing the connection without TLS close_notify and sent no \
         Content-Length: the end of the policy cannot be told from a cut connection, and senders \
         with strict TLS stacks refuse it (send Content-Length, or close TLS properly)"
    )]
    NoCloseNotify(String),
    #[error("{0} did not answer within the timeout")]
    Timeout(String),
}

/// Fetches the policy of `domain` from `addrs` (tried in order) on `port`.
pub async fn fetch(
    domain: &str,
    addrs: &[IpAddr],
    port: u16,
    roots: Arc<RootCertStore>,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let host = format!("mta-sts.{domain}");
    if addrs.is_empty() {
        return Err(FetchError::NoAddress(host));
    }
    let mut last = FetchError::NoAddress(host.clone());
    for ip in addrs {
        match tokio::time::timeout(
            timeout,
            fetch_from(&host, SocketAddr::new(*ip, port), roots.clone(), timeout),
        )
        .await
        {
            Ok(Ok(fetched)) => return Ok(fetched),
            // A certificate or HTTP problem is the answer; another address would not change it.
            Ok(Err(
                e @ (FetchError::Certificate { .. }
                | FetchError::TlsVersion { .. }
                | FetchError::Tls { .. }
                | FetchError::Http(_)
                | FetchError::NoCloseNotify(_)),
            )) => {
                return Err(e);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = FetchError::Timeout(format!("{host} ({ip})")),
        }
    }
    Err(last)
}

async fn fetch_from(
    host: &str,
    addr: SocketAddr,
    roots: Arc<RootCertStore>,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| FetchError::Connect(format!("{host} ({addr}): {e}")))?;
    let tls_error = |message: String| FetchError::Tls {
        host: host.to_owned(),
        message,
    };
    let connector = super::tls::connector(roots).map_err(|e| tls_error(e.to_string()))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| tls_error(e.to_string()))?;
    let tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            return Err(match super::tls::certificate_reason(&e) {
                Some(reason) => FetchError::Certificate {
                    host: host.to_owned(),
                    message: e.to_string(),
                    reason,
                },
                None => match old_tls(host, addr, timeout).await {
                    Some(old) => FetchError::TlsVersion {
                        host: host.to_owned(),
                        old,
                    },
                    None => tls_error(e.to_string()),
                },
            });
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<hyper::body::Bytes>,
    >(TokioIo::new(tls))
    .await
    .map_err(|e| FetchError::Http(format!("{host}: {e}")))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(WELL_KNOWN_PATH)
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            concat!("mailsec/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::new())
        .map_err(|e| FetchError::Http(format!("{host}: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| FetchError::Http(format!("{host}: {e}")))?;
    let header = |name: hyper::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let (location, content_type) = (
        header(hyper::header::LOCATION),
        header(hyper::header::CONTENT_TYPE),
    );
    let body = read_bounded(response.into_body(), MAX_POLICY_BYTES + 1)
        .await
        .map_err(|e| {
            if closed_without_close_notify(&e) {
                FetchError::NoCloseNotify(host.to_owned())
            } else {
                FetchError::Http(format!("{host}: {e}"))
            }
        })?;
    Ok(Fetched {
        status,
        location,
        content_type,
        body,
    })
}

/// After a failed modern handshake: the old TLS version the host speaks, if it speaks one.
async fn old_tls(host: &str, addr: SocketAddr, timeout: Duration) -> Option<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    super::legacy_tls::old_version(&mut tcp, host, timeout).await
}

/// Whether the body ended because the peer closed TCP without TLS close_notify: rustls
/// reports that as an unexpected end of file, which hyper passes on while reading a body
/// delimited by the connection's end.
fn closed_without_close_notify(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::UnexpectedEof;
        }
        source = err.source();
    }
    false
}

/// Reads at most `limit` bytes of a body, so a huge answer cannot exhaust memory.
async fn read_bounded(mut body: Incoming, limit: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}
