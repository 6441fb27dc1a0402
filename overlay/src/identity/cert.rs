//! What a certificate says about its holder (§11.3, §14.15, RFC 6120 §13.7.1.4).
//!
//! - Node-IDs: URI SANs `reload://<hex of a destination list>@<overlay>/` (the bare
//!   `reload://<hex node id>@overlay` form is accepted too);
//! - the user name: an rfc822Name SAN;
//! - XMPP addresses: `id-on-xmppAddr` otherName SANs (OID 1.3.6.1.5.5.7.8.5, UTF8String);
//! - the validity window, and the SubjectPublicKeyInfo for self-signed Node-IDs
//!   (§11.3.1).

use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::der_parser::asn1_rs::{Any, Utf8String};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::IdentityError;
use crate::id::{ID_LEN, NodeId};
use crate::wire::Destination;
use crate::wire::header::{decode_destination_list, encode_destination_list};

/// OID of `id-on-xmppAddr` (RFC 6120 §13.7.1.4).
pub const XMPP_ADDR_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];

/// The identity facts of one certificate, for one overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// Node-IDs from URI SANs naming this overlay.
    pub node_ids: Vec<NodeId>,
    /// The rfc822Name user name, if any.
    pub user: Option<String>,
    /// `id-on-xmppAddr` values.
    pub xmpp_addrs: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Whether subject and issuer are the same name (a self-signed certificate).
    pub self_issued: bool,
    /// Whether the certificate is a CA (basicConstraints cA = true).
    pub is_ca: bool,
}

impl CertIdentity {
    /// Reads a DER certificate, keeping the Node-IDs that name `overlay`.
    pub fn parse(der: &[u8], overlay: &str) -> Result<CertIdentity, IdentityError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(IdentityError::BadCertificate(
                "trailing bytes after the certificate".into(),
            ));
        }
        let mut id = CertIdentity {
            node_ids: Vec::new(),
            user: None,
            xmpp_addrs: Vec::new(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            spki: cert.public_key().raw.to_vec(),
            self_issued: cert.subject() == cert.issuer(),
            is_ca: cert.is_ca(),
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(format!("bad subjectAltName: {e}")))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::URI(uri) => {
                    if let Some((node, o)) = parse_reload_uri(uri)
                        && o.eq_ignore_ascii_case(overlay)
                        && !id.node_ids.contains(&node)
                    {
                        id.node_ids.push(node);
                    }
                }
                GeneralName::RFC822Name(user) => id.user = Some((*user).to_owned()),
                GeneralName::OtherName(oid, raw) => {
                    let is_xmpp = oid
                        .iter()
                        .is_some_and(|arcs| arcs.eq(XMPP_ADDR_OID.iter().copied()));
                    if is_xmpp {
                        id.xmpp_addrs.push(decode_xmpp_addr(raw)?);
                    }
                }
                _ => {}
            }
        }
        Ok(id)
    }

    /// Whether `unix_secs` lies within the validity window.
    pub fn valid_at(&self, unix_secs: i64) -> bool {
        self.not_before <= unix_secs && unix_secs <= self.not_after
    }

    /// The certificate's only Node-ID, if it has exactly one.
    pub fn single_node_id(&self) -> Option<NodeId> {
        match self.node_ids.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// The `[0] EXPLICIT UTF8String` of an xmppAddr otherName.
fn decode_xmpp_addr(raw: &[u8]) -> Result<String, IdentityError> {
    let bad = |e: String| IdentityError::BadCertificate(format!("bad id-on-xmppAddr: {e}"));
    let (_, wrapper) = Any::from_der(raw).map_err(|e| bad(e.to_string()))?;
    let (_, s) = Utf8String::from_der(wrapper.data).map_err(|e| bad(e.to_string()))?;
    Ok(s.string())
}

/// `reload://<hex destination list>@<overlay>/` for a single Node-ID (§14.15, §11.3).
pub fn reload_uri(node: NodeId, overlay: &str) -> String {
    let list = encode_destination_list(&[Destination::Node(node)]).unwrap_or_default();
    format!("reload://{}@{}/", hex::encode(list), overlay)
}

/// Parses a RELOAD URI naming a peer: the Node-ID at the end of the destination list
/// and the overlay name. Accepts the bare `reload://<32 hex digits>@overlay` form.
pub fn parse_reload_uri(uri: &str) -> Option<(NodeId, String)> {
    let rest = uri.strip_prefix("reload://")?;
    let (dest, overlay) = rest.split_once('@')?;
    let overlay = overlay.split('/').next().unwrap_or_default();
    if overlay.is_empty() || dest.is_empty() {
        return None;
    }
    let bytes = hex::decode(dest).ok()?;
    if let Ok(list) = decode_destination_list(&bytes)
        && let Some(Destination::Node(node)) = list.last()
    {
        return Some((*node, overlay.to_owned()));
    }
    let bare: [u8; ID_LEN] = bytes.as_slice().try_into().ok()?;
    Some((NodeId::from_bytes(bare), overlay.to_owned()))
}

/// The digest named by the `self-signed-permitted` element (§11.1, §11.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfSignedDigest {
    /// `sha1` (the RFC's default).
    Sha1,
    /// `sha256`.
    Sha256,
}

/// The Node-ID of a self-signed certificate: the high-order bits of the digest of the
/// SubjectPublicKeyInfo, or of a 4-byte big-endian index (1..) followed by it when the
/// certificate carries several Node-IDs (§11.3.1).
pub fn self_signed_node_id(spki: &[u8], digest: SelfSignedDigest, index: Option<u32>) -> NodeId {
    let mut input = Vec::with_capacity(spki.len() + 4);
    if let Some(i) = index {
        input.extend_from_slice(&i.to_be_bytes());
    }
    input.extend_from_slice(spki);
    let mut top = [0u8; ID_LEN];
    match digest {
        SelfSignedDigest::Sha1 => top.copy_from_slice(&Sha1::digest(&input)[..ID_LEN]),
        SelfSignedDigest::Sha256 => top.copy_from_slice(&Sha256::digest(&input)[..ID_LEN]),
    }
    NodeId::from_bytes(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_uri_round_trips_rfc6940_14_15() {
        let node = NodeId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let uri = reload_uri(node, "chat.example");
        assert_eq!(
            uri,
            "reload://01100123456789abcdef0011223344556677@chat.example/"
        );
        assert_eq!(
            parse_reload_uri(&uri),
            Some((node, "chat.example".to_owned()))
        );
    }

    #[test]
    fn bare_reload_uri_is_accepted() {
        let node = NodeId(7);
        let uri = format!("reload://{node}@o.example");
        assert_eq!(parse_reload_uri(&uri), Some((node, "o.example".to_owned())));
    }

    #[test]
    fn malformed_reload_uris_are_ignored() {
        for uri in [
            "http://x@y/",
            "reload://@o/",
            "reload://zz@o/",
            "reload://0102@o/",
            "reload://01@",
        ] {
            assert_eq!(parse_reload_uri(uri), None, "{uri}");
        }
    }
}
