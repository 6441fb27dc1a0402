//! A game embeds xor through `xor_node::embed`: two players enroll over HTTPS with a
//! password, join, subscribe to each other, chat both ways, see presence and each
//! other's reachable devices; a game that stops draining events loses only the oldest
//! ones (counted), never stalls the node; savedata restarts a device without files.

use std::time::Duration;

use xor_node::devnet::{DevNet, OVERLAY};
use xor_node::embed::{Builder, Chat, ChatError, ChatEvent, Show};
use xor_node::roster::Subscription;

/// Waits for the first event `want` accepts, skipping others.
async fn expect(chat: &Chat, what: &str, want: impl Fn(&ChatEvent) -> bool) -> ChatEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, chat.next_event()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("{}: closed while waiting for {what}", chat.jid()),
            Err(_) => panic!("{}: no {what} within 20 s", chat.jid()),
        }
    }
}

async fn players(net: &DevNet, bob_events: usize) -> (Chat, Chat) {
    let alice = net
        .embed("alice")
        .start_overlay(true)
        .start()
        .await
        .expect("alice starts");
    let bob = net
        .embed("bob")
        .bootstrap(alice.overlay_address())
        .event_capacity(bob_events)
        .start()
        .await
        .expect("bob starts");
    (alice, bob)
}

fn message(body: &str) -> impl Fn(&ChatEvent) -> bool + '_ {
    move |e| matches!(e, ChatEvent::Message { body: b, .. } if b == body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_players_subscribe_chat_and_see_presence_and_devices() {
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let (alice, bob) = players(&net, 256).await;
    assert_eq!(alice.jid().to_string(), "alice@example.org/game");

    // Subscription both ways (RFC 6121 §3).
    alice.subscribe("bob@example.org").await.unwrap();
    expect(&bob, "alice's request", |e| {
        matches!(e, ChatEvent::SubscriptionRequest { from } if from.to_string() == "alice@example.org")
    })
    .await;
    bob.approve("alice@example.org").await.unwrap();
    expect(&alice, "bob's approval", |e| {
        matches!(e, ChatEvent::SubscriptionApproved { from } if from.to_string() == "bob@example.org")
    })
    .await;
    let contacts = alice.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0].subscription, Subscription::To);

    // Bob's status reaches alice, who may see it.
    bob.set_presence(Show::Away, Some("brb")).await.unwrap();
    let p = expect(
        &alice,
        "bob's presence",
        |e| matches!(e, ChatEvent::Presence { show: Some(s), .. } if s == "away"),
    )
    .await;
    let ChatEvent::Presence { from, status, .. } = p else {
        unreachable!()
    };
    assert_eq!(from.to_string(), "bob@example.org/game");
    assert_eq!(status.as_deref(), Some("brb"));

    // Messages both ways: to a bare JID, and an answer to the full JID.
    let id = alice.send_message("bob@example.org", "gg").await.unwrap();
    let got = expect(&bob, "alice's message", message("gg")).await;
    let ChatEvent::Message {
        from, id: got_id, ..
    } = got
    else {
        unreachable!()
    };
    assert_eq!(from.to_string(), "alice@example.org/game");
    assert_eq!(got_id, Some(id));
    bob.send_message(&from.to_string(), "rematch?")
        .await
        .unwrap();
    expect(&alice, "bob's answer", message("rematch?")).await;

    // Which of bob's devices can be reached.
    let devices = alice.devices_of("bob@example.org").await.unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].reachable, Ok(()));
    assert_eq!(
        devices[0].jid.as_ref().map(ToString::to_string).as_deref(),
        Some("bob@example.org/game")
    );

    // A user nobody registered: the failure comes back with the message's id.
    let id = alice
        .send_message("nobody@example.org", "hello?")
        .await
        .unwrap();
    let failed = expect(&alice, "the failure", |e| {
        matches!(e, ChatEvent::MessageFailed { .. })
    })
    .await;
    assert!(
        matches!(&failed, ChatEvent::MessageFailed { id: Some(i), .. } if *i == id),
        "{failed:?}"
    );

    // Bad arguments are errors, not panics.
    assert!(matches!(
        alice.send_message("not a jid@@", "x").await,
        Err(ChatError::Jid(_))
    ));
    assert!(matches!(
        alice
            .send_message(
                "bob@example.org",
                &"x".repeat(xor_node::embed::MAX_BODY + 1)
            )
            .await,
        Err(ChatError::Invalid(_))
    ));
    // At the limits: a body of MAX_BODY bytes goes through; a longer status does not.
    let big = "y".repeat(xor_node::embed::MAX_BODY);
    alice.send_message("bob@example.org", &big).await.unwrap();
    expect(
        &bob,
        "the largest body",
        |e| matches!(e, ChatEvent::Message { body, .. } if body.len() == xor_node::embed::MAX_BODY),
    )
    .await;
    assert!(matches!(
        alice
            .set_presence(
                Show::Online,
                Some(&"s".repeat(xor_node::embed::MAX_STATUS + 1))
            )
            .await,
        Err(ChatError::Invalid(_))
    ));

    // Bob leaves: alice sees him go offline.
    bob.shutdown().await.unwrap();
    expect(&alice, "bob going offline", |e| {
        matches!(
            e,
            ChatEvent::Presence {
                available: false,
                ..
            }
        )
    })
    .await;
    assert!(matches!(bob.shutdown().await, Err(ChatError::Closed)));
    assert!(matches!(
        bob.send_message("alice@example.org", "x").await,
        Err(ChatError::Closed)
    ));
    alice.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_that_stops_draining_loses_only_the_oldest_events_and_never_stalls_the_node() {
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let (alice, bob) = players(&net, 8).await;
    // Bob's game never takes an event while alice sends 50 messages.
    for n in 0..50 {
        alice
            .send_message("bob@example.org", &format!("m{n}"))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bob.dropped_events() < 42 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} dropped",
            bob.dropped_events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The newest eight are kept, in order (the initial presence events went first).
    let mut kept = Vec::new();
    while let Some(e) = bob.try_next_event() {
        if let ChatEvent::Message { body, .. } = e {
            kept.push(body);
        }
    }
    let newest: Vec<String> = (42..50).map(|n| format!("m{n}")).collect();
    assert_eq!(kept, newest);
    // The node kept working throughout: the next message arrives at once.
    alice
        .send_message("bob@example.org", "still here")
        .await
        .unwrap();
    expect(&bob, "a message after the overflow", message("still here")).await;
    bob.send_message("alice@example.org", "yes").await.unwrap();
    expect(&alice, "bob's answer", message("yes")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savedata_restarts_a_device_with_its_identity_and_contacts() {
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let (alice, bob) = players(&net, 256).await;
    bob.subscribe("alice@example.org").await.unwrap();
    expect(&alice, "bob's request", |e| {
        matches!(e, ChatEvent::SubscriptionRequest { .. })
    })
    .await;
    alice.approve("bob@example.org").await.unwrap();
    expect(&bob, "alice's approval", |e| {
        matches!(e, ChatEvent::SubscriptionApproved { .. })
    })
    .await;
    let node_id = bob.node().overlay().node_id();
    let saved = bob.savedata().to_bytes();
    bob.shutdown().await.unwrap();

    // Garbage and another overlay's savedata are refused with a reason.
    for (bytes, overlay) in [
        (b"not toml at all".to_vec(), OVERLAY),
        (saved.clone(), "other.xor"),
        (vec![0xff, 0xfe], OVERLAY),
    ] {
        let err = Builder::new(overlay)
            .savedata(&bytes)
            .start()
            .await
            .expect_err("bad savedata is refused");
        assert!(matches!(err, ChatError::Config(_)), "{err}");
    }

    let bob = Builder::new(OVERLAY)
        .savedata(&saved)
        .listen("127.0.0.1:0".parse().unwrap())
        .bootstrap(alice.overlay_address())
        .start()
        .await
        .expect("bob starts again from savedata");
    assert_eq!(bob.node().overlay().node_id(), node_id);
    let contacts = bob.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].jid.to_string(), "alice@example.org");
    assert_eq!(contacts[0].subscription, Subscription::To);
    alice
        .send_message("bob@example.org", "welcome back")
        .await
        .unwrap();
    expect(&bob, "a message after the restart", message("welcome back")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_joins_as_a_client_by_default_and_is_reached_through_its_peer() {
    use xor_overlay::node::JoinState;
    use xor_overlay::wire::Destination;
    use xor_xmpp::Jid;

    let net = DevNet::start(&["alice", "bob", "carol"]).await.unwrap();
    // The node that starts the overlay cannot be a client.
    let err = net
        .embed("alice")
        .start_overlay(true)
        .client(true)
        .start()
        .await
        .expect_err("a client cannot start the overlay");
    assert!(matches!(err, ChatError::Config(_)), "{err}");
    let alice = net
        .embed("alice")
        .start_overlay(true)
        .start()
        .await
        .unwrap();
    let carol = net
        .embed("carol")
        .bootstrap(alice.overlay_address())
        .client(false)
        .start()
        .await
        .unwrap();
    let bob = net
        .embed("bob")
        .bootstrap(alice.overlay_address())
        .start()
        .await
        .unwrap();
    assert_eq!(alice.node().overlay().state(), JoinState::Joined);
    assert_eq!(carol.node().overlay().state(), JoinState::Joined);
    // Bob is a client of the peer responsible for his Node-ID (alice or carol).
    let JoinState::Client { peer } = bob.node().overlay().state() else {
        panic!("bob is {:?}", bob.node().overlay().state());
    };
    let peers = [
        alice.node().overlay().node_id(),
        carol.node().overlay().node_id(),
    ];
    assert!(peers.contains(&peer));
    // His location record says so: the destination list goes through that peer.
    let routes = carol
        .node()
        .resolve(&Jid::parse("bob@example.org").unwrap())
        .await
        .unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        routes[0].destinations,
        vec![
            Destination::Node(peer),
            Destination::Node(bob.node().overlay().node_id())
        ]
    );
    // Chat both ways with both peers.
    for (other, name) in [(&alice, "alice"), (&carol, "carol")] {
        other
            .send_message("bob@example.org", &format!("hi bob, {name} here"))
            .await
            .unwrap();
        let body = format!("hi bob, {name} here");
        expect(&bob, "a message through the peer", message(&body)).await;
        bob.send_message(&format!("{name}@example.org"), "hi back")
            .await
            .unwrap();
        expect(other, "bob's answer", message("hi back")).await;
    }
    // A client stores nothing for the overlay.
    let stored = bob
        .node()
        .overlay()
        .with_node(|n| n.storage().values())
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_typed_in_capitals_enrolls_as_the_prepared_jid() {
    let net = DevNet::start(&["alice"]).await.unwrap();
    let alice = net
        .embed("alice")
        .enroll("Alice@Example.ORG", xor_node::devnet::PASSWORD)
        .start_overlay(true)
        .start()
        .await
        .expect("the prepared name is the account");
    // The certificate's xmppAddr is the prepared JID, so the device registers and is
    // found under it.
    assert_eq!(alice.jid().to_string(), "alice@example.org/game");
    let routes = alice
        .node()
        .resolve(&xor_xmpp::Jid::parse("alice@example.org").unwrap())
        .await
        .unwrap();
    assert_eq!(routes.len(), 1);
}

/// RFC 6120 §10.1: stanzas from one sender to one recipient arrive in order. Bursts to
/// a bare JID reach both of bob's devices directly and as `received` carbons from the
/// other device; each device must still see every message once, in order. (Before the
/// fix, a carbon lagging more than the duplicate window behind arrived again in the
/// third burst.) The run: `XOR_BURSTS=20 XOR_BURST_SIZE=10000` (about 50 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_to_a_bare_jid_arrive_in_order_on_every_device() {
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net
        .embed("alice")
        .start_overlay(true)
        .start()
        .await
        .unwrap();
    let boot = alice.overlay_address();
    let mut bobs = Vec::new();
    for resource in ["desk", "phone"] {
        bobs.push(
            net.embed("bob")
                .resource(resource)
                .bootstrap(boot)
                .event_capacity(1 << 16)
                .start()
                .await
                .unwrap(),
        );
    }
    // Let bob's devices find each other (they carbon-copy to each other).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bursts: usize = std::env::var("XOR_BURSTS").map_or(3, |v| v.parse().unwrap_or(3));
    let size: usize =
        std::env::var("XOR_BURST_SIZE").map_or(10_000, |v| v.parse().unwrap_or(10_000));
    for burst in 0..bursts {
        for n in 0..size {
            alice
                .send_message("bob@example.org", &format!("{burst}:{n}"))
                .await
                .unwrap();
        }
        for bob in &bobs {
            let mut next = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while next < size {
                let e = tokio::time::timeout_at(deadline, bob.next_event())
                    .await
                    .unwrap_or_else(|_| panic!("{}: burst {burst} stopped at {next}", bob.jid()))
                    .unwrap();
                let ChatEvent::Message { body, .. } = e else {
                    continue;
                };
                assert_eq!(
                    body,
                    format!("{burst}:{next}"),
                    "{}: out of order or duplicated in burst {burst}",
                    bob.jid()
                );
                next += 1;
            }
        }
    }
}
