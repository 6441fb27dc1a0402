//! Signing keys: ECDSA P-256 with SHA-256, signatures made deterministically (RFC 6979).
//!
//! Deterministic ECDSA needs no randomness at signing time, so the core stays free of
//! an OS RNG and a simulation replays byte for byte from its seed. Verification of every
//! algorithm goes through `ring` (see [`super::sign`]).

use std::fmt;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand::Rng;

use super::IdentityError;

/// An ECDSA P-256 key pair.
#[derive(Clone)]
pub struct KeyPair {
    key: SigningKey,
    /// Uncompressed SEC1 public point (65 bytes): the `subjectPublicKey` bits.
    public: Vec<u8>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyPair(P-256, public {})",
            hex::encode(&self.public[1..9])
        )
    }
}

impl KeyPair {
    /// A fresh key from `rng` (the seeded RNG in a simulation, the OS RNG in a CLI).
    pub fn generate(rng: &mut impl Rng) -> KeyPair {
        loop {
            let mut scalar = [0u8; 32];
            rng.fill_bytes(&mut scalar);
            if let Ok(key) = SigningKey::from_bytes(&scalar.into()) {
                return KeyPair::from_signing_key(key);
            }
        }
    }

    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<KeyPair, IdentityError> {
        SigningKey::from_pkcs8_der(der)
            .map(KeyPair::from_signing_key)
            .map_err(|e| IdentityError::Key(format!("not a P-256 PKCS#8 key: {e}")))
    }

    fn from_signing_key(key: SigningKey) -> KeyPair {
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        KeyPair { key, public }
    }

    /// The private key as PKCS#8 DER (what rustls and key files take).
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.key
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The uncompressed public point.
    pub fn public_point(&self) -> &[u8] {
        &self.public
    }

    /// ECDSA-SHA256 over `msg`, ASN.1 DER encoded (as TLS encodes ECDSA signatures).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
}

#[cfg(feature = "issue")]
impl rcgen::PublicKeyData for KeyPair {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

#[cfg(feature = "issue")]
impl rcgen::SigningKey for KeyPair {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(KeyPair::sign(self, msg))
    }
}
