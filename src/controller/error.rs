//! Reconcile errors. `category()` is stable: it names the error metric label, the event reason
//! and the condition reason.

use crate::dns::DnsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    InvalidObject(String),
    #[error("{0}")]
    DomainConflict(String),
    #[error("{0}")]
    ProviderNotFound(String),
    #[error("{0}")]
    ProviderNotAllowed(String),
    #[error("{0}")]
    SecretNotFound(String),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::InvalidObject(_) => "InvalidObject",
            Error::DomainConflict(_) => "DomainConflict",
            Error::ProviderNotFound(_) => "ProviderNotFound",
            Error::ProviderNotAllowed(_) => "ProviderNotAllowed",
            Error::SecretNotFound(_) => "SecretNotFound",
            Error::Dns(e) => e.category(),
            Error::Kube(_) => "KubernetesError",
        }
    }

    /// Errors the user must fix; retrying on a timer does not help (a watch event will).
    pub fn needs_user(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_)
                | Error::InvalidObject(_)
                | Error::DomainConflict(_)
                | Error::ProviderNotFound(_)
                | Error::ProviderNotAllowed(_)
                | Error::SecretNotFound(_)
        )
    }
}
