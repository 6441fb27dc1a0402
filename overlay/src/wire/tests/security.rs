use bytes::Bytes;

use super::{both_ways, h};
use crate::wire::{
    GenericCertificate, SecurityBlock, Signature, SignatureAndHashAlgorithm, SignerIdentity,
};

#[test]
fn generic_certificate_rfc6940_6_3_4() {
    // CertificateType x509(0), certificate<0..2^16-1>
    both_ways(
        GenericCertificate::x509(Bytes::from_static(b"AB")),
        &h("00 0002 4142"),
    );
}

#[test]
fn signer_identity_cert_hash_rfc6940_6_3_4() {
    // identity_type cert_hash(1), length 4, hash_alg sha256(4), certificate_hash<0..2^8-1>
    both_ways(
        SignerIdentity::CertHash {
            hash_alg: 4,
            hash: Bytes::from_static(&[1, 2]),
        },
        &h("01 0004 04 02 0102"),
    );
}

#[test]
fn signer_identity_cert_hash_node_id_rfc6940_6_3_4() {
    both_ways(
        SignerIdentity::CertHashNodeId {
            hash_alg: 4,
            hash: Bytes::from_static(&[9]),
        },
        &h("02 0003 04 01 09"),
    );
}

#[test]
fn signer_identity_none_rfc6940_6_3_4() {
    both_ways(SignerIdentity::None, &h("03 0000"));
}

#[test]
fn signer_identity_unknown_type_is_kept_rfc6940_6_3_4() {
    // "This structure may be extended with new types if necessary"
    both_ways(
        SignerIdentity::Unknown {
            kind: 9,
            value: Bytes::from_static(b"z"),
        },
        &h("09 0001 7a"),
    );
}

#[test]
fn signature_rfc6940_6_3_4() {
    // SignatureAndHashAlgorithm {sha256(4), ecdsa(3)}, SignerIdentity none, value<0..2^16-1>
    both_ways(
        Signature {
            algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
            identity: SignerIdentity::None,
            value: Bytes::from_static(b"S"),
        },
        &h("04 03 | 03 0000 | 0001 53"),
    );
}

#[test]
fn anonymous_signature_of_synthesised_values_rfc6940_7_4_2_2() {
    both_ways(Signature::anonymous(), &h("00 00 03 0000 0000"));
    assert!(Signature::anonymous().is_anonymous());
}

#[test]
fn security_block_rfc6940_6_3_4() {
    // certificates<0..2^16-1> = [x509 "AB"] (5 bytes), then the signature
    both_ways(
        SecurityBlock {
            certificates: vec![GenericCertificate::x509(Bytes::from_static(b"AB"))],
            signature: Signature {
                algorithm: SignatureAndHashAlgorithm::RSA_SHA256,
                identity: SignerIdentity::None,
                value: Bytes::from_static(b"S"),
            },
        },
        &h("0005 00 0002 4142 | 04 01 03 0000 0001 53"),
    );
}
