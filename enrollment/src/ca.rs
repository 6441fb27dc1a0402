//! CA tooling (XEP-0415 "Certificate Authority", RFC 6940 §11.3): an overlay root, the
//! configuration signer, per-XMPP-domain intermediates, node certificates from CSRs,
//! revocation of an intermediate, and publishing the signed configuration document.
//!
//! A CA directory holds:
//!
//! | file | what |
//! |---|---|
//! | `root.pem`, `root.key.pem` | the overlay root (self-signed) |
//! | `signer.pem`, `signer.key.pem` | the configuration- and kind-signer, issued by the root |
//! | `domains/<domain>/ca.pem`, `ca.key.pem` | a domain CA (dNSName SAN = the domain) |
//! | `revoked.txt` | SHA-256 fingerprints of revoked domain CAs, one per line |
//! | `bad-nodes.txt` | Node-IDs of revoked devices (hex), one per line: `bad-node` in the next configuration |
//! | `config.xml` | the last published configuration document |
//!
//! A domain CA only certifies names in its own domain; the overlay checks the same rule
//! when it verifies a chain (see `xor_overlay::identity::trust`).

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rcgen::{CertificateSigningRequestParams, Issuer, SanType};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use xor_overlay::id::NodeId;
use xor_overlay::identity::cert::XMPP_ADDR_OID;
use xor_overlay::identity::issue::{
    NodeCertSpec, Validity, domain_ca_params, issue, node_params, root_params, self_signed,
};
use xor_overlay::identity::trust::{fingerprint, name_domain};
use xor_overlay::identity::{Credentials, KeyPair};

use crate::config::sign::signed_document;
use crate::config::{Configuration, Document};
use crate::files::{FileError, certs_pem, key_pem, os_rng, read_certs, read_key, write_atomic};

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The directory already holds a CA (or the domain already has one).
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// No CA for this domain.
    #[error("no CA for domain {0} (create it with `ca domain`)")]
    NoDomain(String),
    /// A name that cannot be a domain.
    #[error("bad domain name {0:?}")]
    BadDomain(String),
    /// Certificate building failed.
    #[error("{0}")]
    Certificate(String),
    /// The configuration to publish is invalid.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Why a certificate request was refused (the tokens of §11.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// `username_not_available`: the requested name is not acceptable.
    #[error("username_not_available: {0}")]
    UsernameNotAvailable(String),
    /// `Node-IDs_not_available`.
    #[error("Node-IDs_not_available: {0}")]
    NodeIdsNotAvailable(String),
    /// `bad_CSR`.
    #[error("bad_CSR: {0}")]
    BadCsr(String),
}

impl IssueError {
    /// The §11.3 token.
    pub fn token(&self) -> &'static str {
        match self {
            IssueError::UsernameNotAvailable(_) => "username_not_available",
            IssueError::NodeIdsNotAvailable(_) => "Node-IDs_not_available",
            IssueError::BadCsr(_) => "bad_CSR",
        }
    }
}

fn cert_err(e: impl std::fmt::Display) -> CaError {
    CaError::Certificate(e.to_string())
}

/// A user name a CA may certify: `local@domain`, UTF-8 without controls, spaces or the
/// characters JIDs forbid, at most 1023 bytes per part (RFC 7622 §3.1); `Ok` gives the
/// domain part.
/// A user name as accounts and certificates hold it: the local part prepared with
/// PRECIS UsernameCaseMapped (RFC 8265 §3.3, the preparation RFC 7622 gives JID
/// localparts) and the domain lower-cased, so `Alice@Example.ORG` is
/// `alice@example.org` — the form the XMPP usage's prepared JIDs compare against
/// (XEP-0415 stores and looks up locations under the prepared bare JID).
pub fn prepare_user_name(name: &str) -> Result<String, String> {
    use precis_core::profile::Profile;
    let (local, domain) = name
        .split_once('@')
        .ok_or_else(|| format!("{name:?} is not local@domain"))?;
    let local = precis_profiles::UsernameCaseMapped::new()
        .enforce(local)
        .map_err(|e| format!("{name:?}: the local part is not a valid user name ({e:?})"))?;
    let prepared = format!(
        "{local}@{}",
        domain.trim_end_matches('.').to_ascii_lowercase()
    );
    check_user_name(&prepared)?;
    Ok(prepared)
}

/// Checks that `name` is `local@domain` with characters user names may hold, and
/// returns its domain.
pub fn check_user_name(name: &str) -> Result<&str, String> {
    let (local, domain) = name
        .split_once('@')
        .ok_or_else(|| format!("{name:?} is not local@domain"))?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err(format!("{name:?} is not local@domain"));
    }
    if local.len() > 1023 || domain.len() > 1023 {
        return Err("a part is longer than 1023 bytes".into());
    }
    let forbidden = |c: char| {
        c.is_control() || c.is_whitespace() || matches!(c, '/' | '"' | '&' | '\'' | ':' | '<' | '>')
    };
    if name.chars().any(forbidden) {
        return Err(format!(
            "{name:?} contains a character user names may not hold"
        ));
    }
    check_domain(domain).map_err(|_| format!("{domain:?} is not a domain name"))?;
    Ok(domain)
}

fn check_domain(domain: &str) -> Result<(), CaError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        });
    if ok {
        Ok(())
    } else {
        Err(CaError::BadDomain(domain.to_owned()))
    }
}

/// An overlay CA on disk.
#[derive(Debug)]
pub struct CaDir {
    dir: PathBuf,
    overlay: String,
    root_key: KeyPair,
    root_der: Vec<u8>,
    signer: Credentials,
}

impl CaDir {
    /// `ca init`: a new root and configuration signer for `overlay` in `dir`, valid for
    /// `days` from `now_unix`.
    pub fn init(dir: &Path, overlay: &str, days: i64, now_unix: i64) -> Result<CaDir, CaError> {
        let root_path = dir.join("root.pem");
        if root_path.exists() {
            return Err(CaError::Exists(root_path));
        }
        check_domain(overlay)?;
        let mut rng = os_rng();
        let validity = Validity::days_from(now_unix, days);
        let root_key = KeyPair::generate(&mut rng);
        let params = root_params(&format!("{overlay} overlay root"), validity).map_err(cert_err)?;
        let root_der = self_signed(&params, &root_key).map_err(cert_err)?;
        let signer_key = KeyPair::generate(&mut rng);
        let signer_id = NodeId::from_bytes(
            crate::files::os_random()[..16]
                .try_into()
                .unwrap_or_default(),
        );
        let spec = NodeCertSpec {
            overlay: overlay.to_owned(),
            node_ids: vec![signer_id],
            user: None,
            xmpp_addr: None,
            validity,
        };
        let signer_der = issue(
            &node_params(&spec).map_err(cert_err)?,
            &signer_key,
            &params,
            &root_key,
        )
        .map_err(cert_err)?;
        write_atomic(
            &dir.join("root.key.pem"),
            key_pem(&root_key).as_bytes(),
            true,
        )?;
        write_atomic(
            &dir.join("signer.key.pem"),
            key_pem(&signer_key).as_bytes(),
            true,
        )?;
        write_atomic(
            &dir.join("signer.pem"),
            certs_pem([signer_der.as_slice()]).as_bytes(),
            false,
        )?;
        write_atomic(&dir.join("overlay"), overlay.as_bytes(), false)?;
        // root.pem last: its presence marks a complete CA directory.
        write_atomic(
            &root_path,
            certs_pem([root_der.as_slice()]).as_bytes(),
            false,
        )?;
        CaDir::open(dir)
    }

    /// Opens the CA in `dir`.
    pub fn open(dir: &Path) -> Result<CaDir, CaError> {
        let overlay_path = dir.join("overlay");
        let overlay = fs::read_to_string(&overlay_path)
            .map_err(|e| FileError::new(&overlay_path, e))?
            .trim()
            .to_owned();
        let root_der = read_certs(&dir.join("root.pem"))?.remove(0);
        let root_key = read_key(&dir.join("root.key.pem"))?;
        let signer_cert = read_certs(&dir.join("signer.pem"))?.remove(0);
        let signer_key = read_key(&dir.join("signer.key.pem"))?;
        let signer = Credentials::new(signer_key, signer_cert, Vec::new(), &overlay)
            .map_err(|e| FileError::new(&dir.join("signer.pem"), e))?;
        Ok(CaDir {
            dir: dir.to_owned(),
            overlay,
            root_key,
            root_der,
            signer,
        })
    }

    /// The overlay name.
    pub fn overlay(&self) -> &str {
        &self.overlay
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The configuration and kind signer.
    pub fn signer(&self) -> &Credentials {
        &self.signer
    }

    fn domain_dir(&self, domain: &str) -> PathBuf {
        self.dir.join("domains").join(domain.to_ascii_lowercase())
    }

    /// `ca domain`: a new intermediate CA for `domain`, valid for `days`.
    pub fn create_domain(
        &self,
        domain: &str,
        days: i64,
        now_unix: i64,
    ) -> Result<DomainCa, CaError> {
        check_domain(domain)?;
        let dir = self.domain_dir(domain);
        if dir.join("ca.pem").exists() {
            return Err(CaError::Exists(dir.join("ca.pem")));
        }
        let key = KeyPair::generate(&mut os_rng());
        let params = domain_ca_params(
            &domain.to_ascii_lowercase(),
            Validity::days_from(now_unix, days),
        )
        .map_err(cert_err)?;
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(self.root_der.as_slice()),
            &self.root_key,
        )
        .map_err(cert_err)?;
        let der = params
            .signed_by(&key, &issuer)
            .map_err(cert_err)?
            .der()
            .to_vec();
        write_atomic(&dir.join("ca.key.pem"), key_pem(&key).as_bytes(), true)?;
        write_atomic(
            &dir.join("ca.pem"),
            certs_pem([der.as_slice()]).as_bytes(),
            false,
        )?;
        self.domain(domain)
    }

    /// The intermediate CA of `domain`.
    pub fn domain(&self, domain: &str) -> Result<DomainCa, CaError> {
        let dir = self.domain_dir(domain);
        if !dir.join("ca.pem").exists() {
            return Err(CaError::NoDomain(domain.to_owned()));
        }
        Ok(DomainCa {
            domain: domain.to_ascii_lowercase(),
            overlay: self.overlay.clone(),
            key: read_key(&dir.join("ca.key.pem"))?,
            der: read_certs(&dir.join("ca.pem"))?.remove(0),
        })
    }

    /// The domains with a CA.
    pub fn domains(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.dir.join("domains"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("ca.pem").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// Revokes `domain`'s CA: its fingerprint goes into the next published
    /// configuration (`xor:revoked-ca`), after which the overlay refuses every chain
    /// through it.
    pub fn revoke_domain(&self, domain: &str) -> Result<[u8; 32], CaError> {
        let fp = fingerprint(&self.domain(domain)?.der);
        let mut list = self.revoked();
        if !list.contains(&fp) {
            list.push(fp);
        }
        let text: String = list
            .iter()
            .map(|f| format!("{}\n", hex::encode(f)))
            .collect();
        write_atomic(&self.dir.join("revoked.txt"), text.as_bytes(), false)?;
        Ok(fp)
    }

    /// Revokes devices: their Node-IDs become `bad-node` entries of the next published
    /// configuration (§11.1), so no node links to them any more.
    pub fn revoke_nodes(&self, ids: &[NodeId]) -> Result<(), CaError> {
        let mut list = self.bad_nodes();
        for id in ids {
            if !list.contains(id) {
                list.push(*id);
            }
        }
        let text: String = list
            .iter()
            .map(|n| format!("{}\n", hex::encode(n.to_be_bytes())))
            .collect();
        write_atomic(&self.dir.join("bad-nodes.txt"), text.as_bytes(), false)?;
        Ok(())
    }

    /// The revoked devices' Node-IDs.
    pub fn bad_nodes(&self) -> Vec<NodeId> {
        fs::read_to_string(self.dir.join("bad-nodes.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let b: [u8; 16] = hex::decode(l.trim()).ok()?.try_into().ok()?;
                Some(NodeId::from_bytes(b))
            })
            .collect()
    }

    /// Fingerprints of the revoked domain CAs.
    pub fn revoked(&self) -> Vec<[u8; 32]> {
        fs::read_to_string(self.dir.join("revoked.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| hex::decode(l.trim()).ok()?.try_into().ok())
            .collect()
    }

    /// A TLS server certificate for the enrollment and configuration server, issued by
    /// the root for `names` (DNS names or IP addresses; the overlay name first, as
    /// §11.2 requires the certificate to match it), written to `web/key.pem` and
    /// `web/cert.pem`. Clients that trust the overlay root for HTTPS accept it; a
    /// public server can use a Web PKI certificate instead.
    pub fn issue_web_cert(
        &self,
        names: &[String],
        days: i64,
        now_unix: i64,
    ) -> Result<(KeyPair, Vec<Vec<u8>>), CaError> {
        let key = KeyPair::generate(&mut os_rng());
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("{} enrollment", self.overlay),
        );
        for name in names {
            params
                .subject_alt_names
                .push(match name.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(name.clone().try_into().map_err(cert_err)?),
                });
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let validity = Validity::days_from(now_unix, days);
        params.not_before =
            time::OffsetDateTime::from_unix_timestamp(validity.not_before).map_err(cert_err)?;
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(validity.not_after).map_err(cert_err)?;
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(self.root_der.as_slice()),
            &self.root_key,
        )
        .map_err(cert_err)?;
        let der = params
            .signed_by(&key, &issuer)
            .map_err(cert_err)?
            .der()
            .to_vec();
        let web = self.dir.join("web");
        write_atomic(&web.join("key.pem"), key_pem(&key).as_bytes(), true)?;
        write_atomic(
            &web.join("cert.pem"),
            certs_pem([der.as_slice()]).as_bytes(),
            false,
        )?;
        Ok((key, vec![der]))
    }

    /// The web server key and certificate chain written by [`CaDir::issue_web_cert`].
    pub fn web_cert(&self) -> Result<(KeyPair, Vec<Vec<u8>>), CaError> {
        let web = self.dir.join("web");
        Ok((
            read_key(&web.join("key.pem"))?,
            read_certs(&web.join("cert.pem"))?,
        ))
    }

    /// The last published document, if any.
    pub fn published(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("config.xml")).ok()
    }

    /// Publishes `template` as the overlay's configuration: the root, this CA's signer
    /// as configuration- and kind-signer, the revoked CAs and devices, a sequence one above the last
    /// published one, kind blocks signed; the document is signed by this CA's signer
    /// (the configuration-signer of the previous document) and written to `config.xml`.
    pub fn publish(&self, template: &Configuration) -> Result<String, CaError> {
        let mut c = template.clone();
        c.instance_name = self.overlay.clone();
        if !c.root_certs.contains(&self.root_der) {
            c.root_certs.insert(0, self.root_der.clone());
        }
        let me = self.signer.node_id();
        if !c.configuration_signers.contains(&me) {
            c.configuration_signers.push(me);
        }
        if !c.kind_signers.contains(&me) {
            c.kind_signers.push(me);
        }
        for fp in self.revoked() {
            if !c.revoked_cas.contains(&fp) {
                c.revoked_cas.push(fp);
            }
        }
        for n in self.bad_nodes() {
            if !c.bad_nodes.contains(&n) {
                c.bad_nodes.push(n);
            }
        }
        if !c.revoked_cas.is_empty()
            && !c
                .mandatory_extensions
                .iter()
                .any(|e| e == crate::config::XOR_NS)
        {
            // Nodes that cannot enforce revocation must not join.
            c.mandatory_extensions.push(crate::config::XOR_NS.into());
        }
        if let Some(prev) = self.published() {
            let doc = Document::parse(prev.as_bytes())?;
            let last = doc.configuration(&self.overlay)?.config.sequence;
            c.sequence = if last >= u16::MAX - 1 { 0 } else { last + 1 };
        } else {
            c.sequence = c.sequence.max(1);
        }
        c.required_kinds = c
            .required_kinds
            .into_iter()
            .map(|b| crate::config::sign::sign_kind(&self.signer, b.kind))
            .collect();
        c.validate()?;
        let text = signed_document(&c, &self.signer);
        write_atomic(&self.dir.join("config.xml"), text.as_bytes(), false)?;
        Ok(text)
    }
}

/// An XMPP domain's intermediate CA.
#[derive(Debug, Clone)]
pub struct DomainCa {
    domain: String,
    overlay: String,
    key: KeyPair,
    der: Vec<u8>,
}

impl DomainCa {
    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The CA certificate (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Issues a node certificate for the key in `csr` (PKCS#10 DER, signature checked):
    /// Node-ID URIs for `node_ids`, `user` as rfc822Name and xmppAddr, empty subject,
    /// serverAuth + clientAuth (§11.3). The CSR's own names are not copied: a name it
    /// asks for must be `user`. `user` must be in this CA's domain. Names are compared
    /// and written prepared ([`prepare_user_name`]).
    pub fn issue_csr(
        &self,
        csr: &[u8],
        user: &str,
        node_ids: &[NodeId],
        validity: Validity,
    ) -> Result<Bytes, IssueError> {
        let prepared = prepare_user_name(user).map_err(IssueError::UsernameNotAvailable)?;
        let user = prepared.as_str();
        let domain = check_user_name(user).map_err(IssueError::UsernameNotAvailable)?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return Err(IssueError::UsernameNotAvailable(format!(
                "the {} CA does not issue for {user}",
                self.domain
            )));
        }
        if node_ids.is_empty() {
            return Err(IssueError::NodeIdsNotAvailable("no Node-ID".into()));
        }
        let parsed =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr))
                .map_err(|e| IssueError::BadCsr(e.to_string()))?;
        for requested in requested_names(&parsed) {
            // A request made with the name as the user typed it names the same user.
            if prepare_user_name(&requested).ok().as_deref() != Some(user) {
                return Err(IssueError::UsernameNotAvailable(format!(
                    "the request names {requested}, the account is {user}"
                )));
            }
        }
        let spec = NodeCertSpec {
            overlay: self.overlay.clone(),
            node_ids: node_ids.to_vec(),
            user: Some(user.to_owned()),
            xmpp_addr: Some(user.to_owned()),
            validity,
        };
        let params = node_params(&spec).map_err(|e| IssueError::BadCsr(e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(self.der.as_slice()), &self.key)
                .map_err(|e| IssueError::BadCsr(format!("CA certificate: {e}")))?;
        let request = CertificateSigningRequestParams {
            params,
            public_key: parsed.public_key,
        };
        request
            .signed_by(&issuer)
            .map(|c| Bytes::from(c.der().to_vec()))
            .map_err(|e| IssueError::BadCsr(e.to_string()))
    }
}

/// The user names a CSR asks for: rfc822Name and xmppAddr SANs.
fn requested_names(csr: &CertificateSigningRequestParams) -> Vec<String> {
    csr.params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::Rfc822Name(n) => Some(n.as_str().to_owned()),
            SanType::OtherName((oid, rcgen::OtherNameValue::Utf8String(v)))
                if oid.as_slice() == XMPP_ADDR_OID =>
            {
                Some(v.clone())
            }
            _ => None,
        })
        .collect()
}

/// A PKCS#10 request (DER) for `key`, asking for `user` as rfc822Name and xmppAddr.
pub fn make_csr(key: &KeyPair, user: &str) -> Result<Vec<u8>, IssueError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let ia5 = user
        .to_owned()
        .try_into()
        .map_err(|e: rcgen::Error| IssueError::UsernameNotAvailable(e.to_string()))?;
    params.subject_alt_names = vec![
        SanType::Rfc822Name(ia5),
        SanType::OtherName((
            XMPP_ADDR_OID.to_vec(),
            rcgen::OtherNameValue::Utf8String(user.to_owned()),
        )),
    ];
    params
        .serialize_request(key)
        .map(|r| r.der().to_vec())
        .map_err(|e| IssueError::BadCsr(e.to_string()))
}

/// The domain part of a user name (after the `@`).
pub fn user_domain(user: &str) -> &str {
    name_domain(user)
}
