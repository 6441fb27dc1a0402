//! Tests of the CA tooling.

use xor_overlay::id::NodeId;
use xor_overlay::identity::issue::Validity;
use xor_overlay::identity::{CertIdentity, IdentityError, KeyPair, TrustStore, Usage};

use crate::ca::{CaDir, CaError, IssueError, make_csr};
use crate::config::sign::{trust_of, verify};
use crate::config::{Configuration, Document, XOR_NS};
use crate::files::os_rng;

const OVERLAY: &str = "chat.example";
const NOW: i64 = 1_800_000_000;

fn ca() -> (tempfile::TempDir, CaDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaDir::init(dir.path(), OVERLAY, 3650, NOW).unwrap();
    (dir, ca)
}

#[test]
fn init_creates_a_root_and_signer_and_refuses_to_overwrite() {
    let (dir, ca) = ca();
    let again = CaDir::open(dir.path()).unwrap();
    assert_eq!(again.root_der(), ca.root_der());
    assert_eq!(again.signer().node_id(), ca.signer().node_id());
    assert!(matches!(
        CaDir::init(dir.path(), OVERLAY, 10, NOW),
        Err(CaError::Exists(_))
    ));
    let trust = TrustStore::new(OVERLAY, &[ca.root_der().to_vec()]).unwrap();
    trust
        .verify(ca.signer().cert(), &[], NOW, Usage::Client)
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("root.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the root key is private");
    }
}

#[test]
fn a_domain_ca_issues_node_certificates_from_csrs_rfc6940_11_3() {
    let (_dir, ca) = ca();
    let domain = ca.create_domain("capulet.lit", 365, NOW).unwrap();
    assert!(matches!(
        ca.create_domain("capulet.lit", 365, NOW),
        Err(CaError::Exists(_))
    ));
    assert_eq!(ca.domains(), vec!["capulet.lit".to_owned()]);
    let key = KeyPair::generate(&mut os_rng());
    let csr = make_csr(&key, "juliet@capulet.lit").unwrap();
    let ids = [NodeId(0x1234), NodeId(0x5678)];
    let cert = domain
        .issue_csr(
            &csr,
            "juliet@capulet.lit",
            &ids,
            Validity::days_from(NOW, 30),
        )
        .unwrap();
    let trust = TrustStore::new(OVERLAY, &[ca.root_der().to_vec()]).unwrap();
    for usage in [Usage::Client, Usage::Server] {
        let id = trust.verify(&cert, &[domain.der()], NOW, usage).unwrap();
        assert_eq!(id.node_ids, ids.to_vec());
        assert_eq!(id.user.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(id.xmpp_addrs, vec!["juliet@capulet.lit".to_owned()]);
    }
    let (_, parsed) = <x509_parser::prelude::X509Certificate<'_> as x509_parser::prelude::FromDer<'_, _>>::from_der(&cert).unwrap();
    assert_eq!(parsed.subject().iter().count(), 0, "empty subject (§11.3)");
    assert_eq!(
        CertIdentity::parse(&cert, OVERLAY).unwrap().spki,
        key.spki_der()
    );
}

#[test]
fn a_domain_ca_refuses_other_domains_and_bad_requests() {
    let (_dir, ca) = ca();
    let capulet = ca.create_domain("capulet.lit", 365, NOW).unwrap();
    let key = KeyPair::generate(&mut os_rng());
    let v = Validity::days_from(NOW, 30);
    let romeo_csr = make_csr(&key, "romeo@montague.lit").unwrap();
    let err = capulet
        .issue_csr(&romeo_csr, "romeo@montague.lit", &[NodeId(1)], v)
        .unwrap_err();
    assert!(matches!(err, IssueError::UsernameNotAvailable(_)), "{err}");
    assert_eq!(err.token(), "username_not_available");
    // The CSR asks for another name than the account's.
    let err = capulet
        .issue_csr(&romeo_csr, "juliet@capulet.lit", &[NodeId(1)], v)
        .unwrap_err();
    assert!(err.to_string().contains("romeo@montague.lit"), "{err}");
    for bad in [
        "juliet",
        "@capulet.lit",
        "ju liet@capulet.lit",
        "a/b@capulet.lit",
    ] {
        assert!(matches!(
            capulet.issue_csr(&romeo_csr, bad, &[NodeId(1)], v),
            Err(IssueError::UsernameNotAvailable(_))
        ));
    }
    let csr = make_csr(&key, "juliet@capulet.lit").unwrap();
    assert_eq!(
        capulet
            .issue_csr(&csr, "juliet@capulet.lit", &[], v)
            .unwrap_err()
            .token(),
        "Node-IDs_not_available"
    );
    let err = capulet
        .issue_csr(b"not a CSR", "juliet@capulet.lit", &[NodeId(1)], v)
        .unwrap_err();
    assert_eq!(err.token(), "bad_CSR");
    let mut forged = csr.clone();
    let last = forged.len() - 3;
    forged[last] ^= 1;
    assert_eq!(
        capulet
            .issue_csr(&forged, "juliet@capulet.lit", &[NodeId(1)], v)
            .unwrap_err()
            .token(),
        "bad_CSR"
    );
    assert!(matches!(
        ca.domain("montague.lit"),
        Err(CaError::NoDomain(_))
    ));
    assert!(matches!(
        ca.create_domain("bad domain", 1, NOW),
        Err(CaError::BadDomain(_))
    ));
}

fn template() -> Configuration {
    let mut c = Configuration::new(OVERLAY);
    c.enrollment_servers = vec!["https://chat.example/".into()];
    c
}

#[test]
fn published_configurations_chain_and_carry_revocations() {
    let (_dir, ca) = ca();
    let capulet = ca.create_domain("capulet.lit", 365, NOW).unwrap();
    let first = ca.publish(&template()).unwrap();
    let doc1 = Document::parse(first.as_bytes()).unwrap();
    let v1 = verify(&doc1, OVERLAY, None, NOW).unwrap();
    assert_eq!(v1.config.sequence, 1);
    assert_eq!(v1.config.root_certs, vec![ca.root_der().to_vec()]);

    let key = KeyPair::generate(&mut os_rng());
    let csr = make_csr(&key, "juliet@capulet.lit").unwrap();
    let cert = capulet
        .issue_csr(
            &csr,
            "juliet@capulet.lit",
            &[NodeId(9)],
            Validity::days_from(NOW, 30),
        )
        .unwrap();
    trust_of(&v1.config)
        .unwrap()
        .verify(&cert, &[capulet.der()], NOW, Usage::Client)
        .unwrap();

    let fp = ca.revoke_domain("capulet.lit").unwrap();
    let second = ca.publish(&template()).unwrap();
    let doc2 = Document::parse(second.as_bytes()).unwrap();
    let v2 = verify(&doc2, OVERLAY, Some(&v1.config), NOW).unwrap();
    assert_eq!(v2.config.sequence, 2);
    assert_eq!(v2.config.revoked_cas, vec![fp]);
    assert!(v2.config.mandatory_extensions.contains(&XOR_NS.to_owned()));
    let err = trust_of(&v2.config)
        .unwrap()
        .verify(&cert, &[capulet.der()], NOW, Usage::Client)
        .unwrap_err();
    assert!(matches!(err, IdentityError::RevokedCa(_)), "{err}");
}

#[test]
fn user_names_are_prepared_for_certificates_and_accounts_precis() {
    use crate::ca::prepare_user_name;
    assert_eq!(
        prepare_user_name("Alice@Example.ORG").unwrap(),
        "alice@example.org"
    );
    assert_eq!(
        prepare_user_name("ÉLODIE@example.org.").unwrap(),
        "élodie@example.org"
    );
    for bad in [
        "alice",
        "@example.org",
        "a b@example.org",
        "al'ice@example.org",
        "a@b@c",
    ] {
        assert!(prepare_user_name(bad).is_err(), "{bad}");
    }
    // A request made with the name as typed gets a certificate for the prepared name.
    let dir = tempfile::tempdir().unwrap();
    let ca = CaDir::init(&dir.path().join("ca"), OVERLAY, 30, NOW).unwrap();
    let example = ca.create_domain("example.org", 30, NOW).unwrap();
    let key = KeyPair::generate(&mut os_rng());
    let csr = make_csr(&key, "Alice@Example.org").unwrap();
    let cert = example
        .issue_csr(
            &csr,
            "Alice@example.org",
            &[NodeId(7)],
            Validity::days_from(NOW, 30),
        )
        .unwrap();
    let id = CertIdentity::parse(&cert, OVERLAY).unwrap();
    assert_eq!(id.xmpp_addrs, vec!["alice@example.org".to_owned()]);
}
