//! xor against a server, measured the way a user would compare them: the same minimal
//! XMPP client code (`xor_node::c2s_client`) logged in to the local ports of real
//! `xor-node run` daemons (alice's device → bob's two devices), and to a Prosody
//! (Debian package) relaying between the same accounts on the same machine, the two
//! interleaved in one run. A benchmark, run by hand; results and the exact command
//! are in BENCHMARKS.md.
//!
//! - round trip: alice's client sends to bob's first device (full JID), bob's client
//!   answers alice's full JID; p50 and p99 over `XOR_VS_RTT` round trips;
//! - burst: `XOR_VS_BURST` messages to bob's bare JID, each of bob's two clients must
//!   receive all, in order (RFC 6120 §10.1); rate from the first send to the last
//!   receipt, and the servers' CPU time (user + system of every process carrying the
//!   messages: Prosody, or alice's and bob's daemons) per message.

use std::time::{Duration, Instant};

use xor_node::c2s_client::{C2sClient, ClientOptions};
use xor_node::devnet::{DOMAIN, DevNet, PASSWORD};
use xor_tests::daemon::loopback_users;
use xor_tests::prosody::Prosody;
use xor_xmpp::{Jid, stanza};

/// One system under test: alice's client, bob's two clients, the server processes.
struct System {
    name: &'static str,
    alice: C2sClient,
    bob: Vec<C2sClient>,
    bob_bare: Jid,
    pids: Vec<u32>,
}

fn env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of `pid` so far, from /proc.
fn cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): state is the 3rd field,
    // utime and stime the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let ticks = f.iter().sum::<u64>();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn cpu_all(pids: &[u32]) -> Duration {
    pids.iter().map(|p| cpu(*p)).sum()
}

async fn login(
    server: std::net::SocketAddr,
    user: &str,
    resource: &str,
    roots: Vec<Vec<u8>>,
) -> C2sClient {
    let insecure = roots.is_empty();
    let mut c = C2sClient::connect(&ClientOptions {
        jid: Jid::parse(&format!("{user}@{DOMAIN}")).unwrap(),
        password: PASSWORD.into(),
        resource: resource.into(),
        server,
        tls_roots: roots,
        insecure,
        timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    c.send(&stanza::element(
        "presence",
        xor_xmpp::stream::NS_CLIENT,
        &[],
    ))
    .await
    .unwrap();
    c
}

/// Reads until nothing arrives for a moment (presence, errors, late copies).
async fn drain(c: &mut C2sClient) {
    while c.recv_within(Duration::from_millis(300)).await.is_some() {}
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `n` round trips alice → bob's first device → alice.
async fn round_trips(s: &mut System, n: usize, out: &mut Vec<Duration>) {
    let bob0 = s.bob[0].jid().clone();
    let alice = s.alice.jid().clone();
    for i in 0..n {
        let t = Instant::now();
        s.alice
            .send(&stanza::chat(&bob0, &format!("ping {i}")))
            .await
            .unwrap();
        loop {
            let m = s.bob[0].recv().await.expect("bob's client gets the ping");
            if stanza::body(&m).as_deref() == Some(&format!("ping {i}")) {
                break;
            }
        }
        s.bob[0]
            .send(&stanza::chat(&alice, &format!("pong {i}")))
            .await
            .unwrap();
        loop {
            let m = s.alice.recv().await.expect("alice's client gets the pong");
            if stanza::body(&m).as_deref() == Some(&format!("pong {i}")) {
                break;
            }
        }
        out.push(t.elapsed());
    }
}

/// A burst of `n` messages to bob's bare JID; (seconds until both of bob's clients
/// had all of them, CPU of the servers, whether both got them all in order).
async fn burst(s: &mut System, n: usize) -> (f64, Duration, bool) {
    let bare = s.bob_bare.clone();
    let cpu0 = cpu_all(&s.pids);
    let t = Instant::now();
    let readers: Vec<_> = std::mem::take(&mut s.bob)
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut next = 0;
                let mut in_order = true;
                while next < n {
                    let Some(m) = c.recv_within(Duration::from_secs(30)).await else {
                        break;
                    };
                    if m.name() != "message" {
                        continue;
                    }
                    match stanza::body(&m) {
                        Some(b) if b == format!("b{next}") => next += 1,
                        Some(b) if b.starts_with('b') => {
                            in_order = false;
                            next += 1;
                        }
                        _ => {}
                    }
                }
                (c, next == n && in_order, Instant::now())
            })
        })
        .collect();
    for i in 0..n {
        s.alice
            .send(&stanza::chat(&bare, &format!("b{i}")))
            .await
            .unwrap();
    }
    let mut ok = true;
    let mut last = t;
    for r in readers {
        let (c, all, at) = r.await.unwrap();
        ok &= all;
        last = last.max(at);
        s.bob.push(c);
    }
    (
        last.duration_since(t).as_secs_f64(),
        cpu_all(&s.pids) - cpu0,
        ok,
    )
}

/// `cargo test --release -p xor-tests --test e2e -- --ignored --nocapture bench_against_prosody`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_against_prosody() {
    let (rtts, bursts, size) = (
        env("XOR_VS_RTT", 1000),
        env("XOR_VS_BURSTS", 5),
        env("XOR_VS_BURST", 10_000),
    );
    // xor: alice with one device, bob with two, each an `xor-node run` daemon.
    let net = DevNet::start(&["u0", "u1"]).await.unwrap();
    let (mut daemons, _) = loopback_users(&net, 2, 2).await.unwrap();
    // u0 is alice: one device (the second would get a carbon of every message).
    daemons.remove(1).stop().await;
    let client = |i: usize| daemons[i].ports.client;
    let xor_alice = login(client(0), "u0", "client", vec![]).await;
    let xor_bob = vec![
        login(client(1), "u1", "client", vec![]).await,
        login(client(2), "u1", "client", vec![]).await,
    ];
    // The JIDs differ (u0/u1 there, alice/bob here); the code is the same.
    let prosody = Prosody::start(DOMAIN, &[("alice", PASSWORD), ("bob", PASSWORD)]).await;
    let p_alice = login(prosody.addr, "alice", "a", vec![prosody.ca.clone()]).await;
    let p_bob = vec![
        login(prosody.addr, "bob", "b1", vec![prosody.ca.clone()]).await,
        login(prosody.addr, "bob", "b2", vec![prosody.ca.clone()]).await,
    ];
    let mut systems = [
        System {
            name: "xor",
            alice: xor_alice,
            bob: xor_bob,
            bob_bare: Jid::parse(&format!("u1@{DOMAIN}")).unwrap(),
            pids: daemons.iter().filter_map(|d| d.pid()).collect(),
        },
        System {
            name: "prosody",
            alice: p_alice,
            bob: p_bob,
            bob_bare: Jid::parse(&format!("bob@{DOMAIN}")).unwrap(),
            pids: prosody.pid().into_iter().collect(),
        },
    ];
    for s in &mut systems {
        drain(&mut s.alice).await;
        for b in &mut s.bob {
            drain(b).await;
        }
    }
    // Interleaved: a block of round trips on each, then a burst on each, repeated.
    let mut rtt: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut rate: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu_per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut order: [usize; 2] = [0, 0];
    for round in 0..bursts {
        for (i, s) in systems.iter_mut().enumerate() {
            round_trips(s, rtts / bursts.max(1), &mut rtt[i]).await;
            for b in &mut s.bob {
                drain(b).await;
            }
            let (secs, cpu, ok) = burst(s, size).await;
            // Bob's bare JID reaches both of his devices: messages delivered are 2 × size.
            rate[i].push(size as f64 / secs);
            cpu_per[i].push(cpu.as_secs_f64() * 1e6 / (2 * size) as f64);
            order[i] += usize::from(ok);
            println!(
                "round {round} {:<8} burst {:>8.0} msg/s, {:>6.1} µs CPU per delivered message, {}",
                s.name,
                size as f64 / secs,
                cpu.as_secs_f64() * 1e6 / (2 * size) as f64,
                if ok {
                    "all in order on both devices"
                } else {
                    "LOST OR OUT OF ORDER"
                }
            );
            for b in &mut s.bob {
                drain(b).await;
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\n| measure | xor | Prosody | xor / Prosody |\n|---|---|---|---|");
    for (name, p) in [("round trip p50", 0.5), ("round trip p99", 0.99)] {
        let [a, b] = [0, 1].map(|i| {
            rtt[i].sort();
            percentile(&rtt[i], p)
        });
        println!(
            "| {name} | {a:.0?} | {b:.0?} | {:.2} |",
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    let [ra, rb] = [0, 1].map(|i| med(&mut rate[i]));
    println!(
        "| bare-JID burst of {size} to two devices, median msg/s | {ra:.0} | {rb:.0} | {:.2} |",
        ra / rb
    );
    let [ca, cb] = [0, 1].map(|i| med(&mut cpu_per[i]));
    println!(
        "| server CPU per delivered message, median | {ca:.1} µs | {cb:.1} µs | {:.2} |",
        ca / cb
    );
    println!(
        "| bursts complete and in order | {}/{bursts} | {}/{bursts} | |",
        order[0], order[1]
    );
    let rss: u64 = daemons.iter().filter_map(|d| d.rss_kib()).sum();
    println!(
        "| resident memory (alice's + bob's daemons; Prosody) | {rss} KiB | {} KiB | |",
        prosody.rss_kib().unwrap_or(0)
    );
    for d in daemons {
        d.stop().await;
    }
}
