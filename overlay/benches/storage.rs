//! Stores and fetches per second through a 20-node overlay over TLS on loopback, and
//! the memory 10,000 stored values take.
//!
//! Run: `cargo bench -p xor-overlay --bench storage`. The memory figures are printed
//! before the timings (the storage engine's own accounting and the process's resident
//! set growth while 10,000 values are stored in one node's engine).

#![allow(clippy::unwrap_used)] // a benchmark aborts on any failure
#![allow(clippy::disallowed_methods)] // a benchmark measures real time
#![allow(clippy::print_stderr)] // and prints what it measured

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::identity::CertCache;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::link::LinkConfig;
use xor_overlay::node::NodeConfig;
use xor_overlay::runtime::Overlay;
use xor_overlay::storage::*;
use xor_overlay::wire::*;

const BATCH: u32 = 100;
const MAX_I: u32 = 256;

fn kinds() -> KindTable {
    let mut k = KindTable::default();
    k.insert(KindDef {
        id: 400,
        name: "BENCH".into(),
        model: DataModel::Single,
        policy: Policy::NodeMultiple(MAX_I),
        max_count: 1,
        max_size: 1024,
    });
    k
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

/// 10,000 values (100-byte payloads, ECDSA signatures) in one storage engine.
fn memory_report() {
    let mut ca = TestCa::new("mem.example", 9);
    let creds = ca.node("m@mem.example", NodeId(1));
    let trust = ca.trust_store();
    let mut kinds = KindTable::default();
    kinds.insert(KindDef {
        id: 401,
        name: "MEM".into(),
        model: DataModel::Dictionary,
        policy: Policy::UserMatch,
        max_count: 20_000,
        max_size: 1024,
    });
    let r = ResourceId::of_name(b"m@mem.example");
    let mut storage = Storage::default();
    let mut certs = CertCache::new(4);
    let signer = {
        let d = StoredData {
            storage_time: 1,
            lifetime: 1,
            value: StoredDataValue::Single(DataValue::new(&b"x"[..])),
            signature: creds.sign_value(
                r,
                1,
                1,
                &StoredDataValue::Single(DataValue::new(&b"x"[..])),
            ),
        };
        certs
            .verify_value(&trust, r, 1, &d, &creds.certificates(), 1_800_000_000)
            .unwrap()
    };
    let before = rss_kib();
    for chunk in 0..100u32 {
        let values: Vec<StoredData> = (0..100u32)
            .map(|j| {
                let value = StoredDataValue::Dictionary {
                    key: Bytes::from((chunk * 100 + j).to_be_bytes().to_vec()),
                    value: DataValue::new(vec![7u8; 100]),
                };
                let signature = creds.sign_value(r, 401, 10, &value);
                StoredData {
                    storage_time: 10,
                    lifetime: 3600,
                    value,
                    signature,
                }
            })
            .collect();
        let req = StoreReq {
            resource: r,
            replica_number: 0,
            kind_data: vec![StoreKindData {
                kind: 401,
                generation_counter: 0,
                values: KindValues::Parsed(values),
            }],
        };
        let bucket = creds.certificates();
        let mut verify = |kind, sd: &StoredData| {
            certs
                .verify_value(&trust, r, kind, sd, &bucket, 1_800_000_000)
                .map(|s| (s, vec![creds.cert().clone()]))
        };
        let ctx = StoreContext {
            kinds: &kinds,
            now: xor_overlay::time::Instant::ZERO,
            request_signer: &signer,
            replica: false,
        };
        storage.store(&req, &ctx, &mut verify).unwrap();
    }
    let after = rss_kib();
    eprintln!(
        "memory for {} stored values: engine accounting {} bytes ({} per value); resident set grew {} KiB ({} bytes per value)",
        storage.values(),
        storage.bytes(),
        storage.bytes() / storage.values(),
        after.saturating_sub(before),
        after.saturating_sub(before) * 1024 / storage.values() as u64
    );
}

fn bench(c: &mut Criterion) {
    memory_report();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes = rt.block_on(async {
        let mut ca = TestCa::new("bench.example", 5);
        let mut nodes: Vec<Overlay> = Vec::new();
        let mut bootstrap: Option<SocketAddr> = None;
        for i in 0..20u128 {
            let creds = ca.node(
                &format!("n{i}@bench.example"),
                NodeId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
            );
            let mut cfg = NodeConfig::new("bench.example", creds, ca.trust_store());
            cfg.listen_addr = Some("127.0.0.1:0".parse().unwrap());
            cfg.bootstrap = bootstrap.into_iter().collect();
            cfg.may_start_overlay = bootstrap.is_none();
            cfg.kinds = kinds();
            cfg.chord_update_interval = Duration::from_secs(60);
            let node = Overlay::start(cfg, LinkConfig::default()).await.unwrap();
            assert!(node.joined(Duration::from_secs(20)).await);
            bootstrap.get_or_insert(node.local_addr());
            nodes.push(node);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        nodes
    });
    let item = |n: &Overlay, i: u32| {
        (
            node_multiple_resource(n.node_id(), i % MAX_I + 1),
            StoredDataValue::Single(DataValue::new(vec![i as u8; 100])),
        )
    };
    let mut g = c.benchmark_group("storage_20_nodes");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(10));
    let mut counter = 0u32;
    g.bench_function("store", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let stores = (0..BATCH).map(|_| {
                        counter += 1;
                        let n = &nodes[(counter as usize) % nodes.len()];
                        let (r, v) = item(n, counter);
                        n.store(r, vec![(400, vec![v])], Duration::from_secs(3600))
                    });
                    for r in join_all(stores.collect::<Vec<_>>()).await {
                        r.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("fetch", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for it in 0..iters {
                    let fetches = (0..BATCH).map(|k| {
                        let n = &nodes[(k as usize) % nodes.len()];
                        let owner = &nodes[(k as usize + it as usize) % nodes.len()];
                        let (r, _) = item(owner, k);
                        n.fetch(
                            r,
                            vec![StoredDataSpecifier {
                                kind: 400,
                                generation: 0,
                                model_specifier: ModelSpecifier::Single,
                            }],
                        )
                    });
                    for r in join_all(fetches.collect::<Vec<_>>()).await {
                        r.unwrap();
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
