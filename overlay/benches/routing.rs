//! Messages routed through a 3-hop chain of real nodes over TLS on loopback.
//!
//! Run: `cargo bench -p xor-overlay --bench routing`. Four nodes A, B, C, D form a
//! ring; A sends Pings source-routed `[B, C, D]` (§6.3.2.2), so every request crosses
//! three links and every answer three more on the way back. Criterion reports
//! round trips per second; each is six routed messages.

#![allow(clippy::unwrap_used)] // a benchmark aborts on any failure
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::link::LinkConfig;
use xor_overlay::node::NodeConfig;
use xor_overlay::runtime::Overlay;
use xor_overlay::wire::{Body, Destination};

const IN_FLIGHT: usize = 32;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes = rt.block_on(async {
        let mut ca = TestCa::new("bench.example", 3);
        let mut nodes: Vec<Overlay> = Vec::new();
        let mut bootstrap: Option<SocketAddr> = None;
        for i in 0..4u128 {
            let creds = ca.node(&format!("n{i}@bench.example"), NodeId((i + 1) << 124));
            let mut cfg = NodeConfig::new("bench.example", creds, ca.trust_store());
            cfg.listen_addr = Some("127.0.0.1:0".parse().unwrap());
            cfg.bootstrap = bootstrap.into_iter().collect();
            cfg.may_start_overlay = bootstrap.is_none();
            cfg.chord_update_interval = Duration::from_secs(60);
            let node = Overlay::start(cfg, LinkConfig::default()).await.unwrap();
            assert!(
                node.joined(Duration::from_secs(20)).await,
                "node {i} did not join: {:?}",
                node.neighbors().await
            );
            bootstrap.get_or_insert(node.local_addr());
            nodes.push(node);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        nodes
    });
    let route: Vec<Destination> = nodes[1..]
        .iter()
        .map(|n| Destination::Node(n.node_id()))
        .collect();
    let a = nodes[0].clone();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(IN_FLIGHT as u64));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("ping_round_trips_over_3_hops", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let pings = (0..IN_FLIGHT)
                        .map(|_| a.request(route.clone(), Body::PingReq(Default::default())));
                    for r in join_all(pings).await {
                        assert_eq!(r.unwrap().from, nodes[3].node_id());
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
