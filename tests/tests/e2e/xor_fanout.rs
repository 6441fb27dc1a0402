//! XMPP over RELOAD (XEP-0415) on a 10-node TLS overlay on loopback: three users with
//! one, two and three devices; every message to a bare JID reaches every device of the
//! recipient exactly once and the sender's other devices as a `sent` carbon; full JIDs
//! reach one device; a device that goes offline and returns is reached again; forged
//! registrations are refused; impostors and bad input are disconnected with the right
//! stream error, and the node keeps working.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::node::RequestError;
use xor_overlay::runtime::{Expect, LinkStream, Overlay, TlsContext};
use xor_overlay::wire::{DataValue, Destination, Encode, ErrorCode, StoredDataValue};
use xor_tests::{loopback_config, start, wait_stable, xmpp_config};
use xor_xmpp::kind::{XMPP_LOCATION, resource_of, xmpp_location_kind};
use xor_xmpp::location::XmppLocation;
use xor_xmpp::resolve::Route;
use xor_xmpp::runtime::{XmppEvent, XmppNode};
use xor_xmpp::stanza::{self, Carbon};
use xor_xmpp::{Jid, XMPP_APPLICATION};

const OVERLAY: &str = "xor.example";

struct Dev {
    node: XmppNode,
    events: mpsc::Receiver<XmppEvent>,
}

async fn device(
    ca: &mut TestCa,
    jid: &str,
    res: &str,
    id: u128,
    bootstrap: Option<SocketAddr>,
) -> Dev {
    let cfg = xmpp_config(ca, jid, res, NodeId(id), bootstrap, id as u64);
    let node = XmppNode::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("{jid}/{res} starts: {e}"));
    let events = node.events().await.expect("events");
    Dev { node, events }
}

/// Messages (body, carbon) the device's application received within `wait`.
async fn drain(d: &mut Dev, wait: Duration) -> Vec<(String, Option<Carbon>, String)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, d.events.recv()).await {
        if let XmppEvent::Stanza(del) = ev
            && let Some(body) = stanza::body(&del.stanza)
        {
            out.push((
                body,
                del.carbon,
                del.stanza.attr("from").unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

/// The overlay's first node: a plain peer that knows the XMPP-LOCATION Kind.
async fn first_peer(ca: &mut TestCa) -> Overlay {
    let mut cfg = loopback_config(ca, "peer0@peers.example", NodeId(1 << 120), None, 1);
    cfg.kinds
        .insert(xmpp_location_kind(XMPP_LOCATION, 64, 1024));
    let first = start(cfg).await.unwrap();
    assert!(first.joined(Duration::from_secs(5)).await);
    first
}

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xor_fanout_to_every_device() {
    let mut ca = TestCa::new(OVERLAY, 415);
    // Four plain overlay peers first, then six devices: ten nodes.
    let first = first_peer(&mut ca).await;
    let boot = Some(first.local_addr());
    let mut peers = vec![first];
    for i in 1..4u128 {
        let mut cfg = loopback_config(
            &mut ca,
            &format!("peer{i}@peers.example"),
            NodeId((i * 4 + 1) << 120),
            boot,
            i as u64,
        );
        cfg.kinds
            .insert(xmpp_location_kind(XMPP_LOCATION, 64, 1024));
        let p = start(cfg).await.unwrap();
        assert!(p.joined(Duration::from_secs(20)).await);
        peers.push(p);
    }
    let mut alice = vec![device(&mut ca, "alice@a.example", "laptop", 0x2 << 120, boot).await];
    let mut bob = vec![
        device(&mut ca, "bob@b.example", "phone", 0x6 << 120, boot).await,
        device(&mut ca, "bob@b.example", "desk", 0xa << 120, boot).await,
    ];
    let mut carol = vec![
        device(&mut ca, "carol@c.example", "one", 0x3 << 120, boot).await,
        device(&mut ca, "carol@c.example", "two", 0x7 << 120, boot).await,
        device(&mut ca, "carol@c.example", "three", 0xb << 120, boot).await,
    ];
    let overlays: Vec<Overlay> = peers
        .iter()
        .cloned()
        .chain(
            [&alice, &bob, &carol]
                .iter()
                .flat_map(|u| u.iter().map(|d| d.node.overlay().clone())),
        )
        .collect();
    assert_eq!(overlays.len(), 10);
    wait_stable(&overlays, Duration::from_secs(30))
        .await
        .expect("stable overlay");
    // Let each user's devices find each other.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for u in [&alice, &bob, &carol] {
        for d in u.iter() {
            d.node.connect_own_devices().await;
        }
    }

    // Every device sends one message to every user's bare JID.
    let users = ["alice@a.example", "bob@b.example", "carol@c.example"];
    let mut sent: Vec<(String, String, String)> = Vec::new(); // (body, sender full jid, recipient)
    for (u, devs) in [&alice, &bob, &carol].iter().enumerate() {
        for d in devs.iter() {
            for to in users {
                if to == users[u] {
                    continue;
                }
                let body = format!("from {} to {to}", d.node.jid());
                d.node
                    .send(stanza::chat(&jid(to), &body))
                    .await
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
                sent.push((body, d.node.jid().to_string(), to.to_owned()));
            }
        }
    }
    let mut got: HashMap<String, Vec<(String, Option<Carbon>, String)>> = HashMap::new();
    for devs in [&mut alice, &mut bob, &mut carol] {
        for d in devs.iter_mut() {
            got.insert(
                d.node.jid().to_string(),
                drain(d, Duration::from_secs(3)).await,
            );
        }
    }
    for (body, sender, to) in &sent {
        for (device, msgs) in &got {
            let bare = jid(device).bare().to_string();
            let direct = msgs
                .iter()
                .filter(|(b, c, _)| b == body && *c != Some(Carbon::Sent))
                .count();
            let carbons = msgs
                .iter()
                .filter(|(b, c, _)| b == body && *c == Some(Carbon::Sent))
                .count();
            let sender_bare = jid(sender).bare().to_string();
            if &bare == to {
                assert_eq!(
                    (direct, carbons),
                    (1, 0),
                    "{device} must get '{body}' exactly once"
                );
            } else if bare == sender_bare && device != sender {
                assert_eq!(
                    (direct, carbons),
                    (0, 1),
                    "{device} must get a sent carbon of '{body}'"
                );
            } else {
                assert_eq!((direct, carbons), (0, 0), "{device} must not see '{body}'");
            }
        }
    }

    // A full JID reaches only that device; it hands the user's other devices a
    // `received` carbon (XEP-0280 §6), which their applications can tell apart.
    alice[0]
        .node
        .send(stanza::chat(&jid("carol@c.example/two"), "just two"))
        .await
        .unwrap();
    let mut direct = Vec::new();
    let mut received = Vec::new();
    for d in carol.iter_mut() {
        let msgs = drain(d, Duration::from_secs(2)).await;
        let count = |c: Option<Carbon>| {
            msgs.iter()
                .filter(|(b, k, _)| b == "just two" && *k == c)
                .count()
        };
        direct.push(count(None));
        received.push(count(Some(Carbon::Received)));
    }
    assert_eq!(direct, vec![0, 1, 0]);
    assert_eq!(received, vec![1, 0, 1]);

    // Bob's desk goes offline cleanly and comes back: re-registered, reached again.
    let desk = bob.pop().unwrap();
    desk.node.shutdown().await;
    let routes = alice[0].node.resolve(&jid("bob@b.example")).await.unwrap();
    assert_eq!(routes.len(), 1, "the desk's location was removed");
    let mut desk = device(&mut ca, "bob@b.example", "desk", 0xa << 120, boot).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = alice[0]
        .node
        .send(stanza::chat(&jid("bob@b.example"), "welcome back"))
        .await
        .unwrap();
    // Written to the phone at once; the desk gets it when its stream is up.
    assert_eq!(report.delivered_to.len() + report.connecting.len(), 2);
    assert!(
        drain(&mut desk, Duration::from_secs(2))
            .await
            .iter()
            .any(|(b, _, _)| b == "welcome back")
    );
    bob.push(desk);

    // Forged registrations are refused (XEP-0415: Error_Forbidden).
    let mallory = device(&mut ca, "mallory@m.example", "x", 0xc << 120, boot).await;
    let key = |n: NodeId| Bytes::copy_from_slice(&n.to_be_bytes());
    let value = DataValue::new(
        XmppLocation::device(mallory.node.overlay().node_id(), 0)
            .to_bytes()
            .unwrap(),
    );
    let under_alice = StoredDataValue::Dictionary {
        key: key(mallory.node.overlay().node_id()),
        value: value.clone(),
    };
    let err = mallory
        .node
        .overlay()
        .store(
            resource_of(&jid("alice@a.example")),
            vec![(XMPP_LOCATION, vec![under_alice])],
            Duration::from_secs(60),
        )
        .await;
    assert!(
        matches!(err, Err(RequestError::Error(ref e)) if e.code == ErrorCode::Forbidden),
        "{err:?}"
    );
    let other_key = StoredDataValue::Dictionary {
        key: key(NodeId(0x2 << 120)),
        value,
    };
    let err = mallory
        .node
        .overlay()
        .store(
            resource_of(&jid("mallory@m.example")),
            vec![(XMPP_LOCATION, vec![other_key])],
            Duration::from_secs(60),
        )
        .await;
    assert!(
        matches!(err, Err(RequestError::Error(ref e)) if e.code == ErrorCode::Forbidden),
        "{err:?}"
    );

    // A device answering for another JID is disconnected: a route that claims carol's
    // node is bob's device.
    let bogus = Route {
        jid: jid("bob@b.example"),
        node: NodeId(0x3 << 120),
        destinations: vec![Destination::Node(NodeId(0x3 << 120))],
        priority: 0,
    };
    assert!(
        alice[0].node.connect(bogus).await.is_err(),
        "carol's device does not speak for bob"
    );
    // The same over a fresh connection: mallory's device answers the AppAttach and
    // connects, but its certificate is not bob's: the stream is closed.
    let bogus = Route {
        jid: jid("bob@b.example"),
        node: NodeId(0xc << 120),
        destinations: vec![Destination::Node(NodeId(0xc << 120))],
        priority: 0,
    };
    assert!(
        alice[0].node.connect(bogus).await.is_err(),
        "mallory's device does not speak for bob"
    );
    // A connection from a node nobody AppAttached to is closed at once.
    let stranger = TlsContext::new(
        ca.node("eve@e.example", NodeId(0xe << 120)),
        ca.trust_store(),
    )
    .unwrap();
    let (mut io, _) = stranger
        .connect(alice[0].node.stream_addr().unwrap(), Expect::AnyNode)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
        .await
        .expect("closed promptly");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "no stream for an unexpected peer"
    );

    // Bad input on a stream gets the RFC 6120 stream error; the device keeps working.
    for (bad, condition) in [
        (b"<message><body></message>".to_vec(), "not-well-formed"),
        (b"<message from='alice@a.example/laptop' to='bob@b.example'><body>spoof</body></message>".to_vec(), "invalid-from"),
        (format!("<message><body>{}</body></message>", "x".repeat(10 << 20)).into_bytes(), "policy-violation"),
        (b"<foo xmlns='urn:example:unknown'/>".to_vec(), "unsupported-stanza-type"),
        // Nested 5,000 deep: used to crash the receiving process (stack overflow in a
        // recursive clone); refused while parsing (hardening issue, defect 1).
        (b"<message>".repeat(5000), "policy-violation"),
    ] {
        let reply = hostile_stream(&mut ca, &peers[0], &bob[0].node, &bad).await;
        assert!(reply.contains(condition), "expected {condition}, got: {reply}");
    }
    let reply = hostile_header(&mut ca, &peers[0], &bob[0].node, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='mallory@m.example/x' to='bob@b.example' version='1.0'>").await;
    assert!(reply.contains("invalid-namespace"), "{reply}");
    alice[0]
        .node
        .send(stanza::chat(&jid("bob@b.example"), "still there?"))
        .await
        .expect("bob's device still works");
    assert!(
        drain(&mut bob[0], Duration::from_secs(2))
            .await
            .iter()
            .any(|(b, _, _)| b == "still there?")
    );

    for u in [&alice, &bob, &carol] {
        for d in u.iter() {
            d.node.shutdown().await;
        }
    }
    for p in &peers {
        p.leave().await;
    }
}

/// Makes `target` connect to a raw stream listener of mallory's (an AppAttach through
/// the overlay from a plain node), opens the stream, writes `bad`, returns what came
/// back.
async fn hostile_stream(ca: &mut TestCa, via: &Overlay, target: &XmppNode, bad: &[u8]) -> String {
    let header = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='mallory@m.example/x' to='bob@b.example' version='1.0'>";
    let mut io = raw_stream(ca, via, target).await;
    io.write_all(header).await.unwrap();
    let mut got = read_some(&mut io).await; // header + features
    io.write_all(bad).await.unwrap_or(());
    got.push_str(&read_some(&mut io).await);
    got
}

async fn hostile_header(
    ca: &mut TestCa,
    via: &Overlay,
    target: &XmppNode,
    header: &[u8],
) -> String {
    let mut io = raw_stream(ca, via, target).await;
    io.write_all(header).await.unwrap();
    read_some(&mut io).await
}

async fn read_some(io: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1500), io.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A direct stream between `target` and mallory (an AppAttach from a plain node).
async fn raw_stream(ca: &mut TestCa, via: &Overlay, target: &XmppNode) -> LinkStream {
    let id = NodeId(0xd1 << 120 | rand_id());
    let mut cfg = loopback_config(ca, "mallory@m.example", id, Some(via.local_addr()), 99);
    cfg.kinds
        .insert(xmpp_location_kind(XMPP_LOCATION, 64, 1024));
    cfg.applications = vec![(XMPP_APPLICATION, "127.0.0.1:0".parse().unwrap())];
    let mallory = start(cfg).await.unwrap();
    assert!(mallory.joined(Duration::from_secs(20)).await);
    let dest = vec![Destination::Node(target.overlay().node_id())];
    let stream = mallory
        .app_attach(dest, XMPP_APPLICATION)
        .await
        .expect("the device answers the AppAttach and connects");
    std::mem::forget(mallory); // keep the overlay node alive for the stream's duration
    stream.stream
}

fn rand_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed) as u128
}

/// A device that crashed leaves its location record behind until it expires. Sending
/// to its user must not stall on it: the live device gets the stanza after a bounded
/// first-contact wait, and the dead one is then remembered and not tried again for a
/// while (XEP-0415 with stale records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_device_does_not_stall_sending_to_its_user() {
    let mut ca = TestCa::new(OVERLAY, 416);
    let first = first_peer(&mut ca).await;
    let boot = Some(first.local_addr());
    let alice = device(&mut ca, "alice@a.example", "laptop", 0x2 << 120, boot).await;
    let mut desk = device(&mut ca, "bob@b.example", "desk", 0x6 << 120, boot).await;
    let phone = device(&mut ca, "bob@b.example", "phone", 0xa << 120, boot).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The phone dies without a word; its record stays in the overlay.
    let phone_id = phone.node.overlay().node_id();
    phone.node.kill();
    assert_eq!(
        alice
            .node
            .resolve(&jid("bob@b.example"))
            .await
            .unwrap()
            .len(),
        2,
        "the stale record is still there"
    );
    // Bounded by the first-contact wait (5 s), not by the overlay's transaction
    // timeout (15 s) or the stream's (20 s).
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        alice
            .node
            .send(stanza::chat(&jid("bob@b.example"), "are you there?")),
    )
    .await
    .expect("sending is bounded")
    .expect("the live device gets it");
    assert_eq!(report.delivered_to.len(), 1);
    assert!(
        drain(&mut desk, Duration::from_secs(2))
            .await
            .iter()
            .any(|(b, _, _)| b == "are you there?")
    );
    // Once the attempt has failed, the dead device is not tried again for a while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = alice
            .node
            .send(stanza::chat(&jid("bob@b.example"), "still?"))
            .await
            .unwrap();
        assert_eq!(report.delivered_to.len(), 1);
        let remembered = alice
            .node
            .connect(xor_xmpp::resolve::Route {
                jid: jid("bob@b.example"),
                node: phone_id,
                destinations: vec![Destination::Node(phone_id)],
                priority: 10,
            })
            .await;
        if let Err(xor_xmpp::runtime::ConnectError::Held { node, .. }) = &remembered {
            assert_eq!(*node, phone_id);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failure is never remembered: {remembered:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// XEP-0415 address forwarding: juliet's device stores "to contact me, dereference
/// romeo@…"; a sender resolves through it, and the stanza goes to romeo's devices;
/// juliet's periodic refresh stores the forward again, never her route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_is_followed_by_senders_and_kept_by_the_refresh_xep0415() {
    let mut ca = TestCa::new(OVERLAY, 417);
    let first = first_peer(&mut ca).await;
    let boot = Some(first.local_addr());
    let alice = device(&mut ca, "alice@a.example", "laptop", 0x2 << 120, boot).await;
    let mut romeo = device(&mut ca, "romeo@m.example", "phone", 0x6 << 120, boot).await;
    // Juliet refreshes her record every 2.4 s (80 % of 3 s).
    let mut cfg = xmpp_config(
        &mut ca,
        "juliet@c.example",
        "tablet",
        NodeId(0xa << 120),
        boot,
        3,
    );
    cfg.registration_lifetime = Duration::from_secs(3);
    let juliet = XmppNode::start(cfg).await.unwrap();
    juliet
        .register_forward(&jid("romeo@m.example"))
        .await
        .unwrap();

    let report = alice
        .node
        .send(stanza::chat(
            &jid("juliet@c.example"),
            "for juliet, via romeo",
        ))
        .await
        .unwrap();
    assert_eq!(
        report
            .delivered_to
            .iter()
            .map(|d| d.jid.to_string())
            .collect::<Vec<_>>(),
        vec!["romeo@m.example/phone".to_owned()]
    );
    assert!(
        drain(&mut romeo, Duration::from_secs(2))
            .await
            .iter()
            .any(|(b, _, _)| b == "for juliet, via romeo")
    );
    // Several refreshes later the record still forwards.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let routes = alice.node.resolve(&jid("juliet@c.example")).await.unwrap();
    assert!(!routes.is_empty());
    assert!(
        routes.iter().all(|r| r.jid == jid("romeo@m.example")),
        "the refresh replaced the forward: {routes:?}"
    );
    // Ending the forward stores the route again.
    juliet.clear_forward().await.unwrap();
    let routes = alice.node.resolve(&jid("juliet@c.example")).await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].jid, jid("juliet@c.example"));
}

/// Direct streams are bounded: beyond `max_streams` other users' devices, the least
/// preferred stream is closed; nothing is lost, the closed peer reconnects when it
/// next sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_streams_are_bounded_and_nothing_is_lost() {
    let mut ca = TestCa::new(OVERLAY, 418);
    let first = first_peer(&mut ca).await;
    let boot = Some(first.local_addr());
    let mut cfg = xmpp_config(
        &mut ca,
        "alice@a.example",
        "laptop",
        NodeId(0x2 << 120),
        boot,
        2,
    );
    cfg.max_streams = 2;
    let alice_node = XmppNode::start(cfg).await.unwrap();
    let mut alice = Dev {
        events: alice_node.events().await.unwrap(),
        node: alice_node,
    };
    let mut others = Vec::new();
    for (i, user) in ["bob@b.example", "carol@c.example", "dave@d.example"]
        .iter()
        .enumerate()
    {
        others.push(device(&mut ca, user, "phone", (0x4 + 2 * i as u128) << 120, boot).await);
    }
    for round in 0..2 {
        for o in &others {
            let body = format!("round {round} from {}", o.node.jid());
            o.node
                .send(stanza::chat(&jid("alice@a.example"), &body))
                .await
                .unwrap_or_else(|e| panic!("{body}: {e}"));
        }
        let got = drain(&mut alice, Duration::from_secs(3)).await;
        for o in &others {
            let body = format!("round {round} from {}", o.node.jid());
            assert!(
                got.iter().any(|(b, _, _)| *b == body),
                "lost: {body}; got {got:?}"
            );
        }
        let open = alice.node.devices().await.len();
        assert!(open <= 2, "{open} streams open");
    }
}
