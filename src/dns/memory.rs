//! An in-memory backend: a zone kept in a map, written the way RRset-replacing APIs write
//! (the RRsets after [`rrsets_after`]), with a compare-and-swap on what was read. For fast
//! tests of the reconcile stages; the real-server tests cover the wire protocols.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;

use super::DnsError;
use super::backend::DnsBackend;
use super::plan::{Current, Operation, rrsets_after};

#[derive(Default)]
pub struct InMemory {
    records: Mutex<Current>,
    writes: AtomicUsize,
    /// The error every call returns, when set.
    failure: Mutex<Option<DnsError>>,
}

impl InMemory {
    /// A zone holding `records`.
    pub fn with(records: Current) -> Self {
        InMemory {
            records: Mutex::new(records),
            ..InMemory::default()
        }
    }

    /// What the zone holds now.
    pub fn records(&self) -> Current {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Changes the zone behind the operator's back (a foreign write).
    pub fn set(&self, name: &str, rrset: super::plan::RRset) {
        if let Ok(mut r) = self.records.lock() {
            r.insert(name.to_owned(), rrset);
        }
    }

    /// How many `apply` calls wrote something.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Makes every later call fail with `error` (`None`: work again).
    pub fn fail_with(&self, error: Option<DnsError>) {
        if let Ok(mut f) = self.failure.lock() {
            *f = error;
        }
    }

    fn failure(&self) -> Result<(), DnsError> {
        match self.failure.lock().ok().and_then(|f| f.clone()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl DnsBackend for InMemory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn read<'a>(
        &'a self,
        _zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(async move {
            self.failure()?;
            let records = self.records();
            Ok(names
                .iter()
                .filter_map(|n| records.get(n).map(|rr| (n.clone(), rr.clone())))
                .filter(|(_, rr)| !rr.values.is_empty())
                .collect())
        })
    }

    fn apply<'a>(
        &'a self,
        _zone: &'a str,
        current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            self.failure()?;
            let mut records = self
                .records
                .lock()
                .map_err(|_| DnsError::Server("memory zone poisoned".into()))?;
            let after = rrsets_after(current, operations);
            for name in after.keys() {
                let now = records.get(name).filter(|rr| !rr.values.is_empty());
                if now != current.get(name) {
                    return Err(DnsError::ConcurrentChange(format!(
                        "{name} changed since it was read"
                    )));
                }
            }
            for (name, rrset) in after {
                if rrset.values.is_empty() {
                    records.remove(&name);
                } else {
                    records.insert(name, rrset);
                }
            }
            if !operations.is_empty() {
                self.writes.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    }
}
