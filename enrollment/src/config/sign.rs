//! Signing and verifying configuration documents and kind blocks (§11.1).
//!
//! A signature element holds a base64 `SecurityBlock` (§6.3.4): the signer's
//! certificate chain and a signature over `bytes || SignerIdentity`, where `bytes` runs
//! from the `<` of `<configuration` (or `<kind`) to the `>` of its end tag.
//!
//! Who may sign: "Any configuration file MUST be signed by one of the
//! configuration-signer elements from the previous extant configuration" — so a new
//! document is checked against the configuration in use. On first contact there is none;
//! the document must then be signed by one of its own configuration-signers, chaining to
//! its own roots (the HTTPS fetch authenticated the server). Kind blocks must be signed
//! by a kind-signer of the configuration that carries them.

use xor_overlay::id::NodeId;
use xor_overlay::identity::sign::{blob_signature_input, verify_with_cert};
use xor_overlay::identity::{CertCache, Credentials, TrustStore};
use xor_overlay::wire::{Decode, Encode, SecurityBlock};

use super::parse::{Document, SignedConfiguration};
use super::write::{write_configuration, write_document, write_kind};
use super::{ConfigError, Configuration, KindBlock, KindSpec};

/// The encoded `SecurityBlock` signing `blob`.
pub fn sign_blob(signer: &Credentials, blob: &[u8]) -> Vec<u8> {
    let block = SecurityBlock {
        certificates: signer.certificates(),
        signature: signer.sign_blob(blob),
    };
    block.to_bytes().map(|b| b.to_vec()).unwrap_or_default()
}

/// A kind block whose `kind` element is signed by `signer` (a kind-signer).
pub fn sign_kind(signer: &Credentials, kind: KindSpec) -> KindBlock {
    let raw = write_kind(&kind);
    let signature = Some(sign_blob(signer, raw.as_bytes()));
    KindBlock {
        kind,
        raw,
        signature,
    }
}

/// A complete document holding `config`, signed by `signer` (a configuration-signer of
/// the configuration it replaces, or of itself for the first one).
pub fn signed_document(config: &Configuration, signer: &Credentials) -> String {
    let raw = write_configuration(config);
    let sig = sign_blob(signer, raw.as_bytes());
    write_document(&[(raw, vec![sig])])
}

/// Trust in `authority`'s roots, with its bad nodes and revoked CAs applied.
pub fn trust_of(authority: &Configuration) -> Result<TrustStore, ConfigError> {
    let mut trust = TrustStore::new(authority.instance_name.clone(), &authority.root_certs)
        .map_err(|e| ConfigError::Signature(format!("bad root-cert: {e}")))?;
    if let Some(ss) = &authority.self_signed
        && ss.permitted
    {
        let digest = match ss.digest.as_str() {
            "sha256" => xor_overlay::identity::SelfSignedDigest::Sha256,
            _ => xor_overlay::identity::SelfSignedDigest::Sha1,
        };
        trust = trust.permit_self_signed(digest);
    }
    trust.set_bad_nodes(authority.bad_nodes.iter().copied());
    trust.set_revoked_cas(authority.revoked_cas.iter().copied());
    Ok(trust)
}

/// Checks one of `signatures` over `blob` is by one of `signers` under `trust`; returns
/// the signer.
fn check_signed(
    trust: &TrustStore,
    signers: &[NodeId],
    blob: &[u8],
    signatures: &[Vec<u8>],
    unix_secs: i64,
) -> Result<NodeId, ConfigError> {
    if signatures.is_empty() {
        return Err(ConfigError::Signature("unsigned".into()));
    }
    let mut last = String::new();
    for raw in signatures {
        let block = match SecurityBlock::decode(raw) {
            Ok(b) => b,
            Err(e) => {
                last = format!("not a SecurityBlock: {e}");
                continue;
            }
        };
        let sig = &block.signature;
        let mut certs = CertCache::new(8);
        let signer =
            match certs.resolve_signer(trust, &sig.identity, &block.certificates, unix_secs) {
                Ok(s) => s,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
        if !signers.contains(&signer.node_id) {
            last = format!("{} is not an authorised signer", signer.node_id);
            continue;
        }
        let input = blob_signature_input(blob, &sig.identity);
        match verify_with_cert(&signer.cert, sig.algorithm, &input, &sig.value) {
            Ok(()) => return Ok(signer.node_id),
            Err(e) => last = e.to_string(),
        }
    }
    Err(ConfigError::Signature(last))
}

/// A configuration whose signatures have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The configuration.
    pub config: Configuration,
    /// Who signed it.
    pub signer: NodeId,
}

/// Verifies the configuration for `overlay` in `doc` (§11.1, §6.5.4.2): its signature by
/// a configuration-signer of `previous` (or of itself on first contact), its expiry, a
/// sequence newer than `previous`'s, and every kind block's signature by one of its own
/// kind-signers.
pub fn verify(
    doc: &Document,
    overlay: &str,
    previous: Option<&Configuration>,
    unix_secs: i64,
) -> Result<Verified, ConfigError> {
    let sc: &SignedConfiguration = doc.configuration(overlay)?;
    let authority = previous.unwrap_or(&sc.config);
    if authority.configuration_signers.is_empty() {
        return Err(ConfigError::Signature(
            "no configuration-signer is named".into(),
        ));
    }
    let signer = check_signed(
        &trust_of(authority)?,
        &authority.configuration_signers,
        sc.raw.as_bytes(),
        &sc.signatures,
        unix_secs,
    )?;
    if let Some(prev) = previous {
        let newer = sc.config.sequence.wrapping_sub(prev.sequence);
        if newer == 0 || newer >= 0x8000 {
            return Err(ConfigError::NotNewer {
                offered: sc.config.sequence,
                current: prev.sequence,
            });
        }
    }
    if let Some(exp) = sc.config.expiration
        && exp < unix_secs
    {
        return Err(ConfigError::Expired(exp));
    }
    verify_kinds(&sc.config, &sc.config.required_kinds, unix_secs)?;
    Ok(Verified {
        config: sc.config.clone(),
        signer,
    })
}

/// Verifies kind blocks against `config`'s kind-signers (§11.1, §6.5.4.2).
pub fn verify_kinds(
    config: &Configuration,
    blocks: &[KindBlock],
    unix_secs: i64,
) -> Result<(), ConfigError> {
    if blocks.is_empty() {
        return Ok(());
    }
    let trust = trust_of(config)?;
    for block in blocks {
        let sig: Vec<Vec<u8>> = block.signature.iter().cloned().collect();
        check_signed(
            &trust,
            &config.kind_signers,
            block.raw.as_bytes(),
            &sig,
            unix_secs,
        )
        .map_err(|e| ConfigError::Signature(format!("kind {}: {e}", block.kind.label())))?;
    }
    Ok(())
}
