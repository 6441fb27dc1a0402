//! The security block (§6.3.4): certificates and signatures.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, Encode, EncodeError, Res, Width, exact, invalid, list, opaque, opaque_bytes, put_list,
    put_opaque, put_prefixed, u8_,
};

/// `CertificateType` from RFC 6091: X.509 is 0.
pub const CERT_TYPE_X509: u8 = 0;

/// `GenericCertificate` (§6.3.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GenericCertificate {
    /// `CertificateType` (RFC 6091); only X.509 ([`CERT_TYPE_X509`]) is used.
    pub kind: u8,
    /// The DER encoding of the certificate.
    pub certificate: Bytes,
}

impl GenericCertificate {
    /// An X.509 certificate in DER.
    pub fn x509(der: impl Into<Bytes>) -> GenericCertificate {
        GenericCertificate {
            kind: CERT_TYPE_X509,
            certificate: der.into(),
        }
    }
}

impl Encode for GenericCertificate {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.kind);
        put_opaque(out, Width::U16, "certificate", &self.certificate)
    }
}

impl Decode for GenericCertificate {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u8_(i, "certificate_type")?;
        let (rest, certificate) = opaque_bytes(rest, Width::U16, "certificate")?;
        Ok((rest, GenericCertificate { kind, certificate }))
    }
}

/// TLS `SignatureAndHashAlgorithm` (RFC 5246 §7.4.1.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureAndHashAlgorithm {
    /// `HashAlgorithm`: none(0), md5(1), sha1(2), sha224(3), sha256(4), sha384(5), sha512(6).
    pub hash: u8,
    /// `SignatureAlgorithm`: anonymous(0), rsa(1), dsa(2), ecdsa(3).
    pub signature: u8,
}

impl SignatureAndHashAlgorithm {
    /// ECDSA with SHA-256: what this implementation signs with.
    pub const ECDSA_SHA256: Self = Self {
        hash: HASH_SHA256,
        signature: 3,
    };
    /// RSASSA-PKCS1-v1_5 with SHA-256: the RFC's mandatory algorithm (§6.3.4).
    pub const RSA_SHA256: Self = Self {
        hash: HASH_SHA256,
        signature: 1,
    };
    /// `{anonymous, none}`: only for values synthesised by storage (§7.4.2.2).
    pub const ANONYMOUS: Self = Self {
        hash: 0,
        signature: 0,
    };
}

/// TLS `HashAlgorithm` sha256(4).
pub const HASH_SHA256: u8 = 4;

/// `SignerIdentity` (§6.3.4): who signed, by a hash of their certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignerIdentity {
    /// `cert_hash(1)`: H(certificate) — for certificates with one Node-ID.
    CertHash {
        /// TLS `HashAlgorithm` of the hash.
        hash_alg: u8,
        /// The hash of the DER certificate.
        hash: Bytes,
    },
    /// `cert_hash_node_id(2)`: H(NodeId || certificate) — for certificates with several.
    CertHashNodeId {
        /// TLS `HashAlgorithm` of the hash.
        hash_alg: u8,
        /// The hash of the signing Node-ID followed by the DER certificate.
        hash: Bytes,
    },
    /// `none(3)`: unsigned synthetic values (§7.4.2.2).
    None,
    /// An identity type this implementation does not know.
    Unknown {
        /// `SignerIdentityType`.
        kind: u8,
        /// The identity bytes.
        value: Bytes,
    },
}

impl Encode for SignerIdentity {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let (kind, hash) = match self {
            SignerIdentity::CertHash { hash_alg, hash } => (1, Some((hash_alg, hash))),
            SignerIdentity::CertHashNodeId { hash_alg, hash } => (2, Some((hash_alg, hash))),
            SignerIdentity::None => (3, None),
            SignerIdentity::Unknown { kind, value } => {
                out.put_u8(*kind);
                return put_opaque(out, Width::U16, "identity", value);
            }
        };
        out.put_u8(kind);
        put_prefixed(out, Width::U16, "identity", |out| {
            if let Some((alg, hash)) = hash {
                out.put_u8(*alg);
                put_opaque(out, Width::U8, "certificate_hash", hash)?;
            }
            Ok(())
        })
    }
}

impl Decode for SignerIdentity {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (after_type, kind) = u8_(i, "identity_type")?;
        let (rest, value) = opaque(after_type, Width::U16, "identity")?;
        let hashed = |v| -> Res<'_, (u8, Bytes)> {
            let (r, alg) = u8_(v, "hash_alg")?;
            let (r, hash) = opaque_bytes(r, Width::U8, "certificate_hash")?;
            Ok((r, (alg, hash)))
        };
        let identity = match kind {
            0 => return invalid(i, "identity_type", "invalidSignerIdentityType(0)"),
            1 => {
                let (hash_alg, hash) = exact(value, "identity", hashed)?;
                SignerIdentity::CertHash { hash_alg, hash }
            }
            2 => {
                let (hash_alg, hash) = exact(value, "identity", hashed)?;
                SignerIdentity::CertHashNodeId { hash_alg, hash }
            }
            3 => {
                if !value.is_empty() {
                    return invalid(after_type, "identity", "a `none` identity is empty");
                }
                SignerIdentity::None
            }
            _ => SignerIdentity::Unknown {
                kind,
                value: Bytes::copy_from_slice(value),
            },
        };
        Ok((rest, identity))
    }
}

/// `Signature` (§6.3.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The algorithm pair.
    pub algorithm: SignatureAndHashAlgorithm,
    /// Who signed.
    pub identity: SignerIdentity,
    /// The signature bytes.
    pub value: Bytes,
}

impl Signature {
    /// The empty signature of synthesised storage values: `{0, 0}`, identity `none`, no
    /// bytes (§7.4.2.2).
    pub fn anonymous() -> Signature {
        Signature {
            algorithm: SignatureAndHashAlgorithm::ANONYMOUS,
            identity: SignerIdentity::None,
            value: Bytes::new(),
        }
    }

    /// Whether this is the anonymous signature that stores must refuse (§7.4.1.1).
    pub fn is_anonymous(&self) -> bool {
        self.identity == SignerIdentity::None
            || self.algorithm == SignatureAndHashAlgorithm::ANONYMOUS
    }
}

impl Encode for Signature {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.algorithm.hash);
        out.put_u8(self.algorithm.signature);
        self.identity.encode(out)?;
        put_opaque(out, Width::U16, "signature_value", &self.value)
    }
}

impl Decode for Signature {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, hash) = u8_(i, "hash_algorithm")?;
        let (rest, signature) = u8_(rest, "signature_algorithm")?;
        let (rest, identity) = SignerIdentity::parse(rest)?;
        let (rest, value) = opaque_bytes(rest, Width::U16, "signature_value")?;
        Ok((
            rest,
            Signature {
                algorithm: SignatureAndHashAlgorithm { hash, signature },
                identity,
                value,
            },
        ))
    }
}

/// `SecurityBlock` (§6.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityBlock {
    /// Certificates needed to verify the message and the values inside it.
    pub certificates: Vec<GenericCertificate>,
    /// The signature over the message.
    pub signature: Signature,
}

impl Encode for SecurityBlock {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_list(out, Width::U16, "certificates", &self.certificates)?;
        self.signature.encode(out)
    }
}

impl Decode for SecurityBlock {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, certificates) = list(i, Width::U16, "certificates", GenericCertificate::parse)?;
        let (rest, signature) = Signature::parse(rest)?;
        Ok((
            rest,
            SecurityBlock {
                certificates,
                signature,
            },
        ))
    }
}
