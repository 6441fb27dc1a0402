//! A throwaway CA hierarchy for tests in every crate: an overlay root, an intermediate
//! per XMPP domain, and node certificates with Node-ID URI, rfc822Name and xmppAddr.
//! Keys come from a seeded RNG, so a test's certificates are the same on every run.

use std::collections::HashMap;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rcgen::CertificateParams;

use super::issue::{
    NodeCertSpec, Validity, domain_ca_params, issue, node_params, root_params, self_signed,
};
use super::keys::KeyPair;
use super::sign::Credentials;
use super::trust::TrustStore;
use crate::id::NodeId;

/// A CA certificate with its key.
#[derive(Debug)]
pub struct TestIssuer {
    /// Its parameters (rcgen needs them to issue).
    pub params: CertificateParams,
    /// Its key.
    pub key: KeyPair,
    /// Its certificate (DER).
    pub der: Vec<u8>,
}

/// An overlay root with one intermediate per XMPP domain.
#[derive(Debug)]
pub struct TestCa {
    /// The overlay name.
    pub overlay: String,
    /// The root.
    pub root: TestIssuer,
    domains: HashMap<String, TestIssuer>,
    rng: ChaCha20Rng,
}

impl TestCa {
    /// A CA for `overlay`, its keys derived from `seed`.
    pub fn new(overlay: &str, seed: u64) -> TestCa {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = KeyPair::generate(&mut rng);
        let params = root_params(&format!("{overlay} root"), Validity::LONG).expect("root params");
        let der = self_signed(&params, &key).expect("root certificate");
        TestCa {
            overlay: overlay.to_owned(),
            root: TestIssuer { params, key, der },
            domains: HashMap::new(),
            rng,
        }
    }

    /// A fresh key from the CA's seeded RNG.
    pub fn key(&mut self) -> KeyPair {
        KeyPair::generate(&mut self.rng)
    }

    /// The intermediate CA for `domain` (made on first use).
    pub fn domain(&mut self, domain: &str) -> &TestIssuer {
        if !self.domains.contains_key(domain) {
            let key = self.key();
            let params = domain_ca_params(domain, Validity::LONG).expect("domain CA params");
            let der = issue(&params, &key, &self.root.params, &self.root.key).expect("domain CA");
            self.domains
                .insert(domain.to_owned(), TestIssuer { params, key, der });
        }
        &self.domains[domain]
    }

    /// Trust in this CA's root.
    pub fn trust_store(&self) -> TrustStore {
        TrustStore::new(self.overlay.clone(), std::slice::from_ref(&self.root.der))
            .expect("root parses")
    }

    /// Credentials for `jid`'s device `node`, issued by the JID's domain CA, valid for a
    /// long time.
    pub fn node(&mut self, jid: &str, node: NodeId) -> Credentials {
        self.node_with(jid, node, Validity::LONG)
    }

    /// Credentials for `jid`'s device `node` with the given validity.
    pub fn node_with(&mut self, jid: &str, node: NodeId, validity: Validity) -> Credentials {
        let spec = NodeCertSpec {
            overlay: self.overlay.clone(),
            node_ids: vec![node],
            user: Some(jid.to_owned()),
            xmpp_addr: Some(jid.to_owned()),
            validity,
        };
        self.issue_node(&spec)
    }

    /// Credentials for an arbitrary node certificate specification; the issuer is the
    /// intermediate of the domain of `spec.user` (or `nodes.invalid`).
    pub fn issue_node(&mut self, spec: &NodeCertSpec) -> Credentials {
        let domain = spec
            .user
            .as_deref()
            .and_then(|u| u.rsplit_once('@').map(|(_, d)| d.to_owned()))
            .unwrap_or_else(|| "nodes.invalid".to_owned());
        let key = self.key();
        let params = node_params(spec).expect("node params");
        let ca = self.domain(&domain);
        let der = issue(&params, &key, &ca.params, &ca.key).expect("node certificate");
        let chain = vec![Bytes::from(ca.der.clone())];
        Credentials::new(key, der, chain, &self.overlay).expect("credentials")
    }
}
