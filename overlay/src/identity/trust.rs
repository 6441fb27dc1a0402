//! Which certificates the overlay trusts: a chain to a root of the configuration
//! document (§11.1 `root-cert`, verified with webpki), or — where the overlay permits it —
//! a self-signed certificate whose Node-ID derives from its key (§11.3.1). Nodes on the
//! configuration's `bad-node` list are refused.
//!
//! **Domain CAs** (XEP-0415 "Certificate Authority"): an intermediate CA that names an
//! XMPP domain in a dNSName SAN may only certify user names (rfc822Name and
//! `id-on-xmppAddr`) in exactly that domain. This is an explicit check made here after
//! webpki has built the path, not an X.509 name constraint: webpki refuses every
//! certificate under an rfc822Name constraint and no constraint form exists for
//! xmppAddr. A CA certificate can be revoked by the SHA-256 fingerprint of its DER
//! (the configuration document's `xor:revoked-ca` extension); a chain through it is
//! refused.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::TrustAnchor;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::IdentityError;
use super::cert::{CertIdentity, SelfSignedDigest, self_signed_node_id};
use crate::id::NodeId;

/// Signature algorithms accepted on certificates (and for RELOAD signatures, §6.3.4).
pub(crate) static SUPPORTED_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::ED25519,
];

/// Whether the certificate is checked as a TLS server or a TLS client / message signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// id-kp-serverAuth.
    Server,
    /// id-kp-clientAuth: TLS clients and the signers of messages and stored values.
    Client,
}

/// The overlay's trust configuration.
#[derive(Clone)]
pub struct TrustStore {
    overlay: String,
    root_ders: Vec<CertificateDer<'static>>,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    self_signed: Option<SelfSignedDigest>,
    bad_nodes: HashSet<NodeId>,
    revoked_cas: HashSet<[u8; 32]>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("overlay", &self.overlay)
            .field("roots", &self.root_ders.len())
            .field("self_signed", &self.self_signed)
            .field("bad_nodes", &self.bad_nodes.len())
            .field("revoked_cas", &self.revoked_cas.len())
            .finish()
    }
}

impl TrustStore {
    /// Trust the given DER root certificates for `overlay`.
    pub fn new(overlay: impl Into<String>, roots: &[Vec<u8>]) -> Result<TrustStore, IdentityError> {
        let root_ders: Vec<CertificateDer<'static>> = roots
            .iter()
            .map(|r| CertificateDer::from(r.clone()))
            .collect();
        let anchors = root_ders
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| {
                        IdentityError::BadCertificate(format!("bad root certificate: {e}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustStore {
            overlay: overlay.into(),
            root_ders,
            anchors: Arc::new(anchors),
            self_signed: None,
            bad_nodes: HashSet::new(),
            revoked_cas: HashSet::new(),
        })
    }

    /// Also accept self-signed certificates whose Node-ID is derived with `digest`.
    pub fn permit_self_signed(mut self, digest: SelfSignedDigest) -> TrustStore {
        self.self_signed = Some(digest);
        self
    }

    /// Replace the `bad-node` list.
    pub fn set_bad_nodes(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        self.bad_nodes = nodes.into_iter().collect();
    }

    /// Replace the list of revoked CA certificates (SHA-256 fingerprints of their DER).
    pub fn set_revoked_cas(&mut self, fingerprints: impl IntoIterator<Item = [u8; 32]>) {
        self.revoked_cas = fingerprints.into_iter().collect();
    }

    /// The `bad-node` list.
    pub fn bad_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.bad_nodes.iter().copied()
    }

    /// Whether `node` is on the `bad-node` list.
    pub fn is_bad_node(&self, node: NodeId) -> bool {
        self.bad_nodes.contains(&node)
    }

    /// The overlay name.
    pub fn overlay(&self) -> &str {
        &self.overlay
    }

    /// The DER roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.root_ders
    }

    /// The webpki trust anchors (for TLS verifiers).
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Verifies `end_entity` (with `intermediates`) at `unix_secs` and returns what it
    /// says. A certificate without a Node-ID for this overlay, or naming a bad node, is
    /// refused.
    pub fn verify(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_secs: i64,
        usage: Usage,
    ) -> Result<CertIdentity, IdentityError> {
        let id = CertIdentity::parse(end_entity, &self.overlay)?;
        match self.self_signed {
            Some(digest) if id.self_issued && !id.is_ca => {
                self.verify_self_signed(end_entity, &id, digest, unix_secs)?
            }
            _ => {
                let path = self.verify_chain(end_entity, intermediates, unix_secs, usage)?;
                self.check_issuers(&id, &path)?;
            }
        }
        if id.node_ids.is_empty() {
            return Err(IdentityError::NoNodeId {
                overlay: self.overlay.clone(),
            });
        }
        if let Some(bad) = id.node_ids.iter().find(|n| self.bad_nodes.contains(n)) {
            return Err(IdentityError::BadNode(*bad));
        }
        Ok(id)
    }

    fn verify_chain(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_secs: i64,
        usage: Usage,
    ) -> Result<Vec<Vec<u8>>, IdentityError> {
        let der = CertificateDer::from(end_entity);
        let cert = EndEntityCert::try_from(&der)
            .map_err(|e| IdentityError::BadCertificate(format!("unusable certificate: {e}")))?;
        let chain: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        let time = UnixTime::since_unix_epoch(Duration::from_secs(unix_secs.max(0) as u64));
        let usage = match usage {
            Usage::Server => KeyUsage::server_auth(),
            Usage::Client => KeyUsage::client_auth(),
        };
        cert.verify_for_usage(
            SUPPORTED_ALGS,
            &self.anchors,
            &chain,
            time,
            usage,
            None,
            None,
        )
        .map(|path| {
            path.intermediate_certificates()
                .map(|c| c.der().to_vec())
                .collect()
        })
        .map_err(IdentityError::from_webpki)
    }

    /// The checks webpki does not make: revoked CAs and the domain rule.
    fn check_issuers(&self, id: &CertIdentity, path: &[Vec<u8>]) -> Result<(), IdentityError> {
        for ca in path {
            if self.revoked_cas.contains(&fingerprint(ca)) {
                return Err(IdentityError::RevokedCa(hex::encode(fingerprint(ca))));
            }
            let domains = ca_domains(ca)?;
            if domains.is_empty() {
                continue;
            }
            let names = id.user.iter().chain(id.xmpp_addrs.iter());
            for name in names {
                let domain = name_domain(name);
                if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                    return Err(IdentityError::OutsideDomain {
                        name: name.clone(),
                        domains,
                    });
                }
            }
        }
        Ok(())
    }

    fn verify_self_signed(
        &self,
        der: &[u8],
        id: &CertIdentity,
        digest: SelfSignedDigest,
        unix_secs: i64,
    ) -> Result<(), IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        cert.verify_signature(None).map_err(|_| {
            IdentityError::Untrusted("self-signed certificate has a bad signature".into())
        })?;
        if !id.valid_at(unix_secs) {
            return Err(IdentityError::Expired);
        }
        let expected: Vec<NodeId> = match id.node_ids.len() {
            1 => vec![self_signed_node_id(&id.spki, digest, None)],
            n => (1..=n as u32)
                .map(|i| self_signed_node_id(&id.spki, digest, Some(i)))
                .collect(),
        };
        if id.node_ids != expected {
            return Err(IdentityError::Untrusted(
                "self-signed Node-ID does not match the public key (§11.3.1)".into(),
            ));
        }
        Ok(())
    }
}

/// SHA-256 of a certificate's DER: how the configuration names a revoked CA.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

/// The XMPP domains a CA certificate is limited to (its dNSName SANs).
pub fn ca_domains(der: &[u8]) -> Result<Vec<String>, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError::BadCertificate(format!("bad CA certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate(format!("bad subjectAltName: {e}")))?;
    Ok(san
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect())
}

/// The domain part of a user name or JID: after the `@`, before any `/`.
pub fn name_domain(name: &str) -> &str {
    let bare = name.split_once('/').map_or(name, |(b, _)| b);
    bare.rsplit_once('@').map_or(bare, |(_, d)| d)
}
