//! Kind definitions (§7.4.5, §11.1 `kind` elements): data model, access-control policy
//! and limits per Kind-ID.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::access::AccessControl;
use crate::wire::{DataModel, KindId, KindModels};

/// `CERTIFICATE_BY_NODE` (§8, registry §14.6).
pub const CERTIFICATE_BY_NODE: KindId = 0x3;
/// `CERTIFICATE_BY_USER` (§8, registry §14.6).
pub const CERTIFICATE_BY_USER: KindId = 0x10;

/// The access-control policies of §7.3, plus any a usage defines.
#[derive(Clone)]
pub enum Policy {
    /// USER-MATCH (§7.3.1).
    UserMatch,
    /// NODE-MATCH (§7.3.2).
    NodeMatch,
    /// USER-NODE-MATCH (§7.3.3); dictionaries only.
    UserNodeMatch,
    /// NODE-MULTIPLE with `max-node-multiple` (§7.3.4).
    NodeMultiple(u32),
    /// A usage-defined policy.
    Custom(Arc<dyn AccessControl>),
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::UserMatch => f.write_str("USER-MATCH"),
            Policy::NodeMatch => f.write_str("NODE-MATCH"),
            Policy::UserNodeMatch => f.write_str("USER-NODE-MATCH"),
            Policy::NodeMultiple(n) => write!(f, "NODE-MULTIPLE({n})"),
            Policy::Custom(c) => write!(f, "{}", c.name()),
        }
    }
}

/// One Kind.
#[derive(Debug, Clone)]
pub struct KindDef {
    /// Kind-ID.
    pub id: KindId,
    /// Its name in the configuration document, e.g. `XMPP-LOCATION`.
    pub name: String,
    /// The data model.
    pub model: DataModel,
    /// Who may write.
    pub policy: Policy,
    /// `max-count`: most values (array entries, dictionary keys) per resource.
    pub max_count: u32,
    /// `max-size`: most bytes per value.
    pub max_size: u32,
}

/// The Kinds of an overlay.
#[derive(Debug, Clone)]
pub struct KindTable {
    kinds: BTreeMap<KindId, KindDef>,
}

impl Default for KindTable {
    /// The certificate store Kinds of §8, which every node supports.
    fn default() -> Self {
        let mut t = KindTable {
            kinds: BTreeMap::new(),
        };
        t.insert(KindDef {
            id: CERTIFICATE_BY_NODE,
            name: "CERTIFICATE_BY_NODE".into(),
            model: DataModel::Array,
            policy: Policy::NodeMatch,
            max_count: 4,
            max_size: 8 * 1024,
        });
        t.insert(KindDef {
            id: CERTIFICATE_BY_USER,
            name: "CERTIFICATE_BY_USER".into(),
            model: DataModel::Array,
            policy: Policy::UserMatch,
            max_count: 16,
            max_size: 8 * 1024,
        });
        t
    }
}

impl KindTable {
    /// An empty table (no Kinds at all).
    pub fn empty() -> KindTable {
        KindTable {
            kinds: BTreeMap::new(),
        }
    }

    /// Adds or replaces a Kind.
    pub fn insert(&mut self, kind: KindDef) {
        self.kinds.insert(kind.id, kind);
    }

    /// The Kind with this id.
    pub fn get(&self, id: KindId) -> Option<&KindDef> {
        self.kinds.get(&id)
    }

    /// Every Kind.
    pub fn iter(&self) -> impl Iterator<Item = &KindDef> {
        self.kinds.values()
    }
}

impl KindModels for KindTable {
    fn data_model(&self, kind: KindId) -> Option<DataModel> {
        self.kinds.get(&kind).map(|k| k.model)
    }
}
