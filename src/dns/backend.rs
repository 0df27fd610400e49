//! The one interface every DNS provider implements: read the TXT RRsets at some names, apply a
//! plan's value-level operations to a zone; read and replace the address records of one name
//! (the policy host's). The plan itself knows nothing of providers. A new
//! provider is one file with a type implementing [`DnsBackend`] plus one line in
//! [`super::registry`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::DnsError;
use super::address::AddressSet;
use super::ownership::Owner;
use super::plan::{Current, Operation};
use crate::api::SecretKeyRef;

/// A configured provider, ready to use.
pub trait DnsBackend: Send + Sync {
    /// The provider's type (`rfc2136`, `manual`, ...), for metrics and messages.
    fn kind(&self) -> &'static str;

    /// Whether `apply` writes anything; `false` for `manual`, whose plan is only reported.
    fn writes(&self) -> bool {
        true
    }

    /// The TXT RRsets at `names` (all in `zone`) as the provider holds them, values joined
    /// from their strings.
    fn read<'a>(
        &'a self,
        zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>>;

    /// Applies `operations` in `zone`, all or nothing. `current` is what [`DnsBackend::read`]
    /// returned for the names involved: a provider that replaces whole RRsets writes
    /// [`super::plan::rrsets_after`]`(current, operations)` for them.
    fn apply<'a>(
        &'a self,
        zone: &'a str,
        current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>>;

    /// Why this backend never writes `record_type` records at `name`, if it does not (the
    /// externalDNS export's shared names): such records are read, and listed for a human to
    /// publish until DNS holds them.
    fn refuses(&self, _name: &str, _record_type: &str) -> Option<String> {
        None
    }

    /// For a backend whose writes another program publishes later (the externalDNS export):
    /// which of `records` (name, value) DNS does not answer yet, each with a message. None: a
    /// write is published when `apply` returns.
    fn unpublished<'a>(
        &'a self,
        _zone: &'a str,
        _records: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<Unpublished>, DnsError>> {
        Box::pin(async { Ok(None) })
    }

    /// The backend as one MailDomain (`owner`) uses it, when that differs (the externalDNS
    /// export writes one object per MailDomain).
    fn scoped(&self, _owner: &Owner) -> Option<Arc<dyn DnsBackend>> {
        None
    }

    /// The address records (CNAME, A, AAAA) at `name` in `zone`.
    fn read_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>>;

    /// Replaces the address records at `name`, which were `before` when read, by `after`
    /// (empty: delete them), all or nothing; [`DnsError::ConcurrentChange`] when they are no
    /// longer `before`.
    fn write_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        before: &'a AddressSet,
        after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>>;
}

/// Records (by name) that DNS does not answer yet, each with why.
pub type Unpublished = Vec<(String, String)>;

/// Where backends report every request they make to their server or API, for metrics.
pub trait ApiMeter: Send + Sync {
    /// One request answered (or not): `result` is `ok` or the error's category.
    fn request(&self, provider: &'static str, result: &'static str);
}

/// Counts nothing.
pub struct NoMeter;

impl ApiMeter for NoMeter {
    fn request(&self, _provider: &'static str, _result: &'static str) {}
}

/// The meter's result for one request.
pub fn result_of<T>(result: &Result<T, DnsError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.category(),
    }
}

/// Zone name → the provider's id for it, looked up once per backend.
#[derive(Default)]
pub struct ZoneIds(Mutex<BTreeMap<String, String>>);

impl ZoneIds {
    /// The id of `zone`, from `find` the first time.
    pub async fn get_or_find<F>(&self, zone: &str, find: F) -> Result<String, DnsError>
    where
        F: Future<Output = Result<String, DnsError>>,
    {
        if let Some(id) = self.0.lock().ok().and_then(|z| z.get(zone).cloned()) {
            return Ok(id);
        }
        let id = find.await?;
        if let Ok(mut ids) = self.0.lock() {
            ids.insert(zone.to_owned(), id.clone());
        }
        Ok(id)
    }
}

/// Why a provider's Secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The Secret or its key is missing, or its value is malformed: the user must fix it.
    #[error("{0}")]
    NotFound(String),
    /// The API server could not be asked.
    #[error("reading a Secret: {0}")]
    Unavailable(String),
}

/// Why a provider could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("type {provider_type} needs its `{provider_type}` settings block")]
    MissingSettings { provider_type: &'static str },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// A credential kept as text in a Secret (an API key, a token): printable, surrounding white
/// space removed; `what` names it in the error.
pub async fn secret_text(
    secrets: &dyn SecretSource,
    reference: &SecretKeyRef,
    what: &str,
) -> Result<String, SecretError> {
    let raw = secrets.value(reference).await?;
    String::from_utf8(raw)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            SecretError::NotFound(format!(
                "Secret {} key {} does not hold {what} (printable text)",
                reference.name, reference.key
            ))
        })
}

/// Where backends find their credentials: the provider's Secrets, in the namespace the
/// provider's kind says (a DNSProvider's own, the operator's for a ClusterDNSProvider).
pub trait SecretSource: Send + Sync {
    fn value<'a>(
        &'a self,
        reference: &'a SecretKeyRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, SecretError>>;
}

/// The provider that writes nothing: status lists the records for a human to publish, and
/// the live checks tell when they are right.
pub struct Manual;

impl DnsBackend for Manual {
    fn kind(&self) -> &'static str {
        "manual"
    }

    fn writes(&self) -> bool {
        false
    }

    fn read<'a>(
        &'a self,
        _zone: &'a str,
        _names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(async { Ok(Current::new()) })
    }

    fn apply<'a>(
        &'a self,
        _zone: &'a str,
        _current: &'a Current,
        _operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async { Ok(()) })
    }

    fn read_address<'a>(
        &'a self,
        _zone: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(async { Ok(AddressSet::default()) })
    }

    fn write_address<'a>(
        &'a self,
        _zone: &'a str,
        _name: &'a str,
        _before: &'a AddressSet,
        _after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The zone for `domain`: the longest of `zones` that `domain` equals or lies below
/// (compared label-wise, so `badexample.com` is not in `example.com`).
pub fn find_zone<'a>(domain: &str, zones: &'a [String]) -> Option<&'a str> {
    zones
        .iter()
        .map(String::as_str)
        .filter(|z| domain == *z || domain.ends_with(&format!(".{z}")))
        .max_by_key(|z| z.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_matching_suffix_wins() {
        let zones = vec![
            "example.com".to_owned(),
            "mail.example.com".to_owned(),
            "ample.com".to_owned(),
        ];
        assert_eq!(
            find_zone("mail.example.com", &zones),
            Some("mail.example.com")
        );
        assert_eq!(
            find_zone("a.mail.example.com", &zones),
            Some("mail.example.com")
        );
        assert_eq!(find_zone("example.com", &zones), Some("example.com"));
        assert_eq!(find_zone("badexample.com", &zones), None);
        assert_eq!(find_zone("example.org", &zones), None);
    }
}
