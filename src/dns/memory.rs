//! An in-memory backend: a zone kept in a map, written the way RRset-replacing APIs write
//! (the RRsets after [`rrsets_after`]), with a compare-and-swap on what was read. For fast
//! tests of the reconcile stages; the real-server tests cover the wire protocols.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;

use std::collections::BTreeMap;

use super::DnsError;
use super::address::AddressSet;
use super::backend::DnsBackend;
use super::plan::{Current, Operation, rrsets_after};

#[derive(Default)]
pub struct InMemory {
    records: Mutex<Current>,
    addresses: Mutex<BTreeMap<String, AddressSet>>,
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

    /// The address records at `name`.
    pub fn address(&self, name: &str) -> AddressSet {
        self.addresses
            .lock()
            .ok()
            .and_then(|a| a.get(name).cloned())
            .unwrap_or_default()
    }

    /// Sets address records behind the operator's back.
    pub fn set_address(&self, name: &str, set: AddressSet) {
        if let Ok(mut a) = self.addresses.lock() {
            a.insert(name.to_owned(), set);
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

    fn read_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(async move {
            self.failure()?;
            Ok(self.address(name))
        })
    }

    fn write_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
        before: &'a AddressSet,
        after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            self.failure()?;
            let mut addresses = self
                .addresses
                .lock()
                .map_err(|_| DnsError::Server("memory zone poisoned".into()))?;
            let now = addresses.get(name).cloned().unwrap_or_default();
            if !now.same_records(before) {
                return Err(DnsError::ConcurrentChange(format!(
                    "{name} changed since it was read"
                )));
            }
            if after.is_empty() {
                addresses.remove(name);
            } else {
                addresses.insert(name.to_owned(), after.clone());
            }
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}
