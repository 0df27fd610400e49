//! What every stage of a reconcile may use: the process settings and the shared clients and
//! caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

use super::hosting::{HostingConfig, Made};
use super::providers::Providers;
use super::verify;
use crate::api::{Guarded, TLSReport};
use crate::metrics::Metrics;

/// Settings of one controller process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Identifies this installation in DNS ownership markers.
    pub owner_id: String,
    /// Where ClusterDNSProviders' Secrets live.
    pub operator_namespace: String,
    /// Base URL of the policy server (`mailsec serve`), used to confirm a new policy is served
    /// before its id is published. Without it the id follows the status write unconfirmed.
    pub policy_server: Option<url::Url>,
    /// Where the Ingresses created for `policyHost.ingress` send traffic.
    pub hosting: HostingConfig,
    /// The live checks behind the *Verified conditions; `None` turns them off.
    pub checks: Option<verify::Settings>,
    /// The report receiver's URL, added to `rua` for `tlsRpt.receive`; none without a
    /// receiver.
    pub report_url: Option<crate::domain::tlsrpt::ReportUri>,
    /// How long and how many TLSReports are kept per MailDomain.
    pub report_retention: Retention,
}

/// Shared state of the reconciles.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub store: Store<Guarded>,
    /// The DNS providers from their watches, and their backends.
    pub providers: Arc<Providers>,
    /// What the watches know of the policy host objects made.
    pub made: Made,
    /// The TLSReports by their metadata (from a watch): a MailDomain none of them names is
    /// summed without a LIST, which at a resync of 10,000 MailDomains is 10,000 fewer.
    pub reports: Store<PartialObjectMeta<TLSReport>>,
    pub http: reqwest::Client,
    /// Consecutive failures per object, for exponential backoff.
    pub failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
}

/// How long and how many TLSReports are kept per MailDomain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub count: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 90,
            count: 400,
        }
    }
}
