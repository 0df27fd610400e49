//! The controller process: leader election, the watches, the admin endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::{Config, Context};
use super::hosting;
use super::providers::{Key, Providers};
use super::reconcile;
use crate::api::{ClusterDNSProvider, DNSProvider, Guarded, MailDomain, ProviderKind, TLSReport};
use crate::metrics::Metrics;

/// Process-level settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: Config,
    /// `/livez`, `/readyz`, `/metrics`.
    pub admin_addr: SocketAddr,
    /// Run only while holding the Lease (several replicas are safe).
    pub leader_election: bool,
    pub lease_name: String,
    pub identity: String,
    /// Watch MailDomains, DNSProviders and Secrets of this namespace only.
    pub watch_namespace: Option<String>,
    /// MailDomains reconciled at once.
    pub reconcile_concurrency: u16,
}

/// An Api over one namespace or all of them.
/// What the controller never reads of an object it keeps in a store: the managed fields and
/// the client-side-apply copy of the last spec (together often more than the object itself;
/// at 10,000 MailDomains tens of MiB).
fn lean<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// One watch with a backoff of its own, its failures counted and logged.
///
/// kube-runtime's Controller has one backoff for all its trigger streams together. After an
/// API server restart each of our watches fails at least once (a refused connection, then
/// `410 Gone` and a relist), and every failure paused all of them, the MailDomain watch too:
/// a new generation was seen 210 s after the restart, or not within 240 s. So each watch backs
/// off alone (client-go's defaults: 0.8 s doubling to 30 s, reset after 120 s without
/// failures) and the Controller's shared backoff is off (`NoSharedBackoff`).
fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: &'static str,
    metrics: &Arc<Metrics>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + use<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let metrics = metrics.clone();
    watcher(api, config)
        .modify(lean)
        .inspect_err(move |e| {
            metrics.watch_error(kind);
            tracing::warn!(kind, "watch: {e}; it backs off and resumes");
        })
        .default_backoff()
}

/// The Controller's backoff over all its watches together, off: each has its own (`watched`).
struct NoSharedBackoff;

impl Iterator for NoSharedBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoSharedBackoff {
    fn reset(&mut self) {}
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("admin endpoint {0}: {1}")]
    Admin(SocketAddr, std::io::Error),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader lease; exiting so that another replica takes over")]
    LostLease,
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client that counts its requests to the API server by verb
/// (`mailsec_kube_requests_total`).
fn counted_client(config: kube::Config, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            metrics.kube_request(verb(&request));
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// The Kubernetes verb of a request, as far as the method and query tell.
fn verb(request: &http::Request<kube::client::Body>) -> &'static str {
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *request.method() {
        http::Method::GET if watch => "watch",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

pub async fn run(config: kube::Config, options: Options) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
    let client = counted_client(config, metrics.clone())?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(options.admin_addr)
        .await
        .map_err(|e| RunError::Admin(options.admin_addr, e))?;
    tokio::spawn(crate::admin::serve(
        listener,
        ready.clone(),
        Some(metrics.clone()),
    ));

    let mut leadership = None;
    if !options.leader_election {
        ready.store(true, Ordering::SeqCst);
    }
    if options.leader_election {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &options.lease_name)
                .with_namespace(&options.config.operator_namespace)
                .with_identity(&options.identity)
                .with_duration(15)
                .with_grace(5)
                .build()
                .await
                .map_err(|e| RunError::Lease(e.to_string()))?;
        let (mut rx, handle) = manager.watch().await;
        // A standby replica is healthy: ready means "able to take over", not "leader".
        ready.store(true, Ordering::SeqCst);
        tracing::info!(identity = %options.identity, lease = %options.lease_name, "waiting for leadership");
        while !*rx.borrow_and_update() {
            rx.changed()
                .await
                .map_err(|e| RunError::Lease(e.to_string()))?;
        }
        tracing::info!(identity = %options.identity, "became leader");
        leadership = Some((rx, handle));
    }

    let ns = options.watch_namespace.as_deref();
    let (store, mds_writer) = reflector::store::<Guarded>();
    let mds = reflector(
        mds_writer,
        watched(
            scoped::<Guarded>(&client, ns),
            watcher::Config::default().any_semantic(),
            "MailDomain",
            &metrics,
        ),
    )
    .applied_objects();
    let controller = Controller::for_stream(mds, store.clone());
    let reporter = Reporter {
        controller: "mailsec-operator".into(),
        instance: Some(options.identity.clone()),
    };
    crate::dns::http::install_crypto_provider();
    // The providers' watches fill stores the reconciles read (no GET per reconcile).
    let (namespaced_providers, namespaced_writer) = reflector::store::<DNSProvider>();
    let (cluster_providers, cluster_writer) = reflector::store::<ClusterDNSProvider>();
    let providers = Arc::new(Providers::new(namespaced_providers, cluster_providers));
    let managed = watcher::Config::default().labels(&hosting::managed_by_selector());
    let (services, services_writer) = reflector::store::<Service>();
    let (ingresses, ingresses_writer) = reflector::store::<Ingress>();
    let services_events = reflector(
        services_writer,
        watched(
            scoped::<Service>(&client, ns),
            managed.clone(),
            "Service",
            &metrics,
        ),
    )
    .touched_objects();
    let ingresses_events = reflector(
        ingresses_writer,
        watched(
            scoped::<Ingress>(&client, ns),
            managed.clone(),
            "Ingress",
            &metrics,
        ),
    )
    .touched_objects();
    let (reports, reports_writer) = reflector::store::<PartialObjectMeta<TLSReport>>();
    let reports_events = reflector(
        reports_writer,
        // An Api of PartialObjectMeta asks for metadata only: the reports' bodies stay on
        // the API server.
        watched(
            scoped::<PartialObjectMeta<TLSReport>>(&client, ns),
            watcher::Config::default(),
            "TLSReport",
            &metrics,
        ),
    )
    .touched_objects();
    let mut made = hosting::Made {
        services: Some(services),
        ingresses: Some(ingresses),
        ..Default::default()
    };
    // Certificates and HTTPRoutes only where their APIs are installed: a watch on a missing
    // API would fail forever.
    let mut dynamic_events = Vec::new();
    for (resource, missing) in [
        (
            hosting::certificate_resource(),
            "cert-manager's Certificate API is not installed: CertificateReady is checked by polling",
        ),
        (
            hosting::http_route_resource(),
            "the Gateway API's HTTPRoute is not installed: policyHost.gatewayRoute is reported as not possible",
        ),
    ] {
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        if api
            .list(&kube::api::ListParams::default().limit(1))
            .await
            .is_err()
        {
            tracing::info!("{missing}");
            continue;
        }
        let writer = reflector::store::Writer::new(resource.clone());
        let reader = writer.as_reader();
        let kind = if resource.kind == "Certificate" {
            made.certificates = Some(reader);
            "Certificate"
        } else {
            made.routes = Some(reader);
            "HTTPRoute"
        };
        let events = reflector(writer, watched(api, managed.clone(), kind, &metrics))
            .touched_objects()
            .boxed();
        dynamic_events.push((resource, events));
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: options.config.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        store: store.clone(),
        providers: providers.clone(),
        made,
        reports,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default(),
        failures: Default::default(),
    });
    // The policy host children, watched by our managed-by label only (not every Service and
    // Ingress of the cluster), into stores the hosting stage reads.
    let mut controller = controller
        .owns_stream(services_events)
        .owns_stream(ingresses_events)
        // A new TLSReport (made by the report receiver, owned by its MailDomain) changes the
        // reports summary.
        .owns_stream(reports_events);
    for (resource, events) in dynamic_events {
        controller = controller.owns_stream_with(events, resource);
    }
    let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
    metrics.leader.set(1);
    let namespaced_events = reflector(
        namespaced_writer,
        watched(
            scoped::<DNSProvider>(&client, ns),
            watcher::Config::default(),
            "DNSProvider",
            &metrics,
        ),
    )
    .touched_objects();
    let cluster_events = reflector(
        cluster_writer,
        watched(
            Api::<ClusterDNSProvider>::all(client.clone()),
            watcher::Config::default(),
            "ClusterDNSProvider",
            &metrics,
        ),
    )
    .touched_objects();
    let run = controller
        .watches_stream(namespaced_events, move |p| {
            let key = Key {
                kind: ProviderKind::DnsProvider,
                namespace: p.namespace(),
                name: p.name_any(),
            };
            referencing(&s1, |md| key.named_by(md))
        })
        .watches_stream(cluster_events, move |p| {
            let key = Key {
                kind: ProviderKind::ClusterDnsProvider,
                namespace: None,
                name: p.name_any(),
            };
            referencing(&s2, |md| key.named_by(md))
        })
        .watches_stream(
            watched(
                scoped::<Secret>(&client, ns),
                watcher::Config::default(),
                "Secret",
                &metrics,
            )
            .touched_objects(),
            move |secret| secret_readers(&s3, &providers, &secret),
        )
        .trigger_backoff(NoSharedBackoff)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(options.reconcile_concurrency),
        )
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        });
    match leadership {
        None => run.await,
        Some((mut rx, _handle)) => {
            let lost = async move {
                while rx.changed().await.is_ok() {
                    if !*rx.borrow() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = run => {}
                _ = lost => return Err(RunError::LostLease),
            }
        }
    }
    Ok(())
}

/// The MailDomains a Secret change concerns: those that name it (a DKIM key, the signing
/// Secret), own it (managed DKIM keys), or use a provider whose backend read it.
fn secret_readers(
    store: &Store<Guarded>,
    providers: &Providers,
    secret: &Secret,
) -> Vec<ObjectRef<Guarded>> {
    let ns = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let users = providers.secret_changed(&(ns.clone(), name.clone()));
    let mut refs: Vec<ObjectRef<Guarded>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "MailDomain" && o.api_version.starts_with("mailsec.io/"))
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect();
    refs.extend(referencing(store, |md| {
        users.iter().any(|k| k.named_by(md))
            || (md.namespace().as_deref() == Some(ns.as_str()) && names_secret(md, &name))
    }));
    refs
}

/// Whether `md`'s spec names the Secret `name` (in its own namespace).
fn names_secret(md: &MailDomain, name: &str) -> bool {
    md.spec
        .dkim
        .iter()
        .filter_map(|d| d.key_secret_ref.as_ref())
        .any(|r| r.name == name)
        || md
            .spec
            .dkim_signing
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(name))
        || name == format!("{}-dkim-signing", md.name_any())
}

fn referencing(
    store: &Store<Guarded>,
    matches: impl Fn(&MailDomain) -> bool,
) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter(|g| g.0.as_ref().is_ok_and(&matches))
        .map(|g| ObjectRef::from_obj(&**g))
        .collect()
}
