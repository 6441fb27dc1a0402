//! Ring invariants after Zave ("Reasoning about identifier spaces: how to make Chord
//! correct", 2017), checked over a global snapshot of every live peer's neighbour
//! table. Tests and the simulator call [`check_ring`] after every step (safety:
//! one ring, ordered successor lists, no loops) and [`check_stable`] once the overlay
//! has had time to stabilise (every live peer on the ring with exactly the right
//! neighbours).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::id::{NodeId, distance};

/// One peer's view, as the checker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub id: NodeId,
    /// Its successor list, nearest first.
    pub successors: Vec<NodeId>,
    /// Its predecessor list, nearest first.
    pub predecessors: Vec<NodeId>,
}

/// A broken invariant, with enough detail to reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A peer lists itself as a neighbour.
    SelfInList(NodeId),
    /// A successor list is not in clockwise order from its owner.
    UnorderedSuccessors(NodeId),
    /// A predecessor list is not in counter-clockwise order.
    UnorderedPredecessors(NodeId),
    /// Following first live successors finds no cycle: every path ends at a peer
    /// without live successors, such as `dead_end`.
    NoRing {
        /// A peer none of whose successors is live.
        dead_end: NodeId,
    },
    /// More than one cycle of first successors.
    SeveralRings(usize),
    /// The ring skips or repeats identifiers: it wraps the identifier space more than
    /// once (a loop).
    RingWrapsTwice(usize),
    /// Stable state only: a live peer is not on the ring.
    NotOnRing(NodeId),
    /// Stable state only: a neighbour list differs from the true one.
    WrongNeighbors {
        /// The peer.
        id: NodeId,
        /// What the list should be.
        expected: Vec<NodeId>,
        /// What it is.
        actual: Vec<NodeId>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

fn ordered(owner: NodeId, list: &[NodeId], clockwise: bool) -> bool {
    let key = |n: &NodeId| {
        if clockwise {
            distance(owner.0, n.0)
        } else {
            distance(n.0, owner.0)
        }
    };
    list.windows(2).all(|w| key(&w[0]) < key(&w[1]))
}

/// Safety invariants, which must hold at every step, even during churn: no peer lists
/// itself, lists are ordered, first live successors form exactly one ring, and that
/// ring goes round the identifier space once.
pub fn check_ring(views: &[PeerView]) -> Result<(), Violation> {
    let live: HashSet<NodeId> = views.iter().map(|v| v.id).collect();
    let by_id: BTreeMap<NodeId, &PeerView> = views.iter().map(|v| (v.id, v)).collect();
    for v in views {
        if v.successors.contains(&v.id) || v.predecessors.contains(&v.id) {
            return Err(Violation::SelfInList(v.id));
        }
        if !ordered(v.id, &v.successors, true) {
            return Err(Violation::UnorderedSuccessors(v.id));
        }
        if !ordered(v.id, &v.predecessors, false) {
            return Err(Violation::UnorderedPredecessors(v.id));
        }
    }
    if views.len() <= 1 {
        return Ok(());
    }
    let best = |id: NodeId| {
        by_id
            .get(&id)
            .and_then(|v| v.successors.iter().copied().find(|s| live.contains(s)))
    };
    // Colour each peer by the cycle its successor path ends in.
    let mut cycle_of: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut cycles: Vec<Vec<NodeId>> = Vec::new();
    let mut dead_end = None;
    for start in by_id.keys().copied() {
        let mut path = Vec::new();
        let mut on_path: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut cur = Some(start);
        while let Some(n) = cur {
            if cycle_of.contains_key(&n) {
                break;
            }
            if let Some(&at) = on_path.get(&n) {
                cycles.push(path[at..].to_vec());
                break;
            }
            on_path.insert(n, path.len());
            path.push(n);
            cur = best(n);
            if cur.is_none() {
                dead_end.get_or_insert(n);
            }
        }
        let id = cycles.len().saturating_sub(1);
        for n in path {
            cycle_of.insert(n, id);
        }
    }
    match cycles.len() {
        0 => {
            return Err(Violation::NoRing {
                dead_end: dead_end.unwrap_or(views[0].id),
            });
        }
        1 => {}
        n => return Err(Violation::SeveralRings(n)),
    }
    let ring = &cycles[0];
    if ring.len() > 1 {
        let mut wraps = 0usize;
        for (i, n) in ring.iter().enumerate() {
            let next = ring[(i + 1) % ring.len()];
            if next.0 <= n.0 {
                wraps += 1;
            }
        }
        if wraps != 1 {
            return Err(Violation::RingWrapsTwice(wraps));
        }
    }
    Ok(())
}

/// The ideal state after stabilisation: the safety invariants, every live peer on the
/// ring, and every list exactly the `k` nearest live peers (fewer in small rings).
pub fn check_stable(views: &[PeerView], k: usize) -> Result<(), Violation> {
    check_ring(views)?;
    let mut ids: Vec<NodeId> = views.iter().map(|v| v.id).collect();
    ids.sort();
    let n = ids.len();
    for (i, v) in views.iter().enumerate() {
        let _ = i;
        let pos = ids.binary_search(&v.id).unwrap_or(0);
        let want = k.min(n - 1);
        let succ: Vec<NodeId> = (1..=want).map(|d| ids[(pos + d) % n]).collect();
        let pred: Vec<NodeId> = (1..=want).map(|d| ids[(pos + n - d) % n]).collect();
        if v.successors != succ {
            return Err(Violation::WrongNeighbors {
                id: v.id,
                expected: succ,
                actual: v.successors.clone(),
            });
        }
        if v.predecessors != pred {
            return Err(Violation::WrongNeighbors {
                id: v.id,
                expected: pred,
                actual: v.predecessors.clone(),
            });
        }
        if n > 1 && v.successors.is_empty() {
            return Err(Violation::NotOnRing(v.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ideal(ids: &[u128], k: usize) -> Vec<PeerView> {
        let n = ids.len();
        (0..n)
            .map(|i| PeerView {
                id: NodeId(ids[i]),
                successors: (1..=k.min(n - 1))
                    .map(|d| NodeId(ids[(i + d) % n]))
                    .collect(),
                predecessors: (1..=k.min(n - 1))
                    .map(|d| NodeId(ids[(i + n - d) % n]))
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn an_ideal_ring_passes() {
        let views = ideal(&[10, 20, 30, 40, 50], 3);
        assert_eq!(check_ring(&views), Ok(()));
        assert_eq!(check_stable(&views, 3), Ok(()));
    }

    #[test]
    fn two_rings_are_caught() {
        let mut views = ideal(&[10, 20, 30, 40], 1);
        views[1].successors = vec![NodeId(10)];
        views[3].successors = vec![NodeId(30)];
        assert_eq!(check_ring(&views), Err(Violation::SeveralRings(2)));
    }

    #[test]
    fn a_ring_wrapping_twice_is_a_loop() {
        let mut views = ideal(&[10, 20, 30, 40], 1);
        // 10 → 30 → 20 → 40 → 10 wraps the space twice.
        views[0].successors = vec![NodeId(30)];
        views[2].successors = vec![NodeId(20)];
        views[1].successors = vec![NodeId(40)];
        assert_eq!(check_ring(&views), Err(Violation::RingWrapsTwice(2)));
    }

    #[test]
    fn a_peer_without_live_successors_breaks_the_ring() {
        // 30 and 40 died; 20 lists only them, so every path stops at 20.
        let mut views = ideal(&[10, 20, 30, 40], 2);
        views.truncate(2);
        views[0].successors = vec![NodeId(20)];
        assert_eq!(
            check_ring(&views),
            Err(Violation::NoRing {
                dead_end: NodeId(20)
            })
        );
    }

    #[test]
    fn unordered_lists_and_self_entries_are_caught() {
        let mut views = ideal(&[10, 20, 30, 40], 2);
        views[0].successors = vec![NodeId(30), NodeId(20)];
        assert_eq!(
            check_ring(&views),
            Err(Violation::UnorderedSuccessors(NodeId(10)))
        );
        let mut views = ideal(&[10, 20, 30], 2);
        views[0].predecessors = vec![NodeId(10)];
        assert_eq!(check_ring(&views), Err(Violation::SelfInList(NodeId(10))));
    }

    #[test]
    fn dead_successors_are_skipped_and_stale_lists_fail_stability() {
        // 20 died; 10 still lists it first but its next live successor is right.
        let mut views = ideal(&[10, 20, 30, 40], 2);
        views.remove(1);
        views[0].successors = vec![NodeId(20), NodeId(30)];
        assert_eq!(check_ring(&views), Ok(()));
        assert!(matches!(
            check_stable(&views, 2),
            Err(Violation::WrongNeighbors { .. })
        ));
    }
}
