//! Storage on the ring (§7, §10.4, §10.5, §10.7.3) in virtual time.

use bytes::Bytes;

use super::*;
use crate::id::ResourceId;
use crate::node::{Answer, RequestError, RequestId};
use crate::wire::{Body, DataValue, ModelSpecifier, StoredDataSpecifier, StoredDataValue};

pub(super) fn answer(
    r: &Ring,
    node: NodeId,
    req: RequestId,
) -> Option<Result<Answer, RequestError>> {
    r.net.events.iter().find_map(|(_, n, e)| match e {
        Event::Response { request, result } if *request == req && *n == node => {
            Some(result.clone())
        }
        _ => None,
    })
}

/// Node `i`'s user name resource.
fn user_resource(i: usize) -> ResourceId {
    ResourceId::of_name(format!("node{i}@{OVERLAY}").as_bytes())
}

pub(super) fn store(r: &mut Ring, i: usize, value: &'static [u8]) -> ResourceId {
    store_with_replicas(r, i, value, 2)
}

fn store_with_replicas(
    r: &mut Ring,
    i: usize,
    value: &'static [u8],
    replicas: usize,
) -> ResourceId {
    let node = r.ids[i];
    let res = user_resource(i);
    let req = start_store(r, node, res, value, secs(3600));
    r.run_checked(secs(3));
    let a = answer(r, node, req)
        .expect("store answered")
        .expect("store succeeded");
    let Body::StoreAns(ans) = a.body else {
        panic!("not a StoreAns")
    };
    assert_eq!(
        ans.kind_responses[0].replicas.len(),
        replicas,
        "replicated to min(2, N - 1) successors"
    );
    res
}

/// Starts a Fetch of Kind 200 (single value) at `res` from `from`.
/// Starts a Store of one Single value of Kind 200 at `res` from node `from`.
pub(super) fn start_store(
    r: &mut Ring,
    from: NodeId,
    res: ResourceId,
    value: &'static [u8],
    lifetime: Duration,
) -> RequestId {
    let now = r.net.now();
    let mut req = None;
    r.net.with(from, |n| {
        let v = StoredDataValue::Single(DataValue::new(Bytes::from_static(value)));
        req = Some(n.store(res, vec![(200, vec![v])], lifetime, now));
    });
    req.expect("the node exists")
}

pub(super) fn start_fetch(r: &mut Ring, from: NodeId, res: ResourceId) -> RequestId {
    let now = r.net.now();
    let mut req = None;
    r.net.with(from, |n| {
        let spec = StoredDataSpecifier {
            kind: 200,
            generation: 0,
            model_specifier: ModelSpecifier::Single,
        };
        req = Some(n.fetch(res, vec![spec], now));
    });
    req.expect("the node exists")
}

fn fetch(r: &mut Ring, from: NodeId, res: ResourceId) -> Option<Vec<u8>> {
    let req = start_fetch(r, from, res);
    r.run_checked(secs(3));
    let a = answer(r, from, req)?.ok()?;
    assert_eq!(a.dropped, 0, "every value verifies");
    let Body::FetchAns(ans) = a.body else {
        return None;
    };
    let v = ans.kind_responses[0]
        .values
        .parsed()
        .first()?
        .value
        .data()
        .clone();
    v.exists.then(|| v.value.to_vec())
}

fn holders(r: &Ring, res: ResourceId) -> Vec<NodeId> {
    r.live()
        .into_iter()
        .filter(|id| r.net.node(*id).unwrap().storage().get(res, 200).is_some())
        .collect()
}

pub(super) fn responsible_and_next_two(r: &Ring, res: ResourceId) -> Vec<NodeId> {
    let mut ids = r.live();
    ids.sort();
    let first = ids.iter().position(|n| n.0 >= res.0).unwrap_or(0);
    let mut want: Vec<NodeId> = (0..3).map(|d| ids[(first + d) % ids.len()]).collect();
    want.sort();
    want
}

#[test]
fn a_value_lives_at_the_responsible_node_and_its_two_successors_rfc6940_10_4() {
    let mut r = ring_of(8, 40);
    let res = store(&mut r, 2, b"hello");
    assert_eq!(holders(&r, res), responsible_and_next_two(&r, res));
    for from in r.live() {
        assert_eq!(fetch(&mut r, from, res).as_deref(), Some(&b"hello"[..]));
    }
}

#[test]
fn a_value_survives_its_responsible_node_failing_rfc6940_10_7_3() {
    let mut r = ring_of(8, 41);
    let res = store(&mut r, 1, b"durable");
    let owner = responsible_and_next_two(&r, res)[0];
    let mut ids = r.live();
    ids.sort();
    let owner = *ids.iter().find(|n| n.0 >= res.0).unwrap_or(&owner);
    r.net.kill(owner);
    r.settle(secs(120));
    r.run_checked(secs(5));
    let reader = r.live().into_iter().find(|n| *n != owner).unwrap();
    assert_eq!(fetch(&mut r, reader, res).as_deref(), Some(&b"durable"[..]));
    assert_eq!(
        holders(&r, res),
        responsible_and_next_two(&r, res),
        "re-replicated to three holders"
    );
}

#[test]
fn a_joining_node_receives_the_data_it_takes_over_rfc6940_10_5() {
    let mut r = ring_of(6, 42);
    let res = store(&mut r, 3, b"moving");
    // A node right before the resource becomes responsible for it.
    let joiner = r.add_with(NodeId(res.0.wrapping_add(1)));
    r.settle(secs(60));
    // The holder pushed out of the replica set deletes its copy at its next
    // stabilisation (every 20 s here).
    r.run_checked(secs(25));
    assert!(
        r.net
            .node(joiner)
            .unwrap()
            .storage()
            .get(res, 200)
            .is_some(),
        "the admitting peer stored it to the joiner"
    );
    assert_eq!(holders(&r, res), responsible_and_next_two(&r, res));
    let reader = r.ids[0];
    assert_eq!(fetch(&mut r, reader, res).as_deref(), Some(&b"moving"[..]));
}

#[test]
fn a_small_ring_hands_data_to_each_joiner_that_takes_it_over_rfc6940_10_5() {
    // The first node holds everything; each joiner placed right after the resource
    // must receive it from its admitting peer even while the ring has fewer than
    // three predecessors to reason with.
    let mut r = ring_of(1, 44);
    let res = store_with_replicas(&mut r, 0, b"early", 0);
    for k in 1..=3u128 {
        let joiner = r.add_with(NodeId(res.0.wrapping_add(4 - k)));
        r.settle(secs(60));
        r.run_checked(secs(25));
        assert!(
            r.net
                .node(joiner)
                .unwrap()
                .storage()
                .get(res, 200)
                .is_some(),
            "joiner {k} took the resource over"
        );
        let reader = r.ids[0];
        assert_eq!(fetch(&mut r, reader, res).as_deref(), Some(&b"early"[..]));
    }
    assert_eq!(holders(&r, res), responsible_and_next_two(&r, res));
}

#[test]
fn values_stored_while_the_ring_grows_stay_reachable_rfc6940_10_5() {
    // Three nodes join one by one, each storing under its user name right after
    // joining (what every XMPP device does); whichever node ends up responsible,
    // every value must stay fetchable from every node.
    for seed in 0..40 {
        let mut r = Ring::new(seed);
        let mut stored = Vec::new();
        for i in 0..3 {
            r.add();
            r.settle(secs(60));
            let replicas = i.min(2);
            stored.push(store_with_replicas(&mut r, i, b"mine", replicas));
        }
        for res in &stored {
            for reader in r.live() {
                assert_eq!(
                    fetch(&mut r, reader, *res).as_deref(),
                    Some(&b"mine"[..]),
                    "seed {seed}: {res:?} from {reader:?}; holders {:?}",
                    holders(&r, *res)
                );
            }
        }
    }
}

#[test]
fn a_leaving_node_hands_its_data_to_its_successor_rfc6940_10_9() {
    let mut r = ring_of(6, 43);
    let res = store(&mut r, 4, b"handed over");
    let mut ids = r.live();
    ids.sort();
    let owner = *ids.iter().find(|n| n.0 >= res.0).unwrap_or(&ids[0]);
    r.net.leave(owner);
    r.run_checked(secs(2));
    r.net.kill(owner);
    r.settle(secs(30));
    r.run_checked(secs(5));
    assert_eq!(holders(&r, res), responsible_and_next_two(&r, res));
    let reader = r.live()[0];
    assert_eq!(
        fetch(&mut r, reader, res).as_deref(),
        Some(&b"handed over"[..])
    );
}

#[test]
fn another_users_store_is_refused_over_the_ring_rfc6940_7_3_1() {
    let mut r = ring_of(5, 44);
    let (node, res) = (r.ids[0], user_resource(1)); // node 0 writes at node 1's name
    let req = start_store(&mut r, node, res, b"squat", secs(60));
    r.run_checked(secs(3));
    match answer(&r, node, req) {
        Some(Err(RequestError::Error(e))) => assert_eq!(e.code, crate::wire::ErrorCode::Forbidden),
        other => panic!("expected Error_Forbidden, got {other:?}"),
    }
    assert!(holders(&r, res).is_empty());
}

#[test]
fn nodes_store_their_certificates_rfc6940_8() {
    let mut r = ring_of(5, 45);
    r.run_checked(secs(3));
    let target = r.ids[2];
    let res = crate::storage::node_resource(target);
    let now = r.net.now();
    let reader = r.ids[0];
    let mut req = None;
    r.net.with(reader, |n| {
        let spec = StoredDataSpecifier {
            kind: crate::storage::CERTIFICATE_BY_NODE,
            generation: 0,
            model_specifier: ModelSpecifier::Array(vec![crate::wire::ArrayRange {
                first: 0,
                last: 0,
            }]),
        };
        req = Some(n.fetch(res, vec![spec], now));
    });
    r.run_checked(secs(3));
    let a = answer(&r, reader, req.unwrap()).unwrap().unwrap();
    let Body::FetchAns(ans) = a.body else {
        panic!()
    };
    let cert = ans.kind_responses[0].values.parsed()[0]
        .value
        .data()
        .value
        .clone();
    let id = crate::identity::CertIdentity::parse(&cert, OVERLAY).unwrap();
    assert_eq!(id.node_ids, vec![target]);
}

#[test]
fn a_store_made_while_a_replica_is_in_flight_reaches_the_replicas_at_once_rfc6940_10_4() {
    // Two devices of a user register a moment apart: the second store changes the
    // resource while the first one's replica stores are still on their way.
    let mut r = ring_of(8, 43);
    let node = r.ids[2];
    let res = user_resource(2);
    let now = r.net.now();
    r.net.with(node, |n| {
        for v in [&b"first"[..], &b"second"[..]] {
            let entry = StoredDataValue::Array {
                index: crate::wire::store::APPEND_INDEX,
                value: DataValue::new(Bytes::from_static(v)),
            };
            n.store(res, vec![(201, vec![entry])], secs(3600), now);
        }
    });
    // Far less than the 20 s update interval that would otherwise resend them.
    r.run_checked(secs(3));
    let counts: Vec<usize> = responsible_and_next_two(&r, res)
        .iter()
        .map(|h| {
            let n = r.net.node(*h).unwrap();
            n.storage().get(res, 201).map_or(0, |d| d.entries.len())
        })
        .collect();
    assert_eq!(
        counts,
        vec![2, 2, 2],
        "both entries at the node and its two replicas"
    );
}

/// Accepts every value: the policy of a storing peer that skips §7.3.
struct Anything;

impl crate::storage::AccessControl for Anything {
    fn name(&self) -> &str {
        "ANYTHING"
    }

    fn permits(
        &self,
        _: ResourceId,
        _: &StoredDataValue,
        _: &crate::identity::VerifiedSigner,
    ) -> bool {
        true
    }
}

/// A storing peer that skips access control (any enrolled peer may be one) stores a
/// value another node signed for node1's user resource, which USER-MATCH forbids it
/// (§7.3.1). The signature verifies, but a fetcher applies the Kind's policy too and
/// drops the value (§7.4.2.2 verification, §7.3): the record cannot be forged by
/// whoever holds it.
#[test]
fn a_fetched_value_its_signer_could_not_have_stored_is_dropped_rfc6940_7_3() {
    let mut r = Ring::new(77);
    let res = user_resource(1);
    // The hostile node's Node-ID is the resource itself: it is responsible for it.
    let hostile = NodeId(res.0);
    for i in 0..4u128 {
        r.add_with(NodeId(res.0.wrapping_add((i + 1) << 124)));
        r.settle(secs(60));
    }
    let mut cfg = r.config_at(4, hostile);
    let mut kinds = test_kinds();
    kinds.insert(crate::storage::KindDef {
        id: 200,
        name: "TEST-200".into(),
        model: crate::wire::DataModel::Single,
        policy: crate::storage::Policy::Custom(std::sync::Arc::new(Anything)),
        max_count: 100,
        max_size: 1000,
    });
    cfg.kinds = kinds;
    r.net.add(cfg);
    r.ids.push(hostile);
    r.net.join(hostile);
    r.settle(secs(60));
    r.net.record_events(true);
    // Node 2 (user node2) stores under node1's user name: only the hostile node
    // takes it.
    let signer = r.ids[2];
    let req = start_store(&mut r, signer, res, b"forged", secs(3600));
    r.run_checked(secs(5));
    assert!(answer(&r, signer, req).unwrap().is_ok());
    assert!(
        r.net
            .node(hostile)
            .unwrap()
            .storage()
            .get(res, 200)
            .is_some()
    );
    // An honest node fetches it: the answer comes, the forged value is dropped.
    let reader = r.ids[0];
    let req = start_fetch(&mut r, reader, res);
    r.run_checked(secs(5));
    let a = answer(&r, reader, req).unwrap().unwrap();
    assert_eq!(a.from, hostile);
    assert_eq!(a.dropped, 1, "the value its signer could not have stored");
    let Body::FetchAns(ans) = a.body else {
        panic!("{:?}", a.body)
    };
    assert!(ans.kind_responses[0].values.parsed().is_empty());
}
