//! TLS termination in `mailsec serve`, for clusters without an Ingress: the certificate comes
//! from PEM files or a `kubernetes.io/tls` Secret and is reloaded every minute, so renewals by
//! cert-manager are picked up without a restart.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub enum Source {
    Files { cert: PathBuf, key: PathBuf },
    Secret { namespace: String, name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Read(String, String),
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    #[error("{0}: the private key is not usable: {1}")]
    Key(String, String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Files { cert, .. } => write!(f, "{}", cert.display()),
            Source::Secret { namespace, name } => write!(f, "Secret {namespace}/{name}"),
        }
    }
}

/// Reads the PEM pair and builds a signing key for it.
pub async fn load(source: &Source, client: Option<&Client>) -> Result<Arc<CertifiedKey>, TlsError> {
    let what = source.to_string();
    let (cert_pem, key_pem) = match source {
        Source::Files { cert, key } => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| TlsError::Read(p.display().to_string(), e.to_string()))
            };
            (read(cert)?, read(key)?)
        }
        Source::Secret { namespace, name } => {
            let client = client
                .ok_or_else(|| TlsError::Read(what.clone(), "no Kubernetes client".into()))?;
            let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| TlsError::Read(what.clone(), e.to_string()))?;
            let mut data = secret.data.unwrap_or_default();
            let mut take = |k: &str| {
                data.remove(k)
                    .map(|b| b.0)
                    .ok_or_else(|| TlsError::Read(what.clone(), format!("no key {k}")))
            };
            (take("tls.crt")?, take("tls.key")?)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(what));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Key(what.clone(), e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| TlsError::Key(what, e.to_string()))?;
    Ok(Arc::new(certified))
}

/// Serves the current certificate; a background task swaps in reloaded ones.
#[derive(Debug)]
struct Reloading(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// A TLS acceptor with the certificate of `source`; a background task reloads it every
/// minute. HTTP/1.1 only (ALPN `http/1.1`), as `crate::conn` serves it.
pub async fn acceptor(
    source: Source,
    client: Option<Client>,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let first = load(&source, client.as_ref()).await?;
    let resolver = Arc::new(Reloading(RwLock::new(first)));
    let reloader = resolver.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            match load(&source, client.as_ref()).await {
                Ok(key) => {
                    if let Ok(mut current) = reloader.0.write() {
                        *current = key;
                    }
                }
                Err(e) => tracing::warn!("keeping the current certificate: {e}"),
            }
        }
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Key("TLS configuration".into(), e.to_string()))?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS on `listener` with the default limits, until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    source: Source,
    client: Option<Client>,
) -> Result<(), TlsError> {
    let acceptor = acceptor(source, client).await?;
    let metrics = Arc::new(crate::metrics::ConnectionMetrics::default());
    crate::conn::serve(
        listener,
        crate::conn::Transport::Tls(acceptor),
        router,
        crate::conn::Limits::serve(),
        metrics,
    )
    .await;
    Ok(())
}
