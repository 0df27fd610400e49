//! The DNS providers MailDomains name, as the controller keeps them between reconciles: the
//! DNSProvider and ClusterDNSProvider objects from their watches (no GET per reconcile), and one
//! backend per provider, made once and used by every MailDomain that names it, so they share its
//! connection, its write queue and its rate limit. A backend is made again when its provider
//! changes (another resourceVersion) or a Secret it read changes (the Secret watch says so).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{ClusterDNSProvider, DNSProvider, MailDomain, ProviderKind};
use crate::dns::backend::DnsBackend;

/// How long a reconcile waits for the provider watches' first list after a start.
const FIRST_LIST: Duration = Duration::from_secs(30);

/// One provider, as a MailDomain names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub kind: ProviderKind,
    /// The DNSProvider's namespace; `None` for a ClusterDNSProvider.
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    /// Whether `md` names this provider.
    pub fn named_by(&self, md: &MailDomain) -> bool {
        md.spec.dns_provider_ref.as_ref().is_some_and(|r| {
            r.kind == self.kind
                && r.name == self.name
                && (self.kind == ProviderKind::ClusterDnsProvider
                    || md.namespace() == self.namespace)
        })
    }
}

/// A Secret, by namespace and name.
pub type SecretId = (String, String);

struct Cached {
    resource_version: Option<String>,
    /// `None`: making it failed (a Secret missing, say); kept for the Secrets it tried to read.
    backend: Option<Arc<dyn DnsBackend>>,
    secrets: BTreeSet<SecretId>,
}

/// The providers' stores and their backends.
pub struct Providers {
    pub namespaced: Store<DNSProvider>,
    pub cluster: Store<ClusterDNSProvider>,
    backends: Mutex<HashMap<Key, Cached>>,
    /// Counts Secret changes: a backend made while one happened may hold the old value and is
    /// used once but not kept.
    secret_changes: AtomicU64,
}

impl Providers {
    pub fn new(namespaced: Store<DNSProvider>, cluster: Store<ClusterDNSProvider>) -> Self {
        Providers {
            namespaced,
            cluster,
            backends: Mutex::new(HashMap::new()),
            secret_changes: AtomicU64::new(0),
        }
    }

    /// Waits (a bounded time) until both watches have listed once; `false` if they have not.
    pub async fn ready(&self) -> bool {
        let both = async {
            self.namespaced.wait_until_ready().await.is_ok()
                && self.cluster.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(FIRST_LIST, both)
            .await
            .unwrap_or(false)
    }

    pub fn dns_provider(&self, namespace: &str, name: &str) -> Option<Arc<DNSProvider>> {
        self.namespaced.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn cluster_dns_provider(&self, name: &str) -> Option<Arc<ClusterDNSProvider>> {
        self.cluster.get(&ObjectRef::new(name))
    }

    /// A token to hand to [`Providers::keep`] for a backend made from now on.
    pub fn epoch(&self) -> u64 {
        self.secret_changes.load(Ordering::SeqCst)
    }

    /// The backend made for `key` at `resource_version`, if there is one.
    pub fn cached(&self, key: &Key, resource_version: Option<&str>) -> Option<Arc<dyn DnsBackend>> {
        let backends = self.backends.lock().ok()?;
        let cached = backends.get(key)?;
        if cached.resource_version.as_deref() != resource_version {
            return None;
        }
        cached.backend.clone()
    }

    /// Keeps what making `key`'s backend gave (the backend, or `None` when it failed) and the
    /// Secrets it read; a backend made while a Secret changed (`epoch` is old) is not kept.
    pub fn keep(
        &self,
        key: Key,
        resource_version: Option<String>,
        epoch: u64,
        backend: Option<Arc<dyn DnsBackend>>,
        secrets: BTreeSet<SecretId>,
    ) {
        let Ok(mut backends) = self.backends.lock() else {
            return;
        };
        let backend = backend.filter(|_| self.epoch() == epoch);
        backends.insert(
            key,
            Cached {
                resource_version,
                backend,
                secrets,
            },
        );
    }

    /// A Secret changed (or appeared, or went): the backends that read it are dropped, and
    /// their providers returned, so the MailDomains naming them are reconciled.
    pub fn secret_changed(&self, secret: &SecretId) -> Vec<Key> {
        self.secret_changes.fetch_add(1, Ordering::SeqCst);
        let Ok(mut backends) = self.backends.lock() else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for (key, cached) in backends.iter_mut() {
            if cached.secrets.contains(secret) {
                cached.backend = None;
                keys.push(key.clone());
            }
        }
        keys
    }

    /// How many backends are kept (for tests and metrics).
    pub fn backends_kept(&self) -> usize {
        self.backends
            .lock()
            .map(|b| b.values().filter(|c| c.backend.is_some()).count())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::backend::Manual;
    use kube::runtime::reflector::store;

    fn providers() -> Providers {
        let (namespaced, _) = store::<DNSProvider>();
        let (cluster, _) = store::<ClusterDNSProvider>();
        Providers::new(namespaced, cluster)
    }

    fn key() -> Key {
        Key {
            kind: ProviderKind::DnsProvider,
            namespace: Some("mail".into()),
            name: "local".into(),
        }
    }

    fn secret() -> SecretId {
        ("mail".into(), "tsig".into())
    }

    #[test]
    fn a_backend_is_kept_for_its_resource_version() {
        let p = providers();
        let epoch = p.epoch();
        p.keep(
            key(),
            Some("1".into()),
            epoch,
            Some(Arc::new(Manual)),
            [secret()].into(),
        );
        assert!(p.cached(&key(), Some("1")).is_some());
        assert!(p.cached(&key(), Some("2")).is_none(), "provider changed");
    }

    #[test]
    fn a_secret_change_drops_the_backends_that_read_it() {
        let p = providers();
        p.keep(
            key(),
            Some("1".into()),
            p.epoch(),
            Some(Arc::new(Manual)),
            [secret()].into(),
        );
        assert!(
            p.secret_changed(&("mail".into(), "other".into()))
                .is_empty()
        );
        assert!(p.cached(&key(), Some("1")).is_some());
        assert_eq!(p.secret_changed(&secret()), vec![key()]);
        assert!(p.cached(&key(), Some("1")).is_none());
    }

    #[test]
    fn a_backend_made_while_a_secret_changed_is_not_kept() {
        let p = providers();
        let epoch = p.epoch();
        // The Secret changes after the backend read it, before it is kept.
        p.secret_changed(&secret());
        p.keep(
            key(),
            Some("1".into()),
            epoch,
            Some(Arc::new(Manual)),
            [secret()].into(),
        );
        assert!(p.cached(&key(), Some("1")).is_none());
    }

    #[test]
    fn a_failed_provider_is_still_found_by_its_secret() {
        let p = providers();
        p.keep(key(), Some("1".into()), p.epoch(), None, [secret()].into());
        assert_eq!(p.secret_changed(&secret()), vec![key()]);
    }
}
