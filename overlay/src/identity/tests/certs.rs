use crate::id::NodeId;
use crate::identity::cert::{SelfSignedDigest, self_signed_node_id};
use crate::identity::issue::{NodeCertSpec, Validity, node_params, self_signed};
use crate::identity::testca::TestCa;
use crate::identity::{CertIdentity, IdentityError, TrustStore, Usage};

const OVERLAY: &str = "chat.example";
const NOW: i64 = 1_800_000_000;

#[test]
fn node_certificate_names_node_id_user_and_xmpp_addr_rfc6940_11_3() {
    let mut ca = TestCa::new(OVERLAY, 1);
    let node = NodeId(0xfeed);
    let creds = ca.node("juliet@capulet.lit", node);
    let id = CertIdentity::parse(creds.cert(), OVERLAY).unwrap();
    assert_eq!(id.node_ids, vec![node]);
    assert_eq!(id.user.as_deref(), Some("juliet@capulet.lit"));
    assert_eq!(id.xmpp_addrs, vec!["juliet@capulet.lit".to_owned()]);
    assert!(!id.is_ca);
    assert!(id.valid_at(NOW));
}

#[test]
fn node_ids_of_another_overlay_are_ignored_rfc6940_14_15() {
    let mut ca = TestCa::new(OVERLAY, 1);
    let creds = ca.node("a@x.example", NodeId(5));
    let id = CertIdentity::parse(creds.cert(), "other.example").unwrap();
    assert!(id.node_ids.is_empty());
}

#[test]
fn a_chain_to_the_overlay_root_is_trusted() {
    let mut ca = TestCa::new(OVERLAY, 2);
    let creds = ca.node("romeo@montague.lit", NodeId(9));
    let chain: Vec<&[u8]> = creds.chain().iter().map(|c| c.as_ref()).collect();
    let id = ca
        .trust_store()
        .verify(creds.cert(), &chain, NOW, Usage::Client)
        .unwrap();
    assert_eq!(id.node_ids, vec![NodeId(9)]);
    ca.trust_store()
        .verify(creds.cert(), &chain, NOW, Usage::Server)
        .unwrap();
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let ca = TestCa::new(OVERLAY, 3);
    let mut other = TestCa::new(OVERLAY, 4);
    let creds = other.node("eve@evil.example", NodeId(1));
    let chain: Vec<&[u8]> = creds.chain().iter().map(|c| c.as_ref()).collect();
    let err = ca
        .trust_store()
        .verify(creds.cert(), &chain, NOW, Usage::Client)
        .unwrap_err();
    assert_eq!(err, IdentityError::UnknownIssuer);
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let mut ca = TestCa::new(OVERLAY, 5);
    let old = ca.node_with(
        "a@x.example",
        NodeId(1),
        Validity {
            not_before: 946_684_800,
            not_after: 978_307_200,
        },
    );
    let chain: Vec<&[u8]> = old.chain().iter().map(|c| c.as_ref()).collect();
    assert_eq!(
        ca.trust_store()
            .verify(old.cert(), &chain, NOW, Usage::Client),
        Err(IdentityError::Expired)
    );
    let future = ca.node_with(
        "a@x.example",
        NodeId(2),
        Validity {
            not_before: NOW + 1000,
            not_after: NOW + 2000,
        },
    );
    let chain: Vec<&[u8]> = future.chain().iter().map(|c| c.as_ref()).collect();
    assert_eq!(
        ca.trust_store()
            .verify(future.cert(), &chain, NOW, Usage::Client),
        Err(IdentityError::NotYetValid)
    );
}

#[test]
fn a_certificate_without_its_intermediate_is_refused() {
    let mut ca = TestCa::new(OVERLAY, 6);
    let creds = ca.node("a@x.example", NodeId(1));
    assert_eq!(
        ca.trust_store()
            .verify(creds.cert(), &[], NOW, Usage::Client),
        Err(IdentityError::UnknownIssuer)
    );
}

#[test]
fn a_bad_node_is_refused_rfc6940_11_1() {
    let mut ca = TestCa::new(OVERLAY, 7);
    let creds = ca.node("a@x.example", NodeId(77));
    let chain: Vec<&[u8]> = creds.chain().iter().map(|c| c.as_ref()).collect();
    let mut trust = ca.trust_store();
    trust.set_bad_nodes([NodeId(77)]);
    assert_eq!(
        trust.verify(creds.cert(), &chain, NOW, Usage::Client),
        Err(IdentityError::BadNode(NodeId(77)))
    );
}

fn self_signed_cert(ca: &mut TestCa, node: impl FnOnce(&[u8]) -> NodeId) -> (Vec<u8>, NodeId) {
    let key = ca.key();
    let node_id = node(&key.spki_der());
    let spec = NodeCertSpec {
        overlay: OVERLAY.into(),
        node_ids: vec![node_id],
        user: Some("selfish@x.example".into()),
        xmpp_addr: None,
        validity: Validity::LONG,
    };
    (
        self_signed(&node_params(&spec).unwrap(), &key).unwrap(),
        node_id,
    )
}

#[test]
fn self_signed_node_id_is_the_digest_of_the_public_key_rfc6940_11_3_1() {
    let mut ca = TestCa::new(OVERLAY, 8);
    let (der, node) = self_signed_cert(&mut ca, |spki| {
        self_signed_node_id(spki, SelfSignedDigest::Sha256, None)
    });
    let trust = TrustStore::new(OVERLAY, &[])
        .unwrap()
        .permit_self_signed(SelfSignedDigest::Sha256);
    assert_eq!(
        trust
            .verify(&der, &[], NOW, Usage::Client)
            .unwrap()
            .node_ids,
        vec![node]
    );
    // Without self-signed mode the same certificate has no issuer.
    let strict = TrustStore::new(OVERLAY, &[]).unwrap();
    assert!(strict.verify(&der, &[], NOW, Usage::Client).is_err());
}

#[test]
fn self_signed_certificate_with_a_stolen_node_id_is_refused_rfc6940_11_3_1() {
    let mut ca = TestCa::new(OVERLAY, 9);
    let (der, _) = self_signed_cert(&mut ca, |_| NodeId(1234));
    let trust = TrustStore::new(OVERLAY, &[])
        .unwrap()
        .permit_self_signed(SelfSignedDigest::Sha256);
    assert!(matches!(
        trust.verify(&der, &[], NOW, Usage::Client),
        Err(IdentityError::Untrusted(_))
    ));
}

/// A certificate for `name` signed by the intermediate of `issuing_domain`, bypassing
/// any check a CA tool would make.
fn cross_domain_cert(ca: &mut TestCa, issuing_domain: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let key = ca.key();
    let spec = NodeCertSpec {
        overlay: OVERLAY.into(),
        node_ids: vec![NodeId(0xabc)],
        user: Some(name.into()),
        xmpp_addr: Some(name.into()),
        validity: Validity::LONG,
    };
    let params = node_params(&spec).unwrap();
    let issuer = ca.domain(issuing_domain);
    let der = crate::identity::issue::issue(&params, &key, &issuer.params, &issuer.key).unwrap();
    (der, issuer.der.clone())
}

#[test]
fn a_domain_ca_certifies_only_its_own_domain_xep0415_ca() {
    let mut ca = TestCa::new(OVERLAY, 8);
    let trust = ca.trust_store();
    let (own, inter) = cross_domain_cert(&mut ca, "capulet.lit", "juliet@capulet.lit/balcony");
    trust
        .verify(&own, &[&inter], NOW, Usage::Client)
        .expect("a name in the CA's own domain");
    let (foreign, inter) = cross_domain_cert(&mut ca, "capulet.lit", "romeo@montague.lit");
    let err = trust
        .verify(&foreign, &[&inter], NOW, Usage::Client)
        .unwrap_err();
    assert_eq!(
        err,
        IdentityError::OutsideDomain {
            name: "romeo@montague.lit".into(),
            domains: vec!["capulet.lit".into()],
        }
    );
    // A subdomain is another domain.
    let (sub, inter) = cross_domain_cert(&mut ca, "capulet.lit", "nurse@house.capulet.lit");
    assert!(matches!(
        trust.verify(&sub, &[&inter], NOW, Usage::Server),
        Err(IdentityError::OutsideDomain { .. })
    ));
}

#[test]
fn a_revoked_domain_ca_breaks_every_chain_through_it() {
    let mut ca = TestCa::new(OVERLAY, 9);
    let juliet = ca.node("juliet@capulet.lit", NodeId(1));
    let romeo = ca.node("romeo@montague.lit", NodeId(2));
    let capulet_ca = ca.domain("capulet.lit").der.clone();
    let mut trust = ca.trust_store();
    trust.set_revoked_cas([crate::identity::trust::fingerprint(&capulet_ca)]);
    let chain = |c: &crate::identity::Credentials| -> Vec<Vec<u8>> {
        c.chain().iter().map(|b| b.to_vec()).collect()
    };
    let j = chain(&juliet);
    let err = trust
        .verify(juliet.cert(), &[&j[0]], NOW, Usage::Client)
        .unwrap_err();
    assert!(matches!(err, IdentityError::RevokedCa(_)), "{err:?}");
    let r = chain(&romeo);
    trust
        .verify(romeo.cert(), &[&r[0]], NOW, Usage::Client)
        .expect("other domains are untouched");
}
