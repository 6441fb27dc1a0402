//! Certificate issuance with rcgen: an overlay root, per-domain intermediates and node
//! certificates in the shape §11.3 and XEP-0415 require.
//!
//! A node certificate has an empty subject, a `reload://` URI SAN per Node-ID, the user
//! name as rfc822Name and the bare JID as `id-on-xmppAddr`, both serverAuth and
//! clientAuth EKUs (every link is mutually authenticated) and is not a CA.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, OtherNameValue, SanType,
};

use super::IdentityError;
use super::cert::{XMPP_ADDR_OID, reload_uri};
use super::keys::KeyPair;
use crate::id::NodeId;

/// A validity window in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid second.
    pub not_before: i64,
    /// Last valid second.
    pub not_after: i64,
}

impl Validity {
    /// From 2020-01-01 to 2099-12-31: for tests and development overlays.
    pub const LONG: Validity = Validity {
        not_before: 1_577_836_800,
        not_after: 4_102_358_400,
    };

    /// `days` days from `unix_secs`, starting an hour early to absorb clock skew.
    pub fn days_from(unix_secs: i64, days: i64) -> Validity {
        Validity {
            not_before: unix_secs - 3600,
            not_after: unix_secs + days * 86_400,
        }
    }

    fn apply(self, params: &mut CertificateParams) -> Result<(), IdentityError> {
        let t = |s: i64| {
            time::OffsetDateTime::from_unix_timestamp(s)
                .map_err(|e| IdentityError::BadCertificate(format!("bad validity: {e}")))
        };
        params.not_before = t(self.not_before)?;
        params.not_after = t(self.not_after)?;
        Ok(())
    }
}

fn rcgen_err(e: rcgen::Error) -> IdentityError {
    IdentityError::BadCertificate(format!("cannot build certificate: {e}"))
}

fn named(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Parameters of an overlay root CA named `name`.
pub fn root_params(name: &str, validity: Validity) -> Result<CertificateParams, IdentityError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = named(name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity.apply(&mut p)?;
    Ok(p)
}

/// Parameters of an intermediate CA for one XMPP domain (it may issue no further CAs).
/// The domain is its dNSName SAN, which limits the names it may certify (see
/// [`super::trust`]).
pub fn domain_ca_params(
    domain: &str,
    validity: Validity,
) -> Result<CertificateParams, IdentityError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = named(&format!("XMPP domain CA {domain}"));
    p.subject_alt_names = vec![SanType::DnsName(
        domain.to_owned().try_into().map_err(rcgen_err)?,
    )];
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity.apply(&mut p)?;
    Ok(p)
}

/// What a node certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertSpec {
    /// The overlay the Node-IDs belong to.
    pub overlay: String,
    /// One or more Node-IDs.
    pub node_ids: Vec<NodeId>,
    /// The user name (rfc822Name), usually the bare JID.
    pub user: Option<String>,
    /// The bare JID for `id-on-xmppAddr`.
    pub xmpp_addr: Option<String>,
    /// Validity window.
    pub validity: Validity,
}

/// Parameters of a node (end-entity) certificate.
pub fn node_params(spec: &NodeCertSpec) -> Result<CertificateParams, IdentityError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let ia5 = |s: String| s.try_into().map_err(rcgen_err);
    for node in &spec.node_ids {
        p.subject_alt_names
            .push(SanType::URI(ia5(reload_uri(*node, &spec.overlay))?));
    }
    if let Some(user) = &spec.user {
        p.subject_alt_names
            .push(SanType::Rfc822Name(ia5(user.clone())?));
    }
    if let Some(jid) = &spec.xmpp_addr {
        p.subject_alt_names.push(SanType::OtherName((
            XMPP_ADDR_OID.to_vec(),
            OtherNameValue::Utf8String(jid.clone()),
        )));
    }
    spec.validity.apply(&mut p)?;
    Ok(p)
}

/// A self-signed certificate (roots).
pub fn self_signed(params: &CertificateParams, key: &KeyPair) -> Result<Vec<u8>, IdentityError> {
    params
        .self_signed(key)
        .map(|c| c.der().to_vec())
        .map_err(rcgen_err)
}

/// A certificate for `subject` signed by `issuer_key` under `issuer_params`.
pub fn issue(
    params: &CertificateParams,
    subject: &KeyPair,
    issuer_params: &CertificateParams,
    issuer_key: &KeyPair,
) -> Result<Vec<u8>, IdentityError> {
    let issuer = Issuer::from_params(issuer_params, issuer_key);
    params
        .signed_by(subject, &issuer)
        .map(|c| c.der().to_vec())
        .map_err(rcgen_err)
}
