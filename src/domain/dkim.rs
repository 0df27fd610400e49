//! DKIM (RFC 6376, RFC 8463): the `<selector>._domainkey.<domain>` key record, with the public
//! key derived from whatever PEM the user has (public or private, PKCS#1, PKCS#8 or SPKI).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use spki::der::asn1::{AnyRef, BitStringRef};
use spki::der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::tags;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// RFC 8301 §3.2: verifiers reject RSA keys below 1024 bits; signers SHOULD use 2048.
pub const RSA_MIN_BITS: usize = 1024;
pub const RSA_ADVISED_BITS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

/// The public half of a DKIM key, as the `p=` tag carries it: SubjectPublicKeyInfo DER for
/// RSA (what verifiers expect), the raw 32 bytes for Ed25519 (RFC 8463 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: KeyType,
    pub data: Vec<u8>,
    /// RSA modulus size; 256 for Ed25519.
    pub bits: usize,
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not PEM (expected -----BEGIN ... KEY-----): {0}")]
    Pem(String),
    #[error("is an encrypted private key; store it unencrypted in the Secret")]
    Encrypted,
    #[error(
        "is a `{0}` PEM block; expected a PUBLIC KEY, PRIVATE KEY, RSA PUBLIC KEY or RSA PRIVATE KEY"
    )]
    Label(String),
    #[error("uses algorithm {0}; DKIM keys are RSA or Ed25519")]
    Algorithm(String),
    #[error("could not be decoded: {0}")]
    Der(String),
    #[error("is a {0}-bit RSA key; verifiers reject keys below 1024 bits (RFC 8301), use 2048")]
    TooShort(usize),
    #[error("is not valid base64")]
    Base64,
    #[error("could not be made: {0}")]
    Generate(String),
}

impl PublicKey {
    /// Derives the public key from a PEM block.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = spki::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        match label {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => rsa_from_pkcs1_public(&der),
            "RSA PRIVATE KEY" => rsa_from_pkcs1_private(&der),
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
            other => Err(KeyError::Label(other.to_owned())),
        }
    }

    /// Reads the base64 `p=` data of a record of type `key_type`. RSA data may be SPKI or, as
    /// some publishers write it, a bare PKCS#1 RSAPublicKey.
    pub fn from_record_data(key_type: KeyType, p: &str) -> Result<Self, KeyError> {
        let compact: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        let data = BASE64.decode(compact).map_err(|_| KeyError::Base64)?;
        match key_type {
            KeyType::Ed25519 if data.len() == 32 => Ok(PublicKey {
                key_type,
                data,
                bits: 256,
            }),
            KeyType::Ed25519 => Err(KeyError::Der(format!(
                "an Ed25519 key is 32 bytes, this is {}",
                data.len()
            ))),
            KeyType::Rsa => Self::from_spki_der(&data).or_else(|_| rsa_from_pkcs1_public(&data)),
        }
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let info =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::Der(e.to_string()))?;
        let key = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::Der("unaligned key bits".into()))?;
        match info.algorithm.oid {
            RSA_ENCRYPTION => rsa_from_pkcs1_public(key),
            ED25519 if key.len() == 32 => Ok(PublicKey {
                key_type: KeyType::Ed25519,
                data: key.to_vec(),
                bits: 256,
            }),
            ED25519 => Err(KeyError::Der("Ed25519 public key is not 32 bytes".into())),
            other => Err(KeyError::Algorithm(other.to_string())),
        }
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info =
            pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| KeyError::Der(e.to_string()))?;
        match info.algorithm.oid {
            RSA_ENCRYPTION => rsa_from_pkcs1_private(info.private_key.as_bytes()),
            ED25519 => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let signing = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| KeyError::Der(e.to_string()))?;
                Ok(PublicKey {
                    key_type: KeyType::Ed25519,
                    data: signing.verifying_key().to_bytes().to_vec(),
                    bits: 256,
                })
            }
            other => Err(KeyError::Algorithm(other.to_string())),
        }
    }

    /// The `p=` value.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.data)
    }
}

fn rsa_from_pkcs1_private(der: &[u8]) -> Result<PublicKey, KeyError> {
    let key = pkcs1::RsaPrivateKey::<pkcs1::UintRef<'_>>::from_der(der)
        .map_err(|e| KeyError::Der(e.to_string()))?;
    rsa_public_key(key.modulus, key.public_exponent)
}

fn rsa_from_pkcs1_public(der: &[u8]) -> Result<PublicKey, KeyError> {
    let key = pkcs1::RsaPublicKey::<pkcs1::UintRef<'_>>::from_der(der)
        .map_err(|e| KeyError::Der(e.to_string()))?;
    rsa_public_key(key.modulus, key.public_exponent)
}

/// Wraps an RSA public key in the SubjectPublicKeyInfo that `p=` carries.
fn rsa_public_key(
    modulus: pkcs1::UintRef<'_>,
    public_exponent: pkcs1::UintRef<'_>,
) -> Result<PublicKey, KeyError> {
    let der_err = |e: spki::der::Error| KeyError::Der(e.to_string());
    let n = modulus.as_bytes();
    let bits = n
        .first()
        .map_or(0, |first| n.len() * 8 - first.leading_zeros() as usize);
    if bits < RSA_MIN_BITS {
        return Err(KeyError::TooShort(bits));
    }
    let pkcs1_der = pkcs1::RsaPublicKey {
        modulus,
        public_exponent,
    }
    .to_der()
    .map_err(der_err)?;
    let info = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        subject_public_key: BitStringRef::from_bytes(&pkcs1_der).map_err(der_err)?,
    };
    Ok(PublicKey {
        key_type: KeyType::Rsa,
        data: info.to_der().map_err(der_err)?,
        bits,
    })
}

/// A `v=DKIM1` key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimRecord {
    pub key_type: KeyType,
    /// Base64 of the public key; empty when the key is revoked.
    pub public_key: String,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
}

/// Why a DKIM key record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkimRecordError {
    #[error("{0}")]
    Syntax(String),
    #[error("key type `{0}` is not rsa or ed25519")]
    KeyType(String),
    #[error("the p tag is missing")]
    NoKey,
    #[error("the p tag {0}")]
    Key(KeyError),
    #[error("flags `{0}` must be a `:`-separated list of y and s")]
    Flags(String),
}

impl DkimRecord {
    pub fn new(key: &PublicKey, testing: bool) -> Self {
        DkimRecord {
            key_type: key.key_type,
            public_key: key.to_base64(),
            testing,
        }
    }

    pub fn render(&self) -> String {
        let flags = if self.testing { "t=y; " } else { "" };
        format!(
            "v=DKIM1; k={}; {flags}p={}",
            self.key_type.as_str(),
            self.public_key
        )
    }

    /// Parses a published key record (RFC 6376 §3.6.1): `v`, if present, must come first.
    pub fn parse(value: &str) -> Result<Self, DkimRecordError> {
        let tags = tags::parse(value).map_err(|e| DkimRecordError::Syntax(e.to_string()))?;
        if tags.iter().any(|t| t.name == "v") {
            tags::expect_version(&tags, "DKIM1").map_err(DkimRecordError::Syntax)?;
        }
        let key_type = match tags::get(&tags, "k").unwrap_or("rsa") {
            "rsa" => KeyType::Rsa,
            "ed25519" => KeyType::Ed25519,
            other => return Err(DkimRecordError::KeyType(other.to_owned())),
        };
        let testing = match tags::get(&tags, "t") {
            None => false,
            Some(flags) => {
                let list: Vec<&str> = flags.split(':').map(str::trim).collect();
                if !list.iter().all(|f| matches!(*f, "y" | "s")) {
                    return Err(DkimRecordError::Flags(flags.to_owned()));
                }
                list.contains(&"y")
            }
        };
        let p = tags::get(&tags, "p").ok_or(DkimRecordError::NoKey)?;
        let public_key: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        if !public_key.is_empty() {
            PublicKey::from_record_data(key_type, &public_key).map_err(DkimRecordError::Key)?;
        }
        Ok(DkimRecord {
            key_type,
            public_key,
            testing,
        })
    }

    /// An empty `p=` means the key was revoked.
    pub fn is_revoked(&self) -> bool {
        self.public_key.is_empty()
    }
}

/// A selector: one or more LDH labels (RFC 6376 §3.1).
pub fn check_selector(selector: &str) -> Result<(), String> {
    if selector.is_empty() || selector.len() > 63 * 2 {
        return Err("must be 1 to 126 characters".into());
    }
    for label in selector.split('.') {
        super::name::check_ldh_label(label).map_err(|e| format!("label {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/dkim/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_rsa_form_gives_the_key_openssl_derives() {
        let want = fixture("rsa2048.p.txt");
        for file in [
            "rsa2048.pkcs8.pem",
            "rsa2048.pkcs1.pem",
            "rsa2048.pub.pem",
            "rsa2048.pkcs1pub.pem",
        ] {
            let key = PublicKey::from_pem(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(key.key_type, KeyType::Rsa, "{file}");
            assert_eq!(key.bits, 2048, "{file}");
            assert_eq!(key.to_base64(), want.trim(), "{file}");
        }
    }

    #[test]
    fn ed25519_publishes_the_raw_32_bytes() {
        let want = fixture("ed25519.p.txt");
        for file in ["ed25519.pkcs8.pem", "ed25519.pub.pem"] {
            let key = PublicKey::from_pem(&fixture(file)).unwrap();
            assert_eq!(key.key_type, KeyType::Ed25519);
            assert_eq!(key.data.len(), 32);
            assert_eq!(key.to_base64(), want.trim(), "{file}");
        }
    }

    #[test]
    fn unusable_keys_are_refused_with_the_reason() {
        assert_eq!(
            PublicKey::from_pem(&fixture("rsa512.pkcs8.pem")),
            Err(KeyError::TooShort(512))
        );
        assert_eq!(
            PublicKey::from_pem(&fixture("rsa1024.encrypted.pem")),
            Err(KeyError::Encrypted)
        );
        assert!(matches!(
            PublicKey::from_pem(&fixture("p256.pkcs8.pem")),
            Err(KeyError::Algorithm(_))
        ));
        assert!(matches!(
            PublicKey::from_pem("not a key"),
            Err(KeyError::Pem(_))
        ));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            PublicKey::from_pem(cert),
            Err(KeyError::Label("CERTIFICATE".into()))
        );
        assert_eq!(
            PublicKey::from_pem(&fixture("rsa1024.pkcs8.pem"))
                .unwrap()
                .bits,
            1024
        );
    }

    #[test]
    fn record_renders_and_parses() {
        let key = PublicKey::from_pem(&fixture("rsa2048.pub.pem")).unwrap();
        let rec = DkimRecord::new(&key, false);
        let text = rec.render();
        assert!(text.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
        assert!(
            text.len() > 255,
            "a 2048-bit key needs more than one character-string"
        );
        assert_eq!(DkimRecord::parse(&text).unwrap(), rec);
        let ed = DkimRecord::new(
            &PublicKey::from_pem(&fixture("ed25519.pub.pem")).unwrap(),
            true,
        );
        assert_eq!(DkimRecord::parse(&ed.render()).unwrap(), ed);
        assert!(ed.render().contains("k=ed25519; t=y; p="));
    }

    #[test]
    fn record_parse_errors() {
        assert_eq!(
            DkimRecord::parse("v=DKIM1; k=dsa; p=AAAA"),
            Err(DkimRecordError::KeyType("dsa".into()))
        );
        assert_eq!(
            DkimRecord::parse("v=DKIM1; k=rsa"),
            Err(DkimRecordError::NoKey)
        );
        assert!(matches!(
            DkimRecord::parse("k=rsa; v=DKIM1; p="),
            Err(DkimRecordError::Syntax(_))
        ));
        assert!(matches!(
            DkimRecord::parse("v=DKIM1; p=%%%"),
            Err(DkimRecordError::Key(KeyError::Base64))
        ));
        assert!(matches!(
            DkimRecord::parse("v=DKIM1; k=ed25519; p=AAAA"),
            Err(DkimRecordError::Key(_))
        ));
        assert!(matches!(
            DkimRecord::parse("v=DKIM1; t=x; p="),
            Err(DkimRecordError::Flags(_))
        ));
        assert!(DkimRecord::parse("v=DKIM1; p=").unwrap().is_revoked());
    }

    #[test]
    fn selectors_are_ldh_labels() {
        assert!(check_selector("s2026").is_ok());
        assert!(check_selector("google.s1").is_ok());
        assert!(check_selector("").is_err());
        assert!(check_selector("s_1").is_err());
        assert!(check_selector("a..b").is_err());
    }
}
