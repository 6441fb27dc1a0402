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
