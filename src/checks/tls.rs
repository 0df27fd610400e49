//! The TLS client both probes use, and the names of the certificate problems a sender refuses.

use std::sync::Arc;

use rustls::{CertificateError, RootCertStore};
use tokio_rustls::TlsConnector;

/// A TLS 1.2+ client that validates server certificates against `roots`, as a sender does.
pub fn connector(roots: Arc<RootCertStore>) -> Result<TlsConnector, rustls::Error> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The rustls error behind an I/O error from a handshake, if any.
pub fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}

/// A stable reason when the handshake failed on the server's certificate.
pub fn certificate_reason(error: &std::io::Error) -> Option<&'static str> {
    match rustls_error(error)? {
        rustls::Error::InvalidCertificate(e) => Some(reason_of(e)),
        _ => None,
    }
}

fn reason_of(error: &CertificateError) -> &'static str {
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "CertificateExpired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "CertificateNotYetValid"
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "CertificateNameMismatch"
        }
        CertificateError::UnknownIssuer => "CertificateUntrusted",
        _ => "CertificateInvalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_problems_have_their_own_reasons() {
        let cases = [
            (CertificateError::Expired, "CertificateExpired"),
            (CertificateError::NotValidYet, "CertificateNotYetValid"),
            (CertificateError::NotValidForName, "CertificateNameMismatch"),
            (CertificateError::UnknownIssuer, "CertificateUntrusted"),
            (CertificateError::BadEncoding, "CertificateInvalid"),
        ];
        for (e, reason) in cases {
            assert_eq!(
                certificate_reason(&io(rustls::Error::InvalidCertificate(e))),
                Some(reason)
            );
        }
        assert_eq!(
            certificate_reason(&io(rustls::Error::DecryptError)),
            None,
            "not a certificate problem"
        );
        assert_eq!(certificate_reason(&std::io::Error::other("reset")), None);
    }
}
