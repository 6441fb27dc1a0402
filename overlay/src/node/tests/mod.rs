//! The node core in virtual time: joins into 1, 2, 3 and 20-node rings, concurrent
//! joins, silent failures, leaves, routing; the ring invariants are asserted after
//! every event.

mod app_attach;
mod bad_input;
mod client;
mod links;
mod proximity;
mod recovery;
mod ring;
mod routing;
mod storage;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::chord::{check_ring, check_stable};
use crate::id::NodeId;
use crate::identity::testca::TestCa;
use crate::node::{Event, JoinFailure, JoinState, NodeConfig};
use crate::testnet::{ConstantLatency, VirtualNet};
use crate::time::Instant;

pub(crate) const OVERLAY: &str = "ring.example";

/// A network whose node `i` listens on `VirtualNet::address_of(i)` and bootstraps from
/// node 0, which may start the overlay.
pub(crate) struct Ring {
    pub(crate) net: VirtualNet,
    pub(crate) ca: TestCa,
    pub(crate) ids: Vec<NodeId>,
    rng: ChaCha12Rng,
}

impl Ring {
    pub(crate) fn new(seed: u64) -> Ring {
        Ring::with_latency(seed, ConstantLatency(Duration::from_millis(10)))
    }

    /// An empty network whose links have the delays of `latency`.
    pub(crate) fn with_latency(
        seed: u64,
        latency: impl crate::testnet::LatencyModel + 'static,
    ) -> Ring {
        Ring {
            net: VirtualNet::new(seed, latency),
            ca: TestCa::new(OVERLAY, seed),
            ids: Vec::new(),
            rng: ChaCha12Rng::seed_from_u64(seed ^ 0x5eed),
        }
    }

    pub(crate) fn config(&mut self, id: NodeId) -> NodeConfig {
        let i = self.ids.len() as u32;
        self.config_at(i, id)
    }

    /// The configuration of node `i` (address, bootstrap role) with Node-ID `id`.
    pub(crate) fn config_at(&mut self, i: u32, id: NodeId) -> NodeConfig {
        let creds = self.ca.node(&format!("node{i}@{OVERLAY}"), id);
        let mut cfg = NodeConfig::new(OVERLAY, creds, self.ca.trust_store());
        cfg.listen_addr = Some(VirtualNet::address_of(i));
        cfg.bootstrap = vec![VirtualNet::address_of(0)];
        cfg.may_start_overlay = i == 0;
        cfg.chord_update_interval = Duration::from_secs(20);
        cfg.chord_ping_interval = Duration::from_secs(120);
        cfg.epoch_unix_ms = 1_800_000_000_000;
        cfg.seed = self.rng.next_u64();
        cfg.kinds = test_kinds();
        cfg
    }

    /// A ring of `n` nodes added one at a time, each given up to a minute to settle.
    pub(crate) fn grown(seed: u64, n: usize) -> Ring {
        let mut r = Ring::new(seed);
        for _ in 0..n {
            r.add();
            r.settle(secs(60));
        }
        r
    }

    /// Adds a node with a random Node-ID and starts its join.
    pub(crate) fn add(&mut self) -> NodeId {
        let id = NodeId((self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128);
        self.add_with(id)
    }

    pub(crate) fn rng_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    pub(crate) fn add_with(&mut self, id: NodeId) -> NodeId {
        let cfg = self.config(id);
        let id = self.net.add(cfg);
        self.ids.push(id);
        self.net.join(id);
        id
    }

    pub(crate) fn live(&self) -> Vec<NodeId> {
        self.net.live()
    }

    /// Runs for `d`, asserting the safety invariants after every event.
    pub(crate) fn run_checked(&mut self, d: Duration) {
        let until = self.net.now() + d;
        self.net.run_until_checked(until, |net| {
            if let Err(v) = check_ring(&net.views()) {
                let short = |v: &[NodeId]| {
                    v.iter()
                        .map(|x| format!("{:04x}", x.0 >> 112))
                        .collect::<Vec<_>>()
                };
                for id in net.live() {
                    let n = net.node(id).expect("live");
                    eprintln!(
                        "{:04x} {:?} succ={:?} pred={:?}",
                        id.0 >> 112,
                        n.state(),
                        short(n.table().successors()),
                        short(n.table().predecessors())
                    );
                }
                panic!("ring invariant broken at {:?}: {v}", net.now());
            }
        });
    }

    /// Runs until every live node has joined (bounded), checking invariants.
    pub(crate) fn settle(&mut self, max: Duration) {
        let deadline = self.net.now() + max;
        while self.net.now() < deadline {
            self.run_checked(Duration::from_secs(1));
            let all_joined = self.live().iter().all(|id| {
                self.net
                    .node(*id)
                    .is_some_and(|n| n.state() == JoinState::Joined)
            });
            if all_joined && check_stable(&self.net.views(), 3).is_ok() {
                return;
            }
        }
    }

    pub(crate) fn assert_stable(&self) {
        let views = self.net.views();
        assert_eq!(views.len(), self.live().len(), "every live node has joined");
        if let Err(v) = check_stable(&views, 3) {
            panic!("not stable at {:?}: {v}", self.net.now());
        }
    }

    pub(crate) fn joined_events(&self, id: NodeId) -> usize {
        self.net
            .events
            .iter()
            .filter(|(_, n, e)| *n == id && *e == Event::Joined)
            .count()
    }
}

/// Kinds for storage tests: 200 single, 201 array, 202 dictionary, all USER-MATCH
/// (the dictionary USER-NODE-MATCH).
pub(crate) fn test_kinds() -> crate::storage::KindTable {
    use crate::storage::{KindDef, KindTable, Policy};
    use crate::wire::DataModel;
    let mut kinds = KindTable::default();
    for (id, model, policy) in [
        (200, DataModel::Single, Policy::UserMatch),
        (201, DataModel::Array, Policy::UserMatch),
        (202, DataModel::Dictionary, Policy::UserNodeMatch),
    ] {
        kinds.insert(KindDef {
            id,
            name: format!("TEST-{id}"),
            model,
            policy,
            max_count: 100,
            max_size: 1000,
        });
    }
    kinds
}

/// [`Ring::grown`], asserted stable.
pub(crate) fn ring_of(n: usize, seed: u64) -> Ring {
    let r = Ring::grown(seed, n);
    r.assert_stable();
    r
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[allow(dead_code)]
pub(crate) fn at(s: u64) -> Instant {
    Instant::from_secs(s)
}
