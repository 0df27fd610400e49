//! A reconcile's errors: each stage's own error, wrapped with the stage it came from.
//! `category()` is stable: it names the error metric label, the event reason and the
//! condition reason.

use crate::dns::DnsError;
use crate::model::validate::Invalid;

use super::{dereference, keys};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not deserialize as a MailDomain.
    #[error("{0}")]
    InvalidObject(String),
    #[error(transparent)]
    Dereference(#[from] dereference::Error),
    #[error(transparent)]
    InvalidSpec(#[from] Invalid),
    /// Managed DKIM keys: their Secrets and the signing Secret.
    #[error(transparent)]
    Keys(#[from] keys::Error),
    /// Writing the policy host objects (Ingress, Service, Certificate).
    #[error("policy host objects: Kubernetes API: {0}")]
    Hosting(#[source] kube::Error),
    #[error("{provider}: {source}")]
    Dns {
        provider: &'static str,
        source: DnsError,
    },
    #[error("writing status: Kubernetes API: {0}")]
    Status(#[source] kube::Error),
    #[error("updating the finalizer: Kubernetes API: {0}")]
    Finalizer(#[source] kube::Error),
}

impl Error {
    /// Every category an error can have.
    pub const CATEGORIES: [&str; 17] = [
        "InvalidObject",
        "InvalidSpec",
        "DomainConflict",
        "ProviderNotFound",
        "ProviderNotAllowed",
        "SecretNotFound",
        "KubernetesError",
        "DNSUnreachable",
        "DNSAuthFailed",
        "DNSRefused",
        "DNSZoneNotFound",
        "DNSRateLimited",
        "DNSConcurrentChange",
        "DNSServerError",
        "DNSProviderInvalid",
        "SecretConflict",
        "KeyGenerationFailed",
    ];

    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidObject(_) => "InvalidObject",
            Error::Dereference(e) => e.category(),
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Keys(e) => e.category(),
            Error::Dns { source, .. } => source.category(),
            Error::Hosting(_) | Error::Status(_) | Error::Finalizer(_) => "KubernetesError",
        }
    }

    /// Errors the user must fix; retrying on a timer does not help (a watch event will).
    pub fn needs_user(&self) -> bool {
        match self {
            Error::InvalidObject(_) | Error::InvalidSpec(_) => true,
            Error::Dereference(e) => e.needs_user(),
            Error::Keys(e) => matches!(e, keys::Error::Conflict(_)),
            Error::Hosting(_) | Error::Dns { .. } | Error::Status(_) | Error::Finalizer(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::FieldError;

    #[test]
    fn every_error_has_a_listed_category() {
        let kube = || kube::Error::LinesCodecMaxLineLengthExceeded;
        let dns = [
            DnsError::Unreachable(String::new()),
            DnsError::Auth(String::new()),
            DnsError::Refused(String::new()),
            DnsError::ZoneNotFound(String::new()),
            DnsError::RateLimited {
                retry_after: None,
                detail: String::new(),
            },
            DnsError::ConcurrentChange(String::new()),
            DnsError::Server(String::new()),
            DnsError::Config(String::new()),
        ];
        let mut all = vec![
            Error::InvalidObject(String::new()),
            Error::InvalidSpec(Invalid(vec![FieldError {
                path: "spec.domain".into(),
                message: "x".into(),
            }])),
            Error::Hosting(kube()),
            Error::Status(kube()),
            Error::Finalizer(kube()),
            Error::Dereference(dereference::Error::DomainConflict(String::new())),
            Error::Dereference(dereference::Error::ProviderNotFound(String::new())),
            Error::Dereference(dereference::Error::ProviderNotAllowed(String::new())),
            Error::Dereference(dereference::Error::SecretNotFound(String::new())),
            Error::Dereference(dereference::Error::SecretUnavailable(String::new())),
            Error::Dereference(dereference::Error::Kube(kube())),
            Error::Keys(keys::Error::Kube(kube())),
            Error::Keys(keys::Error::Conflict(String::new())),
            Error::Keys(keys::Error::Generate(String::new())),
        ];
        for source in dns {
            all.push(Error::Dereference(dereference::Error::Dns {
                provider: "p".into(),
                source: source.clone(),
            }));
            all.push(Error::Dns {
                provider: "p",
                source,
            });
        }
        let mut seen: Vec<&str> = all.iter().map(Error::category).collect();
        seen.sort();
        seen.dedup();
        let mut listed = Error::CATEGORIES.to_vec();
        listed.sort();
        assert_eq!(seen, listed);
        assert!(Error::InvalidSpec(Invalid(vec![])).needs_user());
        assert!(
            !Error::Dns {
                provider: "p",
                source: DnsError::Server(String::new())
            }
            .needs_user()
        );
    }
}
