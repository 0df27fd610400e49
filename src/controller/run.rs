//! The controller process: leader election, the watches, the admin endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::DynamicObject;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::context::{Config, Context};
use super::hosting;
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
}

/// An Api over one namespace or all of them.
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
}

pub async fn run(client: Client, options: Options) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
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
    let controller = Controller::new(
        scoped::<Guarded>(&client, ns),
        watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let reporter = Reporter {
        controller: "mailsec-operator".into(),
        instance: Some(options.identity.clone()),
    };
    crate::dns::http::install_crypto_provider();
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: options.config.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        store: store.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default(),
        failures: Default::default(),
    });
    let operator_ns = options.config.operator_namespace.clone();
    // The policy host children.
    let mut controller = controller
        .owns(scoped::<Ingress>(&client, ns), watcher::Config::default())
        .owns(scoped::<Service>(&client, ns), watcher::Config::default())
        // A new TLSReport (made by the report receiver, owned by its MailDomain) changes the
        // reports summary.
        .owns(scoped::<TLSReport>(&client, ns), watcher::Config::default());
    // Certificates and HTTPRoutes only where their APIs are installed: a watch on a missing
    // API would fail forever.
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
            .is_ok()
        {
            controller = controller.owns_with(api, resource, watcher::Config::default());
        } else {
            tracing::info!("{missing}");
        }
    }
    let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
    metrics.leader.set(1);
    let run = controller
        .watches(
            scoped::<DNSProvider>(&client, ns),
            watcher::Config::default(),
            move |p| {
                referencing(&s1, |md| {
                    md.namespace() == p.namespace()
                        && md.spec.dns_provider_ref.as_ref().is_some_and(|r| {
                            r.kind == ProviderKind::DnsProvider && r.name == p.name_any()
                        })
                })
            },
        )
        .watches(
            Api::<ClusterDNSProvider>::all(client.clone()),
            watcher::Config::default(),
            move |p| {
                referencing(&s2, |md| {
                    md.spec.dns_provider_ref.as_ref().is_some_and(|r| {
                        r.kind == ProviderKind::ClusterDnsProvider && r.name == p.name_any()
                    })
                })
            },
        )
        .watches(
            scoped::<Secret>(&client, ns),
            watcher::Config::default(),
            move |secret| {
                // DKIM keys and DNSProvider TSIG secrets live beside the MailDomain; ClusterDNSProvider
                // secrets in the operator's namespace.
                let ns = secret.namespace();
                let operator = ns.as_deref() == Some(operator_ns.as_str());
                referencing(&s3, |md| {
                    md.namespace() == ns
                        || (operator
                            && md
                                .spec
                                .dns_provider_ref
                                .as_ref()
                                .is_some_and(|r| r.kind == ProviderKind::ClusterDnsProvider))
                })
            },
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
