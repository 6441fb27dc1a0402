//! Storage over 21 real TLS nodes on loopback (RFC 6940 §7, §10.4, §10.5, §10.7.3):
//! 1,050 values of all three data models stored by every node and fetched by others;
//! then two of the three holders of every value die at once; then new nodes join and
//! the values move to their new responsible nodes.

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::identity::testca::TestCa;
use xor_overlay::runtime::Overlay;
use xor_overlay::storage::node_multiple_resource;
use xor_overlay::wire::*;
use xor_tests::{loopback_config, start, storage_kinds, wait_stable};

const OVERLAY: &str = "storage.example";
const PER_NODE: u32 = 50;

/// What node `owner` stores for index `i`: (resource, kind, value, specifier).
fn item(owner: NodeId, i: u32) -> (ResourceId, KindId, StoredDataValue, StoredDataSpecifier) {
    let r = node_multiple_resource(owner, i);
    let payload = DataValue::new(Bytes::from(format!("{owner}/{i}")));
    let (kind, value, spec) = match i % 3 {
        0 => (
            300,
            StoredDataValue::Single(payload),
            ModelSpecifier::Single,
        ),
        1 => (
            301,
            StoredDataValue::Array {
                index: 0,
                value: payload,
            },
            ModelSpecifier::Array(vec![ArrayRange { first: 0, last: 0 }]),
        ),
        _ => (
            302,
            StoredDataValue::Dictionary {
                key: Bytes::from_static(b"k"),
                value: payload,
            },
            ModelSpecifier::Dictionary(vec![Bytes::from_static(b"k")]),
        ),
    };
    (
        r,
        kind,
        value,
        StoredDataSpecifier {
            kind,
            generation: 0,
            model_specifier: spec,
        },
    )
}

async fn node(
    ca: &mut TestCa,
    i: usize,
    id: NodeId,
    bootstrap: Option<std::net::SocketAddr>,
) -> Overlay {
    let mut cfg = loopback_config(ca, &format!("s{i}@{OVERLAY}"), id, bootstrap, i as u64 + 1);
    cfg.kinds = storage_kinds();
    start(cfg).await.expect("node starts")
}

/// Fetches every item from some node other than its owner and checks the value.
async fn fetch_all(nodes: &[Overlay], owners: &[NodeId]) {
    let mut checks = Vec::new();
    for (o, owner) in owners.iter().enumerate() {
        for i in 1..=PER_NODE {
            let reader = &nodes[(o + 7 + i as usize) % nodes.len()];
            let (r, _, value, spec) = item(*owner, i);
            checks.push(async move {
                let ans = reader
                    .fetch(r, vec![spec])
                    .await
                    .unwrap_or_else(|e| panic!("fetch {owner}/{i}: {e}"));
                let got = &ans.kind_responses[0].values.parsed()[0].value;
                assert_eq!(got, &value, "value {owner}/{i}");
            });
        }
    }
    join_all(checks).await;
}

/// Which live nodes hold each item, compared with the responsible node and its two
/// successors; waits until they agree.
async fn wait_replicated(nodes: &[Overlay], owners: &[NodeId], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut ids: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
        ids.sort();
        let mut stored: Vec<(NodeId, Vec<(ResourceId, KindId)>)> = Vec::new();
        for n in nodes {
            let held = n
                .with_node(|node| {
                    let s = node.storage();
                    s.resources()
                        .into_iter()
                        .flat_map(|r| {
                            [300, 301, 302]
                                .into_iter()
                                .filter(move |k| s.get(r, *k).is_some())
                                .map(move |k| (r, k))
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .expect("node answers");
            stored.push((n.node_id(), held));
        }
        let mut wrong = 0;
        let mut example = String::new();
        for owner in owners {
            for i in 1..=PER_NODE {
                let (r, kind, _, _) = item(*owner, i);
                let first = ids.iter().position(|n| n.0 >= r.0).unwrap_or(0);
                let mut want: Vec<NodeId> = (0..3).map(|d| ids[(first + d) % ids.len()]).collect();
                want.sort();
                let mut have: Vec<NodeId> = stored
                    .iter()
                    .filter(|(_, h)| h.contains(&(r, kind)))
                    .map(|(n, _)| *n)
                    .collect();
                have.sort();
                if have != want {
                    wrong += 1;
                    example = format!("{r} kind {kind}: held by {have:?}, should be {want:?}");
                }
            }
        }
        if wrong == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{wrong} values not on their three holders, e.g. {example}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_survive_losing_two_of_three_holders_and_follow_joins() {
    let mut ca = TestCa::new(OVERLAY, 7);
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let mut random_id = move || NodeId((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);
    let first = node(&mut ca, 0, random_id(), None).await;
    assert!(first.joined(Duration::from_secs(5)).await);
    let bootstrap = Some(first.local_addr());
    let mut nodes = vec![first];
    for i in 1..21 {
        let n = node(&mut ca, i, random_id(), bootstrap).await;
        assert!(n.joined(Duration::from_secs(30)).await, "node {i} joined");
        nodes.push(n);
    }
    wait_stable(&nodes, Duration::from_secs(60))
        .await
        .expect("stable ring");

    // Every node stores 50 values: 1,050 in all, a third of each data model.
    let owners: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    let mut stores = Vec::new();
    for n in &nodes {
        let owner = n.node_id();
        stores.push(async move {
            for i in 1..=PER_NODE {
                let (r, kind, value, _) = item(owner, i);
                let ans = n
                    .store(r, vec![(kind, vec![value])], Duration::from_secs(3600))
                    .await;
                let ans = ans.unwrap_or_else(|e| panic!("store {owner}/{i}: {e}"));
                assert_eq!(ans.kind_responses[0].replicas.len(), 2);
            }
        });
    }
    join_all(stores).await;
    fetch_all(&nodes, &owners).await;
    wait_replicated(&nodes, &owners, Duration::from_secs(30)).await;

    // Kill two of every three consecutive nodes: every value loses two of its three
    // holders at once.
    let mut by_id = nodes;
    by_id.sort_by_key(|n| n.node_id());
    let (mut survivors, mut dead) = (Vec::new(), Vec::new());
    for (k, n) in by_id.into_iter().enumerate() {
        if k % 3 == 2 {
            survivors.push(n)
        } else {
            dead.push(n)
        }
    }
    for n in &dead {
        n.kill();
    }
    wait_stable(&survivors, Duration::from_secs(60))
        .await
        .expect("the survivors form a ring");
    fetch_all(&survivors, &owners).await;
    wait_replicated(&survivors, &owners, Duration::from_secs(60)).await;

    // New nodes join; values move to their new responsible nodes.
    let bootstrap = Some(survivors[0].local_addr());
    for i in 21..29 {
        let n = node(&mut ca, i, random_id(), bootstrap).await;
        assert!(n.joined(Duration::from_secs(30)).await, "node {i} joined");
        survivors.push(n);
    }
    wait_stable(&survivors, Duration::from_secs(60))
        .await
        .expect("stable after joins");
    wait_replicated(&survivors, &owners, Duration::from_secs(60)).await;
    fetch_all(&survivors, &owners).await;
    for n in &survivors {
        n.leave().await;
    }
}
