//! `mailsec serve`: the public MTA-STS policy server. It serves each MailDomain's
//! `status.servedPolicy` from a watch cache, chosen by the Host header, and needs only read
//! access to MailDomains; it keeps serving while the controller is down.

pub mod tls;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::Guarded;
use crate::conn::{Limits, Transport};
use crate::domain::mtasts::WELL_KNOWN_PATH;
use crate::domain::name::DomainName;
use crate::metrics::{ConnectionMetrics, ServeMetrics};
use crate::model::claim::{self, Purpose};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Runs the policy server on `listen` (over TLS when `tls` is set) and the admin endpoints on
/// `admin`, with the default [`Limits`].
pub async fn run(
    client: Client,
    listen: SocketAddr,
    admin: SocketAddr,
    tls: Option<tls::Source>,
) -> Result<(), ServeError> {
    run_with(client, listen, admin, tls, Limits::serve()).await
}

/// [`run`] within `limits`.
pub async fn run_with(
    client: Client,
    listen: SocketAddr,
    admin: SocketAddr,
    tls: Option<tls::Source>,
    limits: Limits,
) -> Result<(), ServeError> {
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(ServeMetrics::default());
    let admin_listener = tokio::net::TcpListener::bind(admin)
        .await
        .map_err(|e| ServeError::Bind(admin, e))?;
    tokio::spawn(crate::admin::serve(
        admin_listener,
        ready.clone(),
        Some(metrics.clone()),
    ));
    let index = PolicyIndex::default();
    let _store = watch_maildomains(client.clone(), ready, Some(index.clone()));
    let listener = crate::conn::bind(listen).map_err(|e| ServeError::Bind(listen, e))?;
    let tls = tls.map(|source| (source, Some(client)));
    serve_index(listener, index, tls, limits, metrics.connections.clone()).await
}

/// Serves the policies of `index` on `listener` (over TLS with `tls`) until the process ends:
/// what [`run`] does once it watches, and what tests and benchmarks run without a cluster.
pub async fn serve_index(
    listener: tokio::net::TcpListener,
    index: PolicyIndex,
    tls: Option<(tls::Source, Option<Client>)>,
    limits: Limits,
    metrics: Arc<ConnectionMetrics>,
) -> Result<(), ServeError> {
    let transport = match tls {
        Some((source, client)) => Transport::Tls(tls::acceptor(source, client).await?),
        None => Transport::Plain,
    };
    crate::conn::serve(listener, transport, router(index), limits, metrics).await;
    Ok(())
}

/// A watch cache of every MailDomain; `ready` turns true once it has listed them all. Also
/// the report receiver's.
pub fn maildomain_store(client: Client, ready: Arc<AtomicBool>) -> Store<Guarded> {
    watch_maildomains(client, ready, None)
}

/// The watch cache, and with `index` the policies by domain kept up to date from its events.
fn watch_maildomains(
    client: Client,
    ready: Arc<AtomicBool>,
    index: Option<PolicyIndex>,
) -> Store<Guarded> {
    let (store, writer) = reflector::store();
    let watch = watcher(Api::<Guarded>::all(client), watcher::Config::default());
    let events_store = store.clone();
    tokio::spawn(
        reflector::reflector(writer, watch)
            .default_backoff()
            .for_each(move |event| {
                match (&index, event) {
                    // Until the watch works the server is not ready; say why (RBAC, credentials).
                    (_, Err(e)) => {
                        tracing::warn!(error = %e, "watching MailDomains failed; retrying")
                    }
                    (Some(index), Ok(watcher::Event::Apply(g) | watcher::Event::Delete(g))) => {
                        index.changed(&events_store, &g);
                    }
                    (Some(index), Ok(watcher::Event::InitDone)) => index.rebuild(&events_store),
                    _ => {}
                }
                async {}
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

/// The served policy of every domain, by domain (A-labels): what a request looks up, in O(1),
/// instead of scanning every MailDomain. Kept from the watch's events: a change to one
/// MailDomain recomputes the holder of its domain (and of the domain it had before) from the
/// MailDomains that name it, so an event costs the claimants of one domain, not the store.
#[derive(Clone, Default)]
pub struct PolicyIndex {
    inner: Arc<std::sync::RwLock<IndexState>>,
}

type Key = ObjectRef<Guarded>;

#[derive(Default)]
struct IndexState {
    policies: HashMap<String, axum::body::Bytes>,
    /// Each MailDomain → the domain it named when last seen.
    domains: HashMap<Key, String>,
    /// Each domain → the MailDomains that name it.
    claimants: HashMap<String, HashSet<Key>>,
}

impl IndexState {
    /// Records that `key` names `domain` now (or nothing); returns the domain it named before.
    fn name(&mut self, key: &Key, domain: Option<&DomainName>) -> Option<String> {
        let before = match domain {
            Some(d) => self.domains.insert(key.clone(), d.as_str().to_owned()),
            None => self.domains.remove(key),
        };
        if let Some(b) = &before
            && let Some(set) = self.claimants.get_mut(b)
        {
            set.remove(key);
            if set.is_empty() {
                self.claimants.remove(b);
            }
        }
        if let Some(d) = domain {
            self.claimants
                .entry(d.as_str().to_owned())
                .or_default()
                .insert(key.clone());
        }
        before
    }

    /// Recomputes `domain`'s policy from its claimants in `store`.
    fn settle(&mut self, store: &Store<Guarded>, domain: &DomainName) {
        let claimants: Vec<Arc<Guarded>> = self
            .claimants
            .get(domain.as_str())
            .into_iter()
            .flatten()
            .filter_map(|k| store.get(k))
            .collect();
        match served(&claimants, domain) {
            Some(p) => self.policies.insert(domain.as_str().to_owned(), p),
            None => self.policies.remove(domain.as_str()),
        };
    }
}

fn key(g: &Guarded) -> Key {
    ObjectRef::from_obj(g)
}

fn domain_of(g: &Guarded) -> Option<DomainName> {
    let md = g.0.as_ref().ok()?;
    DomainName::parse(md.spec.domain.trim_end_matches('.')).ok()
}

fn served(claimants: &[Arc<Guarded>], domain: &DomainName) -> Option<axum::body::Bytes> {
    let candidates = claimants.iter().filter_map(|g| g.0.as_ref().ok());
    claim::holder(candidates, domain, Purpose::Serve)
        .and_then(|md| md.status.as_ref().and_then(|s| s.served_policy.clone()))
        .map(axum::body::Bytes::from)
}

impl PolicyIndex {
    /// The index of everything in `store` now.
    pub fn of(store: &Store<Guarded>) -> PolicyIndex {
        let index = PolicyIndex::default();
        index.rebuild(store);
        index
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything again (after the watch listed all MailDomains): one pass to group the
    /// MailDomains by domain, then each domain's holder among its own claimants.
    pub fn rebuild(&self, store: &Store<Guarded>) {
        let mut state = IndexState::default();
        let mut by_domain: HashMap<DomainName, Vec<Arc<Guarded>>> = HashMap::new();
        for g in store.state() {
            let Some(d) = domain_of(&g) else { continue };
            state.name(&key(&g), Some(&d));
            by_domain.entry(d).or_default().push(g);
        }
        for (d, claimants) in &by_domain {
            if let Some(p) = served(claimants, d) {
                state.policies.insert(d.as_str().to_owned(), p);
            }
        }
        *self.write() = state;
    }

    /// One MailDomain changed (or went): recompute its domain's entry, and its old domain's.
    pub fn changed(&self, store: &Store<Guarded>, g: &Guarded) {
        let k = key(g);
        // A deleted object is no longer in the store: it names nothing now.
        let now = store.get(&k).and_then(|g| domain_of(&g));
        let mut state = self.write();
        let before = state.name(&k, now.as_ref());
        let affected = before
            .and_then(|b| DomainName::parse(&b).ok())
            .into_iter()
            .chain(now);
        for d in affected {
            state.settle(store, &d);
        }
    }

    /// The policy for a Host header: `mta-sts.<domain>`, any case, port ignored.
    pub fn lookup(&self, host: &str) -> Option<axum::body::Bytes> {
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
        let state = self.inner.read().unwrap_or_else(|e| e.into_inner());
        state.policies.get(domain.as_str()).cloned()
    }
}

/// The policy routes over a policy index.
pub fn router(index: PolicyIndex) -> Router {
    Router::new().fallback(policy).with_state(index)
}

async fn policy(
    State(index): State<PolicyIndex>,
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
    match index.lookup(host) {
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
        let index = PolicyIndex::of(&store);
        let policy = index.lookup("MTA-STS.example.com:443");
        assert_eq!(
            policy.as_deref(),
            Some(&b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"[..])
        );
        assert_eq!(index.lookup("mta-sts.example.org"), None);
        assert_eq!(index.lookup("example.com"), None);
    }

    fn md(name: &str, created: &str, domain: &str, policy: &str) -> Guarded {
        guarded(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": name, "namespace": "a", "uid": name, "creationTimestamp": created},
            "spec": {"domain": domain, "dmarc": {"policy": "none"}},
            "status": {"servedPolicy": policy}
        }))
    }

    #[test]
    fn the_index_follows_applies_domain_changes_deletes_and_the_claim() {
        let (store, mut writer) = reflector::store::<Guarded>();
        let index = PolicyIndex::of(&store);
        let apply = |writer: &mut reflector::store::Writer<Guarded>, g: Guarded| {
            writer.apply_watcher_event(&watcher::Event::Apply(g.clone()));
            index.changed(&store, &g);
        };
        apply(
            &mut writer,
            md("old", "2026-01-01T00:00:00Z", "example.com", "A"),
        );
        assert_eq!(
            index.lookup("mta-sts.example.com").as_deref(),
            Some(&b"A"[..])
        );
        // A younger claimant of the same domain does not take it over.
        apply(
            &mut writer,
            md("young", "2026-02-01T00:00:00Z", "example.com", "B"),
        );
        assert_eq!(
            index.lookup("mta-sts.example.com").as_deref(),
            Some(&b"A"[..])
        );
        // The holder moves to another domain: both entries change.
        apply(
            &mut writer,
            md("old", "2026-01-01T00:00:00Z", "example.org", "C"),
        );
        assert_eq!(
            index.lookup("mta-sts.example.com").as_deref(),
            Some(&b"B"[..])
        );
        assert_eq!(
            index.lookup("mta-sts.example.org").as_deref(),
            Some(&b"C"[..])
        );
        // Deleted: gone.
        let gone = md("young", "2026-02-01T00:00:00Z", "example.com", "B");
        writer.apply_watcher_event(&watcher::Event::Delete(gone.clone()));
        index.changed(&store, &gone);
        assert_eq!(index.lookup("mta-sts.example.com"), None);
        // A rebuild agrees with the incremental state.
        let rebuilt = PolicyIndex::of(&store);
        assert_eq!(
            rebuilt.lookup("mta-sts.example.org").as_deref(),
            Some(&b"C"[..])
        );
        assert_eq!(rebuilt.lookup("mta-sts.example.com"), None);
    }
}
