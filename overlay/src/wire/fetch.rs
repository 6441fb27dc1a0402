//! Fetch, Stat and Find (§7.4.2 – §7.4.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, Encode, EncodeError, Res, Width, boolean, elements, exact, list, opaque, opaque_bytes,
    put_list, put_opaque, put_prefixed, u8_, u32_, u64_,
};
use super::store::{DataModel, KindId, KindModels, KindValues, StoredData, parse_kind_values};
use crate::id::ResourceId;

/// `ArrayRange` (§7.4.2.1). The RFC types the bounds `int32` but uses `0xffffffff` for
/// "the final element", so they are kept as unsigned 32-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArrayRange {
    /// First index of the range.
    pub first: u32,
    /// Last index of the range; `0xffffffff` is the final element.
    pub last: u32,
}

impl Encode for ArrayRange {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.first);
        out.put_u32(self.last);
        Ok(())
    }
}

impl Decode for ArrayRange {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, first) = u32_(i, "first")?;
        let (rest, last) = u32_(rest, "last")?;
        Ok((rest, ArrayRange { first, last }))
    }
}

/// The `model_specifier` of a `StoredDataSpecifier` (§7.4.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelSpecifier {
    /// Single value: empty.
    Single,
    /// Array: index ranges.
    Array(Vec<ArrayRange>),
    /// Dictionary: keys; no keys is a wildcard fetch of every entry.
    Dictionary(Vec<Bytes>),
    /// The specifier bytes of a Kind the decoder does not know.
    Unparsed(Bytes),
}

/// `StoredDataSpecifier` (§7.4.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredDataSpecifier {
    /// The Kind to fetch.
    pub kind: KindId,
    /// The last generation the requester saw, or 0.
    pub generation: u64,
    /// Which values of the Kind.
    pub model_specifier: ModelSpecifier,
}

impl Encode for StoredDataSpecifier {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.kind);
        out.put_u64(self.generation);
        put_prefixed(out, Width::U16, "length", |out| {
            match &self.model_specifier {
                ModelSpecifier::Single => Ok(()),
                ModelSpecifier::Array(ranges) => put_list(out, Width::U16, "indices", ranges),
                ModelSpecifier::Dictionary(keys) => put_prefixed(out, Width::U16, "keys", |out| {
                    keys.iter()
                        .try_for_each(|k| put_opaque(out, Width::U16, "key", k))
                }),
                ModelSpecifier::Unparsed(raw) => {
                    out.put_slice(raw);
                    Ok(())
                }
            }
        })
    }
}

impl StoredDataSpecifier {
    fn parse_with<'a>(i: &'a [u8], models: &dyn KindModels) -> Res<'a, Self> {
        let (rest, kind) = u32_(i, "kind")?;
        let (rest, generation) = u64_(rest, "generation")?;
        let (rest, body) = opaque(rest, Width::U16, "length")?;
        let model_specifier = match models.data_model(kind) {
            Some(DataModel::Single) => {
                exact(body, "model_specifier", |b| Ok((b, ModelSpecifier::Single)))?
            }
            Some(DataModel::Array) => exact(body, "model_specifier", |b| {
                list(b, Width::U16, "indices", ArrayRange::parse)
                    .map(|(r, v)| (r, ModelSpecifier::Array(v)))
            })?,
            Some(DataModel::Dictionary) => exact(body, "model_specifier", |b| {
                list(b, Width::U16, "keys", |k| {
                    opaque_bytes(k, Width::U16, "key")
                })
                .map(|(r, v)| (r, ModelSpecifier::Dictionary(v)))
            })?,
            None => ModelSpecifier::Unparsed(Bytes::copy_from_slice(body)),
        };
        Ok((
            rest,
            StoredDataSpecifier {
                kind,
                generation,
                model_specifier,
            },
        ))
    }
}

/// `FetchReq` (§7.4.2.1); `StatReq` (§7.4.3.1) has the same structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReq {
    /// Where to fetch from.
    pub resource: ResourceId,
    /// What to fetch, one entry per Kind.
    pub specifiers: Vec<StoredDataSpecifier>,
}

/// `StatReq` (§7.4.3.1): identical to `FetchReq`.
pub type StatReq = FetchReq;

impl Encode for FetchReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.resource.encode(out)?;
        put_list(out, Width::U16, "specifiers", &self.specifiers)
    }
}

impl FetchReq {
    /// Decodes with the data models of the known Kinds.
    pub fn parse_with<'a>(i: &'a [u8], models: &dyn KindModels) -> Res<'a, Self> {
        let (rest, resource) = ResourceId::parse(i)?;
        let (rest, specifiers) = list(rest, Width::U16, "specifiers", |b| {
            StoredDataSpecifier::parse_with(b, models)
        })?;
        Ok((
            rest,
            FetchReq {
                resource,
                specifiers,
            },
        ))
    }
}

/// `FetchKindResponse` (§7.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchKindResponse {
    /// The Kind.
    pub kind: KindId,
    /// The Kind's generation counter at the responder.
    pub generation: u64,
    /// The values (empty if the requester's generation was current).
    pub values: KindValues<StoredData>,
}

impl Encode for FetchKindResponse {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.kind);
        out.put_u64(self.generation);
        self.values.encode(out)
    }
}

/// `FetchAns` (§7.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAns {
    /// One per Kind in the request.
    pub kind_responses: Vec<FetchKindResponse>,
}

impl Encode for FetchAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_list(out, Width::U32, "kind_responses", &self.kind_responses)
    }
}

impl FetchAns {
    /// Decodes with the data models of the known Kinds.
    pub fn parse_with<'a>(i: &'a [u8], models: &dyn KindModels) -> Res<'a, Self> {
        let (rest, kind_responses) = list(i, Width::U32, "kind_responses", |b| {
            let (b, kind) = u32_(b, "kind")?;
            let (b, generation) = u64_(b, "generation")?;
            let (b, values) = parse_kind_values(b, kind, models, StoredData::parse_model)?;
            Ok((
                b,
                FetchKindResponse {
                    kind,
                    generation,
                    values,
                },
            ))
        })?;
        Ok((rest, FetchAns { kind_responses }))
    }
}

/// `MetaData` (§7.4.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaData {
    /// Same as `DataValue.exists`.
    pub exists: bool,
    /// Length of the stored value.
    pub value_length: u32,
    /// TLS `HashAlgorithm` of `hash_value`.
    pub hash_algorithm: u8,
    /// Digest of the value field including its 4 length bytes.
    pub hash_value: Bytes,
}

impl Encode for MetaData {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.exists as u8);
        out.put_u32(self.value_length);
        out.put_u8(self.hash_algorithm);
        put_opaque(out, Width::U8, "hash_value", &self.hash_value)
    }
}

impl Decode for MetaData {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, exists) = boolean(i, "exists")?;
        let (rest, value_length) = u32_(rest, "value_length")?;
        let (rest, hash_algorithm) = u8_(rest, "hash_algorithm")?;
        let (rest, hash_value) = opaque_bytes(rest, Width::U8, "hash_value")?;
        Ok((
            rest,
            MetaData {
                exists,
                value_length,
                hash_algorithm,
                hash_value,
            },
        ))
    }
}

/// `MetaDataValue` (§7.4.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetaDataValue {
    /// Single value.
    Single(MetaData),
    /// `ArrayEntryMeta`.
    Array {
        /// Array index.
        index: u32,
        /// Metadata of the entry.
        meta: MetaData,
    },
    /// `DictionaryEntryMeta`.
    Dictionary {
        /// Dictionary key.
        key: Bytes,
        /// Metadata of the entry.
        meta: MetaData,
    },
}

/// `StoredMetaData` (§7.4.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredMetaData {
    /// Length of the stored value.
    pub value_length: u32,
    /// As in `StoredData`.
    pub storage_time: u64,
    /// As in `StoredData`.
    pub lifetime: u32,
    /// The per-model metadata.
    pub metadata: MetaDataValue,
}

impl Encode for StoredMetaData {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.value_length);
        out.put_u64(self.storage_time);
        out.put_u32(self.lifetime);
        match &self.metadata {
            MetaDataValue::Single(m) => m.encode(out),
            MetaDataValue::Array { index, meta } => {
                out.put_u32(*index);
                meta.encode(out)
            }
            MetaDataValue::Dictionary { key, meta } => {
                put_opaque(out, Width::U16, "key", key)?;
                meta.encode(out)
            }
        }
    }
}

impl StoredMetaData {
    fn parse_model(i: &[u8], model: DataModel) -> Res<'_, Self> {
        let (rest, value_length) = u32_(i, "value_length")?;
        let (rest, storage_time) = u64_(rest, "storage_time")?;
        let (rest, lifetime) = u32_(rest, "lifetime")?;
        let (rest, metadata) = match model {
            DataModel::Single => {
                MetaData::parse(rest).map(|(r, m)| (r, MetaDataValue::Single(m)))?
            }
            DataModel::Array => {
                let (r, index) = u32_(rest, "index")?;
                let (r, meta) = MetaData::parse(r)?;
                (r, MetaDataValue::Array { index, meta })
            }
            DataModel::Dictionary => {
                let (r, key) = opaque_bytes(rest, Width::U16, "key")?;
                let (r, meta) = MetaData::parse(r)?;
                (r, MetaDataValue::Dictionary { key, meta })
            }
        };
        Ok((
            rest,
            StoredMetaData {
                value_length,
                storage_time,
                lifetime,
                metadata,
            },
        ))
    }
}

/// `StatKindResponse` (§7.4.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatKindResponse {
    /// The Kind.
    pub kind: KindId,
    /// The Kind's generation counter.
    pub generation: u64,
    /// Metadata of the values.
    pub values: KindValues<StoredMetaData>,
}

/// `StatAns` (§7.4.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatAns {
    /// One per Kind in the request.
    pub kind_responses: Vec<StatKindResponse>,
}

impl Encode for StatKindResponse {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.kind);
        out.put_u64(self.generation);
        self.values.encode(out)
    }
}

impl Encode for StatAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_list(out, Width::U32, "kind_responses", &self.kind_responses)
    }
}

impl StatAns {
    /// Decodes with the data models of the known Kinds.
    pub fn parse_with<'a>(i: &'a [u8], models: &dyn KindModels) -> Res<'a, Self> {
        let (rest, kind_responses) = list(i, Width::U32, "kind_responses", |b| {
            let (b, kind) = u32_(b, "kind")?;
            let (b, generation) = u64_(b, "generation")?;
            let (b, values) = parse_kind_values(b, kind, models, StoredMetaData::parse_model)?;
            Ok((
                b,
                StatKindResponse {
                    kind,
                    generation,
                    values,
                },
            ))
        })?;
        Ok((rest, StatAns { kind_responses }))
    }
}

/// `FindReq` (§7.4.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindReq {
    /// The Resource-ID to search near.
    pub resource: ResourceId,
    /// The Kinds of interest, each at most once.
    pub kinds: Vec<KindId>,
}

impl Encode for FindReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.resource.encode(out)?;
        put_prefixed(out, Width::U8, "kinds", |out| {
            self.kinds.iter().for_each(|k| out.put_u32(*k));
            Ok(())
        })
    }
}

impl Decode for FindReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, resource) = ResourceId::parse(i)?;
        let (rest, body) = opaque(rest, Width::U8, "kinds")?;
        let kinds = elements(body, "kinds", |b| u32_(b, "kind"))?;
        Ok((rest, FindReq { resource, kinds }))
    }
}

/// `FindKindData` (§7.4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindKindData {
    /// The Kind.
    pub kind: KindId,
    /// The closest Resource-ID stored for the Kind, or 0 if none.
    pub closest: ResourceId,
}

/// `FindAns` (§7.4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindAns {
    /// One per allowed Kind of the request.
    pub results: Vec<FindKindData>,
}

impl Encode for FindKindData {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.kind);
        self.closest.encode(out)
    }
}

impl Decode for FindKindData {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u32_(i, "kind")?;
        let (rest, closest) = ResourceId::parse(rest)?;
        Ok((rest, FindKindData { kind, closest }))
    }
}

impl Encode for FindAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_list(out, Width::U16, "results", &self.results)
    }
}

impl Decode for FindAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, results) = list(i, Width::U16, "results", FindKindData::parse)?;
        Ok((rest, FindAns { results }))
    }
}
