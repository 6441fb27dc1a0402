//! Framed-message throughput over one TLS 1.3 link on loopback (§6.6.5).
//!
//! Run: `cargo bench -p xor-overlay --bench link`. Each iteration sends a burst of
//! messages one way and waits until all are delivered; criterion reports messages/s.

#![allow(clippy::unwrap_used)] // a benchmark aborts on any failure
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::runtime::*;

const BURST: usize = 1000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sender, mut rx) = rt.block_on(async {
        let mut ca = TestCa::new("bench.example", 2);
        let a = TlsContext::new(ca.node("a@bench.example", NodeId(1)), ca.trust_store()).unwrap();
        let b = TlsContext::new(ca.node("b@bench.example", NodeId(2)), ca.trust_store()).unwrap();
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), b)
            .await
            .unwrap();
        let (conn, acc) = tokio::join!(
            a.connect(listener.local_addr(), Expect::Node(NodeId(2))),
            listener.accept()
        );
        let (conn, acc) = (conn.unwrap(), acc.unwrap().unwrap());
        let clock = Clock::start();
        let (tx_a, _rx_a) = mpsc::channel(1024);
        let (tx_b, rx_b) = mpsc::channel(1024);
        let sender = Link::spawn(
            LinkId(1),
            Box::new(conn.0),
            conn.1,
            LinkOptions::default(),
            tx_a,
            clock,
        );
        let _receiver = Link::spawn(
            LinkId(2),
            acc.stream,
            acc.peer,
            LinkOptions::default(),
            tx_b,
            clock,
        );
        std::mem::forget(_rx_a);
        std::mem::forget(_receiver);
        (sender, rx_b)
    });
    let mut g = c.benchmark_group("tls_link");
    g.measurement_time(Duration::from_secs(8));
    for size in [200usize, 4096] {
        let payload = Bytes::from(vec![0x42u8; size]);
        g.throughput(Throughput::Elements(BURST as u64));
        g.bench_function(format!("{size}_byte_messages"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..BURST {
                            sender.send(payload.clone()).await.unwrap();
                        }
                        let mut got = 0;
                        while got < BURST {
                            if let Some((_, LinkEvent::Message(_))) = rx.recv().await {
                                got += 1;
                            }
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
