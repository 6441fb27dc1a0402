//! The CHORD-RELOAD routing table (§10.1, §10.3): a neighbour table of predecessors
//! and successors plus a finger table, and the routing decisions made from them.
//!
//! Finger `i` (1-based, as in §10.5) is valid for a peer in
//! `[me + 2^(128-i), me + 2^(128-(i-1)) - 1]`: finger 1 is half way round the ring.

use std::collections::BTreeMap;

use crate::id::{NodeId, distance, in_interval_open, in_interval_open_closed};

/// What the table decides for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// This peer is responsible.
    Local,
    /// Forward to this peer.
    Peer(NodeId),
    /// Nobody to forward to.
    Nowhere,
}

/// Predecessors, successors and fingers of one peer.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    me: NodeId,
    /// Nearest first, counter-clockwise.
    predecessors: Vec<NodeId>,
    /// Nearest first, clockwise.
    successors: Vec<NodeId>,
    /// Finger index (1..=128) → peer.
    fingers: BTreeMap<u8, NodeId>,
    neighbors: usize,
    /// Fingers are chosen by round-trip time (`set_finger`), so a found peer does not
    /// replace one for lying nearer the interval's start.
    proximity: bool,
}

/// Start of finger `i`'s interval: `me + 2^(128-i)`.
pub fn finger_start(me: NodeId, i: u8) -> u128 {
    me.0.wrapping_add(1u128 << (128 - i as u32))
}

/// Whether `peer` is valid for finger `i` (§10.7.4.2).
pub fn finger_valid(me: NodeId, i: u8, peer: NodeId) -> bool {
    let d = distance(me.0, peer.0);
    let lo = 1u128 << (128 - i as u32);
    let hi = if i == 1 {
        u128::MAX
    } else {
        (1u128 << (129 - i as u32)) - 1
    };
    lo <= d && d <= hi
}

/// The finger index a peer would fill, if any.
pub fn finger_index(me: NodeId, peer: NodeId) -> Option<u8> {
    let d = distance(me.0, peer.0);
    (d != 0).then(|| (d.leading_zeros() + 1) as u8)
}

impl RoutingTable {
    /// An empty table for `me` keeping `neighbors` predecessors and successors.
    pub fn new(me: NodeId, neighbors: usize) -> RoutingTable {
        RoutingTable {
            me,
            predecessors: Vec::new(),
            successors: Vec::new(),
            fingers: BTreeMap::new(),
            neighbors: neighbors.max(1),
            proximity: false,
        }
    }

    /// Lets the owner choose fingers by round-trip time ([`RoutingTable::set_finger`]):
    /// [`RoutingTable::add`] then keeps the first peer found for a finger instead of
    /// the one nearest the interval's start.
    pub fn with_proximity(mut self, on: bool) -> RoutingTable {
        self.proximity = on;
        self
    }

    /// This peer's Node-ID.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Predecessors, nearest first.
    pub fn predecessors(&self) -> &[NodeId] {
        &self.predecessors
    }

    /// Successors, nearest first.
    pub fn successors(&self) -> &[NodeId] {
        &self.successors
    }

    /// The finger table in ascending Node-ID order (as `full` updates carry it).
    pub fn fingers(&self) -> Vec<NodeId> {
        let mut f: Vec<NodeId> = self.fingers.values().copied().collect();
        f.sort();
        f.dedup();
        f
    }

    /// Finger entries by index.
    pub fn finger_entries(&self) -> impl Iterator<Item = (u8, NodeId)> + '_ {
        self.fingers.iter().map(|(i, n)| (*i, *n))
    }

    /// Every peer in the table.
    pub fn peers(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .predecessors
            .iter()
            .chain(&self.successors)
            .chain(self.fingers.values())
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The neighbour table (predecessors and successors, each once).
    pub fn neighbors(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .predecessors
            .iter()
            .chain(&self.successors)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Whether `peer` is in the neighbour table.
    pub fn is_neighbor(&self, peer: NodeId) -> bool {
        self.predecessors.contains(&peer) || self.successors.contains(&peer)
    }

    /// Whether `peer` is anywhere in the table.
    pub fn contains(&self, peer: NodeId) -> bool {
        self.is_neighbor(peer) || self.fingers.values().any(|f| *f == peer)
    }

    /// Whether this peer is responsible for `k`: `k` in `(predecessor, me]` (§10.1).
    pub fn is_responsible(&self, k: u128) -> bool {
        match self.predecessors.first() {
            None => true,
            Some(p) => in_interval_open_closed(k, p.0, self.me.0),
        }
    }

    /// Fraction of the ring this peer is responsible for, in parts per billion (§6.4.2.5).
    pub fn responsible_ppb(&self) -> u32 {
        match self.predecessors.first() {
            None => 1_000_000_000,
            Some(p) => {
                let d = distance(p.0, self.me.0);
                ((d >> 64) as f64 / 2f64.powi(64) * 1e9).round() as u32
            }
        }
    }

    /// §10.3: a directly connected peer with Node-ID `k`; else the largest peer in
    /// `(me, k)`; else the smallest peer after `k`.
    pub fn next_hop(&self, k: u128) -> NextHop {
        if self.is_responsible(k) {
            return NextHop::Local;
        }
        self.closest_preceding(k)
    }

    /// The peer responsible for `k` when `k` lies between two adjacent entries of the
    /// neighbour table (predecessors, this node and successors are consecutive on the
    /// ring): a Resource-ID is then routed straight to its node instead of through its
    /// predecessor. `None` outside that span, or when this node is responsible.
    pub fn known_owner(&self, k: u128) -> Option<NodeId> {
        let chain: Vec<NodeId> = self
            .predecessors
            .iter()
            .rev()
            .copied()
            .chain(std::iter::once(self.me))
            .chain(self.successors.iter().copied())
            .collect();
        chain
            .windows(2)
            .find(|w| w[0] != w[1] && in_interval_open_closed(k, w[0].0, w[1].0))
            .map(|w| w[1])
            .filter(|n| *n != self.me)
    }

    /// The routing choice ignoring responsibility (used for Node-ID destinations).
    pub fn closest_preceding(&self, k: u128) -> NextHop {
        let peers = self.peers();
        if let Some(exact) = peers.iter().find(|p| p.0 == k) {
            return NextHop::Peer(*exact);
        }
        let preceding = peers
            .iter()
            .filter(|p| in_interval_open(p.0, self.me.0, k))
            .max_by_key(|p| distance(self.me.0, p.0));
        if let Some(p) = preceding {
            return NextHop::Peer(*p);
        }
        peers
            .iter()
            .min_by_key(|p| distance(k, p.0))
            .map_or(NextHop::Nowhere, |p| NextHop::Peer(*p))
    }

    /// Whether `candidate` would enter the neighbour table.
    pub fn would_be_neighbor(&self, candidate: NodeId) -> bool {
        if candidate == self.me || self.is_neighbor(candidate) {
            return false;
        }
        let d_succ = distance(self.me.0, candidate.0);
        let d_pred = distance(candidate.0, self.me.0);
        self.successors.len() < self.neighbors
            || self.predecessors.len() < self.neighbors
            || self
                .successors
                .last()
                .is_some_and(|s| d_succ < distance(self.me.0, s.0))
            || self
                .predecessors
                .last()
                .is_some_and(|p| d_pred < distance(p.0, self.me.0))
    }

    /// Adds a connected peer. Returns whether the neighbour table changed.
    pub fn add(&mut self, peer: NodeId) -> bool {
        if peer == self.me {
            return false;
        }
        let before = (self.predecessors.clone(), self.successors.clone());
        let me = self.me.0;
        insert_sorted(&mut self.successors, peer, self.neighbors, |p| {
            distance(me, p.0)
        });
        insert_sorted(&mut self.predecessors, peer, self.neighbors, |p| {
            distance(p.0, me)
        });
        if let Some(i) = finger_index(self.me, peer) {
            // Any peer in the interval serves (§10.7.4.2). With proximity the first
            // found stays until the owner finds a nearer one (`set_finger`); without,
            // one nearer the interval's start replaces it.
            let start = finger_start(self.me, i);
            let better = self.fingers.get(&i).is_none_or(|cur| {
                !self.proximity && distance(start, peer.0) < distance(start, cur.0)
            });
            if better {
                self.fingers.insert(i, peer);
            }
        }
        (self.predecessors.clone(), self.successors.clone()) != before
    }

    /// The peer in finger `i`, if any.
    pub fn finger(&self, i: u8) -> Option<NodeId> {
        self.fingers.get(&i).copied()
    }

    /// Makes `peer` finger `i` if it is valid there (§10.7.4.2). Returns whether it is.
    pub fn set_finger(&mut self, i: u8, peer: NodeId) -> bool {
        let valid = peer != self.me && finger_valid(self.me, i, peer);
        if valid {
            self.fingers.insert(i, peer);
        }
        valid
    }

    /// Removes a peer everywhere (failure or leave). Returns whether the neighbour table
    /// changed.
    pub fn remove(&mut self, peer: NodeId) -> bool {
        let was = self.is_neighbor(peer);
        self.predecessors.retain(|p| *p != peer);
        self.successors.retain(|p| *p != peer);
        self.fingers.retain(|_, f| *f != peer);
        was
    }

    /// Re-fills the neighbour table from the remaining fingers after a removal
    /// (§10.7.1: "replace it with the best match it has from the other peers").
    pub fn refill_from(&mut self, peers: impl IntoIterator<Item = NodeId>) -> bool {
        let mut changed = false;
        for p in peers {
            changed |= self.add(p);
        }
        changed
    }

    /// Whether `point` lies between this peer and its last successor, so the peer
    /// responsible for it is a successor already known: no search can find a better
    /// one (§10.7.4.2).
    pub fn successors_cover(&self, point: u128) -> bool {
        self.successors
            .last()
            .is_some_and(|s| distance(self.me.0, point) <= distance(self.me.0, s.0))
    }

    /// How many fingers to maintain: at least 16, and enough that the smallest finger
    /// interval reaches the last successor (§10.7.4.3).
    pub fn finger_count(&self) -> u8 {
        let needed = match self.successors.last() {
            Some(s) => {
                let d = distance(self.me.0, s.0).max(1);
                (d.leading_zeros() + 1) as u8
            }
            None => 16,
        };
        needed.clamp(16, 128)
    }

    /// Finger indices without a valid entry, in ascending order (§10.7.4.2).
    pub fn invalid_fingers(&self) -> Vec<u8> {
        (1..=self.finger_count())
            .filter(|i| {
                self.fingers
                    .get(i)
                    .is_none_or(|p| !finger_valid(self.me, *i, *p))
            })
            .collect()
    }
}

/// Inserts `peer` into a list sorted by `key`, keeping at most `cap` entries.
fn insert_sorted(list: &mut Vec<NodeId>, peer: NodeId, cap: usize, key: impl Fn(&NodeId) -> u128) {
    if list.contains(&peer) {
        return;
    }
    let k = key(&peer);
    let at = list.iter().position(|p| key(p) > k).unwrap_or(list.len());
    if at < cap {
        list.insert(at, peer);
        list.truncate(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(me: u128, peers: &[u128]) -> RoutingTable {
        let mut t = RoutingTable::new(NodeId(me), 3);
        for p in peers {
            t.add(NodeId(*p));
        }
        t
    }

    #[test]
    fn neighbors_are_the_nearest_three_each_way_rfc6940_10_1() {
        let t = table(100, &[10, 50, 90, 110, 150, 200, 250]);
        assert_eq!(t.successors(), &[NodeId(110), NodeId(150), NodeId(200)]);
        assert_eq!(t.predecessors(), &[NodeId(90), NodeId(50), NodeId(10)]);
    }

    #[test]
    fn small_rings_wrap_around() {
        let t = table(100, &[50, 150]);
        assert_eq!(t.successors(), &[NodeId(150), NodeId(50)]);
        assert_eq!(t.predecessors(), &[NodeId(50), NodeId(150)]);
    }

    #[test]
    fn responsibility_is_predecessor_exclusive_self_inclusive_rfc6940_10_1() {
        let t = table(100, &[50, 150]);
        assert!(t.is_responsible(100));
        assert!(t.is_responsible(51));
        assert!(!t.is_responsible(50));
        assert!(!t.is_responsible(101));
        assert!(
            RoutingTable::new(NodeId(1), 3).is_responsible(12345),
            "alone: everything"
        );
    }

    #[test]
    fn next_hop_is_the_closest_preceding_peer_rfc6940_10_3() {
        let t = table(100, &[50, 150, 200, 1000]);
        assert_eq!(t.next_hop(180), NextHop::Peer(NodeId(150)));
        assert_eq!(
            t.next_hop(200),
            NextHop::Peer(NodeId(200)),
            "directly connected"
        );
        assert_eq!(
            t.next_hop(120),
            NextHop::Peer(NodeId(150)),
            "no peer in (me, k): smallest after k"
        );
        assert_eq!(t.next_hop(75), NextHop::Local);
        assert_eq!(t.next_hop(5000), NextHop::Peer(NodeId(1000)));
    }

    #[test]
    fn finger_intervals_rfc6940_10_7_4_2() {
        let me = NodeId(0);
        assert_eq!(finger_start(me, 1), 1 << 127);
        assert!(finger_valid(me, 1, NodeId(u128::MAX)));
        assert!(finger_valid(me, 1, NodeId(1 << 127)));
        assert!(!finger_valid(me, 1, NodeId((1 << 127) - 1)));
        assert!(finger_valid(me, 2, NodeId((1 << 127) - 1)));
        assert_eq!(finger_index(me, NodeId(1 << 126)), Some(2));
        assert_eq!(finger_index(me, NodeId(1)), Some(128));
    }

    #[test]
    fn removal_reports_neighbour_changes() {
        let mut t = table(100, &[50, 150, 1 << 120]);
        assert!(t.remove(NodeId(150)));
        assert!(!t.contains(NodeId(150)));
        assert_eq!(t.successors()[0], NodeId(1 << 120));
    }

    #[test]
    fn finger_count_grows_with_a_dense_ring_rfc6940_10_7_4_3() {
        let t = table(0, &[1 << 100, 2 << 100, 3 << 100]);
        assert_eq!(t.finger_count(), 27);
        assert_eq!(table(0, &[1 << 127]).finger_count(), 16);
    }

    #[test]
    fn points_up_to_the_last_successor_need_no_search_rfc6940_10_7_4_2() {
        let t = table(100, &[10, 50, 90, 110, 150, 200, 250]);
        assert!(t.successors_cover(101));
        assert!(t.successors_cover(200));
        assert!(!t.successors_cover(201));
        assert!(!t.successors_cover(5));
        assert!(!RoutingTable::new(NodeId(100), 3).successors_cover(101));
    }
}
