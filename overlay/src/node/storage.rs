//! The storage methods on the ring: Store at the responsible peer and replication to
//! its next two successors (§10.4), replicas accepted only from a peer that can be
//! responsible, re-replication when the successor set changes, hand-over to a joining
//! peer (§10.5 step 6), to the successor on leave, and after failures (§10.7.3).

use std::time::Duration;

use bytes::Bytes;

use super::transactions::Purpose;
use super::{JoinState, Node, RequestId, Timer};
use crate::id::{NodeId, ResourceId, in_interval_open_closed};
use crate::identity::VerifiedSigner;
use crate::storage::StoreContext;
use crate::time::Instant;
use crate::wire::security::CERT_TYPE_X509;
use crate::wire::*;

/// An answer and the certificates that must travel with it (stored values' signers).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) body: Body,
    pub(crate) certs: Vec<Bytes>,
}

impl From<Body> for Reply {
    fn from(body: Body) -> Reply {
        Reply {
            body,
            certs: Vec::new(),
        }
    }
}

/// First wait before a failed replica store is sent again.
const REPLICA_RETRY: Duration = Duration::from_secs(5);
/// Quick retries per neighbour-table change.
const REPLICA_RETRIES: u32 = 3;

impl Node {
    /// Stores signed values of one or more Kinds at `resource` (§7.4.1). Each value is
    /// signed by this node with a storage time that never goes backwards.
    pub fn store(
        &mut self,
        resource: ResourceId,
        kinds: Vec<(KindId, Vec<StoredDataValue>)>,
        lifetime: Duration,
        now: Instant,
    ) -> RequestId {
        let req = self.signed_store(resource, kinds, lifetime, now);
        self.request(
            vec![Destination::Resource(resource)],
            Body::StoreReq(req),
            now,
        )
    }

    /// A StoreReq with every value signed by this node.
    fn signed_store(
        &mut self,
        resource: ResourceId,
        kinds: Vec<(KindId, Vec<StoredDataValue>)>,
        lifetime: Duration,
        now: Instant,
    ) -> StoreReq {
        let lifetime = lifetime.as_secs().min(u32::MAX as u64) as u32;
        let kind_data = kinds
            .into_iter()
            .map(|(kind, values)| {
                let values = values
                    .into_iter()
                    .map(|value| {
                        let storage_time = self.next_storage_time(now);
                        let signature =
                            self.cfg
                                .credentials
                                .sign_value(resource, kind, storage_time, &value);
                        StoredData {
                            storage_time,
                            lifetime,
                            value,
                            signature,
                        }
                    })
                    .collect();
                StoreKindData {
                    kind,
                    generation_counter: 0,
                    values: KindValues::Parsed(values),
                }
            })
            .collect();
        StoreReq {
            resource,
            replica_number: 0,
            kind_data,
        }
    }

    /// Fetches values at `resource` (§7.4.2). Values whose signatures do not verify are
    /// dropped from the answer and counted in [`super::Answer::dropped`].
    pub fn fetch(
        &mut self,
        resource: ResourceId,
        specifiers: Vec<StoredDataSpecifier>,
        now: Instant,
    ) -> RequestId {
        self.request(
            vec![Destination::Resource(resource)],
            Body::FetchReq(FetchReq {
                resource,
                specifiers,
            }),
            now,
        )
    }

    /// Milliseconds since the epoch, strictly after the last storage time used.
    fn next_storage_time(&mut self, now: Instant) -> u64 {
        let t = self.unix_ms(now).max(self.last_storage_time + 1);
        self.last_storage_time = t;
        t
    }

    /// A Store request (§7.4.1.1).
    pub(crate) fn on_store(
        &mut self,
        message: &Message,
        req: StoreReq,
        signer: &VerifiedSigner,
        now: Instant,
    ) -> Result<Reply, ErrorResponse> {
        let replica = req.replica_number != 0;
        let r = req.resource;
        if !replica && !self.responsible(r.0) {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "this node is not responsible for the resource",
            ));
        }
        if replica && !self.replica_source_ok(signer.node_id, r) {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "replica stores are accepted only from a peer responsible for the resource",
            ));
        }
        let bucket: Vec<GenericCertificate> = message.security.certificates.clone();
        let chain: Vec<Bytes> = bucket
            .iter()
            .filter(|c| c.kind == CERT_TYPE_X509)
            .map(|c| c.certificate.clone())
            .collect();
        let unix = self.unix_secs(now);
        let Node {
            storage,
            certs,
            cfg,
            ..
        } = self;
        let mut verify = |kind, sd: &StoredData| {
            certs
                .verify_value(&cfg.trust, r, kind, sd, &bucket, unix)
                .map(|s| {
                    let mut keep = vec![s.cert.clone()];
                    keep.extend(chain.iter().filter(|c| **c != s.cert).cloned());
                    (s, keep)
                })
        };
        let ctx = StoreContext {
            kinds: &cfg.kinds,
            now,
            request_signer: signer,
            replica,
        };
        let mut responses = storage.store(&req, &ctx, &mut verify)?;
        self.schedule_expiry();
        if !replica {
            // §10.4: replicate to the next two successors.
            let replicas: Vec<NodeId> = self.table.successors().iter().take(2).copied().collect();
            for r in &mut responses {
                r.replicas = replicas.clone();
            }
            for (i, peer) in replicas.iter().enumerate() {
                self.send_replica(*peer, r, i as u8 + 1, now);
            }
        }
        Ok(Body::StoreAns(StoreAns {
            kind_responses: responses,
        })
        .into())
    }

    /// Fetch, Stat and Find.
    pub(crate) fn on_read(&mut self, body: Body, now: Instant) -> Result<Reply, ErrorResponse> {
        match body {
            Body::FetchReq(req) => {
                let (ans, certs) = self.storage.fetch(&req, &self.cfg.kinds, now)?;
                Ok(Reply {
                    body: Body::FetchAns(ans),
                    certs,
                })
            }
            Body::StatReq(req) => {
                Ok(Body::StatAns(self.storage.stat(&req, &self.cfg.kinds, now)?).into())
            }
            Body::FindReq(req) => {
                if !self.responsible(req.resource.0) {
                    return Err(ErrorResponse::new(
                        ErrorCode::NotFound,
                        "not responsible for that Resource-ID",
                    ));
                }
                Ok(Body::FindAns(self.storage.find(&req, &self.cfg.kinds, now)?).into())
            }
            other => Err(ErrorResponse::new(
                ErrorCode::InvalidMessage,
                format!("not a storage request: {:?}", other.code()),
            )),
        }
    }

    /// §7.4.1.1, §10.4: a replica must come from a peer that is (or was just) responsible
    /// for the resource: one of our predecessors for its own range, a neighbour handing
    /// us our own range, or the admitting peer while we join.
    fn replica_source_ok(&self, from: NodeId, r: ResourceId) -> bool {
        match self.state {
            JoinState::Attaching { admitting } | JoinState::Joining { admitting } => {
                return admitting == from;
            }
            JoinState::Joined => {}
            _ => return false,
        }
        if self.table.is_responsible(r.0) && self.table.is_neighbor(from) {
            return true;
        }
        let preds = self.table.predecessors();
        match preds.iter().position(|p| *p == from) {
            Some(i) => match preds.get(i + 1) {
                Some(lower) => in_interval_open_closed(r.0, lower.0, from.0),
                None => !in_interval_open_closed(r.0, from.0, self.me.0),
            },
            None => false,
        }
    }

    /// The version of the data at `resource`: the sum of its Kinds' generation counters.
    fn version(&self, resource: ResourceId) -> u64 {
        self.cfg
            .kinds
            .iter()
            .filter_map(|k| self.storage.get(resource, k.id))
            .map(|d| d.generation)
            .sum()
    }

    /// Sends everything stored at `resource` to `peer` as a replica store, unless that
    /// version is already there or on its way.
    pub(crate) fn send_replica(
        &mut self,
        peer: NodeId,
        resource: ResourceId,
        replica_number: u8,
        now: Instant,
    ) {
        let version = self.version(resource);
        let confirmed = self.replicated.get(&resource).and_then(|m| m.get(&peer)) == Some(&version);
        if peer == self.me || confirmed || self.replicating.contains(&(resource, peer)) {
            return;
        }
        let (kind_data, certs) = self.storage.export(resource, now);
        if kind_data.is_empty() {
            return;
        }
        let req = StoreReq {
            resource,
            replica_number,
            kind_data,
        };
        let purpose = Purpose::Replica {
            resource,
            peer,
            version,
        };
        self.replicating.insert((resource, peer));
        self.originate_with_certs(
            vec![Destination::Node(peer)],
            Body::StoreReq(req),
            purpose,
            &certs,
            now,
        );
    }

    /// A replica store was accepted. When this node is responsible for the resource
    /// and a store changed it while the replica was in flight, the peer gets the new
    /// version now (`send_replica` holds one store per peer and resource at a time),
    /// not at the next stabilisation: two devices of a user registering a moment apart
    /// left the replicas with one entry for up to `chord-update-interval`. Only the
    /// responsible node does this: replica holders also store their copies back to it,
    /// and both sides resending on every change would trade stores at network speed.
    pub(crate) fn replica_stored(
        &mut self,
        resource: ResourceId,
        peer: NodeId,
        version: u64,
        now: Instant,
    ) {
        self.replicating.remove(&(resource, peer));
        self.replicated
            .entry(resource)
            .or_default()
            .insert(peer, version);
        let replica = self
            .table
            .successors()
            .iter()
            .take(2)
            .position(|p| *p == peer);
        if let Some(i) = replica
            && version != self.version(resource)
            && self.table.is_responsible(resource.0)
        {
            self.send_replica(peer, resource, i as u8 + 1, now);
        }
    }

    /// A replica store failed. Right after a failure the peers of a neighbourhood
    /// detect it at different times, so the receiver may not yet count us responsible:
    /// try again after [`REPLICA_RETRY`], doubling, a few times per neighbour-table
    /// change; after that the next stabilisation tries again.
    pub(crate) fn replica_failed(&mut self, resource: ResourceId, peer: NodeId, now: Instant) {
        self.replicating.remove(&(resource, peer));
        if self.replica_retries < REPLICA_RETRIES && self.timers.at(&Timer::ReplicaRetry).is_none()
        {
            let wait = REPLICA_RETRY * 2u32.pow(self.replica_retries);
            self.replica_retries += 1;
            self.timers.set(Timer::ReplicaRetry, now + wait);
        }
    }

    /// Keeps replicas where they belong (§10.4, §10.7.3): every resource this node is
    /// responsible for is at its next two successors, and data it is no longer
    /// responsible for is stored to the peer that now is (§6.4.2.3). Called when the
    /// neighbour table changes and at every stabilisation, so a lost replica store is
    /// retried; what a peer already confirmed is not sent again.
    pub(crate) fn sync_replicas(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        let set: Vec<NodeId> = self.table.successors().iter().take(2).copied().collect();
        let resources = self.storage.resources();
        for r in resources.iter().copied() {
            if self.table.is_responsible(r.0) {
                for (i, peer) in set.iter().enumerate() {
                    self.send_replica(*peer, r, i as u8 + 1, now);
                }
            } else if let Some(owner) = self.owner_among_predecessors(r) {
                self.send_replica(owner, r, 1, now);
            }
        }
        let held: std::collections::HashSet<ResourceId> = resources.into_iter().collect();
        self.replicated.retain(|r, _| held.contains(r));
    }

    /// The predecessor responsible for `r`, if it is one we know. Predecessor `i` covers
    /// `(preds[i+1], preds[i]]`. While the table holds fewer predecessors than it keeps,
    /// they are every other node of the ring, so the farthest one covers the arc back
    /// round to us (in a two-node ring the joiner takes over everything outside our own
    /// range, §10.5).
    fn owner_among_predecessors(&self, r: ResourceId) -> Option<NodeId> {
        let preds = self.table.predecessors();
        let whole_ring = preds.len() < self.cfg.neighbors;
        (0..preds.len())
            .find(|&i| {
                let lower = match preds.get(i + 1) {
                    Some(p) => *p,
                    None if whole_ring => self.me,
                    None => return false,
                };
                in_interval_open_closed(r.0, lower.0, preds[i].0)
            })
            .map(|i| preds[i])
    }

    /// §10.7.3: data for which this node is no longer in the replica set (three
    /// predecessors lie between it and the resource) is deleted.
    pub(crate) fn drop_foreign_data(&mut self) {
        let preds = self.table.predecessors();
        if preds.len() < 3 {
            return;
        }
        let far = preds[2];
        for r in self.storage.resources() {
            if !in_interval_open_closed(r.0, far.0, self.me.0) {
                self.storage.remove(r);
            }
        }
    }

    /// Before leaving: the successor takes over what this node is responsible for.
    pub(crate) fn hand_over_on_leave(&mut self, now: Instant) {
        let Some(succ) = self.table.successors().first().copied() else {
            return;
        };
        for r in self.storage.resources() {
            if self.table.is_responsible(r.0) {
                self.send_replica(succ, r, 1, now);
            }
        }
    }

    pub(crate) fn schedule_expiry(&mut self) {
        match self.storage.next_expiry() {
            Some(at) => self.timers.set(Timer::Expire, at),
            None => self.timers.cancel(&Timer::Expire),
        }
    }

    pub(crate) fn expire_values(&mut self, now: Instant) {
        self.storage.expire(now);
        self.schedule_expiry();
    }

    /// §8: store this node's certificate under its Node-ID and its user name.
    pub(crate) fn store_own_certificate(&mut self, now: Instant) {
        use crate::storage::{CERTIFICATE_BY_NODE, CERTIFICATE_BY_USER, node_resource};
        let cert = self.cfg.credentials.cert().clone();
        let by_node = StoredDataValue::Array {
            index: 0,
            value: DataValue::new(cert.clone()),
        };
        let day = Duration::from_secs(86_400);
        let mut stores = vec![(node_resource(self.me), CERTIFICATE_BY_NODE, by_node)];
        if let Some(user) = self.cfg.credentials.identity().user.clone() {
            let by_user = StoredDataValue::Array {
                index: crate::wire::store::APPEND_INDEX,
                value: DataValue::new(cert),
            };
            stores.push((
                ResourceId::of_name(user.as_bytes()),
                CERTIFICATE_BY_USER,
                by_user,
            ));
        }
        for (resource, kind, value) in stores {
            let req = self.signed_store(resource, vec![(kind, vec![value])], day, now);
            self.originate(
                vec![Destination::Resource(resource)],
                Body::StoreReq(req),
                Purpose::Fire,
                now,
            );
        }
    }

    /// Verifies the values of a FetchAns (§7.4.2.2); returns how many were dropped.
    ///
    /// A value counts only if its signature verifies and its Kind's access control
    /// (§7.3) would have let its signer write it there: the storing peer enforces
    /// the policy on Store, but any enrolled peer may be the storing peer, and one
    /// that skipped the check could otherwise hand out a record someone else signed
    /// for another place (a location record of its own under alice's name, say).
    pub(crate) fn verify_fetched(
        &mut self,
        resource: ResourceId,
        ans: &mut FetchAns,
        bucket: &[GenericCertificate],
        now: Instant,
    ) -> usize {
        let unix = self.unix_secs(now);
        let mut dropped = 0;
        for kr in &mut ans.kind_responses {
            let KindValues::Parsed(values) = &mut kr.values else {
                continue;
            };
            let kind = kr.kind;
            let policy = self.cfg.kinds.get(kind).map(|d| d.policy.clone());
            values.retain(|v| {
                let ok = if v.signature.is_anonymous() {
                    !v.value.data().exists // synthesised non-existent values only
                } else {
                    self.certs
                        .verify_value(&self.cfg.trust, resource, kind, v, bucket, unix)
                        .is_ok_and(|signer| {
                            policy
                                .as_ref()
                                .is_none_or(|p| p.permits(resource, &v.value, &signer))
                        })
                };
                dropped += !ok as usize;
                ok
            });
        }
        dropped
    }
}
