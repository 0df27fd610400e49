//! `mailsec serve` against the real API server: it serves `status.servedPolicy` by Host header
//! with the exact bytes, `text/plain`, status 200 and no redirects; 404 elsewhere; and it can
//! terminate TLS itself with a certificate that a real TLS client (rustls) verifies.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use mailsec_operator::serve::tls::Source;
use support::random_suffix;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICY: &str =
    "version: STSv1\r\nmode: testing\r\nmx: mx1.example.test\r\nmax_age: 86400\r\n";

fn free_addr() -> SocketAddr {
    support::free_addr()
}

/// A MailDomain whose status says which policy to serve (as the controller would set it).
async fn maildomain_with_policy(client: &kube::Client, ns: &str, domain: &str) {
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns);
    let md = serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "md"},
        "spec": {"domain": domain, "mx": ["mx1.example.test"], "mtaSts": {"mode": "testing"}}
    });
    api.patch("md", &PatchParams::apply("test"), &Patch::Apply(&md))
        .await
        .expect("apply");
    let status = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "status": {"servedPolicy": POLICY}});
    api.patch_status("md", &PatchParams::apply("test"), &Patch::Apply(&status))
        .await
        .expect("status");
}

/// One raw HTTP/1.1 exchange, so nothing is normalised on the client side.
async fn raw<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    host: &str,
) -> String {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8(response).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_policy_by_host_exactly() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "serve").await;
    let domain = format!("s{}.example.test", random_suffix());
    maildomain_with_policy(&client, ns.name(), &domain).await;
    let (listen, admin) = (free_addr(), free_addr());
    tokio::spawn(mailsec_operator::serve::run(
        client.clone(),
        listen,
        admin,
        None,
    ));
    support::wait_ready(admin).await;
    let get = |method: &'static str, path: &'static str, host: String| async move {
        raw(
            tokio::net::TcpStream::connect(listen)
                .await
                .expect("connect"),
            method,
            path,
            &host,
        )
        .await
    };

    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let r = get(
            "GET",
            "/.well-known/mta-sts.txt",
            format!("MTA-STS.{}:443", domain.to_uppercase()),
        )
        .await;
        if r.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert_eq!(body, POLICY, "the exact CRLF policy");

    assert!(
        get(
            "HEAD",
            "/.well-known/mta-sts.txt",
            format!("mta-sts.{domain}")
        )
        .await
        .starts_with("HTTP/1.1 200")
    );
    assert!(
        get(
            "GET",
            "/.well-known/mta-sts.txt",
            "mta-sts.unknown.example".into()
        )
        .await
        .starts_with("HTTP/1.1 404")
    );
    assert!(
        get("GET", "/.well-known/mta-sts.txt", domain.clone())
            .await
            .starts_with("HTTP/1.1 404"),
        "only mta-sts.<domain>"
    );
    assert!(
        get(
            "GET",
            "/.well-known/mta-sts.txt/",
            format!("mta-sts.{domain}")
        )
        .await
        .starts_with("HTTP/1.1 404"),
        "no redirect to a canonical path"
    );
    assert!(
        get("GET", "/", format!("mta-sts.{domain}"))
            .await
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        get(
            "POST",
            "/.well-known/mta-sts.txt",
            format!("mta-sts.{domain}")
        )
        .await
        .starts_with("HTTP/1.1 405")
    );
    ns.delete(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_with_a_certificate_clients_verify() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "servetls").await;
    let domain = format!("t{}.example.test", random_suffix());
    maildomain_with_policy(&client, ns.name(), &domain).await;

    // A test CA and a certificate for mta-sts.<domain>, written where serve reads them.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec![format!("mta-sts.{domain}")])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    let dir = std::env::temp_dir().join(format!("mailsec-serve-tls-{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, leaf.pem()).expect("cert");
    std::fs::write(&key_path, leaf_key.serialize_pem()).expect("key");

    let (listen, admin) = (free_addr(), free_addr());
    tokio::spawn(mailsec_operator::serve::run(
        client.clone(),
        listen,
        admin,
        Some(Source::Files {
            cert: cert_path,
            key: key_path,
        }),
    ));
    support::wait_ready(admin).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(format!("mta-sts.{domain}")).expect("name");
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let tcp = tokio::net::TcpStream::connect(listen)
            .await
            .expect("connect");
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .expect("the certificate verifies for mta-sts.<domain>");
        let r = raw(
            tls,
            "GET",
            "/.well-known/mta-sts.txt",
            &format!("mta-sts.{domain}"),
        )
        .await;
        if r.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        response.ends_with(&format!("\r\n\r\n{POLICY}")),
        "{response}"
    );

    // A client that expects another name refuses the certificate.
    let tcp = tokio::net::TcpStream::connect(listen)
        .await
        .expect("connect");
    let other = rustls_pki_types::ServerName::try_from("mta-sts.other.example").expect("name");
    assert!(connector.connect(other, tcp).await.is_err());
    std::fs::remove_dir_all(dir).ok();
    ns.delete(&client).await;
}
