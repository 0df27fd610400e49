//! The [`Sink`] of the report receiver: each report becomes a `TLSReport` per managed policy
//! domain, owned by the MailDomain that holds the domain, in its namespace. The object name is
//! derived from reporter, report-id and domain, so a repeated report is refused by the API
//! server as existing and stored once.

use std::sync::Arc;

use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use super::record::{object_name, policy_domains, spec};
use super::{Incoming, Sink, StoreError, Stored, Via};
use crate::api::{Guarded, MailDomain, REPORT_MAILDOMAIN_LABEL, TLSReport};
use crate::domain::name::DomainName;
use crate::metrics::{ReportMetrics, ReportSessionLabels};
use crate::model::claim::{self, Purpose};

/// Stores reports as TLSReports, for the MailDomains in `store`.
pub struct KubeSink {
    client: Client,
    store: Store<Guarded>,
    metrics: Arc<ReportMetrics>,
}

impl KubeSink {
    pub fn new(client: Client, store: Store<Guarded>, metrics: Arc<ReportMetrics>) -> Self {
        KubeSink {
            client,
            store,
            metrics,
        }
    }

    /// The MailDomain that holds `domain`, if any.
    fn holder(&self, domain: &str) -> Option<Arc<MailDomain>> {
        let name = DomainName::parse(domain).ok()?;
        let all = self.store.state();
        let candidates: Vec<&MailDomain> = all.iter().filter_map(|g| g.0.as_ref().ok()).collect();
        claim::holder(candidates, &name, Purpose::Publish).map(|md| Arc::new(md.clone()))
    }
}

/// The domain a report was sent for, when the source knows it: a Host `mta-sts.<domain>`.
fn hint(via: &Via) -> Option<String> {
    match via {
        Via::Https {
            host: Some(host), ..
        } => {
            let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            host.to_ascii_lowercase()
                .strip_prefix("mta-sts.")
                .map(str::to_owned)
        }
        _ => None,
    }
}

fn report_object(md: &MailDomain, name: String, spec: crate::api::TLSReportSpec) -> TLSReport {
    let mut owner = md.controller_owner_ref(&()).unwrap_or_default();
    // blockOwnerDeletion needs update rights on the MailDomain, which the receiver lacks.
    owner.block_owner_deletion = None;
    TLSReport {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: md.namespace(),
            labels: Some([(REPORT_MAILDOMAIN_LABEL.to_owned(), md.name_any())].into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
    }
}

impl Sink for KubeSink {
    async fn store(&self, incoming: Incoming) -> Result<Stored, StoreError> {
        let fallback = hint(&incoming.via);
        let domains = policy_domains(&incoming.report, fallback.as_deref());
        let managed: Vec<(String, Arc<MailDomain>)> = domains
            .iter()
            .filter_map(|d| self.holder(d).map(|md| (d.clone(), md)))
            .collect();
        if managed.is_empty() {
            return Err(StoreError::NotOurDomain { domains });
        }
        let mut new = Vec::new();
        let mut existing = Vec::new();
        for (domain, md) in managed {
            let name = object_name(&incoming.report, &domain);
            let spec = spec(&incoming, &domain, fallback.as_deref());
            let api: Api<TLSReport> =
                Api::namespaced(self.client.clone(), &md.namespace().unwrap_or_default());
            let object = report_object(&md, name.clone(), spec);
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    count_sessions(&self.metrics, &object.spec);
                    new.push(name);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => existing.push(name),
                Err(kube::Error::Api(e)) if e.code == 422 => {
                    return Err(StoreError::Rejected(format!(
                        "the API server refused TLSReport {name}: {}",
                        e.message
                    )));
                }
                Err(e) => return Err(StoreError::Unavailable(e.to_string())),
            }
        }
        if new.is_empty() {
            Ok(Stored::Duplicate(existing))
        } else {
            new.extend(existing);
            Ok(Stored::New(new))
        }
    }
}

/// The sessions of a stored report, in the metrics.
fn count_sessions(metrics: &ReportMetrics, report: &crate::api::TLSReportSpec) {
    let reporter = metrics.reporter(&report.organization);
    for p in &report.policies {
        let labels = |result: &str| ReportSessionLabels {
            domain: report.policy_domain.clone(),
            reporter: reporter.clone(),
            policy_type: p.policy_type.clone(),
            result: result.to_owned(),
        };
        metrics.sessions(labels("success"), p.successful);
        let mut detailed = 0u64;
        for f in &p.failures {
            metrics.sessions(labels(&f.result_type), f.sessions);
            detailed = detailed.saturating_add(f.sessions);
        }
        if p.failed > detailed {
            metrics.sessions(labels("unspecified"), p.failed - detailed);
        }
    }
}
