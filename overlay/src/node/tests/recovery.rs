//! Failure detection and per-hop recovery (§6.6.3, §6.6.5; Bamboo's per-hop
//! timeouts): a silent peer is suspect within the link's keep-alive plus one RTO, a
//! request it did not acknowledge is routed around it at once, and a Fetch for data
//! whose responsible node went silent is answered by the replica that takes over.

use super::routing::responsible;
use super::storage::{answer, responsible_and_next_two, start_fetch, store};
use super::*;
use crate::chord::NextHop;
use crate::id::ResourceId;
use crate::link::KEEPALIVE;
use crate::node::RequestId;
use crate::wire::{Body, Destination};

/// When `node`'s request `req` was answered.
fn answered_at(r: &Ring, node: NodeId, req: RequestId) -> Option<Instant> {
    r.net.events.iter().find_map(|(at, n, e)| match e {
        Event::Response { request, .. } if *request == req && *n == node => Some(*at),
        _ => None,
    })
}

fn next_hop(r: &Ring, at: NodeId, k: u128) -> Option<NodeId> {
    let n = r.net.node(at)?;
    if n.table().is_responsible(k) {
        return None;
    }
    match n.table().closest_preceding(k) {
        NextHop::Peer(p) => Some(p),
        _ => None,
    }
}

#[test]
fn a_hop_failing_mid_route_is_routed_around_without_a_retransmission_rfc6940_6_6_3() {
    let mut r = ring_of(20, 60);
    let reliability = r.net.node(r.ids[0]).unwrap().config().reliability_timer;
    // An origin, a key and the second hop of its route, which is neither the origin
    // nor the node responsible for the key.
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let (origin, k, victim) = (0..1000)
        .find_map(|_| {
            let origin = r.ids[(rng.next_u64() % r.ids.len() as u64) as usize];
            let k = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
            let first = next_hop(&r, origin, k)?;
            let second = next_hop(&r, first, k)?;
            (second != origin && second != responsible(&r, k)).then_some((origin, k, second))
        })
        .expect("a route of three hops or more");
    r.net.kill(victim);
    let req = r
        .net
        .request(
            origin,
            vec![Destination::Resource(ResourceId(k))],
            Body::PingReq(Default::default()),
        )
        .unwrap();
    let sent = r.net.now();
    // Answered before the origin's first retransmission (§6.2.1) would leave.
    r.net.run_for(reliability - Duration::from_millis(1));
    let a = answer(&r, origin, req)
        .expect("answered before the first retransmission")
        .expect("a ping answer");
    assert_eq!(a.from, responsible(&r, k), "by the responsible node");
    let took = answered_at(&r, origin, req).unwrap() - sent;
    assert!(took < reliability, "{took:?}");
}

#[test]
fn a_fetch_is_answered_by_the_replica_while_the_responsible_node_is_silent_rfc6940_10_4() {
    let mut r = ring_of(8, 61);
    let res = store(&mut r, 1, b"replicated");
    let holders = responsible_and_next_two(&r, res);
    let owner = responsible(&r, res.0);
    r.net.kill(owner);
    let reader = r
        .live()
        .into_iter()
        .find(|n| !holders.contains(n))
        .expect("a node holding no copy");
    let now = r.net.now();
    let req = start_fetch(&mut r, reader, res);
    // Long before the dead owner's links fail (RTO + 30 s, §6.6.5).
    r.run_checked(secs(5));
    let a = answer(&r, reader, req)
        .expect("answered")
        .expect("a fetch answer");
    assert_eq!(
        a.from,
        responsible(&r, res.0),
        "the owner's successor answers"
    );
    assert!(holders.contains(&a.from), "from its replica");
    let Body::FetchAns(ans) = a.body else {
        panic!("not a FetchAns")
    };
    let v = ans.kind_responses[0].values.parsed()[0]
        .value
        .data()
        .clone();
    assert_eq!(&v.value[..], b"replicated");
    assert!(answered_at(&r, reader, req).unwrap() - now < secs(5));
}

#[test]
fn a_silent_neighbour_leaves_every_routing_table_within_keepalive_and_rto() {
    let mut r = ring_of(8, 62);
    // Quiet: no periodic Update falls into the window below.
    r.run_checked(secs(2));
    let victim = r.ids[5];
    let knew: Vec<NodeId> = r
        .live()
        .into_iter()
        .filter(|n| r.net.node(*n).unwrap().table().contains(victim))
        .collect();
    assert!(knew.len() >= 3, "the victim is someone's neighbour");
    r.net.kill(victim);
    // The bound: the keep-alive is due at most KEEPALIVE after the peer was last
    // heard, and is suspect one RTO (1 s: RFC 6298's minimum, §6.6.5) later.
    r.net
        .run_for(KEEPALIVE + secs(1) + Duration::from_millis(100));
    for n in r.live() {
        assert!(
            !r.net.node(n).unwrap().table().contains(victim),
            "{n} still routes through the silent {victim}"
        );
    }
    r.settle(secs(30));
    r.assert_stable();
}
