//! Identity: certificates, keys and signatures (§6.3.4, §7.1, §11.3).
//!
//! Pure computation, no I/O: parsing what a certificate says ([`cert`]), deciding
//! whether it is trusted ([`trust`]), signing and verifying messages and stored values
//! ([`sign`]) with this node's [`keys`]. With the `issue` feature, [`issue`] builds
//! certificates (the enrollment CA uses it); with `testing`, [`testca`] is a throwaway
//! CA hierarchy for tests in every crate.

pub mod cert;
#[cfg(feature = "issue")]
pub mod issue;
pub mod keys;
pub mod sign;
#[cfg(feature = "testing")]
pub mod testca;
pub mod trust;

#[cfg(test)]
mod tests;

pub use cert::{CertIdentity, SelfSignedDigest, parse_reload_uri, reload_uri};
pub use keys::KeyPair;
pub use sign::{CertCache, Credentials, SignatureError, VerifiedSigner};
pub use trust::{TrustStore, Usage};

use crate::id::NodeId;

/// Why a certificate or key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a usable certificate.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The key is unusable or does not match.
    #[error("bad key: {0}")]
    Key(String),
    /// The certificate names no Node-ID in this overlay.
    #[error("the certificate has no Node-ID for overlay {overlay}")]
    NoNodeId {
        /// The overlay name.
        overlay: String,
    },
    /// The Node-ID is on the configuration's `bad-node` list.
    #[error("node {0} is on the overlay's bad-node list")]
    BadNode(NodeId),
    /// The certificate has expired.
    #[error("the certificate has expired")]
    Expired,
    /// The certificate is not valid yet.
    #[error("the certificate is not valid yet")]
    NotYetValid,
    /// The certificate does not chain to a root of the overlay.
    #[error("the certificate is not issued by this overlay's CA")]
    UnknownIssuer,
    /// Any other reason the chain is not trusted.
    #[error("untrusted certificate: {0}")]
    Untrusted(String),
    /// A CA on the chain is revoked by the configuration document.
    #[error("the certificate chain passes through revoked CA {0}")]
    RevokedCa(String),
    /// A domain CA certified a name outside its domain.
    #[error("{name} is outside the issuing CA's domain ({domains:?})")]
    OutsideDomain {
        /// The offending user name or JID.
        name: String,
        /// The domains the CA may issue for.
        domains: Vec<String>,
    },
    /// The peer is not the node that was expected (§6.5.1.13).
    #[error("expected Node-ID {expected}, the peer's certificate has {found:?}")]
    WrongNodeId {
        /// Who we meant to reach.
        expected: NodeId,
        /// Who the certificate names.
        found: Vec<NodeId>,
    },
}

impl IdentityError {
    pub(crate) fn from_webpki(e: webpki::Error) -> IdentityError {
        match e {
            webpki::Error::CertExpired { .. } => IdentityError::Expired,
            webpki::Error::CertNotValidYet { .. } => IdentityError::NotYetValid,
            // A chain that ends at no root, or at a root whose key did not sign it.
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                IdentityError::UnknownIssuer
            }
            other => IdentityError::Untrusted(format!("{other}")),
        }
    }
}
