//! Prometheus metrics, in the OpenMetrics text format.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    pub provider: String,
    pub result: String,
}

/// The controller's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    /// DNS update messages sent, by provider and result (`ok` or an error category).
    pub dns_updates: Family<DnsLabels, Counter>,
    /// Individual TXT values added or removed.
    pub dns_changes: Family<DnsLabels, Counter>,
    /// Every request to a DNS server or provider API (a query, an update, an HTTP call), by
    /// provider and result (`ok` or an error category: `DNSRateLimited` counts the waits).
    pub dns_requests: Family<DnsLabels, Counter>,
    pub status_writes: Counter,
    /// Requests to the Kubernetes API server, by verb.
    pub kube_requests: Family<VerbLabels, Counter>,
    /// Failed watch steps (a watch or list refused, a connection lost, a 410 that relists),
    /// by resource kind: each one is a pause of that watch's backoff.
    pub watch_errors: Family<WatchLabels, Counter>,
    pub duration: Histogram,
    /// 1 while this replica reconciles (holds the Lease, or runs without leader election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mailsec");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let dns_updates = Family::<DnsLabels, Counter>::default();
        let dns_changes = Family::<DnsLabels, Counter>::default();
        let dns_requests = Family::<DnsLabels, Counter>::default();
        let status_writes = Counter::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register("reconciles", "MailDomain reconciles", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            errors.clone(),
        );
        registry.register(
            "dns_updates",
            "DNS update messages sent, by provider and result",
            dns_updates.clone(),
        );
        registry.register(
            "dns_changes",
            "TXT values added or removed, by provider and result",
            dns_changes.clone(),
        );
        registry.register(
            "dns_requests",
            "Requests to DNS servers and provider APIs, by provider and result",
            dns_requests.clone(),
        );
        registry.register(
            "status_writes",
            "MailDomain status patches",
            status_writes.clone(),
        );
        let kube_requests = Family::<VerbLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API server, by verb (watch: a watch opened)",
            kube_requests.clone(),
        );
        let watch_errors = Family::<WatchLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Failed watch or list steps, by resource kind (each one backs that watch off)",
            watch_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the one that reconciles",
            leader.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            dns_updates,
            dns_changes,
            dns_requests,
            status_writes,
            kube_requests,
            watch_errors,
            duration,
            leader,
        }
    }
}

/// What the admin endpoint's `/metrics` shows: a process's registry.
pub trait Exposition: Send + Sync {
    fn registry(&self) -> &Registry;

    /// The metrics in the OpenMetrics text format.
    fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, self.registry());
        out
    }
}

impl Exposition for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Exposition for ServeMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Exposition for ReportMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Metrics {
    pub fn observe(&self, elapsed: Duration, error: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(category) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    category: category.to_owned(),
                })
                .inc();
        }
    }

    pub fn dns(&self, provider: &str, result: &str, changes: usize) {
        let labels = DnsLabels {
            provider: provider.to_owned(),
            result: result.to_owned(),
        };
        self.dns_updates.get_or_create(&labels).inc();
        self.dns_changes
            .get_or_create(&labels)
            .inc_by(changes as u64);
    }

    /// One failed step of the watch of `resource` (a kind).
    pub fn watch_error(&self, resource: &str) {
        self.watch_errors
            .get_or_create(&WatchLabels {
                resource: resource.to_owned(),
            })
            .inc();
    }

    /// One request to the Kubernetes API server.
    pub fn kube_request(&self, verb: &str) {
        self.kube_requests
            .get_or_create(&VerbLabels {
                verb: verb.to_owned(),
            })
            .inc();
    }

    /// One request to a DNS server or provider API.
    pub fn dns_request(&self, provider: &str, result: &str) {
        self.dns_requests
            .get_or_create(&DnsLabels {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportOutcomeLabels {
    /// `https` or `mail`.
    pub source: String,
    /// `stored`, `duplicate` or `refused`.
    pub outcome: String,
    /// For `refused`: the stable reason (`InflatedTooLarge`, `NotOurDomain`, `RateLimited`, ...).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportSessionLabels {
    pub domain: String,
    pub reporter: String,
    pub policy_type: String,
    /// `success`, or the failure's result type.
    pub result: String,
}

/// Distinct reporters named in labels; the rest are `other` (anyone can send a report, so
/// the organisation name must not grow the label set without bound).
const MAX_REPORTERS: usize = 200;

/// The report receiver's metrics.
pub struct ReportMetrics {
    pub registry: Registry,
    /// Reports received, by source and outcome.
    pub reports: Family<ReportOutcomeLabels, Counter>,
    /// Sessions in stored reports, by domain, reporter, policy type and result (never by IP).
    sessions: Family<ReportSessionLabels, Counter>,
    reporters: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The receiver's connections (`mailsec_connections_*`, as `mailsec serve`'s).
    pub connections: Arc<ConnectionMetrics>,
}

impl Default for ReportMetrics {
    fn default() -> Self {
        let mut root = Registry::with_prefix("mailsec");
        let connections = ConnectionMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("tlsrpt");
        let reports = Family::<ReportOutcomeLabels, Counter>::default();
        let sessions = Family::<ReportSessionLabels, Counter>::default();
        registry.register(
            "reports",
            "TLS reports received, by source and outcome",
            reports.clone(),
        );
        registry.register(
            "sessions",
            "Sessions in stored TLS reports, by domain, reporter, policy type and result",
            sessions.clone(),
        );
        ReportMetrics {
            registry: root,
            reports,
            sessions,
            reporters: Default::default(),
            connections,
        }
    }
}

impl ReportMetrics {
    pub fn outcome(&self, source: &str, outcome: &str, reason: &str) {
        self.reports
            .get_or_create(&ReportOutcomeLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The reporter's name as a label value: itself for the first [`MAX_REPORTERS`] seen,
    /// then `other`.
    pub fn reporter(&self, name: &str) -> String {
        let mut known = self.reporters.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(name) || known.len() < MAX_REPORTERS {
            known.insert(name.to_owned());
            name.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// Counts `sessions` of a stored report.
    pub fn sessions(&self, labels: ReportSessionLabels, sessions: u64) {
        self.sessions.get_or_create(&labels).inc_by(sessions);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// Why: `client`, `header_timeout`, `header_too_large`, `idle`, `max_requests`, `max_age`,
    /// `over_limit` or `error`.
    pub reason: String,
}

/// The connections of a public endpoint (see `crate::conn`).
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub closed: Family<CloseLabels, Counter>,
}

impl ConnectionMetrics {
    /// New metrics, registered as `connections_open` and `connections_closed` in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<ConnectionMetrics> {
        let metrics = Arc::new(ConnectionMetrics::default());
        registry.register(
            "connections_open",
            "Client connections open now",
            metrics.open.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections closed, by reason",
            metrics.closed.clone(),
        );
        metrics
    }

    pub fn closed(&self, reason: &str) {
        self.closed
            .get_or_create(&CloseLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Connections closed so far for `reason`.
    pub fn closed_count(&self, reason: &str) -> u64 {
        self.closed
            .get_or_create(&CloseLabels {
                reason: reason.to_owned(),
            })
            .get()
    }
}

/// `mailsec serve`'s metrics: its connections.
pub struct ServeMetrics {
    pub registry: Registry,
    pub connections: Arc<ConnectionMetrics>,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mailsec");
        let connections = ConnectionMetrics::register(&mut registry);
        ServeMetrics {
            registry,
            connections,
        }
    }
}
