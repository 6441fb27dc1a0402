//! The storage methods (§7.4): Store with its checks and all-or-nothing semantics,
//! Fetch with synthesised non-existent values, Stat, Find, and expiry.

use std::collections::{BTreeSet, HashSet};

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::kinds::KindTable;
use super::store::{Entries, Entry, KindData, MemoryBackend, StorageBackend};
use crate::id::{ResourceId, distance};
use crate::identity::{SignatureError, VerifiedSigner};
use crate::time::Instant;
use crate::wire::security::HASH_SHA256;
use crate::wire::store::APPEND_INDEX;
use crate::wire::*;

/// Limits on what one node stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Most bytes held (approximate, values and signatures).
    pub max_bytes: usize,
    /// Most values held.
    pub max_values: usize,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            max_bytes: 64 << 20,
            max_values: 200_000,
        }
    }
}

/// Who asks for a store and how.
#[derive(Debug)]
pub struct StoreContext<'a> {
    /// The overlay's Kinds.
    pub kinds: &'a KindTable,
    /// Now.
    pub now: Instant,
    /// The verified signer of the StoreReq.
    pub request_signer: &'a VerifiedSigner,
    /// A replica store (§10.4): the request signer is not checked against the policy
    /// and the generation counter is taken from the request.
    pub replica: bool,
}

/// Verifies one value's signature: its signer and the certificates that prove it.
pub type VerifyValue<'a> =
    dyn FnMut(KindId, &StoredData) -> Result<(VerifiedSigner, Vec<Bytes>), SignatureError> + 'a;

fn err(code: ErrorCode, text: impl Into<String>) -> ErrorResponse {
    ErrorResponse::new(code, text)
}

/// A node's stored data.
#[derive(Debug)]
pub struct Storage {
    backend: Box<dyn StorageBackend>,
    limits: StorageLimits,
    /// When to look at a (resource, kind) for expired values.
    expiry: BTreeSet<(Instant, ResourceId, KindId)>,
}

impl Default for Storage {
    fn default() -> Self {
        Storage::new(Box::<MemoryBackend>::default(), StorageLimits::default())
    }
}

impl Storage {
    /// Storage over `backend` within `limits`.
    pub fn new(backend: Box<dyn StorageBackend>, limits: StorageLimits) -> Storage {
        Storage {
            backend,
            limits,
            expiry: BTreeSet::new(),
        }
    }

    /// The stored data of `kind` at `resource`.
    pub fn get(&self, resource: ResourceId, kind: KindId) -> Option<&KindData> {
        self.backend.get(resource, kind)
    }

    /// Resources with data, in ring order.
    pub fn resources(&self) -> Vec<ResourceId> {
        self.backend.resources()
    }

    /// Number of stored values.
    pub fn values(&self) -> usize {
        self.backend.values()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.backend.bytes()
    }

    /// Store (§7.4.1.1): every check passes for every value of every Kind, or nothing
    /// changes.
    pub fn store(
        &mut self,
        req: &StoreReq,
        ctx: &StoreContext<'_>,
        verify: &mut VerifyValue<'_>,
    ) -> Result<Vec<StoreKindResponse>, ErrorResponse> {
        let r = req.resource;
        let unknown: Vec<KindId> = req
            .kind_data
            .iter()
            .map(|k| k.kind)
            .filter(|k| ctx.kinds.get(*k).is_none())
            .collect();
        if !unknown.is_empty() {
            let info = UnknownKinds(unknown.clone()).to_bytes().unwrap_or_default();
            return Err(ErrorResponse {
                code: ErrorCode::UnknownKind,
                info,
            });
        }
        let mut seen = HashSet::new();
        if !req.kind_data.iter().all(|k| seen.insert(k.kind)) {
            return Err(err(
                ErrorCode::InvalidMessage,
                "a Kind-ID appears twice in the StoreReq",
            ));
        }
        let mut staged: Vec<(KindId, KindData)> = Vec::new();
        let mut too_low = false;
        for kd in &req.kind_data {
            let def = ctx.kinds.get(kd.kind).expect("checked above");
            let mut data = self
                .backend
                .get(r, kd.kind)
                .cloned()
                .unwrap_or_else(|| KindData::new(def.model));
            data.entries.expire(ctx.now);
            if ctx.replica {
                if kd.generation_counter == 0 {
                    return Err(err(
                        ErrorCode::InvalidMessage,
                        "replica stores must not use generation counter 0",
                    ));
                }
            } else if kd.generation_counter != 0 && kd.generation_counter != data.generation {
                too_low = true;
            }
            let mut changed = false;
            for sd in kd.values.parsed() {
                changed |= self.stage_value(r, kd.kind, def, sd, &mut data, ctx, verify)?;
            }
            if data.entries.len() > def.max_count as usize {
                return Err(err(
                    ErrorCode::DataTooLarge,
                    format!(
                        "more than max-count {} values for Kind {}",
                        def.max_count, kd.kind
                    ),
                ));
            }
            if ctx.replica {
                data.generation = kd.generation_counter;
            } else if changed || data.generation == 0 {
                data.generation += 1;
            }
            staged.push((kd.kind, data));
        }
        if too_low {
            let current = req
                .kind_data
                .iter()
                .map(|kd| StoreKindResponse {
                    kind: kd.kind,
                    generation_counter: self.backend.get(r, kd.kind).map_or(0, |d| d.generation),
                    replicas: vec![],
                })
                .collect();
            let info = StoreAns {
                kind_responses: current,
            }
            .to_bytes()
            .unwrap_or_default();
            return Err(ErrorResponse {
                code: ErrorCode::GenerationCounterTooLow,
                info,
            });
        }
        let added: usize = staged
            .iter()
            .map(|(k, d)| {
                d.size()
                    .saturating_sub(self.backend.get(r, *k).map_or(0, KindData::size))
            })
            .sum();
        let added_values: usize = staged
            .iter()
            .map(|(k, d)| {
                d.entries
                    .len()
                    .saturating_sub(self.backend.get(r, *k).map_or(0, |o| o.entries.len()))
            })
            .sum();
        if self.backend.bytes() + added > self.limits.max_bytes
            || self.backend.values() + added_values > self.limits.max_values
        {
            return Err(err(ErrorCode::DataTooLarge, "this node's storage is full"));
        }
        let mut answer = Vec::new();
        for (kind, data) in staged {
            if let Some(at) = data.next_expiry() {
                self.expiry.insert((at, r, kind));
            }
            answer.push(StoreKindResponse {
                kind,
                generation_counter: data.generation,
                replicas: vec![],
            });
            self.backend.put(r, kind, data);
        }
        Ok(answer)
    }

    /// Checks one value and places it in `data`. Returns whether anything changed.
    #[allow(clippy::too_many_arguments)]
    fn stage_value(
        &self,
        r: ResourceId,
        kind: KindId,
        def: &super::KindDef,
        sd: &StoredData,
        data: &mut KindData,
        ctx: &StoreContext<'_>,
        verify: &mut VerifyValue<'_>,
    ) -> Result<bool, ErrorResponse> {
        if sd.signature.is_anonymous() {
            return Err(err(
                ErrorCode::Forbidden,
                "stored values must be signed (§7.4.1.1)",
            ));
        }
        let (signer, certs) = verify(kind, sd)
            .map_err(|e| err(ErrorCode::Forbidden, format!("value signature: {e}")))?;
        if !def.policy.permits(r, &sd.value, &signer) {
            return Err(err(
                ErrorCode::Forbidden,
                format!(
                    "{:?} does not let {} write here",
                    def.policy, signer.node_id
                ),
            ));
        }
        if !ctx.replica && !def.policy.permits(r, &sd.value, ctx.request_signer) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("{:?} does not let the requester write here", def.policy),
            ));
        }
        if sd.value.data().value.len() > def.max_size as usize {
            return Err(err(
                ErrorCode::DataTooLarge,
                format!(
                    "value of {} bytes exceeds max-size {}",
                    sd.value.data().value.len(),
                    def.max_size
                ),
            ));
        }
        if sd.value.model() != def.model {
            return Err(err(
                ErrorCode::InvalidMessage,
                "value does not fit the Kind's data model",
            ));
        }
        let mut stored = sd.clone();
        let entry = |stored: StoredData| Entry {
            expires: ctx.now + std::time::Duration::from_secs(stored.lifetime as u64),
            data: stored,
            certs: certs.clone(),
        };
        let slot: Option<&Entry> = match (&mut data.entries, &mut stored.value) {
            (Entries::Single(e), _) => e.as_ref(),
            (Entries::Array(m), StoredDataValue::Array { index, .. }) => {
                if *index == APPEND_INDEX {
                    *index = m.keys().next_back().map_or(0, |last| last + 1);
                }
                m.get(index)
            }
            (Entries::Dictionary(m), StoredDataValue::Dictionary { key, .. }) => m.get(key),
            _ => {
                return Err(err(
                    ErrorCode::InvalidMessage,
                    "value does not fit the Kind's data model",
                ));
            }
        };
        if let Some(old) = slot {
            // The same signed value again (a retransmission or another replica copy; its
            // remaining lifetime may differ) changes nothing.
            let same = old.data.storage_time == stored.storage_time
                && old.data.value == stored.value
                && old.data.signature == stored.signature;
            if same {
                return Ok(false);
            }
            // A replica or hand-over store (§10.4, §10.5) carries every value of the
            // resource; one this node already holds in a newer version is skipped, not
            // a reason to refuse the others (refusing them all lost the values this
            // node lacked, at every retry). Nothing older replaces anything newer, so
            // the anti-rollback rule below still holds; the newest copy wins, which is
            // where §7.4.1.1's resynchronisation after Error_Data_Too_Old leads.
            if ctx.replica && old.data.storage_time >= stored.storage_time {
                return Ok(false);
            }
            // §7.4.1.1: a store must be newer than what it replaces (anti-rollback).
            if old.data.storage_time >= stored.storage_time {
                return Err(err(
                    ErrorCode::DataTooOld,
                    format!(
                        "storage_time {} is not after the stored {}",
                        stored.storage_time, old.data.storage_time
                    ),
                ));
            }
        }
        match (&mut data.entries, &stored.value) {
            (Entries::Single(e), _) => *e = Some(entry(stored)),
            (Entries::Array(m), StoredDataValue::Array { index, .. }) => {
                m.insert(*index, entry(stored));
            }
            (Entries::Dictionary(m), StoredDataValue::Dictionary { key, .. }) => {
                m.insert(key.clone(), entry(stored));
            }
            _ => {}
        }
        Ok(true)
    }

    fn live<'a>(
        &'a self,
        r: ResourceId,
        kind: KindId,
        now: Instant,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.backend
            .get(r, kind)
            .into_iter()
            .flat_map(move |d| d.entries.iter().filter(move |e| e.expires > now))
    }

    fn check_kinds(
        &self,
        kinds: &KindTable,
        ids: impl Iterator<Item = KindId>,
    ) -> Result<(), ErrorResponse> {
        let unknown: Vec<KindId> = ids.filter(|k| kinds.get(*k).is_none()).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let info = UnknownKinds(unknown).to_bytes().unwrap_or_default();
        Err(ErrorResponse {
            code: ErrorCode::UnknownKind,
            info,
        })
    }

    /// Selects the values a specifier asks for, synthesising non-existent ones
    /// (§7.4.2.1, §7.4.2.2). Array ranges stop at the array's end and at the Kind's
    /// max-count, so a request cannot make the node build unbounded answers.
    fn select(
        &self,
        r: ResourceId,
        spec: &StoredDataSpecifier,
        kinds: &KindTable,
        now: Instant,
    ) -> (u64, Vec<(StoredData, Option<&Entry>)>) {
        let def = kinds.get(spec.kind).expect("kinds checked");
        let data = self.backend.get(r, spec.kind);
        let generation = data.map_or(0, |d| d.generation);
        if spec.generation != 0 && spec.generation == generation {
            return (generation, vec![]);
        }
        let alive = |e: &&Entry| e.expires > now;
        let absent = |value: StoredDataValue| StoredData {
            storage_time: 0,
            lifetime: 0,
            value,
            signature: Signature::anonymous(),
        };
        let mut out = Vec::new();
        match (&spec.model_specifier, data.map(|d| &d.entries)) {
            (ModelSpecifier::Single, entries) => match entries {
                Some(Entries::Single(Some(e))) if e.expires > now => {
                    out.push((e.data.clone(), Some(e)))
                }
                _ => out.push((absent(StoredDataValue::Single(DataValue::absent())), None)),
            },
            (ModelSpecifier::Array(ranges), entries) => {
                let map = match entries {
                    Some(Entries::Array(m)) => Some(m),
                    _ => None,
                };
                let end = map.and_then(|m| {
                    m.iter()
                        .rev()
                        .find(|(_, e)| e.expires > now)
                        .map(|(i, _)| *i)
                });
                let mut budget = def.max_count as usize;
                for range in ranges {
                    let Some(end) = end else { break };
                    let last = if range.last == APPEND_INDEX {
                        end
                    } else {
                        range.last.min(end)
                    };
                    let mut i = range.first;
                    while i <= last && budget > 0 {
                        match map.and_then(|m| m.get(&i)).filter(alive) {
                            Some(e) => out.push((e.data.clone(), Some(e))),
                            None => out.push((
                                absent(StoredDataValue::Array {
                                    index: i,
                                    value: DataValue::absent(),
                                }),
                                None,
                            )),
                        }
                        budget -= 1;
                        if i == u32::MAX {
                            break;
                        }
                        i += 1;
                    }
                }
            }
            (ModelSpecifier::Dictionary(keys), entries) => {
                let map = match entries {
                    Some(Entries::Dictionary(m)) => Some(m),
                    _ => None,
                };
                if keys.is_empty() {
                    out.extend(
                        map.into_iter()
                            .flat_map(|m| m.values())
                            .filter(alive)
                            .map(|e| (e.data.clone(), Some(e))),
                    );
                } else {
                    for key in keys {
                        match map.and_then(|m| m.get(key)).filter(alive) {
                            Some(e) => out.push((e.data.clone(), Some(e))),
                            None => out.push((
                                absent(StoredDataValue::Dictionary {
                                    key: key.clone(),
                                    value: DataValue::absent(),
                                }),
                                None,
                            )),
                        }
                    }
                }
            }
            (ModelSpecifier::Unparsed(_), _) => {}
        }
        (generation, out)
    }

    /// Adjusts a stored value's lifetime to what remains of it here (§7.4.1.1).
    fn remaining(data: &StoredData, entry: Option<&Entry>, now: Instant) -> StoredData {
        let mut d = data.clone();
        if let Some(e) = entry {
            d.lifetime = (e.expires - now).as_secs().min(u32::MAX as u64) as u32;
        }
        d
    }

    /// Fetch (§7.4.2): the answer, and the certificates of the values in it.
    pub fn fetch(
        &self,
        req: &FetchReq,
        kinds: &KindTable,
        now: Instant,
    ) -> Result<(FetchAns, Vec<Bytes>), ErrorResponse> {
        self.check_kinds(kinds, req.specifiers.iter().map(|s| s.kind))?;
        let mut certs: Vec<Bytes> = Vec::new();
        let mut kind_responses = Vec::new();
        for spec in &req.specifiers {
            let (generation, values) = self.select(req.resource, spec, kinds, now);
            let values = values
                .into_iter()
                .map(|(d, e)| {
                    for c in e.into_iter().flat_map(|e| e.certs.iter()) {
                        if !certs.contains(c) {
                            certs.push(c.clone());
                        }
                    }
                    Storage::remaining(&d, e, now)
                })
                .collect();
            kind_responses.push(FetchKindResponse {
                kind: spec.kind,
                generation,
                values: KindValues::Parsed(values),
            });
        }
        Ok((FetchAns { kind_responses }, certs))
    }

    /// Stat (§7.4.3): metadata instead of values.
    pub fn stat(
        &self,
        req: &StatReq,
        kinds: &KindTable,
        now: Instant,
    ) -> Result<StatAns, ErrorResponse> {
        self.check_kinds(kinds, req.specifiers.iter().map(|s| s.kind))?;
        let meta = |d: &StoredData| {
            let v = &d.value.data().value;
            let mut hashed = BytesMut::with_capacity(v.len() + 4);
            hashed.put_u32(v.len() as u32);
            hashed.put_slice(v);
            MetaData {
                exists: d.value.data().exists,
                value_length: v.len() as u32,
                hash_algorithm: HASH_SHA256,
                hash_value: Bytes::copy_from_slice(&Sha256::digest(&hashed)),
            }
        };
        let kind_responses = req
            .specifiers
            .iter()
            .map(|spec| {
                let (generation, values) = self.select(req.resource, spec, kinds, now);
                let values = values
                    .into_iter()
                    .map(|(d, e)| {
                        let d = Storage::remaining(&d, e, now);
                        let metadata = match &d.value {
                            StoredDataValue::Single(_) => MetaDataValue::Single(meta(&d)),
                            StoredDataValue::Array { index, .. } => MetaDataValue::Array {
                                index: *index,
                                meta: meta(&d),
                            },
                            StoredDataValue::Dictionary { key, .. } => MetaDataValue::Dictionary {
                                key: key.clone(),
                                meta: meta(&d),
                            },
                        };
                        StoredMetaData {
                            value_length: d.value.data().value.len() as u32,
                            storage_time: d.storage_time,
                            lifetime: d.lifetime,
                            metadata,
                        }
                    })
                    .collect();
                StatKindResponse {
                    kind: spec.kind,
                    generation,
                    values: KindValues::Parsed(values),
                }
            })
            .collect();
        Ok(StatAns { kind_responses })
    }

    /// Find (§7.4.4): per Kind, the first stored Resource-ID at or after the requested
    /// one (so that `nearest(1 + R)` walks the overlay), or 0.
    pub fn find(
        &self,
        req: &FindReq,
        kinds: &KindTable,
        now: Instant,
    ) -> Result<FindAns, ErrorResponse> {
        let mut seen = HashSet::new();
        if !req.kinds.iter().all(|k| seen.insert(*k)) {
            return Err(err(
                ErrorCode::InvalidMessage,
                "a Kind-ID appears twice in the FindReq",
            ));
        }
        let results = req
            .kinds
            .iter()
            .map(|kind| {
                let closest = if kinds.get(*kind).is_none() {
                    ResourceId(0)
                } else {
                    self.backend
                        .resources_of(*kind)
                        .into_iter()
                        .filter(|r| self.live(*r, *kind, now).next().is_some())
                        .min_by_key(|r| distance(req.resource.0, r.0))
                        .unwrap_or(ResourceId(0))
                };
                FindKindData {
                    kind: *kind,
                    closest,
                }
            })
            .collect();
        Ok(FindAns { results })
    }

    /// Removes expired values; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(&(at, r, kind)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(mut data) = self.backend.get(r, kind).cloned() {
                removed += data.entries.expire(now);
                if let Some(next) = data.next_expiry() {
                    self.expiry.insert((next, r, kind));
                }
                self.backend.put(r, kind, data);
            }
        }
        removed
    }

    /// When the next value may expire.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _, _)| *at)
    }

    /// Everything stored at `resource` as the `kind_data` of a replica StoreReq, with
    /// lifetimes cut to what remains (§7.4.1.1), and the certificates the values need.
    pub fn export(&self, resource: ResourceId, now: Instant) -> (Vec<StoreKindData>, Vec<Bytes>) {
        let mut certs: Vec<Bytes> = Vec::new();
        let mut kinds = Vec::new();
        for kind in self.backend.kinds_at(resource) {
            let Some(data) = self.backend.get(resource, kind) else {
                continue;
            };
            let values: Vec<StoredData> = data
                .entries
                .iter()
                .filter(|e| e.expires > now)
                .map(|e| {
                    for c in &e.certs {
                        if !certs.contains(c) {
                            certs.push(c.clone());
                        }
                    }
                    Storage::remaining(&e.data, Some(e), now)
                })
                .collect();
            if !values.is_empty() {
                kinds.push(StoreKindData {
                    kind,
                    generation_counter: data.generation.max(1),
                    values: KindValues::Parsed(values),
                });
            }
        }
        (kinds, certs)
    }

    /// Discards every value of `kind`; returns how many.
    pub fn drop_kind(&mut self, kind: KindId) -> usize {
        let mut dropped = 0;
        for r in self.backend.resources_of(kind) {
            dropped += self.backend.get(r, kind).map_or(0, |d| d.entries.len());
            self.backend.put(r, kind, KindData::new(DataModel::Single));
        }
        dropped
    }

    /// Forgets everything at `resource`.
    pub fn remove(&mut self, resource: ResourceId) {
        for kind in self.backend.kinds_at(resource) {
            self.backend
                .put(resource, kind, KindData::new(DataModel::Single));
        }
    }
}
