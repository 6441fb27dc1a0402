//! The relay a peer serves (RFC 6940 §9, [`super::turn_server`]), driven by the
//! TURN client of the `turn` crate over loopback: who may allocate, the quota, and
//! where relayed packets may go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use super::link::LinkId;
use super::tls::LinkSecret;
use super::turn_server::{REALM, RelayLimits, RelayServer, relay_allowed};
use super::turn_service::LinkSecrets;
use crate::id::NodeId;

const SERVER: NodeId = NodeId(0x5e);

/// Both ends of a link from `node` to the relay's node, with `secret`.
fn linked(node: NodeId, secret: u8) -> (Arc<LinkSecrets>, Arc<LinkSecrets>) {
    let (at_relay, at_node) = (LinkSecrets::default(), LinkSecrets::default());
    at_relay.insert(node, LinkId(1), LinkSecret([secret; 32]));
    at_node.insert(SERVER, LinkId(7), LinkSecret([secret; 32]));
    (Arc::new(at_relay), Arc::new(at_node))
}

async fn relay(secrets: Arc<LinkSecrets>, limits: RelayLimits) -> RelayServer {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    RelayServer::start(listen, listen.ip(), secrets, limits)
        .await
        .unwrap()
}

/// A TURN client of `server` with `username` and `password`.
async fn client(server: SocketAddr, username: &str, password: &str) -> Client {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let c = Client::new(ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
        realm: REALM.into(),
        software: String::new(),
        rto_in_ms: 100,
        conn,
        vnet: None,
    })
    .await
    .unwrap();
    c.listen().await.unwrap();
    c
}

fn lenient() -> RelayLimits {
    RelayLimits {
        allow_private_peers: true,
        ..RelayLimits::default()
    }
}

#[tokio::test]
async fn a_linked_peer_allocates_with_its_links_credential_and_no_one_else_does() {
    let node = NodeId(0xa1);
    let (at_relay, at_node) = linked(node, 9);
    let server = relay(at_relay.clone(), lenient()).await;
    let addr = server.local_addr();
    let (user, password) = at_node.credential(node, SERVER).unwrap();
    assert!(user.starts_with(&node.to_string()), "{user}");

    // STUN: anyone learns its address (RFC 5389 Binding needs no credential).
    let c = client(addr, "", "").await;
    let mapped = c.send_binding_request().await.unwrap();
    assert_eq!(mapped.ip(), addr.ip());

    let c = client(addr, &user, &password).await;
    let relayed = c.allocate().await.expect("the linked peer allocates");
    assert_eq!(relayed.local_addr().unwrap().ip(), addr.ip());
    assert_eq!(server.allocations(), 1);

    // The right user name with another password, another link's fingerprint, and a
    // Node-ID with no link to the relay are all refused.
    let wrong = client(addr, &user, "00000000000000000000000000000000").await;
    assert!(wrong.allocate().await.is_err());
    let (_, other) = linked(node, 10);
    let (other_user, other_password) = other.credential(node, SERVER).unwrap();
    assert_ne!(other_user, user);
    let stale = client(addr, &other_user, &other_password).await;
    assert!(stale.allocate().await.is_err());
    let (_, stranger) = linked(NodeId(0xbad), 9);
    let (s_user, s_password) = stranger.credential(NodeId(0xbad), SERVER).unwrap();
    let s = client(addr, &s_user, &s_password).await;
    assert!(s.allocate().await.is_err());

    // When the link goes down its credential goes with it.
    at_relay.remove(LinkId(1));
    let after = client(addr, &user, &password).await;
    assert!(after.allocate().await.is_err());
    assert_eq!(server.allocations(), 1);
    server.close().await;
}

#[tokio::test]
async fn an_allocation_flood_from_one_peer_stops_at_its_quota_and_leaves_others_theirs() {
    let (a, b) = (NodeId(0xa), NodeId(0xb));
    let at_relay = Arc::new(LinkSecrets::default());
    at_relay.insert(a, LinkId(1), LinkSecret([1; 32]));
    at_relay.insert(b, LinkId(2), LinkSecret([2; 32]));
    let limits = RelayLimits {
        per_peer: 3,
        total: 5,
        allow_private_peers: true,
    };
    let server = relay(at_relay, limits).await;
    let addr = server.local_addr();
    let (_, at_a) = linked(a, 1);
    let (_, at_b) = linked(b, 2);
    let (ua, pa) = at_a.credential(a, SERVER).unwrap();
    let (ub, pb) = at_b.credential(b, SERVER).unwrap();

    // One allocation per client socket (RFC 5766 §5: one per 5-tuple).
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let c = client(addr, &ua, &pa).await;
        match c.allocate().await {
            Ok(conn) => held.push((c, conn)),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(
        (held.len(), refused),
        (3, 7),
        "a peer holds its quota, no more"
    );
    assert_eq!(server.allocations(), 3);

    // The other peer still gets its share, up to the total.
    let mut others = Vec::new();
    for _ in 0..4 {
        let c = client(addr, &ub, &pb).await;
        if let Ok(conn) = c.allocate().await {
            others.push((c, conn));
        }
    }
    assert_eq!(others.len(), 2, "the total of 5 bounds the relay");
    assert_eq!(server.allocations(), 5);

    // An allocation that ends gives its slot back.
    let (c, conn) = held.pop().unwrap();
    conn.close().await.unwrap();
    c.close().await.unwrap();
    for _ in 0..50 {
        if server.allocations() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.allocations(), 4);
    let c = client(addr, &ua, &pa).await;
    assert!(c.allocate().await.is_ok());
    server.close().await;
}

/// Sends one packet through a fresh allocation on a relay with `limits` to a
/// socket on loopback; whether it arrived.
async fn relays_to_loopback(limits: RelayLimits) -> bool {
    let node = NodeId(0xc);
    let (at_relay, at_node) = linked(node, 3);
    let server = relay(at_relay, limits).await;
    let (user, password) = at_node.credential(node, SERVER).unwrap();
    let c = client(server.local_addr(), &user, &password).await;
    let relayed = c.allocate().await.unwrap();
    let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relayed
        .send_to(b"through the relay", target.local_addr().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(800), target.recv_from(&mut buf)).await;
    server.close().await;
    matches!(got, Ok(Ok((17, _))))
}

#[tokio::test]
async fn the_relay_sends_nothing_into_private_or_loopback_networks_unless_told_to() {
    assert!(relays_to_loopback(lenient()).await, "allowed: delivered");
    assert!(
        !relays_to_loopback(RelayLimits::default()).await,
        "a packet to loopback through a public relay must be dropped"
    );
    for denied in [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.1.1",
    ] {
        assert!(!relay_allowed(denied.parse().unwrap(), false), "{denied}");
    }
    for denied in [
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ] {
        assert!(!relay_allowed(denied.parse().unwrap(), false), "{denied}");
    }
    assert!(!relay_allowed("224.0.0.1".parse().unwrap(), true));
    for allowed in ["203.0.113.9", "198.51.100.2", "2001:db8::1"] {
        assert!(relay_allowed(allowed.parse().unwrap(), false), "{allowed}");
    }
}
