//! Stanzas over one direct stream on loopback, their latency, and the time from "send
//! to a JID never contacted" to its first delivery.
//!
//! Run: `cargo bench -p xor-xmpp --bench stream`. Criterion measures throughput;
//! latency percentiles and cold-start times are printed first.

#![allow(clippy::unwrap_used)] // a benchmark aborts on any failure
#![allow(clippy::disallowed_methods)] // a benchmark measures real time
#![allow(clippy::print_stderr)] // and prints what it measured

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_xmpp::runtime::{XmppConfig, XmppEvent, XmppNode};
use xor_xmpp::{Jid, stanza};

const BURST: usize = 200;

fn config(
    ca: &mut TestCa,
    jid: &str,
    id: u128,
    bootstrap: Option<std::net::SocketAddr>,
) -> XmppConfig {
    let creds = ca.node(jid, NodeId(id));
    let mut cfg = XmppConfig::new(
        &ca.overlay.clone(),
        creds,
        ca.trust_store(),
        Jid::parse(jid).unwrap(),
        "bench",
    );
    cfg.node.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.stream_listen = "127.0.0.1:0".parse().unwrap();
    cfg.node.bootstrap = bootstrap.into_iter().collect();
    cfg.node.may_start_overlay = bootstrap.is_none();
    cfg
}

async fn next_body(rx: &mut mpsc::Receiver<XmppEvent>) -> String {
    loop {
        if let Some(XmppEvent::Stanza(d)) = rx.recv().await {
            return stanza::body(&d.stanza).unwrap_or_default();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut ca = TestCa::new("bench.example", 7);
    let (romeo, juliet, mut inbox) = rt.block_on(async {
        let romeo = XmppNode::start(config(&mut ca, "romeo@m.lit", 1 << 126, None))
            .await
            .unwrap();
        let boot = Some(romeo.overlay().local_addr());
        let juliet = XmppNode::start(config(&mut ca, "juliet@c.lit", 2 << 126, boot))
            .await
            .unwrap();
        let inbox = juliet.events().await.unwrap();
        (romeo, juliet, inbox)
    });
    let to = Jid::parse("juliet@c.lit").unwrap();

    // Latency of single stanzas over the warm stream.
    rt.block_on(async {
        romeo.send(stanza::chat(&to, "warm-up")).await.unwrap();
        next_body(&mut inbox).await;
        let mut samples = Vec::new();
        for i in 0..1000 {
            let start = Instant::now();
            romeo.send(stanza::chat(&to, &i.to_string())).await.unwrap();
            while next_body(&mut inbox).await != i.to_string() {}
            samples.push(start.elapsed());
        }
        samples.sort();
        eprintln!("one-stanza latency over a direct stream: p50 {:?}, p99 {:?}", percentile(&samples, 0.5), percentile(&samples, 0.99));

        // Cold: a user nobody has contacted yet.
        let boot = Some(romeo.overlay().local_addr());
        let mut cold = Vec::new();
        for k in 0..5u128 {
            let jid = format!("new{k}@n.lit");
            let fresh = XmppNode::start(config(&mut ca, &jid, (3 + k) << 120 | 0x55, boot)).await.unwrap();
            let mut rx = fresh.events().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let start = Instant::now();
            romeo.send(stanza::chat(&Jid::parse(&jid).unwrap(), "hello")).await.unwrap();
            next_body(&mut rx).await;
            cold.push(start.elapsed());
            fresh.shutdown().await;
        }
        cold.sort();
        eprintln!("send to an unresolved JID until first delivery (resolve + AppAttach + TLS + stream): median {:?}, max {:?}", percentile(&cold, 0.5), cold[cold.len() - 1]);
    });

    let mut g = c.benchmark_group("direct_stream");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("chat_stanzas", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    for i in 0..BURST {
                        romeo
                            .send(stanza::chat(&to, &format!("m{i}")))
                            .await
                            .unwrap();
                    }
                    let mut got = 0;
                    while got < BURST {
                        next_body(&mut inbox).await;
                        got += 1;
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(async {
        juliet.shutdown().await;
        romeo.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
