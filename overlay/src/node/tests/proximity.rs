//! Proximity neighbour selection (`node::proximity`): fingers end up nearer in
//! round-trip time than the peers the finger search alone finds.

use std::time::Duration;

use rand_chacha::ChaCha12Rng;

use super::{Ring, routing, secs};
use crate::chord::table::finger_start;
use crate::id::NodeId;
use crate::node::proximity::{FAST, FAST_SAMPLES};
use crate::testnet::LatencyModel;

/// A fixed one-way delay per pair of nodes, 5 to 100 ms, the same both ways.
struct PairLatency;

fn pair_delay(a: NodeId, b: NodeId) -> Duration {
    let (x, y) = if a < b { (a.0, b.0) } else { (b.0, a.0) };
    let h = (x ^ y.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    Duration::from_millis(5 + ((h >> 64) as u64 % 96))
}

impl LatencyModel for PairLatency {
    fn delay(&mut self, from: NodeId, to: NodeId, _: &mut ChaCha12Rng) -> Duration {
        pair_delay(from, to)
    }
}

#[test]
fn fingers_are_nearer_than_the_peers_at_the_start_of_their_intervals() {
    let mut r = Ring::with_latency(41, PairLatency);
    for _ in 0..40 {
        r.add();
        r.settle(secs(60));
    }
    // Every node has taken its first samples.
    r.run_checked(FAST * (FAST_SAMPLES + 2));
    r.assert_stable();
    let (mut chosen, mut natural, mut fingers) = (Duration::ZERO, Duration::ZERO, 0u32);
    for id in r.live() {
        let n = r.net.node(id).expect("live");
        for (i, f) in n.table().finger_entries() {
            if n.table().is_neighbor(f) {
                continue;
            }
            // Without proximity the search finds the peer responsible for the start.
            let first = routing::responsible(&r, finger_start(id, i));
            chosen += pair_delay(id, f);
            natural += pair_delay(id, first);
            fingers += 1;
        }
    }
    assert!(fingers > 100, "{fingers} fingers beyond the neighbours");
    let (chosen, natural) = (chosen / fingers, natural / fingers);
    assert!(
        chosen * 4 < natural * 3,
        "mean finger delay {chosen:?} is not a quarter below the {natural:?} of the peers at the interval starts"
    );
    // Routing over the chosen fingers still reaches the responsible node.
    routing::assert_pings_reach_the_responsible_nodes(&mut r, 3 << 125);
}
