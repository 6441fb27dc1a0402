//! One test per way a signature can be wrong (§6.3.4, §7.1).

use bytes::Bytes;

use crate::id::{NodeId, ResourceId};
use crate::identity::sign::{message_signature_input, verify_with_cert};
use crate::identity::testca::TestCa;
use crate::identity::{CertCache, Credentials, SignatureError, TrustStore};
use crate::wire::*;

const OVERLAY: &str = "chat.example";
const NOW: i64 = 1_800_000_000;

struct Fixture {
    trust: TrustStore,
    alice: Credentials,
    bob: Credentials,
}

fn fixture() -> Fixture {
    let mut ca = TestCa::new(OVERLAY, 42);
    let alice = ca.node("alice@wonderland.lit", NodeId(0xa11ce));
    let bob = ca.node("bob@builder.lit", NodeId(0xb0b));
    Fixture {
        trust: ca.trust_store(),
        alice,
        bob,
    }
}

fn signed_message(c: &Credentials) -> Message {
    let header = ForwardingHeader {
        overlay: crate::id::overlay_field(OVERLAY),
        configuration_sequence: 1,
        ttl: 100,
        fragment: Fragment::WHOLE,
        transaction_id: 0x0102_0304_0506_0708,
        max_response_length: 0,
        via_list: vec![],
        destination_list: vec![Destination::Node(NodeId(0xb0b))],
        options: vec![],
    };
    let contents = MessageContents {
        code: MessageCode::PING_REQ,
        body: Bytes::from_static(&[0, 2, 7, 7]),
        extensions: vec![],
    };
    let encoded = contents.to_bytes().unwrap();
    let security = c.security_block(header.overlay, header.transaction_id, &encoded);
    Message {
        header,
        contents,
        security,
    }
}

fn verify(f: &Fixture, m: &Message) -> Result<NodeId, SignatureError> {
    CertCache::new(16)
        .verify_message(&f.trust, m, NOW)
        .map(|s| s.node_id)
}

#[test]
fn a_good_message_signature_verifies_rfc6940_6_3_4() {
    let f = fixture();
    assert_eq!(verify(&f, &signed_message(&f.alice)), Ok(NodeId(0xa11ce)));
}

#[test]
fn signing_is_deterministic() {
    let f = fixture();
    assert_eq!(signed_message(&f.alice), signed_message(&f.alice));
}

#[test]
fn flipped_bit_in_overlay_field_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.header.overlay ^= 1;
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn flipped_bit_in_transaction_id_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.header.transaction_id ^= 1 << 40;
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn flipped_bit_in_message_code_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.contents.code = MessageCode(m.contents.code.0 ^ 0x0100);
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn flipped_bit_in_message_body_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    let mut body = m.contents.body.to_vec();
    body[3] ^= 0x80;
    m.contents.body = body.into();
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn added_extension_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.contents.extensions.push(MessageExtension {
        kind: 1,
        critical: false,
        contents: Bytes::new(),
    });
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn flipped_bit_in_signature_value_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    let mut v = m.security.signature.value.to_vec();
    let last = v.len() - 1;
    v[last] ^= 1;
    m.security.signature.value = v.into();
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn signature_by_another_key_fails() {
    // Bob signs, but the message claims to be signed with Alice's certificate.
    let f = fixture();
    let mut m = signed_message(&f.alice);
    let by_bob = signed_message(&f.bob);
    m.security.signature.value = by_bob.security.signature.value;
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn wrong_signer_identity_fails() {
    // The signer identity names Bob's certificate (present in the bucket) while the
    // signature is Alice's: the hash of the identity is itself signed, and Bob's key
    // does not verify Alice's signature.
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.security.signature.identity = f.bob.signer_identity();
    m.security.certificates.extend(f.bob.certificates());
    assert_eq!(verify(&f, &m), Err(SignatureError::BadSignature));
}

#[test]
fn signer_identity_matching_no_certificate_fails() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.security.signature.identity = SignerIdentity::CertHash {
        hash_alg: 4,
        hash: Bytes::from(vec![0; 32]),
    };
    assert_eq!(verify(&f, &m), Err(SignatureError::UnknownSigner));
}

#[test]
fn algorithm_mismatch_fails() {
    // An ECDSA signature labelled RSA: the certificate's key cannot do RSA.
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.security.signature.algorithm = SignatureAndHashAlgorithm::RSA_SHA256;
    assert!(matches!(
        verify(&f, &m),
        Err(SignatureError::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn unsupported_hash_is_refused() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.security.signature.algorithm = SignatureAndHashAlgorithm {
        hash: 2,
        signature: 3,
    }; // sha1
    assert_eq!(
        verify(&f, &m),
        Err(SignatureError::UnsupportedAlgorithm {
            hash: 2,
            signature: 3
        })
    );
}

#[test]
fn unsigned_message_is_refused() {
    let f = fixture();
    let mut m = signed_message(&f.alice);
    m.security.signature = Signature::anonymous();
    assert_eq!(verify(&f, &m), Err(SignatureError::Unsigned));
}

#[test]
fn signer_from_another_ca_is_untrusted() {
    let f = fixture();
    let mut eve_ca = TestCa::new(OVERLAY, 666);
    let eve = eve_ca.node("eve@evil.example", NodeId(0xe7e));
    let m = signed_message(&eve);
    assert!(matches!(verify(&f, &m), Err(SignatureError::Untrusted(_))));
}

#[test]
fn certificate_known_from_an_earlier_message_rfc6940_6_3_4() {
    let f = fixture();
    let mut cache = CertCache::new(16);
    cache
        .verify_message(&f.trust, &signed_message(&f.alice), NOW)
        .unwrap();
    let mut bare = signed_message(&f.alice);
    bare.security.certificates.clear();
    assert_eq!(
        cache.verify_message(&f.trust, &bare, NOW).unwrap().node_id,
        NodeId(0xa11ce)
    );
    assert_eq!(
        CertCache::new(16)
            .verify_message(&f.trust, &bare, NOW)
            .unwrap_err(),
        SignatureError::UnknownSigner
    );
}

#[test]
fn cert_hash_node_id_signer_known_from_an_earlier_message_rfc6940_6_3_4_1() {
    let f = fixture();
    let mut ca = TestCa::new(OVERLAY, 42);
    let two = ca.issue_node(&crate::identity::issue::NodeCertSpec {
        overlay: OVERLAY.to_owned(),
        node_ids: vec![NodeId(0x71), NodeId(0x72)],
        user: Some("carol@wonderland.lit".to_owned()),
        xmpp_addr: None,
        validity: crate::identity::issue::Validity::LONG,
    });
    let m = signed_message(&two);
    assert!(matches!(
        m.security.signature.identity,
        SignerIdentity::CertHashNodeId { .. }
    ));
    let mut cache = CertCache::new(2);
    cache.verify_message(&f.trust, &m, NOW).unwrap();
    let mut bare = signed_message(&two);
    bare.security.certificates.clear();
    assert_eq!(
        cache.verify_message(&f.trust, &bare, NOW).unwrap().node_id,
        NodeId(0x71)
    );
    // Two other signers push it out of a cache of two: it is forgotten entirely.
    cache
        .verify_message(&f.trust, &signed_message(&f.alice), NOW)
        .unwrap();
    cache
        .verify_message(&f.trust, &signed_message(&f.bob), NOW)
        .unwrap();
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.verify_message(&f.trust, &bare, NOW).unwrap_err(),
        SignatureError::UnknownSigner
    );
}

fn stored(
    c: &Credentials,
    resource: ResourceId,
    kind: KindId,
    value: StoredDataValue,
) -> StoredData {
    let signature = c.sign_value(resource, kind, 1_000, &value);
    StoredData {
        storage_time: 1_000,
        lifetime: 60,
        value,
        signature,
    }
}

fn verify_value(
    f: &Fixture,
    resource: ResourceId,
    kind: KindId,
    d: &StoredData,
) -> Result<NodeId, SignatureError> {
    let bucket = f.alice.certificates();
    CertCache::new(4)
        .verify_value(&f.trust, resource, kind, d, &bucket, NOW)
        .map(|s| s.node_id)
}

#[test]
fn stored_value_signature_covers_resource_kind_time_and_value_rfc6940_7_1() {
    let f = fixture();
    let r = ResourceId::of_name(b"alice@wonderland.lit");
    let value = StoredDataValue::Dictionary {
        key: Bytes::from_static(b"k"),
        value: DataValue::new(&b"v"[..]),
    };
    let d = stored(&f.alice, r, 5, value);
    assert_eq!(verify_value(&f, r, 5, &d), Ok(NodeId(0xa11ce)));
    assert_eq!(
        verify_value(&f, ResourceId(r.0 ^ 1), 5, &d),
        Err(SignatureError::BadSignature),
        "resource"
    );
    assert_eq!(
        verify_value(&f, r, 6, &d),
        Err(SignatureError::BadSignature),
        "kind"
    );
    let mut later = d.clone();
    later.storage_time += 1;
    assert_eq!(
        verify_value(&f, r, 5, &later),
        Err(SignatureError::BadSignature),
        "storage_time"
    );
    let mut other = d.clone();
    other.value = StoredDataValue::Dictionary {
        key: Bytes::from_static(b"k"),
        value: DataValue::new(&b"w"[..]),
    };
    assert_eq!(
        verify_value(&f, r, 5, &other),
        Err(SignatureError::BadSignature),
        "value"
    );
    let mut lifetime = d;
    lifetime.lifetime = 999_999;
    assert_eq!(
        verify_value(&f, r, 5, &lifetime),
        Ok(NodeId(0xa11ce)),
        "lifetime is not signed"
    );
}

#[test]
fn array_index_is_zeroed_before_signing_rfc6940_7_4_2_2() {
    let f = fixture();
    let r = ResourceId(77);
    let appended = StoredDataValue::Array {
        index: 0xffff_ffff,
        value: DataValue::new(&b"cert"[..]),
    };
    let mut d = stored(&f.alice, r, 3, appended);
    d.value = StoredDataValue::Array {
        index: 4,
        value: DataValue::new(&b"cert"[..]),
    };
    assert_eq!(verify_value(&f, r, 3, &d), Ok(NodeId(0xa11ce)));
}

#[test]
fn rsa_pkcs1_sha256_signatures_verify_rfc6940_6_3_4() {
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let pkcs8 = include_bytes!("../../../tests/fixtures/rsa2048.pk8.der");
    let mut ca = TestCa::new(OVERLAY, 9);
    let rsa_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(&pkcs8[..]),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let spec = crate::identity::issue::NodeCertSpec {
        overlay: OVERLAY.into(),
        node_ids: vec![NodeId(0x5a)],
        user: Some("rsa@old.example".into()),
        xmpp_addr: None,
        validity: crate::identity::issue::Validity::LONG,
    };
    let params = crate::identity::issue::node_params(&spec).unwrap();
    let domain = ca.domain("old.example");
    let issuer = rcgen::Issuer::from_params(&domain.params, &domain.key);
    let cert = params.signed_by(&rsa_key, &issuer).unwrap().der().to_vec();

    let input = message_signature_input(1, 2, b"contents", &SignerIdentity::None);
    let signer = RsaKeyPair::from_pkcs8(pkcs8).unwrap();
    let mut sig = vec![0; signer.public().modulus_len()];
    signer
        .sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            &input,
            &mut sig,
        )
        .unwrap();
    assert_eq!(
        verify_with_cert(&cert, SignatureAndHashAlgorithm::RSA_SHA256, &input, &sig),
        Ok(())
    );
    sig[10] ^= 1;
    assert_eq!(
        verify_with_cert(&cert, SignatureAndHashAlgorithm::RSA_SHA256, &input, &sig),
        Err(SignatureError::BadSignature)
    );
    // The same RSA signature claimed as ECDSA: an algorithm mismatch.
    assert!(matches!(
        verify_with_cert(&cert, SignatureAndHashAlgorithm::ECDSA_SHA256, &input, &sig),
        Err(SignatureError::UnsupportedAlgorithm { .. })
    ));
}
