//! A bootstrap node that crashes and restarts alone used to leave the overlay split for
//! good: the others stayed "Joined" without it, or with no link at all (defect 2). Now
//! they find it again (RFC 6940 §10.7.4.4 partition detection, §10.7.1).

use std::time::{Duration, Instant};

use futures::future::join_all;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::identity::testca::TestCa;
use xor_overlay::node::NodeConfig;
use xor_overlay::runtime::Overlay;
use xor_overlay::wire::Destination;
use xor_tests::{loopback_config, start, wait_stable};

const OVERLAY: &str = "rejoin.example";

fn responsible(ids: &[NodeId], k: u128) -> NodeId {
    let mut ids = ids.to_vec();
    ids.sort();
    *ids.iter().find(|n| n.0 >= k).unwrap_or(&ids[0])
}

/// Whether every node reaches every other by Node-ID, and a spread of Resource-IDs
/// reaches the responsible node from every node.
async fn every_lookup_works(nodes: &[Overlay]) -> Result<(), String> {
    let ids: Vec<NodeId> = nodes.iter().map(Overlay::node_id).collect();
    let mut lookups = Vec::new();
    for from in nodes {
        for to in &ids {
            lookups.push((*to, Destination::Node(*to), from));
        }
        for i in 0..8u128 {
            let k = i * (u128::MAX / 8) + 12345;
            lookups.push((
                responsible(&ids, k),
                Destination::Resource(ResourceId(k)),
                from,
            ));
        }
    }
    let lookups = lookups
        .into_iter()
        .map(|(want, dest, from)| async move { (want, from.ping(dest).await) });
    for (want, got) in join_all(lookups).await {
        match got {
            Ok(a) if a.from == want => {}
            Ok(a) => return Err(format!("{} answered for {want}", a.from)),
            Err(e) => return Err(format!("lookup of {want} failed: {e}")),
        }
    }
    Ok(())
}

async fn restart_the_bootstrap_node(size: usize, seed: u64) {
    let mut ca = TestCa::new(OVERLAY, seed);
    let first_cfg: NodeConfig = loopback_config(
        &mut ca,
        "n0@rejoin.example",
        NodeId(0x10 << 120),
        None,
        seed,
    );
    let first = start(first_cfg.clone()).await.unwrap();
    assert!(first.joined(Duration::from_secs(5)).await);
    let boot = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..size {
        let id = NodeId(((0x10 + 0x30 * i as u128) & 0xff) << 120 | i as u128);
        let cfg = loopback_config(
            &mut ca,
            &format!("n{i}@rejoin.example"),
            id,
            Some(boot),
            seed + i as u64,
        );
        let n = start(cfg).await.unwrap();
        assert!(n.joined(Duration::from_secs(20)).await, "node {i} joined");
        nodes.push(n);
    }
    wait_stable(&nodes, Duration::from_secs(30))
        .await
        .expect("stable");
    every_lookup_works(&nodes)
        .await
        .expect("lookups before the crash");

    // The bootstrap node dies and comes back on the same address, alone.
    nodes[0].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut again = first_cfg;
    again.listen_addr = Some(boot);
    nodes[0] = start(again).await.unwrap();
    assert!(nodes[0].joined(Duration::from_secs(5)).await);
    let restarted = Instant::now();

    let deadline = restarted + Duration::from_secs(30);
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = every_lookup_works(&nodes).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last.unwrap_or_else(|e| panic!("30 s after the restart: {e}"));
    wait_stable(&nodes, Duration::from_secs(30))
        .await
        .expect("one ring again");
    for n in &nodes {
        n.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_node_overlay_heals_after_its_bootstrap_node_restarts() {
    restart_the_bootstrap_node(5, 70).await;
}

/// With two nodes the other one is left with no link at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_without_links_finds_the_restarted_bootstrap_node() {
    restart_the_bootstrap_node(2, 80).await;
}
