//! From a verified configuration to a running node: the [`ConfigAuthority`] that checks
//! ConfigUpdates for the overlay (§6.5.4), the Kind table a configuration defines, and
//! the node parameters it sets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use xor_overlay::node::{ConfigAuthority, ConfigChange, ConfigRefusal, NodeConfig};
use xor_overlay::storage::{KindDef, KindTable, Policy};
use xor_overlay::wire::DataModel;

use crate::config::sign::{trust_of, verify, verify_kinds};
use crate::config::{ConfigError, Configuration, Document, KindSpec, parse_kind_blocks};

/// Maps a kind a usage defines (e.g. XMPP-LOCATION with its own access control) to
/// its definition; `None` leaves it to the standard policies.
pub type KindResolver = Arc<dyn Fn(&KindSpec) -> Option<KindDef> + Send + Sync>;

/// The definition of one configured Kind: the usage's own, or a standard data model and
/// access-control policy (§7.3).
pub fn kind_def(spec: &KindSpec, usage: Option<&KindResolver>) -> Result<KindDef, ConfigError> {
    if let Some(def) = usage.and_then(|r| r(spec)) {
        return Ok(def);
    }
    let unsupported = |what: &str, value: &str| ConfigError::BadValue {
        element: what.into(),
        value: value.into(),
        reason: format!("kind {} is not supported by this node", spec.label()),
    };
    let id = spec
        .kind_id()
        .ok_or_else(|| unsupported("kind", &spec.label()))?;
    let model = match spec.data_model.as_str() {
        "SINGLE" => DataModel::Single,
        "ARRAY" => DataModel::Array,
        "DICTIONARY" => DataModel::Dictionary,
        other => return Err(unsupported("data-model", other)),
    };
    let policy = match spec.access_control.as_str() {
        "USER-MATCH" => Policy::UserMatch,
        "NODE-MATCH" => Policy::NodeMatch,
        "USER-NODE-MATCH" if model == DataModel::Dictionary => Policy::UserNodeMatch,
        "NODE-MULTIPLE" => Policy::NodeMultiple(spec.max_node_multiple.unwrap_or(1)),
        other => return Err(unsupported("access-control", other)),
    };
    Ok(KindDef {
        id,
        name: spec.label(),
        model,
        policy,
        max_count: spec.max_count,
        max_size: spec.max_size,
    })
}

/// The Kind table of `config`: the certificate Kinds of §8 plus its required kinds.
pub fn kind_table(
    config: &Configuration,
    usage: Option<&KindResolver>,
) -> Result<KindTable, ConfigError> {
    let mut table = KindTable::default();
    for block in &config.required_kinds {
        table.insert(kind_def(&block.kind, usage)?);
    }
    Ok(table)
}

/// Sets everything `config` says on a node's configuration: overlay name, sequence and
/// document, trust, Kinds, TTL, timers, sizes and bootstrap nodes.
pub fn configure_node(
    config: &Configuration,
    document: Bytes,
    node: &mut NodeConfig,
    usage: Option<&KindResolver>,
) -> Result<(), ConfigError> {
    node.overlay = config.instance_name.clone();
    node.configuration_sequence = config.sequence;
    node.config_document = Some(document);
    node.trust = trust_of(config)?;
    node.kinds = kind_table(config, usage)?;
    node.initial_ttl = config.initial_ttl;
    node.max_message_size = config.max_message_size as usize;
    node.reliability_timer = Duration::from_millis(u64::from(config.overlay_reliability_timer));
    if let Some(s) = config.chord_update_interval {
        node.chord_update_interval = Duration::from_secs(u64::from(s.max(1)));
    }
    if let Some(s) = config.chord_ping_interval {
        node.chord_ping_interval = Duration::from_secs(u64::from(s.max(1)));
    }
    node.chord_reactive = config.chord_reactive;
    node.turn_density = config.turn_density;
    node.bootstrap = config
        .bootstrap_nodes
        .iter()
        .map(|b| SocketAddr::new(b.address, b.port))
        .collect();
    node.config_authority = Some(Arc::new(DocumentAuthority::new(
        &config.instance_name,
        usage.cloned(),
    )));
    Ok(())
}

/// Verifies ConfigUpdates with the configuration-signers and kind-signers of the
/// document in use.
#[derive(Clone)]
pub struct DocumentAuthority {
    overlay: String,
    usage: Option<KindResolver>,
}

impl std::fmt::Debug for DocumentAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentAuthority")
            .field("overlay", &self.overlay)
            .finish()
    }
}

impl DocumentAuthority {
    /// An authority for `overlay`, mapping usage kinds with `usage`.
    pub fn new(overlay: &str, usage: Option<KindResolver>) -> DocumentAuthority {
        DocumentAuthority {
            overlay: overlay.to_owned(),
            usage,
        }
    }

    fn current(&self, current: &[u8]) -> Result<Configuration, ConfigRefusal> {
        let doc = Document::parse(current).map_err(refusal)?;
        Ok(doc
            .configuration(&self.overlay)
            .map_err(refusal)?
            .config
            .clone())
    }
}

fn refusal(e: ConfigError) -> ConfigRefusal {
    match e {
        ConfigError::NotNewer { .. } => ConfigRefusal::NotNewer,
        other => ConfigRefusal::Invalid(other.to_string()),
    }
}

impl ConfigAuthority for DocumentAuthority {
    fn verify_config(
        &self,
        current: &[u8],
        document: &[u8],
        unix_secs: i64,
    ) -> Result<ConfigChange, ConfigRefusal> {
        let previous = self.current(current)?;
        let doc = Document::parse(document).map_err(refusal)?;
        let verified = verify(&doc, &self.overlay, Some(&previous), unix_secs).map_err(refusal)?;
        Ok(ConfigChange {
            sequence: verified.config.sequence,
            document: Bytes::copy_from_slice(document),
            trust: trust_of(&verified.config).map_err(refusal)?,
            kinds: kind_table(&verified.config, self.usage.as_ref()).map_err(refusal)?,
        })
    }

    fn verify_kinds(
        &self,
        current: &[u8],
        kinds: &[Bytes],
        table: &KindTable,
        unix_secs: i64,
    ) -> Result<KindTable, ConfigRefusal> {
        let config = self.current(current)?;
        let mut table = table.clone();
        for blob in kinds {
            let blocks = parse_kind_blocks(blob).map_err(refusal)?;
            verify_kinds(&config, &blocks, unix_secs).map_err(refusal)?;
            for block in blocks {
                table.insert(kind_def(&block.kind, self.usage.as_ref()).map_err(refusal)?);
            }
        }
        Ok(table)
    }
}
