//! The TURN Server Usage (RFC 6940 §9) between real nodes on loopback: a peer that
//! serves STUN and TURN records itself under TURN-SERVICE, a client (§4.2.1) linked
//! to it finds it, and its ICE agent gathers a relayed candidate there with the
//! credential both ends derive from their TLS link.

use std::time::Duration;

use xor_enrollment::authority::kind_def;
use xor_enrollment::config::KindSpec;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::node::config::ServeRelay;
use xor_overlay::runtime::ice::gather;
use xor_overlay::storage::{KindTable, node_multiple_resource};
use xor_overlay::wire::turn::{TURN_SERVICE, TurnServer};
use xor_overlay::wire::{
    CandType, Decode, IpAddressPort, ModelSpecifier, StoredDataSpecifier, StoredDataValue,
};
use xor_tests::{loopback_config, start};

fn kinds() -> KindTable {
    let mut kinds = KindTable::default();
    kinds.insert(kind_def(&KindSpec::turn_service(), None).unwrap());
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_finds_its_peers_relay_in_the_overlay_and_gathers_a_relayed_candidate_rfc6940_9() {
    let mut ca = TestCa::new("turn.xor", 7);
    let boot_id = NodeId(1 << 120);
    let mut cfg = loopback_config(&mut ca, "relay@example.org", boot_id, None, 1);
    cfg.kinds = kinds();
    cfg.ice.include_loopback = true;
    cfg.ice.serve = Some(ServeRelay {
        listen: "127.0.0.1:0".parse().unwrap(),
        public: None,
    });
    let boot = start(cfg).await.unwrap();
    assert!(boot.joined(Duration::from_secs(10)).await);
    let relay = boot
        .relay_addr()
        .expect("the bootstrap node serves a relay");

    let mut cfg = loopback_config(
        &mut ca,
        "game@example.org",
        NodeId(9 << 120),
        Some(boot.local_addr()),
        2,
    );
    cfg.kinds = kinds();
    cfg.ice.include_loopback = true;
    cfg.client = true;
    let client = start(cfg).await.unwrap();
    assert!(client.joined(Duration::from_secs(10)).await);
    // No STUN or TURN server is configured: without the overlay's relay, no ICE.
    let mut found = Vec::new();
    for _ in 0..100 {
        found = client.overlay_relays();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found, vec![(boot_id, relay)]);

    // The record as stored (§9): TurnServer { iteration 1, the relay's address }.
    let answer = client
        .fetch(
            node_multiple_resource(boot_id, 1),
            vec![StoredDataSpecifier {
                kind: TURN_SERVICE,
                generation: 0,
                model_specifier: ModelSpecifier::Single,
            }],
        )
        .await
        .unwrap();
    let values = answer.kind_responses[0].values.parsed();
    let StoredDataValue::Single(v) = &values[0].value else {
        panic!("{values:?}")
    };
    assert_eq!(
        TurnServer::decode(&v.value).unwrap(),
        TurnServer {
            iteration: 1,
            server_address: IpAddressPort::Addr(relay),
        }
    );

    // ICE gathers server-reflexive and relayed candidates on it: the relay took the
    // credential the client derived from its link.
    let settings = client.ice_settings();
    assert!(settings.enabled());
    let g = gather(&settings, true).await.unwrap();
    let relayed: Vec<_> = g
        .offer
        .candidates
        .iter()
        .filter(|c| matches!(c.cand_type, CandType::Relay(_)))
        .collect();
    assert_eq!(relayed.len(), 1, "{:?}", g.offer.candidates);
    assert!(
        matches!(&relayed[0].addr_port, IpAddressPort::Addr(a) if a.ip() == relay.ip()),
        "{relayed:?}"
    );

    // The relay's own node uses no relay of its own.
    assert!(boot.overlay_relays().is_empty());
    client.leave().await;
    boot.leave().await;
}

/// One side's gathering for the throughput benchmark, and its candidates for the
/// other side: all of them, or only the relayed ones.
async fn agent(
    settings: &xor_overlay::node::config::IceSettings,
    controlling: bool,
    relay_only: bool,
) -> (
    xor_overlay::runtime::ice::Gathered,
    xor_overlay::node::RemoteIce,
) {
    let g = gather(settings, controlling).await.unwrap();
    let candidates = g
        .offer
        .candidates
        .iter()
        .filter(|c| !relay_only || matches!(c.cand_type, CandType::Relay(_)))
        .cloned()
        .collect();
    let remote = xor_overlay::node::RemoteIce {
        ufrag: g.offer.ufrag.clone(),
        password: g.offer.password.clone(),
        candidates,
    };
    (g, remote)
}

/// Benchmark, not run by the test command: bytes per second of the stream ICE opens
/// (SCTP over the selected UDP pair; the TLS both paths run on top is left out)
/// between two agents on loopback, over a host pair and through the relay a peer
/// serves (each side offering only its relayed candidate, so every pair crosses
/// the relay). Run with `cargo test --release -p xor-tests --test e2e -- --ignored
/// --nocapture bench_stream_throughput`; the table is in `BENCHMARKS.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
#[allow(clippy::print_stdout)] // the benchmark's report
async fn bench_stream_throughput_direct_vs_relayed() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use xor_overlay::node::config::{IceSettings, TurnServer as TurnUrl};
    use xor_overlay::runtime::LinkId;
    use xor_overlay::runtime::tls::LinkSecret;
    use xor_overlay::runtime::turn_server::{RelayLimits, RelayServer};
    use xor_overlay::runtime::turn_service::LinkSecrets;

    const BYTES: usize = 64 << 20;
    let (a_id, b_id, relay_id) = (NodeId(0xa), NodeId(0xb), NodeId(0x7e));
    let at_relay = Arc::new(LinkSecrets::default());
    at_relay.insert(a_id, LinkId(1), LinkSecret([1; 32]));
    at_relay.insert(b_id, LinkId(2), LinkSecret([2; 32]));
    let limits = RelayLimits {
        allow_private_peers: true,
        ..RelayLimits::default()
    };
    let listen = "127.0.0.1:0".parse().unwrap();
    let relay = RelayServer::start(listen, listen.ip(), at_relay, limits)
        .await
        .unwrap();
    let settings = |id: NodeId, secret: u8, relayed: bool| {
        let mut s = IceSettings {
            include_loopback: true,
            stun: vec![format!("stun:{}", relay.local_addr())],
            ..Default::default()
        };
        if relayed {
            let mine = LinkSecrets::default();
            mine.insert(relay_id, LinkId(9), LinkSecret([secret; 32]));
            let (username, password) = mine.credential(id, relay_id).unwrap();
            s.turn.push(TurnUrl {
                url: format!("turn:{}", relay.local_addr()),
                username,
                password,
            });
        }
        s
    };
    println!("| path | MiB/s | selected pair's far end |");
    println!("|---|---|---|");
    for relayed in [false, true] {
        let (a, to_a) = agent(&settings(a_id, 1, relayed), true, relayed).await;
        let (b, to_b) = agent(&settings(b_id, 2, relayed), false, relayed).await;
        let relay_addrs: Vec<_> = to_b
            .candidates
            .iter()
            .chain(&to_a.candidates)
            .filter(|c| matches!(c.cand_type, CandType::Relay(_)))
            .filter_map(|c| match c.addr_port {
                IpAddressPort::Addr(a) => Some(a),
                _ => None,
            })
            .collect();
        let (_keep_a, checks_a) = tokio::sync::mpsc::channel(1);
        let (_keep_b, checks_b) = tokio::sync::mpsc::channel(1);
        let controlling = tokio::spawn(a.connect(to_b, true, checks_a));
        let (mut y, _) = b.connect(to_a, false, checks_b).await.unwrap();
        y.write_all(b"go").await.unwrap();
        let (mut x, far) = controlling.await.unwrap().unwrap();
        let mut go = [0u8; 2];
        x.read_exact(&mut go).await.unwrap();
        // Relayed: neither side knows the other's host addresses, so every pair has
        // a relayed end — the far end is the peer's relayed address, or its host
        // address as the relay saw it (a peer-reflexive candidate behind our relay).
        let far_kind = if relay_addrs.contains(&far) {
            "its relayed candidate"
        } else if relayed {
            "peer-reflexive, through our relay"
        } else {
            "host"
        };
        let started = std::time::Instant::now();
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 16 * 1024];
            let mut sent = 0;
            while sent < BYTES {
                x.write_all(&chunk).await.unwrap();
                sent += chunk.len();
            }
            x.flush().await.unwrap();
            x
        });
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < BYTES {
            let n = y.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended after {got} bytes");
            got += n;
        }
        let secs = started.elapsed().as_secs_f64();
        drop(writer.await.unwrap());
        let path = if relayed { "relayed" } else { "direct" };
        println!(
            "| {path} | {:.1} | {far_kind} |",
            BYTES as f64 / secs / f64::from(1 << 20)
        );
    }
    relay.close().await;
}
