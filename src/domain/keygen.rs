//! DKIM key pairs for managed keys: made with the `rsa` and `ed25519-dalek` crates from the
//! operating system's random source, the private key as PKCS#8 PEM (what OpenDKIM, rspamd
//! and Stalwart read), the public key as [`PublicKey`] for the record.

use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};

use super::dkim::{KeyError, PublicKey};

/// What to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    Ed25519,
}

/// A new key pair.
pub struct KeyPair {
    /// PKCS#8 PEM. Never logged, never in status.
    pub private_pem: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_pem: String,
    pub public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn failed(e: impl std::fmt::Display) -> KeyError {
    KeyError::Generate(e.to_string())
}

/// Makes a key pair of `kind`.
pub fn generate(kind: KeyKind) -> Result<KeyPair, KeyError> {
    let (private_pem, public_pem) = match kind {
        KeyKind::Rsa { bits } => {
            let key = rsa::RsaPrivateKey::new(&mut OsRng, bits).map_err(failed)?;
            let private = key.to_pkcs8_pem(LineEnding::LF).map_err(failed)?;
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(failed)?;
            (private.to_string(), public)
        }
        KeyKind::Ed25519 => {
            let mut seed = [0u8; 32];
            OsRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| failed(format!("no randomness: {e}")))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let private = key
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(failed)?;
            let public = key
                .verifying_key()
                .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(failed)?;
            (private.to_string(), public)
        }
    };
    let public = PublicKey::from_pem(&public_pem)?;
    Ok(KeyPair {
        private_pem,
        public_pem,
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dkim::KeyType;

    #[test]
    fn keys_are_made_fresh_and_their_private_half_gives_the_public() {
        let a = generate(KeyKind::Ed25519).unwrap();
        let b = generate(KeyKind::Ed25519).unwrap();
        assert_ne!(a.public.data, b.public.data);
        assert_eq!(a.public.key_type, KeyType::Ed25519);
        // The private PEM parses back to the same public key (the parser takes private keys).
        assert_eq!(
            PublicKey::from_pem(&a.private_pem).unwrap().data,
            a.public.data
        );
        let rsa = generate(KeyKind::Rsa { bits: 2048 }).unwrap();
        assert_eq!((rsa.public.key_type, rsa.public.bits), (KeyType::Rsa, 2048));
        assert_eq!(
            PublicKey::from_pem(&rsa.private_pem).unwrap().data,
            rsa.public.data
        );
        assert!(rsa.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{rsa:?}").contains("PRIVATE"));
    }
}
