//! The workload: XMPP-LOCATION registrations and lookups, random stores and fetches,
//! routed pings — issued through the nodes' own API and scored against ground truth.

use bytes::Bytes;
use rand::RngExt;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::node::Answer;
use xor_overlay::storage::node_resource;
use xor_overlay::wire::{
    Body, DataValue, Destination, ModelSpecifier, PingReq, StoredDataSpecifier, StoredDataValue,
};

use xor_overlay::wire::Encode;
use xor_xmpp::XmppLocation;

use crate::sim::{BLOB, LIFETIME, LOCATION, Op, Pending, Sim};

impl Sim {
    /// Starts a measured request from `origin`.
    fn start(&mut self, origin: NodeId, op: Op, target: ResourceId, body: RequestBody) {
        {
            let mut s = self.seen.borrow_mut();
            s.capture = Some(origin);
            s.captured = None;
        }
        let now = self.now();
        let mut req = None;
        self.net.with(origin, |n| {
            req = Some(match body {
                RequestBody::Store(kinds) => n.store(target, kinds, LIFETIME, now),
                RequestBody::Fetch(spec) => n.fetch(target, spec, now),
                RequestBody::Ping => n.request(
                    vec![Destination::Resource(target)],
                    Body::PingReq(PingReq::default()),
                    now,
                ),
            });
        });
        let tid = {
            let mut s = self.seen.borrow_mut();
            s.capture = None;
            s.captured.take()
        };
        if let Some(r) = req {
            self.pending.insert(
                (origin, r),
                Pending {
                    op,
                    started: now,
                    tid,
                    target,
                },
            );
        }
    }

    pub(crate) fn register(&mut self, node: NodeId) {
        let Some(&u) = self.user_of.get(&node) else {
            return;
        };
        let value = StoredDataValue::Dictionary {
            key: Bytes::copy_from_slice(&node.to_be_bytes()),
            value: DataValue::new(
                XmppLocation::device(node, 10)
                    .to_bytes()
                    .unwrap_or_else(|_| Bytes::from_static(b"device location")),
            ),
        };
        let target = self.users[u].resource;
        self.start(
            node,
            Op::Register { user: u },
            target,
            RequestBody::Store(vec![(LOCATION, vec![value])]),
        );
    }

    pub(crate) fn workload(&mut self, op: u8) {
        let Some(origin) = self.random_joined() else {
            return;
        };
        match op {
            0 => {
                let candidates: Vec<usize> = (0..self.users.len())
                    .filter(|u| !self.users[*u].registered.is_empty())
                    .collect();
                if candidates.is_empty() {
                    return;
                }
                let user = candidates[self.rng.random_range(0..candidates.len())];
                let spec = StoredDataSpecifier {
                    kind: LOCATION,
                    generation: 0,
                    model_specifier: ModelSpecifier::Dictionary(vec![]),
                };
                let target = self.users[user].resource;
                self.start(
                    origin,
                    Op::Lookup { user },
                    target,
                    RequestBody::Fetch(vec![spec]),
                );
            }
            1 => {
                let value = StoredDataValue::Single(DataValue::new(Bytes::copy_from_slice(
                    &self.rng.random::<[u8; 32]>(),
                )));
                self.start(
                    origin,
                    Op::Store,
                    node_resource(origin),
                    RequestBody::Store(vec![(BLOB, vec![value])]),
                );
                // And read back a random earlier one.
                let owners: Vec<NodeId> = self
                    .blobs
                    .iter()
                    .copied()
                    .filter(|b| self.live.contains(b))
                    .collect();
                if !owners.is_empty() {
                    let owner = owners[self.rng.random_range(0..owners.len())];
                    let spec = StoredDataSpecifier {
                        kind: BLOB,
                        generation: 0,
                        model_specifier: ModelSpecifier::Single,
                    };
                    self.start(
                        origin,
                        Op::Fetch { owner },
                        node_resource(owner),
                        RequestBody::Fetch(vec![spec]),
                    );
                }
            }
            _ => {
                let target = ResourceId(self.rng.random());
                self.start(origin, Op::Ping, target, RequestBody::Ping);
            }
        }
    }

    /// Takes what the network reported since the last call.
    pub(crate) fn absorb(&mut self) {
        let (joined, responses) = {
            let mut s = self.seen.borrow_mut();
            (
                std::mem::take(&mut s.joined),
                std::mem::take(&mut s.responses),
            )
        };
        for id in joined {
            if self.live.contains(&id) && self.joined.insert(id) {
                self.register(id);
                self.chat_joined(id);
            }
        }
        for (at, node, req, result) in responses {
            if self.chat_answer(node, req, &result) {
                continue;
            }
            let Some(p) = self.pending.remove(&(node, req)) else {
                continue;
            };
            let deliveries = p
                .tid
                .and_then(|t| self.seen.borrow_mut().watched.remove(&t))
                .unwrap_or(0);
            let hops = deliveries / 2;
            let latency = at.saturating_duration_since(p.started);
            let responsible = self.responsible(p.target);
            match p.op {
                Op::Register { user } => {
                    if result.is_ok() && self.live.contains(&node) {
                        self.users[user].registered.insert(node);
                    }
                }
                Op::Lookup { .. } | Op::Fetch { .. } => {
                    let found = matches!(&result, Ok(Answer { body: Body::FetchAns(f), .. })
                        if f.kind_responses.iter().any(|k| k.values.parsed().iter().any(|v| v.value.data().exists)));
                    let correct = matches!(&result, Ok(a) if Some(a.from) == responsible);
                    let lookup = matches!(p.op, Op::Lookup { .. });
                    self.metrics
                        .lookup(lookup, result.is_ok(), found, correct, hops, latency);
                }
                Op::Ping => {
                    let correct = matches!(&result, Ok(a) if Some(a.from) == responsible);
                    self.metrics.ping(result.is_ok(), correct, hops, latency);
                }
                Op::Store => {
                    if result.is_ok() && !self.blobs.contains(&node) {
                        self.blobs.push(node);
                    }
                    self.metrics.store(result.is_ok());
                }
            }
        }
    }
}

/// What a measured request asks.
pub(crate) enum RequestBody {
    Store(Vec<(u32, Vec<StoredDataValue>)>),
    Fetch(Vec<StoredDataSpecifier>),
    Ping,
}
