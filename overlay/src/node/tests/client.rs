//! Client mode (§4.2.1): a node linked to the peer responsible for its Node-ID,
//! reachable by that Node-ID through it, storing nothing for others, moving when
//! responsibility moves.

use bytes::Bytes;

use super::storage::start_store;
use super::*;
use crate::id::ResourceId;
use crate::node::{Answer, RequestError, RequestId};
use crate::wire::{Body, DataValue, Destination, StoredDataValue};

fn answer(r: &Ring, node: NodeId, req: RequestId) -> Option<Result<Answer, RequestError>> {
    r.net.events.iter().find_map(|(_, n, e)| match e {
        Event::Response { request, result } if *request == req && *n == node => {
            Some(result.clone())
        }
        _ => None,
    })
}

fn ping(r: &mut Ring, from: NodeId, to: NodeId) -> Result<Answer, RequestError> {
    let req = r
        .net
        .request(
            from,
            vec![Destination::Node(to)],
            Body::PingReq(Default::default()),
        )
        .unwrap();
    r.run_checked(secs(20));
    answer(r, from, req).expect("an answer or an error within 20 s")
}

/// Adds a client with Node-ID `id` as node number `i` and lets it settle.
fn add_client(r: &mut Ring, i: u32, id: NodeId) -> NodeId {
    let mut cfg = r.config_at(i, id);
    cfg.client = true;
    cfg.client_check_interval = secs(30);
    let id = r.net.add(cfg);
    r.net.join(id);
    r.run_checked(secs(30));
    id
}

fn in_any_table(r: &Ring, id: NodeId) -> bool {
    r.live().iter().filter(|n| **n != id).any(|n| {
        let t = r.net.node(*n).unwrap().table();
        t.contains(id)
    })
}

#[test]
fn a_client_is_reached_by_its_node_id_through_its_peer_rfc6940_4_2_1() {
    let mut r = Ring::new(40);
    for i in 0..5u128 {
        r.add_with(NodeId((i * 3 + 1) << 123));
        r.settle(secs(60));
    }
    r.assert_stable();
    r.net.record_events(true);
    // Between the second and third peers: the third is responsible for it.
    let c = add_client(&mut r, 5, NodeId((5 << 123) + 77));
    let responsible = NodeId(7 << 123);
    let node = r.net.node(c).unwrap();
    assert_eq!(node.state(), JoinState::Client { peer: responsible });
    assert_eq!(node.client_of(), Some(responsible));
    assert_eq!(r.joined_events(c), 1, "a client is in the overlay once");
    assert!(
        node.table().peers().is_empty(),
        "a client learns no neighbours"
    );
    assert!(
        !in_any_table(&r, c),
        "no peer puts a client in its routing table"
    );
    // The peers' ring is untouched (the checker sees only joined peers).
    check_stable(&r.net.views(), 3).unwrap();
    // Every peer reaches the client by its Node-ID, and the client every peer.
    for p in r.ids.clone() {
        assert!(ping(&mut r, p, c).is_ok(), "{p} pings the client");
        assert!(ping(&mut r, c, p).is_ok(), "the client pings {p}");
    }
}

#[test]
fn a_client_stores_and_fetches_but_holds_nothing_for_others() {
    let mut r = ring_of(6, 41);
    r.net.record_events(true);
    let c = add_client(&mut r, 6, NodeId(0x1234 << 100));
    assert!(matches!(
        r.net.node(c).unwrap().state(),
        JoinState::Client { .. }
    ));
    // The client's own store goes through its peer and is answered.
    let res = ResourceId::of_name(format!("node6@{OVERLAY}").as_bytes());
    let req = start_store(&mut r, c, res, b"client data", secs(3600));
    r.run_checked(secs(20));
    assert!(answer(&r, c, req).unwrap().is_ok());
    // Peers store a lot: none of it lands on the client.
    for (i, p) in r.ids.clone().into_iter().enumerate() {
        let res = ResourceId::of_name(format!("node{i}@{OVERLAY}").as_bytes());
        let now = r.net.now();
        r.net.with(p, |n| {
            let v = StoredDataValue::Single(DataValue::new(Bytes::from_static(b"x")));
            n.store(res, vec![(200, vec![v])], secs(3600), now);
        });
    }
    r.run_checked(secs(60));
    assert_eq!(r.net.node(c).unwrap().storage().values(), 0);
}

#[test]
fn a_client_moves_when_a_peer_takes_over_its_node_id_and_when_its_peer_dies() {
    let mut r = Ring::new(42);
    for i in 0..4u128 {
        r.add_with(NodeId((i * 4 + 1) << 124));
        r.settle(secs(60));
    }
    let c = add_client(&mut r, 4, NodeId((5 << 124) + 100));
    let first = NodeId(9 << 124);
    assert_eq!(r.net.node(c).unwrap().client_of(), Some(first));
    // A new peer right after the client takes over its Node-ID.
    let closer = NodeId((5 << 124) + 200);
    let cfg = r.config_at(5, closer);
    r.net.add(cfg);
    r.ids.push(closer);
    r.net.join(closer);
    r.settle(secs(60));
    r.run_checked(secs(40)); // one client check
    assert_eq!(r.net.node(c).unwrap().client_of(), Some(closer));
    r.net.record_events(true);
    assert!(ping(&mut r, NodeId(1 << 124), c).is_ok());
    // Its peer fails: the client bootstraps again and lands on the next one.
    r.net.kill(closer);
    r.run_checked(secs(120));
    assert_eq!(r.net.node(c).unwrap().client_of(), Some(first));
    assert!(ping(&mut r, NodeId(1 << 124), c).is_ok());
}

/// A peer behind a NAT (it dials out, nobody dials it) whose place on the ring is
/// next to another such node cannot take that place; with `client_fallback` it takes
/// part as a client instead (§4.2.1) and says nothing of a failed join. Its
/// responsible peer is the unreachable one, so it goes through a linked peer (§4.2.1's
/// second option) and is reached along the Destination List [that peer, itself].
#[test]
fn a_peer_that_cannot_link_to_its_neighbours_falls_back_to_a_client_rfc6940_4_2_1() {
    let mut r = Ring::new(13);
    for i in 0..4u128 {
        r.add_with(NodeId((i * 4 + 1) << 124));
        r.settle(secs(60));
    }
    // x (unreachable) sits between two reachable nodes; y (unreachable) right before
    // x, so x is responsible for y's Node-ID and neither can link to the other.
    let x = NodeId((2 << 124) + 9);
    let y = NodeId((2 << 124) + 5);
    let cfg = r.config_at(4, x);
    r.net.add(cfg);
    r.net.set_unreachable(x);
    r.ids.push(x);
    r.net.join(x);
    r.run_checked(secs(30));
    assert_eq!(r.net.node(x).unwrap().state(), JoinState::Joined);
    let mut cfg = r.config_at(5, y);
    cfg.client_fallback = true;
    r.net.add(cfg);
    r.net.set_unreachable(y);
    r.net.record_events(true);
    r.net.join(y);
    r.run_checked(secs(60));
    let state = r.net.node(y).unwrap().state();
    let JoinState::Client { peer } = state else {
        let ev: Vec<_> = r
            .net
            .take_events()
            .into_iter()
            .filter(|(_, n, _)| *n == y)
            .collect();
        panic!("{state:?} {ev:#?}")
    };
    assert_ne!(peer, x, "x cannot be linked to");
    assert!(!in_any_table(&r, y), "a client is in no routing table");
    let failures = r
        .net
        .take_events()
        .into_iter()
        .filter(|(_, n, e)| *n == y && matches!(e, Event::JoinFailed(_)))
        .count();
    assert_eq!(failures, 0, "falling back is not a failed join");
    check_stable(&r.net.views(), 3).unwrap();
    // Reached through its peer (what its XMPP-LOCATION record says), and reaching all.
    r.net.record_events(true);
    for p in r.ids.clone() {
        let req = r
            .net
            .request(
                p,
                vec![Destination::Node(peer), Destination::Node(y)],
                Body::PingReq(Default::default()),
            )
            .unwrap();
        r.run_checked(secs(20));
        assert!(
            answer(&r, p, req).unwrap().is_ok(),
            "{p} reaches y via {peer}"
        );
        assert!(ping(&mut r, y, p).is_ok(), "y pings {p}");
    }
}
