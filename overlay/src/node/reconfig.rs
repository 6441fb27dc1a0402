//! ConfigUpdate (§6.5.4): newer configuration documents and kind definitions arriving
//! from peers, and applying a verified configuration.
//!
//! The overlay does not read XML: a [`ConfigAuthority`] (the enrollment crate provides
//! one) verifies documents and says what changes. A node without an authority refuses
//! ConfigUpdate with Error_Forbidden.
//!
//! What a new configuration changes at once: the sequence, the document sent to peers
//! with older ones, the trust store (roots, `bad-node`s, revoked CAs — links to nodes
//! that became bad are closed), and the Kind table (data of Kinds no longer defined is
//! discarded, §11.1). Other parameters (timers, sizes) take effect when the node next
//! starts. A verified configuration is pushed to every connected peer, so it spreads
//! through the overlay without waiting for the Config_Too_Old path of §6.3.2.1.

use std::fmt;

use bytes::Bytes;

use super::transactions::Purpose;
use super::{Event, Node};
use crate::id::NodeId;
use crate::identity::{CertCache, TrustStore};
use crate::storage::KindTable;
use crate::time::Instant;
use crate::wire::{Body, ConfigUpdateReq, Destination, ErrorCode, ErrorResponse};

/// What a verified configuration changes.
#[derive(Debug, Clone)]
pub struct ConfigChange {
    /// The new `sequence`.
    pub sequence: u16,
    /// The whole signed document, as received.
    pub document: Bytes,
    /// Trust built from the new configuration.
    pub trust: TrustStore,
    /// The Kinds the new configuration defines.
    pub kinds: KindTable,
}

/// Why a configuration or kind update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRefusal {
    /// The offered document is not newer than the one in use.
    #[error("the configuration is not newer than ours")]
    NotNewer,
    /// Anything else: a bad signature, an unauthorised signer, a malformed document.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies what arrives in ConfigUpdate (§6.5.4.2).
pub trait ConfigAuthority: Send + Sync + fmt::Debug {
    /// Checks `document` against `current` (the document in use) and says what changes.
    fn verify_config(
        &self,
        current: &[u8],
        document: &[u8],
        unix_secs: i64,
    ) -> Result<ConfigChange, ConfigRefusal>;

    /// Checks kind-block productions against `current`'s kind-signers and returns the
    /// Kind table with them added.
    fn verify_kinds(
        &self,
        current: &[u8],
        kinds: &[Bytes],
        table: &KindTable,
        unix_secs: i64,
    ) -> Result<KindTable, ConfigRefusal>;
}

impl Node {
    /// Handles a ConfigUpdateReq (§6.5.4.2).
    pub(crate) fn on_config_update(
        &mut self,
        req: ConfigUpdateReq,
        now: Instant,
    ) -> Result<Body, ErrorResponse> {
        let forbidden = |text: String| ErrorResponse::new(ErrorCode::Forbidden, text);
        let (Some(authority), Some(current)) = (
            self.cfg.config_authority.clone(),
            self.cfg.config_document.clone(),
        ) else {
            return Err(forbidden(
                "this node does not accept configuration updates".into(),
            ));
        };
        let unix = (self.unix_ms(now) / 1000) as i64;
        match req {
            ConfigUpdateReq::Config(doc) => {
                if doc == current {
                    return Ok(Body::ConfigUpdateAns);
                }
                match authority.verify_config(&current, &doc, unix) {
                    Ok(change) => {
                        tracing::info!(node = %self.me, sequence = change.sequence, "configuration updated");
                        self.apply_config(change, now);
                        Ok(Body::ConfigUpdateAns)
                    }
                    Err(ConfigRefusal::NotNewer) => Err(ErrorResponse::new(
                        ErrorCode::ConfigTooOld,
                        "the offered configuration is not newer than ours",
                    )),
                    Err(ConfigRefusal::Invalid(why)) => {
                        Err(forbidden(format!("configuration refused: {why}")))
                    }
                }
            }
            ConfigUpdateReq::Kinds(blocks) => {
                let table = authority
                    .verify_kinds(&current, &blocks, &self.cfg.kinds, unix)
                    .map_err(|e| forbidden(format!("kinds refused: {e}")))?;
                self.set_kinds(table);
                Ok(Body::ConfigUpdateAns)
            }
            ConfigUpdateReq::Unknown { kind, .. } => Err(ErrorResponse::new(
                ErrorCode::InvalidMessage,
                format!("unknown ConfigUpdateType {kind}"),
            )),
        }
    }

    /// Applies a verified configuration: sequence, document, trust and Kinds; closes
    /// links to nodes that became bad; pushes the document to every connected peer.
    pub fn apply_config(&mut self, change: ConfigChange, now: Instant) {
        self.cfg.configuration_sequence = change.sequence;
        self.cfg.config_document = Some(change.document.clone());
        self.cfg.trust = change.trust.clone();
        // Certificates verified under the old trust are checked again.
        self.certs = CertCache::new(4096);
        self.set_kinds(change.kinds);
        let bad: Vec<NodeId> = self
            .link_of
            .keys()
            .copied()
            .filter(|n| change.trust.is_bad_node(*n))
            .collect();
        for peer in bad {
            tracing::warn!(node = %self.me, %peer, "closing the link to a bad node");
            self.peer_failed(peer, now);
        }
        let peers: Vec<NodeId> = self.links.values().map(|c| c.peer).collect();
        for peer in peers {
            let body = Body::ConfigUpdateReq(ConfigUpdateReq::Config(change.document.clone()));
            self.originate(vec![Destination::Node(peer)], body, Purpose::Fire, now);
        }
        self.events.push_back(Event::ConfigChanged {
            sequence: change.sequence,
            document: change.document,
        });
        self.flush(now);
    }

    /// Replaces the Kind table, discarding the data of Kinds that are gone (§11.1).
    fn set_kinds(&mut self, table: KindTable) {
        for old in self.cfg.kinds.iter() {
            if table.get(old.id).is_none() {
                let dropped = self.storage.drop_kind(old.id);
                tracing::info!(node = %self.me, kind = old.id, dropped, "kind removed by the configuration");
            }
        }
        self.cfg.kinds = table;
    }
}
