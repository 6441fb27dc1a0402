//! Where stored values live: per (Resource-ID, Kind-ID), the Kind's generation counter
//! and its entries under the Kind's data model. Storage sits behind
//! [`StorageBackend`]; [`MemoryBackend`] is the embedded default.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::id::ResourceId;
use crate::time::Instant;
use crate::wire::{DataModel, KindId, StoredData};

/// One stored value with what is needed to keep and pass it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value as stored (array index resolved).
    pub data: StoredData,
    /// When it expires here.
    pub expires: Instant,
    /// Certificates that verify its signature, kept so they can travel with the value
    /// (§6.3.4: "a peer storing data is obligated to retain certificates").
    pub certs: Vec<Bytes>,
}

impl Entry {
    /// Approximate memory held by this entry.
    pub fn size(&self) -> usize {
        let value = self.data.value.data().value.len();
        let key = match &self.data.value {
            crate::wire::StoredDataValue::Dictionary { key, .. } => key.len(),
            _ => 0,
        };
        let sig = self.data.signature.value.len() + 40;
        let certs: usize = self.certs.iter().map(|c| c.len() / 8).sum(); // shared Bytes: count a fraction
        96 + value + key + sig + certs
    }
}

/// A Kind's entries under its data model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entries {
    /// Single value.
    Single(Option<Entry>),
    /// Array entries by index.
    Array(BTreeMap<u32, Entry>),
    /// Dictionary entries by key.
    Dictionary(BTreeMap<Bytes, Entry>),
}

impl Entries {
    /// No entries under `model`.
    pub fn empty(model: DataModel) -> Entries {
        match model {
            DataModel::Single => Entries::Single(None),
            DataModel::Array => Entries::Array(BTreeMap::new()),
            DataModel::Dictionary => Entries::Dictionary(BTreeMap::new()),
        }
    }

    /// Every entry.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &Entry> + '_> {
        match self {
            Entries::Single(e) => Box::new(e.iter()),
            Entries::Array(m) => Box::new(m.values()),
            Entries::Dictionary(m) => Box::new(m.values()),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Entries::Single(e) => e.is_some() as usize,
            Entries::Array(m) => m.len(),
            Entries::Dictionary(m) => m.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries expired at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.len();
        match self {
            Entries::Single(e) => {
                if e.as_ref().is_some_and(|e| e.expires <= now) {
                    *e = None;
                }
            }
            Entries::Array(m) => m.retain(|_, e| e.expires > now),
            Entries::Dictionary(m) => m.retain(|_, e| e.expires > now),
        }
        before - self.len()
    }
}

/// The data of one Kind at one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindData {
    /// The generation counter (§7.4.1.1); at least 1 once anything was stored.
    pub generation: u64,
    /// The values.
    pub entries: Entries,
}

impl KindData {
    /// Nothing stored yet under `model`.
    pub fn new(model: DataModel) -> KindData {
        KindData {
            generation: 0,
            entries: Entries::empty(model),
        }
    }

    /// Approximate memory held.
    pub fn size(&self) -> usize {
        48 + self.entries.iter().map(Entry::size).sum::<usize>()
    }

    /// The earliest expiry among the entries.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.expires).min()
    }
}

/// Storage of Kind data by resource. Implementations must keep the byte count that
/// [`StorageBackend::bytes`] reports in step with their contents.
pub trait StorageBackend: std::fmt::Debug + Send {
    /// The data of `kind` at `resource`.
    fn get(&self, resource: ResourceId, kind: KindId) -> Option<&KindData>;
    /// Replaces (or removes, when empty) the data of `kind` at `resource`.
    fn put(&mut self, resource: ResourceId, kind: KindId, data: KindData);
    /// Kinds stored at `resource`.
    fn kinds_at(&self, resource: ResourceId) -> Vec<KindId>;
    /// Every resource with data, in ring order.
    fn resources(&self) -> Vec<ResourceId>;
    /// Resources holding `kind`, in ring order.
    fn resources_of(&self, kind: KindId) -> Vec<ResourceId>;
    /// Approximate bytes held.
    fn bytes(&self) -> usize;
    /// Number of stored values.
    fn values(&self) -> usize;
}

/// The embedded default: everything in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    data: BTreeMap<(ResourceId, KindId), KindData>,
    by_kind: BTreeSet<(KindId, ResourceId)>,
    bytes: usize,
    values: usize,
}

impl StorageBackend for MemoryBackend {
    fn get(&self, resource: ResourceId, kind: KindId) -> Option<&KindData> {
        self.data.get(&(resource, kind))
    }

    fn put(&mut self, resource: ResourceId, kind: KindId, data: KindData) {
        if let Some(old) = self.data.remove(&(resource, kind)) {
            self.bytes -= old.size();
            self.values -= old.entries.len();
            self.by_kind.remove(&(kind, resource));
        }
        if !data.entries.is_empty() {
            self.bytes += data.size();
            self.values += data.entries.len();
            self.by_kind.insert((kind, resource));
            self.data.insert((resource, kind), data);
        }
    }

    fn kinds_at(&self, resource: ResourceId) -> Vec<KindId> {
        self.data
            .range((resource, 0)..=(resource, KindId::MAX))
            .map(|((_, k), _)| *k)
            .collect()
    }

    fn resources(&self) -> Vec<ResourceId> {
        let mut out: Vec<ResourceId> = self.data.keys().map(|(r, _)| *r).collect();
        out.dedup();
        out
    }

    fn resources_of(&self, kind: KindId) -> Vec<ResourceId> {
        self.by_kind
            .range((kind, ResourceId(0))..=(kind, ResourceId(u128::MAX)))
            .map(|(_, r)| *r)
            .collect()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn values(&self) -> usize {
        self.values
    }
}
