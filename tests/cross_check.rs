//! Our records, read by an independent implementation: the `mail-auth` crate (Stalwart's mail
//! authentication library). If it parses them differently than we meant, receivers may too.

use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};
use mail_auth::mta_sts::{MtaSts, ReportUri, TlsRpt};
use mail_auth::spf::Spf;
use mailsec_operator::api::MailDomainSpec;
use mailsec_operator::domain::dkim::{DkimRecord, PublicKey};
use mailsec_operator::domain::tlsrpt::{ReportUri as OurUri, TlsRptRecord};
use mailsec_operator::model::desired::{Desired, build};
use mailsec_operator::model::validate::{SecretData, validate};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/dkim/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The desired state of examples/full.yaml, built through the library.
fn full_example() -> Desired {
    let text =
        std::fs::read_to_string(format!("{}/examples/full.yaml", env!("CARGO_MANIFEST_DIR")))
            .expect("read");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    let mut secrets = SecretData::new();
    let mut spec: Option<MailDomainSpec> = None;
    for doc in docs {
        match doc["kind"].as_str() {
            Some("Secret") => {
                let data = doc["stringData"].as_object().expect("stringData");
                let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
                let entries = data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("str").as_bytes().to_vec()));
                secrets.insert(name, entries.collect());
            }
            Some("MailDomain") => {
                spec = Some(serde_json::from_value(doc["spec"].clone()).expect("spec"))
            }
            _ => {}
        }
    }
    let valid = validate(&spec.expect("a MailDomain"), &secrets, None).expect("valid");
    build(&valid.config)
}

fn value<'a>(desired: &'a Desired, name: &str) -> &'a str {
    &desired
        .records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no record {name}"))
        .value
}

#[test]
fn mta_sts_record_id_is_read_back() {
    let d = full_example();
    let parsed = MtaSts::parse(value(&d, "_mta-sts.example.org").as_bytes())
        .expect("mail-auth parses STSv1");
    assert_eq!(parsed.id, d.policy.as_ref().expect("policy").id.as_str());
}

#[test]
fn tls_rpt_destinations_are_read_back() {
    let d = full_example();
    let parsed = TlsRpt::parse(value(&d, "_smtp._tls.example.org").as_bytes())
        .expect("mail-auth parses TLSRPTv1");
    assert_eq!(
        parsed.rua,
        vec![
            ReportUri::Mail("tlsrpt@example.org".into()),
            ReportUri::Http("https://reports.example.org/v1/tlsrpt".into())
        ]
    );
}

#[test]
fn spf_record_is_read_back() {
    let d = full_example();
    let parsed = Spf::parse(value(&d, "example.org").as_bytes()).expect("mail-auth parses v=spf1");
    // mx, include, ip4, ip6 and the final -all.
    assert_eq!(parsed.directives.len(), 5);
    assert!(parsed.redirect.is_none());
}

#[test]
fn dmarc_record_is_read_back() {
    let d = full_example();
    let parsed =
        Dmarc::parse(value(&d, "_dmarc.example.org").as_bytes()).expect("mail-auth parses DMARC1");
    assert_eq!(parsed.p, Policy::Reject);
    assert_eq!(parsed.sp, Policy::Quarantine);
    assert_eq!(parsed.adkim, Alignment::Strict);
    assert_eq!(parsed.aspf, Alignment::Relaxed);
    assert_eq!(parsed.rua.len(), 1);
    assert_eq!(parsed.rua[0].uri, "dmarc@example.org");
}

/// A signature made by mail-auth with the private key verifies against our published key record,
/// as parsed by mail-auth: the `p=` we derive is the public half of the user's key.
#[test]
fn dkim_records_verify_signatures_made_with_the_private_keys() {
    let message = b"from:alice@example.org\r\nsubject:hello\r\n";

    let rsa_der = spki::der::pem::decode_vec(fixture("rsa2048.pkcs1.pem").as_bytes())
        .expect("pem")
        .1;
    let signer =
        RsaKey::<Sha256>::from_key_der(rustls_pki_types::PrivateKeyDer::Pkcs1(rsa_der.into()))
            .expect("rsa key");
    let signature = signer.sign(message.as_slice()).expect("sign");
    let ours = DkimRecord::new(
        &PublicKey::from_pem(&fixture("rsa2048.pkcs1.pem")).expect("derive"),
        false,
    );
    let key =
        DomainKey::parse(ours.render().as_bytes()).expect("mail-auth parses our RSA DKIM1 record");
    key.p
        .verify_bytes(message, &signature, Algorithm::RsaSha256)
        .expect("signature verifies");
    assert!(
        key.p
            .verify_bytes(b"tampered", &signature, Algorithm::RsaSha256)
            .is_err()
    );

    let ed_der = spki::der::pem::decode_vec(fixture("ed25519.pkcs8.pem").as_bytes())
        .expect("pem")
        .1;
    let signer = Ed25519Key::from_pkcs8_der(&ed_der).expect("ed25519 key");
    let signature = signer.sign(message.as_slice()).expect("sign");
    let ours = DkimRecord::new(
        &PublicKey::from_pem(&fixture("ed25519.pkcs8.pem")).expect("derive"),
        false,
    );
    let key = DomainKey::parse(ours.render().as_bytes())
        .expect("mail-auth parses our Ed25519 DKIM1 record");
    key.p
        .verify_bytes(message, &signature, Algorithm::Ed25519Sha256)
        .expect("signature verifies");
}

proptest! {
    /// URIs holding the record's delimiters come back as the same number of destinations.
    #[test]
    fn tls_rpt_uris_with_delimiters_stay_whole(paths in proptest::collection::vec("[a-z0-9,;!]{1,12}", 1..4)) {
        let uris: Vec<OurUri> = paths
            .iter()
            .map(|p| OurUri::parse(&format!("https://r.example.com/{p}")).expect("valid"))
            .collect();
        let record = TlsRptRecord { rua: uris }.render();
        let parsed = TlsRpt::parse(record.as_bytes()).expect("mail-auth parses it");
        prop_assert_eq!(parsed.rua.len(), paths.len());
    }
}
