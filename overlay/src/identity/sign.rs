//! Message signatures (§6.3.4) and stored-data signatures (§7.1).
//!
//! Signature inputs:
//! - messages: `overlay || transaction_id || MessageContents || SignerIdentity`;
//! - stored values: `resource_id || kind || storage_time || StoredDataValue ||
//!   SignerIdentity`, with an array entry's index set to zero (§7.4.2.2).
//!
//! Every field is taken in its wire encoding (the Resource-ID with its length byte, as a
//! `ResourceId` is an `opaque<0..2^8-1>`). We sign with ECDSA P-256/SHA-256 and verify
//! ECDSA and the RFC's mandatory RSASSA-PKCS1-v1_5/SHA-256.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rustls_pki_types::CertificateDer;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use webpki::EndEntityCert;

use super::IdentityError;
use super::cert::CertIdentity;
use super::keys::KeyPair;
use super::trust::{TrustStore, Usage};
use crate::id::{NodeId, ResourceId};
use crate::wire::security::{CERT_TYPE_X509, HASH_SHA256};
use crate::wire::{
    Encode, GenericCertificate, KindId, Message, SecurityBlock, Signature,
    SignatureAndHashAlgorithm, SignerIdentity, StoredData, StoredDataValue,
};

/// TLS `HashAlgorithm` sha1(2), accepted when matching signer identities.
const HASH_SHA1: u8 = 2;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signer identity is `none` or the algorithm `{anonymous, none}`.
    #[error("the value or message is unsigned")]
    Unsigned,
    /// No known certificate matches the signer identity.
    #[error("no certificate matches the signer identity")]
    UnknownSigner,
    /// The algorithm pair is not one this node verifies, or does not fit the key.
    #[error("unsupported signature algorithm (hash {hash}, signature {signature})")]
    UnsupportedAlgorithm {
        /// TLS HashAlgorithm.
        hash: u8,
        /// TLS SignatureAlgorithm.
        signature: u8,
    },
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// The signer's certificate is not trusted.
    #[error("signer certificate refused: {0}")]
    Untrusted(#[from] IdentityError),
}

/// This node's credentials: its key and certificate chain.
#[derive(Clone)]
pub struct Credentials {
    key: KeyPair,
    cert: Bytes,
    chain: Vec<Bytes>,
    identity: Arc<CertIdentity>,
    node_id: NodeId,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("node_id", &self.node_id)
            .field("user", &self.identity.user)
            .field("xmpp_addrs", &self.identity.xmpp_addrs)
            .finish()
    }
}

impl Credentials {
    /// Credentials from a key, its end-entity certificate and the intermediates above it.
    pub fn new(
        key: KeyPair,
        cert: impl Into<Bytes>,
        chain: Vec<Bytes>,
        overlay: &str,
    ) -> Result<Credentials, IdentityError> {
        let cert = cert.into();
        let identity = CertIdentity::parse(&cert, overlay)?;
        if identity.spki != key.spki_der() {
            return Err(IdentityError::Key(
                "the key does not match the certificate".into(),
            ));
        }
        let node_id = *identity
            .node_ids
            .first()
            .ok_or_else(|| IdentityError::NoNodeId {
                overlay: overlay.to_owned(),
            })?;
        Ok(Credentials {
            key,
            cert,
            chain,
            identity: Arc::new(identity),
            node_id,
        })
    }

    /// The Node-ID this node signs as (the first in its certificate).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// What the certificate says.
    pub fn identity(&self) -> &Arc<CertIdentity> {
        &self.identity
    }

    /// The key pair.
    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// The end-entity certificate (DER).
    pub fn cert(&self) -> &Bytes {
        &self.cert
    }

    /// The intermediates (DER), nearest first.
    pub fn chain(&self) -> &[Bytes] {
        &self.chain
    }

    /// `cert_hash` for a single-Node-ID certificate, `cert_hash_node_id` otherwise
    /// (§6.3.4).
    pub fn signer_identity(&self) -> SignerIdentity {
        if self.identity.node_ids.len() == 1 {
            SignerIdentity::CertHash {
                hash_alg: HASH_SHA256,
                hash: sha256(&self.cert),
            }
        } else {
            SignerIdentity::CertHashNodeId {
                hash_alg: HASH_SHA256,
                hash: Bytes::copy_from_slice(&node_cert_hash(self.node_id, &self.cert)),
            }
        }
    }

    fn sign_input(&self, input: &[u8], identity: SignerIdentity) -> Signature {
        Signature {
            algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
            identity,
            value: Bytes::from(self.key.sign(input)),
        }
    }

    /// Signs message contents (already encoded) for the header's overlay and
    /// transaction id.
    pub fn sign_message(&self, overlay: u32, transaction_id: u64, contents: &[u8]) -> Signature {
        let identity = self.signer_identity();
        let input = message_signature_input(overlay, transaction_id, contents, &identity);
        self.sign_input(&input, identity)
    }

    /// Signs a value to be stored at `resource` under `kind` (§7.1).
    pub fn sign_value(
        &self,
        resource: ResourceId,
        kind: KindId,
        storage_time: u64,
        value: &StoredDataValue,
    ) -> Signature {
        let identity = self.signer_identity();
        let input = stored_data_signature_input(resource, kind, storage_time, value, &identity);
        self.sign_input(&input, identity)
    }

    /// Signs an opaque blob, e.g. a configuration or kind element (§11.1): the input is
    /// `blob || SignerIdentity`, following the pattern of §6.3.4 and §7.1.
    pub fn sign_blob(&self, blob: &[u8]) -> Signature {
        let identity = self.signer_identity();
        let input = blob_signature_input(blob, &identity);
        self.sign_input(&input, identity)
    }

    /// The certificate bucket for a security block: this node's certificate and chain.
    pub fn certificates(&self) -> Vec<GenericCertificate> {
        std::iter::once(&self.cert)
            .chain(self.chain.iter())
            .map(|c| GenericCertificate::x509(c.clone()))
            .collect()
    }

    /// A complete security block for a message with these contents.
    pub fn security_block(
        &self,
        overlay: u32,
        transaction_id: u64,
        contents: &[u8],
    ) -> SecurityBlock {
        SecurityBlock {
            certificates: self.certificates(),
            signature: self.sign_message(overlay, transaction_id, contents),
        }
    }
}

fn sha256(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&Sha256::digest(data))
}

/// `overlay || transaction_id || MessageContents || SignerIdentity` (§6.3.4).
pub fn message_signature_input(
    overlay: u32,
    transaction_id: u64,
    contents: &[u8],
    identity: &SignerIdentity,
) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(12 + contents.len() + 40);
    out.put_u32(overlay);
    out.put_u64(transaction_id);
    out.put_slice(contents);
    // A SignerIdentity is at most 3 + 1 + 256 bytes: it always encodes.
    let _ = identity.encode(&mut out);
    out.to_vec()
}

/// `blob || SignerIdentity`: the input of a signature over an opaque blob such as a
/// configuration document (§11.1).
pub fn blob_signature_input(blob: &[u8], identity: &SignerIdentity) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(blob.len() + 40);
    out.put_slice(blob);
    let _ = identity.encode(&mut out);
    out.to_vec()
}

/// `resource_id || kind || storage_time || StoredDataValue || SignerIdentity` (§7.1),
/// with an array index zeroed (§7.4.2.2).
pub fn stored_data_signature_input(
    resource: ResourceId,
    kind: KindId,
    storage_time: u64,
    value: &StoredDataValue,
    identity: &SignerIdentity,
) -> Vec<u8> {
    let mut out = BytesMut::new();
    let _ = resource.encode(&mut out);
    out.put_u32(kind);
    out.put_u64(storage_time);
    let value = match value {
        StoredDataValue::Array { value, .. } => StoredDataValue::Array {
            index: 0,
            value: value.clone(),
        },
        other => other.clone(),
    };
    // Values that decoded or were built within their length limits always encode.
    let _ = value.encode(&mut out);
    let _ = identity.encode(&mut out);
    out.to_vec()
}

/// Verifies `value` over `input` with the key of `cert_der`.
pub fn verify_with_cert(
    cert_der: &[u8],
    algorithm: SignatureAndHashAlgorithm,
    input: &[u8],
    value: &[u8],
) -> Result<(), SignatureError> {
    let unsupported = SignatureError::UnsupportedAlgorithm {
        hash: algorithm.hash,
        signature: algorithm.signature,
    };
    let algs: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = match algorithm {
        SignatureAndHashAlgorithm::ECDSA_SHA256 => &[
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P384_SHA256,
        ],
        SignatureAndHashAlgorithm::RSA_SHA256 => &[webpki::ring::RSA_PKCS1_2048_8192_SHA256],
        _ => return Err(unsupported),
    };
    let der = CertificateDer::from(cert_der);
    let cert = EndEntityCert::try_from(&der)
        .map_err(|e| IdentityError::BadCertificate(format!("unusable certificate: {e}")))?;
    let mut result = Err(unsupported);
    for alg in algs {
        match cert.verify_signature(*alg, input, value) {
            Ok(()) => return Ok(()),
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {}
            Err(_) => result = Err(SignatureError::BadSignature),
        }
    }
    result
}

/// Who signed something, once the signature and certificate are verified.
#[derive(Debug, Clone)]
pub struct VerifiedSigner {
    /// The Node-ID the signer acted as.
    pub node_id: NodeId,
    /// The signer's certificate facts.
    pub identity: Arc<CertIdentity>,
    /// The signer's certificate (DER).
    pub cert: Bytes,
}

/// SHA-256(Node-ID || certificate): the `cert_hash_node_id` signer identity (§6.3.4.1).
fn node_cert_hash(node: NodeId, cert: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(node.to_be_bytes());
    h.update(cert);
    h.finalize().into()
}

/// The certificate hash a signer identity names (§6.3.4.1).
struct SignerHash<'a> {
    alg: u8,
    hash: &'a [u8],
    with_node: bool,
}

impl SignerHash<'_> {
    /// Whether `data` hashes to the wanted value.
    fn matches(&self, data: &[u8]) -> bool {
        match self.alg {
            HASH_SHA256 => Sha256::digest(data).as_slice() == self.hash,
            HASH_SHA1 => Sha1::digest(data).as_slice() == self.hash,
            _ => false,
        }
    }
}

/// A verified certificate remembered by its SHA-256.
#[derive(Debug, Clone)]
struct CachedCert {
    der: Bytes,
    identity: Arc<CertIdentity>,
}

/// Certificates this node has verified, so signers can be found "from earlier
/// messages" (§6.3.4) and chains are not re-verified for every message. Bounded: the
/// oldest entries are forgotten first.
#[derive(Debug)]
pub struct CertCache {
    by_hash: HashMap<[u8; 32], CachedCert>,
    /// SHA-256(Node-ID || certificate) of each cached certificate's Node-IDs (the
    /// `cert_hash_node_id` identity) to the certificate's key in `by_hash`.
    by_signer: HashMap<[u8; 32], [u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl CertCache {
    /// A cache holding at most `capacity` certificates.
    pub fn new(capacity: usize) -> CertCache {
        CertCache {
            by_hash: HashMap::new(),
            by_signer: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Number of cached certificates.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Verifies (or finds already verified) `cert` with `intermediates` and remembers it.
    pub fn verify_cert(
        &mut self,
        trust: &TrustStore,
        cert: &Bytes,
        intermediates: &[&[u8]],
        unix_secs: i64,
    ) -> Result<Arc<CertIdentity>, IdentityError> {
        let key: [u8; 32] = Sha256::digest(cert).into();
        if let Some(hit) = self.by_hash.get(&key) {
            if !hit.identity.valid_at(unix_secs) {
                return Err(IdentityError::Expired);
            }
            if let Some(bad) = hit
                .identity
                .node_ids
                .iter()
                .find(|n| trust.is_bad_node(**n))
            {
                return Err(IdentityError::BadNode(*bad));
            }
            return Ok(hit.identity.clone());
        }
        let identity = Arc::new(trust.verify(cert, intermediates, unix_secs, Usage::Client)?);
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
            && let Some(gone) = self.by_hash.remove(&old)
        {
            for n in &gone.identity.node_ids {
                self.by_signer.remove(&node_cert_hash(*n, &gone.der));
            }
        }
        for n in &identity.node_ids {
            self.by_signer.insert(node_cert_hash(*n, cert), key);
        }
        self.order.push_back(key);
        self.by_hash.insert(
            key,
            CachedCert {
                der: cert.clone(),
                identity: identity.clone(),
            },
        );
        Ok(identity)
    }

    /// Finds, verifies and returns the signer named by `identity` among `bucket` (a
    /// security block's certificates) and the certificates seen before.
    ///
    /// The bucket is searched first; the cache is then looked up by hash (SHA-256
    /// identities, the ones this implementation sends) or, for other hashes, scanned.
    pub fn resolve_signer(
        &mut self,
        trust: &TrustStore,
        identity: &SignerIdentity,
        bucket: &[GenericCertificate],
        unix_secs: i64,
    ) -> Result<VerifiedSigner, SignatureError> {
        let x509: Vec<&Bytes> = bucket
            .iter()
            .filter(|c| c.kind == CERT_TYPE_X509)
            .map(|c| &c.certificate)
            .collect();
        let (hash_alg, hash, with_node) = match identity {
            SignerIdentity::CertHash { hash_alg, hash } => (*hash_alg, hash, false),
            SignerIdentity::CertHashNodeId { hash_alg, hash } => (*hash_alg, hash, true),
            SignerIdentity::None => return Err(SignatureError::Unsigned),
            SignerIdentity::Unknown { .. } => return Err(SignatureError::UnknownSigner),
        };
        let wanted = SignerHash {
            alg: hash_alg,
            hash,
            with_node,
        };
        for cert in &x509 {
            if let Some(found) = self.try_signer(trust, &wanted, cert, &x509, unix_secs)? {
                return Ok(found);
            }
        }
        let cached: Vec<Bytes> = match <[u8; 32]>::try_from(hash.as_ref()) {
            Ok(key) if hash_alg == HASH_SHA256 => {
                let key = if with_node {
                    self.by_signer.get(&key).copied()
                } else {
                    Some(key)
                };
                key.and_then(|k| self.by_hash.get(&k))
                    .map(|c| c.der.clone())
                    .into_iter()
                    .collect()
            }
            _ => self.by_hash.values().map(|c| c.der.clone()).collect(),
        };
        for cert in &cached {
            if let Some(found) = self.try_signer(trust, &wanted, cert, &x509, unix_secs)? {
                return Ok(found);
            }
        }
        Err(SignatureError::UnknownSigner)
    }

    /// `cert` as the signer `wanted` names, verified; `None` if it is not that signer.
    fn try_signer(
        &mut self,
        trust: &TrustStore,
        wanted: &SignerHash<'_>,
        cert: &Bytes,
        bucket: &[&Bytes],
        unix_secs: i64,
    ) -> Result<Option<VerifiedSigner>, SignatureError> {
        let matched_node = if wanted.with_node {
            let parsed = CertIdentity::parse(cert, trust.overlay())?;
            let found = parsed.node_ids.iter().copied().find(|n| {
                let mut input = n.to_be_bytes().to_vec();
                input.extend_from_slice(cert);
                wanted.matches(&input)
            });
            if found.is_none() {
                return Ok(None);
            }
            found
        } else if wanted.matches(cert) {
            None
        } else {
            return Ok(None);
        };
        let intermediates: Vec<&[u8]> = bucket
            .iter()
            .filter(|c| **c != cert)
            .map(|c| c.as_ref())
            .collect();
        let cert_identity = self.verify_cert(trust, cert, &intermediates, unix_secs)?;
        let node_id = match matched_node {
            Some(n) => n,
            // §6.3.4: cert_hash is for certificates with exactly one Node-ID.
            None => cert_identity
                .single_node_id()
                .ok_or(SignatureError::UnknownSigner)?,
        };
        Ok(Some(VerifiedSigner {
            node_id,
            identity: cert_identity,
            cert: cert.clone(),
        }))
    }

    /// Verifies a whole message's signature (§6.3.4): the signer's certificate chains to
    /// the overlay roots and the signature covers overlay, transaction id, contents and
    /// signer identity.
    pub fn verify_message(
        &mut self,
        trust: &TrustStore,
        message: &Message,
        unix_secs: i64,
    ) -> Result<VerifiedSigner, SignatureError> {
        let sig = &message.security.signature;
        if sig.is_anonymous() {
            return Err(SignatureError::Unsigned);
        }
        let signer = self.resolve_signer(
            trust,
            &sig.identity,
            &message.security.certificates,
            unix_secs,
        )?;
        let contents = message
            .contents
            .to_bytes()
            .map_err(|_| SignatureError::BadSignature)?;
        let input = message_signature_input(
            message.header.overlay,
            message.header.transaction_id,
            &contents,
            &sig.identity,
        );
        verify_with_cert(&signer.cert, sig.algorithm, &input, &sig.value)?;
        Ok(signer)
    }

    /// Verifies a stored value's signature (§7.1) with the certificates of `bucket` and
    /// those seen before.
    pub fn verify_value(
        &mut self,
        trust: &TrustStore,
        resource: ResourceId,
        kind: KindId,
        data: &StoredData,
        bucket: &[GenericCertificate],
        unix_secs: i64,
    ) -> Result<VerifiedSigner, SignatureError> {
        let sig = &data.signature;
        if sig.is_anonymous() {
            return Err(SignatureError::Unsigned);
        }
        let signer = self.resolve_signer(trust, &sig.identity, bucket, unix_secs)?;
        let input = stored_data_signature_input(
            resource,
            kind,
            data.storage_time,
            &data.value,
            &sig.identity,
        );
        verify_with_cert(&signer.cert, sig.algorithm, &input, &sig.value)?;
        Ok(signer)
    }
}
