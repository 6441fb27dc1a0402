//! Routing through the ring (§6.1, §10.3) and the answers it brings back.

use super::*;
use crate::id::ResourceId;
use crate::node::{Answer, RequestError, RequestId};
use crate::wire::{Body, Destination, ProbeInformation, ProbeReq};

pub(super) fn answer(
    r: &Ring,
    (node, req): (NodeId, RequestId),
) -> Option<Result<Answer, RequestError>> {
    r.net.events.iter().find_map(|(_, n, e)| match e {
        Event::Response { request, result } if *request == req && *n == node => {
            Some(result.clone())
        }
        _ => None,
    })
}

/// Every live node pings the point `offset` after its own Node-ID; each ping must be
/// answered, without error, by the node responsible for that point.
pub(super) fn assert_pings_reach_the_responsible_nodes(r: &mut Ring, offset: u128) {
    let mut reqs = Vec::new();
    for id in r.live() {
        let k = id.0.wrapping_add(offset);
        let dest = vec![Destination::Resource(ResourceId(k))];
        let req = r.net.request(id, dest, Body::PingReq(Default::default()));
        reqs.push((id, req.expect("joined"), k));
    }
    r.run_checked(secs(5));
    for (id, req, k) in reqs {
        let answer = answer(r, (id, req)).expect("answered");
        assert_eq!(answer.expect("no error").from, responsible(r, k));
    }
}

/// The live node responsible for `k`: the first at or after it.
pub(super) fn responsible(r: &Ring, k: u128) -> NodeId {
    let mut ids = r.live();
    ids.sort();
    *ids.iter().find(|n| n.0 >= k).unwrap_or(&ids[0])
}

#[test]
fn every_node_pings_every_other_node_rfc6940_6_5_3() {
    let mut r = ring_of(12, 20);
    let ids = r.live();
    let mut reqs = Vec::new();
    for from in &ids {
        for to in &ids {
            if from != to {
                let req = (
                    *from,
                    r.net
                        .request(
                            *from,
                            vec![Destination::Node(*to)],
                            Body::PingReq(Default::default()),
                        )
                        .unwrap(),
                );
                reqs.push((req, *to));
            }
        }
    }
    r.run_checked(secs(5));
    for (req, to) in reqs {
        match answer(&r, req) {
            Some(Ok(a)) => {
                assert_eq!(a.from, to);
                assert!(matches!(a.body, Body::PingAns(_)));
            }
            other => panic!("ping to {to} gave {other:?}"),
        }
    }
}

#[test]
fn a_resource_ping_is_answered_by_the_responsible_node_rfc6940_10_3() {
    let mut r = ring_of(12, 21);
    let mut rng = ChaCha12Rng::seed_from_u64(99);
    let ids = r.live();
    let mut reqs = Vec::new();
    for from in &ids {
        for _ in 0..5 {
            let k = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
            let req = (
                *from,
                r.net
                    .request(
                        *from,
                        vec![Destination::Resource(ResourceId(k))],
                        Body::PingReq(Default::default()),
                    )
                    .unwrap(),
            );
            reqs.push((req, responsible(&r, k)));
        }
    }
    r.run_checked(secs(5));
    for (req, want) in reqs {
        assert_eq!(answer(&r, req).unwrap().unwrap().from, want);
    }
}

#[test]
fn probe_reports_responsibility_and_uptime_rfc6940_6_4_2_5() {
    let mut r = ring_of(4, 22);
    let (a, b) = (r.ids[0], r.ids[1]);
    let req = (
        a,
        r.net
            .request(
                a,
                vec![Destination::Node(b)],
                Body::ProbeReq(ProbeReq {
                    requested_info: vec![3, 1, 9],
                }),
            )
            .unwrap(),
    );
    r.run_checked(secs(2));
    let Body::ProbeAns(ans) = answer(&r, req).unwrap().unwrap().body else {
        panic!("not a probe answer")
    };
    assert_eq!(ans.probe_info.len(), 2, "unknown types are left out");
    assert!(matches!(ans.probe_info[0], ProbeInformation::Uptime(u) if u > 0));
    let ProbeInformation::ResponsibleSet(ppb) = ans.probe_info[1] else {
        panic!("order kept")
    };
    assert!(ppb > 0 && ppb < 1_000_000_000);
}

#[test]
fn route_query_names_the_next_hop_rfc6940_10_8() {
    let mut r = ring_of(6, 23);
    let a = r.ids[0];
    let b = r.net.node(a).unwrap().table().successors()[0];
    let req = (
        a,
        r.net
            .request(
                a,
                vec![Destination::Node(b)],
                Body::RouteQueryReq(crate::wire::RouteQueryReq {
                    send_update: false,
                    destination: Destination::Node(b),
                    overlay_specific_data: Default::default(),
                }),
            )
            .unwrap(),
    );
    r.run_checked(secs(2));
    let Body::RouteQueryAns(ans) = answer(&r, req).unwrap().unwrap().body else {
        panic!()
    };
    assert_eq!(ans.next_peer, b, "b routes its own id to itself");
}

#[test]
fn a_ping_to_a_missing_node_times_out_after_five_transmissions_rfc6940_6_2_1() {
    let mut r = ring_of(5, 24);
    let a = r.ids[0];
    let req = (
        a,
        r.net
            .request(
                a,
                vec![Destination::Node(NodeId(12345))],
                Body::PingReq(Default::default()),
            )
            .unwrap(),
    );
    r.run_checked(secs(14));
    assert_eq!(answer(&r, req), None, "still retransmitting");
    r.run_checked(secs(2));
    assert_eq!(answer(&r, req), Some(Err(RequestError::Timeout(5))));
}

#[test]
fn large_messages_are_fragmented_and_reassembled_rfc6940_6_7() {
    let mut r = Ring::new(25);
    for i in 0..6 {
        let id = NodeId((i as u128 + 1) << 120);
        let mut cfg = r.config(id);
        cfg.fragment_mtu = Some(600);
        let id = r.net.add(cfg);
        r.ids.push(id);
        r.net.join(id);
        r.settle(secs(60));
    }
    r.assert_stable();
    let (a, far) = (r.ids[0], r.ids[3]);
    let padding = bytes::Bytes::from(vec![7u8; 5000]);
    let req = (
        a,
        r.net
            .request(
                a,
                vec![Destination::Node(far)],
                Body::PingReq(crate::wire::PingReq { padding }),
            )
            .unwrap(),
    );
    r.run_checked(secs(3));
    assert_eq!(answer(&r, req).unwrap().unwrap().from, far);
}
