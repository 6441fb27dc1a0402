//! A 25-node overlay over TLS on loopback (RFC 6940 §6.2, §10): joins one by one and
//! concurrently, routes to every Node-ID and to random Resource-IDs, keeps answering
//! lookups while five nodes die at once, and heals.

use std::time::Duration;

use futures::future::join_all;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::identity::testca::TestCa;
use xor_overlay::runtime::Overlay;
use xor_overlay::wire::Destination;
use xor_tests::{loopback_config, start, wait_stable};

const OVERLAY: &str = "e2e.example";

fn responsible(ids: &[NodeId], k: u128) -> NodeId {
    let mut ids = ids.to_vec();
    ids.sort();
    *ids.iter().find(|n| n.0 >= k).unwrap_or(&ids[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_nodes_join_route_and_heal() {
    let mut ca = TestCa::new(OVERLAY, 25);
    let mut rng = ChaCha12Rng::seed_from_u64(25);
    let mut random_id = || NodeId((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);

    let first = start(loopback_config(
        &mut ca,
        "n0@e2e.example",
        random_id(),
        None,
        0,
    ))
    .await
    .unwrap();
    assert!(
        first.joined(Duration::from_secs(5)).await,
        "the first node starts the overlay"
    );
    let bootstrap = Some(first.local_addr());
    let mut nodes: Vec<Overlay> = vec![first];

    // Twelve join one by one.
    for i in 1..13 {
        let cfg = loopback_config(
            &mut ca,
            &format!("n{i}@e2e.example"),
            random_id(),
            bootstrap,
            i,
        );
        let node = start(cfg).await.unwrap();
        assert!(
            node.joined(Duration::from_secs(20)).await,
            "node {i} joined"
        );
        nodes.push(node);
    }
    wait_stable(&nodes, Duration::from_secs(30))
        .await
        .expect("stable after sequential joins");

    // Twelve more join at once.
    let mut batch = Vec::new();
    for i in 13..25 {
        let cfg = loopback_config(
            &mut ca,
            &format!("n{i}@e2e.example"),
            random_id(),
            bootstrap,
            i,
        );
        batch.push(start(cfg).await.unwrap());
    }
    for (i, node) in batch.iter().enumerate() {
        assert!(
            node.joined(Duration::from_secs(30)).await,
            "concurrent node {i} joined"
        );
    }
    nodes.extend(batch);
    wait_stable(&nodes, Duration::from_secs(60))
        .await
        .expect("stable after concurrent joins");

    // Every node pings every other node's Node-ID.
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    let mut pings = Vec::new();
    for from in &nodes {
        for to in &ids {
            if *to != from.node_id() {
                pings.push(async move { (*to, from.ping(Destination::Node(*to)).await) });
            }
        }
    }
    for (to, answer) in join_all(pings).await {
        let answer = answer.unwrap_or_else(|e| panic!("ping to {to} failed: {e}"));
        assert_eq!(answer.from, to);
    }

    // And a random Resource-ID each: the responsible node answers.
    let mut lookups = Vec::new();
    for from in &nodes {
        let k = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
        let want = responsible(&ids, k);
        lookups.push(async move { (want, from.ping(Destination::Resource(ResourceId(k))).await) });
    }
    for (want, answer) in join_all(lookups).await {
        assert_eq!(answer.expect("resource ping answered").from, want);
    }

    // Five nodes die abruptly. Lookups issued during the next 10 s, every second
    // from every survivor, are answered by the responsible live node.
    for victim in nodes.drain(3..8) {
        victim.kill();
    }
    let live: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    let started = tokio::time::Instant::now();
    let mut during = Vec::new();
    for round in 0..10u32 {
        tokio::time::sleep_until(started + Duration::from_secs(round.into())).await;
        for from in &nodes {
            let k = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
            let want = responsible(&live, k);
            let from = from.clone();
            during.push(tokio::spawn(async move {
                (want, from.ping(Destination::Resource(ResourceId(k))).await)
            }));
        }
    }
    for lookup in join_all(during).await {
        let (want, answer) = lookup.expect("the lookup task");
        let answer = answer.expect("a lookup during the 10 s after the failures");
        assert_eq!(answer.from, want, "answered by the responsible live node");
    }
    wait_stable(&nodes, Duration::from_secs(60))
        .await
        .expect("healed after five nodes died");
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    let k = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
    let answer = nodes[0]
        .ping(Destination::Resource(ResourceId(k)))
        .await
        .expect("routing works after healing");
    assert_eq!(answer.from, responsible(&ids, k));

    for node in &nodes {
        node.leave().await;
    }
}
