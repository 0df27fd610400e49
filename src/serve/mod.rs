//! `mailsec serve`: the public MTA-STS policy server. It serves each MailDomain's
//! `status.servedPolicy` from a watch cache, chosen by the Host header, and needs only read
//! access to MailDomains; it keeps serving while the controller is down.

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::Guarded;
use crate::domain::mtasts::WELL_KNOWN_PATH;
use crate::domain::name::DomainName;
use crate::model::claim::{self, Purpose};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("policy server stopped: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Runs the policy server on `listen` (over TLS when `tls` is set) and the admin endpoints on
/// `admin`.
pub async fn run(
    client: Client,
    listen: SocketAddr,
    admin: SocketAddr,
    tls: Option<tls::Source>,
) -> Result<(), ServeError> {
    let ready = Arc::new(AtomicBool::new(false));
    let admin_listener = tokio::net::TcpListener::bind(admin)
        .await
        .map_err(|e| ServeError::Bind(admin, e))?;
    tokio::spawn(crate::admin::serve(admin_listener, ready.clone(), None));
    let store = maildomain_store(client.clone(), ready);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Bind(listen, e))?;
    match tls {
        Some(source) => Ok(tls::serve(listener, router(store), source, Some(client)).await?),
        None => axum::serve(listener, router(store))
            .await
            .map_err(ServeError::Server),
    }
}

/// A watch cache of every MailDomain; `ready` turns true once it has listed them all. Also
/// the report receiver's.
pub fn maildomain_store(client: Client, ready: Arc<AtomicBool>) -> Store<Guarded> {
    let (store, writer) = reflector::store();
    let watch = watcher(Api::<Guarded>::all(client), watcher::Config::default());
    tokio::spawn(
        reflector::reflector(writer, watch)
            .default_backoff()
            .applied_objects()
            .for_each(|event| async move {
                // Until the watch works the server is not ready; say why (RBAC, credentials).
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching MailDomains failed; retrying");
                }
            }),
    );
    let synced = store.clone();
    tokio::spawn(async move {
        if synced.wait_until_ready().await.is_ok() {
            ready.store(true, Ordering::SeqCst);
        }
    });
    store
}

/// The policy routes over a MailDomain store.
pub fn router(store: Store<Guarded>) -> Router {
    Router::new().fallback(policy).with_state(store)
}

async fn policy(
    State(store): State<Store<Guarded>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path() != WELL_KNOWN_PATH {
        return not_found();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri.host())
        .unwrap_or_default();
    match lookup(&store, host) {
        Some(body) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            body,
        )
            .into_response(),
        None => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no MTA-STS policy here\n").into_response()
}

/// The policy for a Host header: `mta-sts.<domain>`, any case, port ignored. When several
/// MailDomains claim a domain, the holder's policy is served ([`claim::holder`]).
pub fn lookup(store: &Store<Guarded>, host: &str) -> Option<String> {
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let domain = DomainName::parse(
        host.trim_end_matches('.')
            .to_ascii_lowercase()
            .strip_prefix("mta-sts.")?,
    )
    .ok()?;
    let all = store.state();
    let candidates = all.iter().filter_map(|g| g.0.as_ref().ok());
    claim::holder(candidates, &domain, Purpose::Serve)
        .and_then(|md| md.status.as_ref().and_then(|s| s.served_policy.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(value: serde_json::Value) -> Guarded {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn lookup_by_host_skips_objects_that_do_not_deserialize() {
        let (store, mut writer) = reflector::store::<Guarded>();
        let good = guarded(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": "good", "namespace": "a", "uid": "1", "creationTimestamp": "2026-01-02T00:00:00Z"},
            "spec": {"domain": "Example.COM", "dmarc": {"policy": "none"}},
            "status": {"servedPolicy": "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"}
        }));
        // ttl as a string: valid JSON, not a MailDomain. It must not hide the others.
        let bad = guarded(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": "bad", "namespace": "a", "uid": "2", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"domain": "example.com", "ttl": "soon"}
        }));
        assert!(bad.0.is_err());
        writer.apply_watcher_event(&watcher::Event::Apply(good));
        writer.apply_watcher_event(&watcher::Event::Apply(bad));
        let policy = lookup(&store, "MTA-STS.example.com:443");
        assert_eq!(
            policy.as_deref(),
            Some("version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n")
        );
        assert_eq!(lookup(&store, "mta-sts.example.org"), None);
        assert_eq!(lookup(&store, "example.com"), None);
    }
}
