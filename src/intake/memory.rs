//! A [`Sink`] in memory: for tests and for `mailsec report`-style tools without a cluster.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::{Incoming, Sink, StoreError, Stored};

/// Keeps every report it is given once, by (reporter, report-id). It can be told which
/// policy domains are managed and to fail (as an unreachable store does).
#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `None`: every domain is managed.
    domains: Option<BTreeSet<String>>,
    unavailable: bool,
    stored: Vec<Incoming>,
}

impl MemorySink {
    /// A sink that manages every domain.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink that manages only these policy domains (lower case).
    pub fn for_domains<I: IntoIterator<Item = S>, S: Into<String>>(domains: I) -> Self {
        let sink = Self::default();
        sink.lock().domains = Some(domains.into_iter().map(Into::into).collect());
        sink
    }

    /// From now on, every store fails with [`StoreError::Unavailable`] (or works again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// The reports stored, in the order stored.
    pub fn stored(&self) -> Vec<Incoming> {
        self.lock().stored.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key(incoming: &Incoming) -> String {
    format!(
        "{}/{}",
        incoming.report.organization_name, incoming.report.report_id
    )
}

impl Sink for MemorySink {
    async fn store(&self, incoming: Incoming) -> Result<Stored, StoreError> {
        let mut state = self.lock();
        if state.unavailable {
            return Err(StoreError::Unavailable(
                "the memory sink is set unavailable".into(),
            ));
        }
        if let Some(managed) = &state.domains {
            let domains: Vec<String> = incoming
                .report
                .policies
                .iter()
                .filter_map(|p| p.policy.policy_domain.clone())
                .collect();
            if !domains
                .iter()
                .any(|d| managed.contains(&d.to_ascii_lowercase()))
            {
                return Err(StoreError::NotOurDomain { domains });
            }
        }
        let name = key(&incoming);
        if state.stored.iter().any(|s| key(s) == name) {
            return Ok(Stored::Duplicate(vec![name]));
        }
        state.stored.push(incoming);
        Ok(Stored::New(vec![name]))
    }
}
