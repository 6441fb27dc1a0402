//! Stored data and the Store method (§7, §7.2, §7.4.1).
//!
//! The data model of a value is not on the wire: it comes from the Kind definition
//! (§7.2). Structures whose layout depends on it are decoded with a [`KindModels`]
//! lookup; values of a Kind the decoder does not know are kept as
//! [`KindValues::Unparsed`] bytes so the message can still be answered with
//! `Error_Unknown_Kind` (§7.4.1.2) or forwarded.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, Encode, EncodeError, Res, Width, boolean, elements, exact, list, opaque, opaque_bytes,
    put_list, put_opaque, put_prefixed, u8_, u32_, u64_,
};
use super::security::Signature;
use crate::id::{NodeId, ResourceId};

/// `KindId` (§6.5.4.1): a 32-bit Kind identifier.
pub type KindId = u32;

/// Array index meaning "append at the end" (§7.4.1.1).
pub const APPEND_INDEX: u32 = 0xffff_ffff;

/// The data models (§7.2, registry §14.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataModel {
    /// `SINGLE`.
    Single,
    /// `ARRAY`.
    Array,
    /// `DICTIONARY`.
    Dictionary,
}

/// Knows the data model of each Kind (from the configuration document).
pub trait KindModels {
    /// The data model of `kind`, or `None` if the Kind is unknown.
    fn data_model(&self, kind: KindId) -> Option<DataModel>;
}

impl KindModels for HashMap<KindId, DataModel> {
    fn data_model(&self, kind: KindId) -> Option<DataModel> {
        self.get(&kind).copied()
    }
}

impl<F: Fn(KindId) -> Option<DataModel>> KindModels for F {
    fn data_model(&self, kind: KindId) -> Option<DataModel> {
        self(kind)
    }
}

/// `DataValue` (§7.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataValue {
    /// False marks a removed or never-stored value (§7.4.1.3).
    pub exists: bool,
    /// The stored bytes.
    pub value: Bytes,
}

impl DataValue {
    /// A present value.
    pub fn new(value: impl Into<Bytes>) -> DataValue {
        DataValue {
            exists: true,
            value: value.into(),
        }
    }

    /// The "nonexistent" value used for removal (§7.4.1.3).
    pub fn absent() -> DataValue {
        DataValue {
            exists: false,
            value: Bytes::new(),
        }
    }
}

impl Encode for DataValue {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.exists as u8);
        put_opaque(out, Width::U32, "value", &self.value)
    }
}

impl Decode for DataValue {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, exists) = boolean(i, "exists")?;
        let (rest, value) = opaque_bytes(rest, Width::U32, "value")?;
        Ok((rest, DataValue { exists, value }))
    }
}

/// `StoredDataValue` (§7.2): the value under the Kind's data model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoredDataValue {
    /// `single_value_entry` (§7.2.1).
    Single(DataValue),
    /// `ArrayEntry` (§7.2.2).
    Array {
        /// Array index; [`APPEND_INDEX`] appends.
        index: u32,
        /// The entry's value.
        value: DataValue,
    },
    /// `DictionaryEntry` (§7.2.3).
    Dictionary {
        /// `DictionaryKey key<0..2^16-1>`.
        key: Bytes,
        /// The entry's value.
        value: DataValue,
    },
}

impl StoredDataValue {
    /// The data model this value belongs to.
    pub fn model(&self) -> DataModel {
        match self {
            StoredDataValue::Single(_) => DataModel::Single,
            StoredDataValue::Array { .. } => DataModel::Array,
            StoredDataValue::Dictionary { .. } => DataModel::Dictionary,
        }
    }

    /// The `DataValue` inside.
    pub fn data(&self) -> &DataValue {
        match self {
            StoredDataValue::Single(v)
            | StoredDataValue::Array { value: v, .. }
            | StoredDataValue::Dictionary { value: v, .. } => v,
        }
    }

    /// Decodes a value of the given model.
    pub fn parse_model(i: &[u8], model: DataModel) -> Res<'_, Self> {
        match model {
            DataModel::Single => DataValue::parse(i).map(|(r, v)| (r, StoredDataValue::Single(v))),
            DataModel::Array => {
                let (rest, index) = u32_(i, "index")?;
                let (rest, value) = DataValue::parse(rest)?;
                Ok((rest, StoredDataValue::Array { index, value }))
            }
            DataModel::Dictionary => {
                let (rest, key) = opaque_bytes(i, Width::U16, "key")?;
                let (rest, value) = DataValue::parse(rest)?;
                Ok((rest, StoredDataValue::Dictionary { key, value }))
            }
        }
    }
}

impl Encode for StoredDataValue {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            StoredDataValue::Single(v) => v.encode(out),
            StoredDataValue::Array { index, value } => {
                out.put_u32(*index);
                value.encode(out)
            }
            StoredDataValue::Dictionary { key, value } => {
                put_opaque(out, Width::U16, "key", key)?;
                value.encode(out)
            }
        }
    }
}

/// `StoredData` (§7): one signed value with its storage time and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredData {
    /// Milliseconds since the Unix epoch when the value was stored.
    pub storage_time: u64,
    /// Validity in seconds from when the storing peer received it.
    pub lifetime: u32,
    /// The value.
    pub value: StoredDataValue,
    /// The storing user's signature (§7.1).
    pub signature: Signature,
}

impl StoredData {
    /// Decodes a `StoredData` whose value has the given model.
    pub fn parse_model(i: &[u8], model: DataModel) -> Res<'_, Self> {
        let (rest, body) = opaque(i, Width::U32, "stored_data")?;
        let data = exact(body, "stored_data", |b| {
            let (b, storage_time) = u64_(b, "storage_time")?;
            let (b, lifetime) = u32_(b, "lifetime")?;
            let (b, value) = StoredDataValue::parse_model(b, model)?;
            let (b, signature) = Signature::parse(b)?;
            Ok((
                b,
                StoredData {
                    storage_time,
                    lifetime,
                    value,
                    signature,
                },
            ))
        })?;
        Ok((rest, data))
    }
}

impl Encode for StoredData {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_prefixed(out, Width::U32, "stored_data", |out| {
            out.put_u64(self.storage_time);
            out.put_u32(self.lifetime);
            self.value.encode(out)?;
            self.signature.encode(out)
        })
    }
}

/// The values of one Kind in a StoreReq, FetchAns or StatAns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindValues<T> {
    /// Decoded under the Kind's data model.
    Parsed(Vec<T>),
    /// The list bytes of a Kind the decoder does not know.
    Unparsed(Bytes),
}

impl<T> KindValues<T> {
    /// The decoded values; empty for an unknown Kind.
    pub fn parsed(&self) -> &[T] {
        match self {
            KindValues::Parsed(v) => v,
            KindValues::Unparsed(_) => &[],
        }
    }
}

impl<T: Encode> KindValues<T> {
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            KindValues::Parsed(values) => put_list(out, Width::U32, "values", values),
            KindValues::Unparsed(raw) => put_opaque(out, Width::U32, "values", raw),
        }
    }
}

/// Parses `T values<0..2^32-1>` for `kind`, or keeps the bytes if the Kind is unknown.
pub(crate) fn parse_kind_values<'a, T>(
    i: &'a [u8],
    kind: KindId,
    models: &dyn KindModels,
    element: impl Fn(&'a [u8], DataModel) -> Res<'a, T>,
) -> Res<'a, KindValues<T>> {
    match models.data_model(kind) {
        Some(model) => list(i, Width::U32, "values", |b| element(b, model))
            .map(|(r, v)| (r, KindValues::Parsed(v))),
        None => opaque_bytes(i, Width::U32, "values").map(|(r, b)| (r, KindValues::Unparsed(b))),
    }
}

/// `StoreKindData` (§7.4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKindData {
    /// The Kind.
    pub kind: KindId,
    /// Expected current generation counter; 0 to ignore.
    pub generation_counter: u64,
    /// The values to store.
    pub values: KindValues<StoredData>,
}

impl Encode for StoreKindData {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.kind);
        out.put_u64(self.generation_counter);
        self.values.encode(out)
    }
}

impl StoreKindData {
    fn parse_with<'a>(i: &'a [u8], models: &dyn KindModels) -> Res<'a, Self> {
        let (rest, kind) = u32_(i, "kind")?;
        let (rest, generation_counter) = u64_(rest, "generation_counter")?;
        let (rest, values) = parse_kind_values(rest, kind, models, StoredData::parse_model)?;
        Ok((
            rest,
            StoreKindData {
                kind,
                generation_counter,
                values,
            },
        ))
    }
}

/// `StoreReq` (§7.4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReq {
    /// Where to store.
    pub resource: ResourceId,
    /// 0 for an original store, 1.. for replicas (§10.4).
    pub replica_number: u8,
    /// One entry per Kind.
    pub kind_data: Vec<StoreKindData>,
}

impl Encode for StoreReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.resource.encode(out)?;
        out.put_u8(self.replica_number);
        put_list(out, Width::U32, "kind_data", &self.kind_data)
    }
}

impl StoreReq {
    /// Decodes with the data models of the known Kinds.
    pub fn parse_with<'a>(i: &'a [u8], models: &dyn KindModels) -> Res<'a, Self> {
        let (rest, resource) = ResourceId::parse(i)?;
        let (rest, replica_number) = u8_(rest, "replica_number")?;
        let (rest, kind_data) = list(rest, Width::U32, "kind_data", |b| {
            StoreKindData::parse_with(b, models)
        })?;
        Ok((
            rest,
            StoreReq {
                resource,
                replica_number,
                kind_data,
            },
        ))
    }
}

/// `StoreKindResponse` (§7.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKindResponse {
    /// The Kind.
    pub kind: KindId,
    /// The generation counter after the store.
    pub generation_counter: u64,
    /// Peers the data was or will be replicated to.
    pub replicas: Vec<NodeId>,
}

impl Encode for StoreKindResponse {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.kind);
        out.put_u64(self.generation_counter);
        put_list(out, Width::U16, "replicas", &self.replicas)
    }
}

impl Decode for StoreKindResponse {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u32_(i, "kind")?;
        let (rest, generation_counter) = u64_(rest, "generation_counter")?;
        let (rest, replicas) = list(rest, Width::U16, "replicas", NodeId::parse)?;
        Ok((
            rest,
            StoreKindResponse {
                kind,
                generation_counter,
                replicas,
            },
        ))
    }
}

/// `StoreAns` (§7.4.1.2); also the `error_info` of Error_Generation_Counter_Too_Low.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAns {
    /// One per Kind in the request.
    pub kind_responses: Vec<StoreKindResponse>,
}

impl Encode for StoreAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_list(out, Width::U16, "kind_responses", &self.kind_responses)
    }
}

impl Decode for StoreAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind_responses) =
            list(i, Width::U16, "kind_responses", StoreKindResponse::parse)?;
        Ok((rest, StoreAns { kind_responses }))
    }
}

/// The `error_info` of Error_Unknown_Kind: `KindId unknown_kinds<0..2^8-1>` (§7.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKinds(pub Vec<KindId>);

impl Encode for UnknownKinds {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_prefixed(out, Width::U8, "unknown_kinds", |out| {
            self.0.iter().for_each(|k| out.put_u32(*k));
            Ok(())
        })
    }
}

impl Decode for UnknownKinds {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, body) = opaque(i, Width::U8, "unknown_kinds")?;
        let kinds = elements(body, "unknown_kinds", |b| u32_(b, "kind"))?;
        Ok((rest, UnknownKinds(kinds)))
    }
}
