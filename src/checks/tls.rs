//! The TLS client both probes use, and the names of the certificate problems a sender refuses.

use std::sync::Arc;

use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

/// Web PKI roots plus any extra CA certificates (PEM) the user trusts.
pub fn roots(extra_pem: Option<&[u8]>) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err("the CA file holds no certificate".into());
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    Ok(Arc::new(store))
}

/// [`roots`] with the CA certificates of a PEM file, if one is given.
pub fn roots_from_file(path: Option<&std::path::Path>) -> Result<Arc<RootCertStore>, String> {
    let extra = path
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    roots(extra.as_deref()).map_err(|e| match path {
        Some(p) => format!("{}: {e}", p.display()),
        None => e,
    })
}

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
    fn a_bad_ca_file_is_named() {
        let missing = std::path::Path::new("no-such-dir/ca.pem");
        let e = roots_from_file(Some(missing)).expect_err("missing file");
        assert!(e.starts_with("no-such-dir/ca.pem: "), "{e}");
        let text =
            std::env::temp_dir().join(format!("mailsec-not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&text, "hello\n").expect("write");
        let e = roots_from_file(Some(&text)).expect_err("no certificate");
        let _ = std::fs::remove_file(&text);
        assert!(e.ends_with("the CA file holds no certificate"), "{e}");
        assert!(
            roots_from_file(None).is_ok_and(|r| !r.is_empty()),
            "the Web PKI roots alone"
        );
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
