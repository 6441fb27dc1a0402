//! xor-node end to end: devices enrolled over HTTPS on a loopback overlay, ordinary
//! XMPP clients on their local ports (slixmpp, and the node's own C2S client), Prosody
//! as the C2S fallback (XEP-0415 "Interaction with XMPP Core"), hostile input.

use std::time::Duration;

use minidom::Element;
use xor_node::c2s_client::{C2sClient, ClientError, ClientOptions};
use xor_node::daemon::Device;
use xor_node::devnet::{DevNet, PASSWORD};
use xor_tests::clients::{WAIT, login, next_body, options, ping};
use xor_tests::external::{Slix, have_prosody, have_slixmpp};
use xor_tests::prosody::Prosody;
use xor_xmpp::Jid;
use xor_xmpp::stanza;
use xor_xmpp::stream::NS_CLIENT;

/// Logs to the test output when `RUST_LOG` is set.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Waits (asking again every half second) until `device` has a stream to `other`, a
/// device of the same user: carbons and roster syncs travel over it.
async fn wait_own_stream(device: &Device, other: &str) {
    for _ in 0..60 {
        device.node().connect_own_devices().await;
        if device
            .node()
            .devices()
            .await
            .iter()
            .any(|d| d.jid.to_string() == other)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{} never connected to {other}", device.jid());
}

fn port(d: &Device) -> u16 {
    d.client_addr().expect("client port").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slixmpp_clients_chat_through_their_nodes_with_fan_out_and_presence_xep0415() {
    logs();
    if !have_slixmpp() {
        return;
    }
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let bob1 = net.device("bob", "laptop").await.unwrap();
    let bob2 = net.device("bob", "phone").await.unwrap();
    let mut a = Slix::login("alice@example.org", PASSWORD, port(&alice)).await;
    let mut b1 = Slix::login("bob@example.org", PASSWORD, port(&bob1)).await;
    let mut b2 = Slix::login("bob@example.org", PASSWORD, port(&bob2)).await;

    // Presence: alice asks to see bob; bob's clients approve (and ask back), so each
    // sees the other online (RFC 6121 §3), across the overlay.
    a.command(serde_json::json!({"subscribe": "bob@example.org"}))
        .await;
    let from_bob = |e: &serde_json::Value| {
        e["event"] == "presence"
            && e["from"]
                .as_str()
                .unwrap_or("")
                .starts_with("bob@example.org/")
            && e["type"] == "available"
    };
    let from_alice = |e: &serde_json::Value| {
        e["event"] == "presence"
            && e["from"]
                .as_str()
                .unwrap_or("")
                .starts_with("alice@example.org/")
            && e["type"] == "available"
    };
    assert!(
        a.wait(WAIT, from_bob).await.is_some(),
        "alice never saw bob online: {:?}",
        a.seen
    );
    assert!(
        b1.wait(WAIT, from_alice).await.is_some(),
        "bob's laptop never saw alice online: {:?}",
        b1.seen
    );

    // A message to bob's bare JID reaches both of bob's devices (fan-out).
    a.message("bob@example.org", "hello from slixmpp").await;
    let got1 = b1.got("hello from slixmpp", WAIT).await;
    let got2 = b2.got("hello from slixmpp", WAIT).await;
    assert!(got1.is_some(), "bob's laptop: {:?}", b1.seen);
    assert!(got2.is_some(), "bob's phone: {:?}", b2.seen);
    assert!(
        got1.unwrap()["from"]
            .as_str()
            .unwrap()
            .starts_with("alice@example.org/laptop"),
        "the sender is alice's device"
    );

    // And back from bob's phone.
    b2.message("alice@example.org", "hi alice, from the phone")
        .await;
    assert!(
        a.got("hi alice, from the phone", WAIT).await.is_some(),
        "alice: {:?}",
        a.seen
    );
    for c in [a, b1, b2] {
        c.quit().await;
    }
    for d in [alice, bob1, bob2] {
        d.shutdown().await;
    }
    net.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prosody_carries_what_the_overlay_cannot_deliver_xep0415_core() {
    if !have_prosody() {
        return;
    }
    let prosody = Prosody::start("fallback.test", &[("alice", "fb-pw"), ("dave", "dave-pw")]).await;
    let mut net = DevNet::start(&["alice"]).await.unwrap();
    let mut opts = net.enroll("alice", "laptop").await.unwrap();
    opts.fallback = Some(ClientOptions {
        jid: Jid::parse("alice@fallback.test").unwrap(),
        password: "fb-pw".into(),
        resource: "xor".into(),
        server: prosody.addr,
        tls_roots: vec![prosody.ca.clone()],
        insecure: false,
        timeout: Duration::from_secs(10),
    });
    let alice = net.start_device(opts).await.unwrap();
    let mut dave = C2sClient::connect(&ClientOptions {
        jid: Jid::parse("dave@fallback.test").unwrap(),
        password: "dave-pw".into(),
        resource: "desk".into(),
        server: prosody.addr,
        tls_roots: vec![prosody.ca.clone()],
        insecure: false,
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap_or_else(|e| panic!("dave logs in to Prosody: {e}\n{}", prosody.log()));
    dave.send(&stanza::element("presence", NS_CLIENT, &[]))
        .await
        .unwrap();
    let mut client = login("alice@example.org", &alice).await;

    // dave is not in the overlay: the message goes through alice's Prosody account.
    let to_dave = Jid::parse("dave@fallback.test").unwrap();
    client
        .send(&stanza::chat(&to_dave, "through the fallback"))
        .await
        .unwrap();
    let mut got: Option<Element> = None;
    while let Some(el) = dave.recv_within(WAIT).await {
        if stanza::body(&el).as_deref() == Some("through the fallback") {
            got = Some(el);
            break;
        }
    }
    let got = got.unwrap_or_else(|| panic!("dave got nothing\n{}", prosody.log()));
    assert!(
        got.attr("from")
            .unwrap_or_default()
            .starts_with("alice@fallback.test/"),
        "sent as alice's fallback account: {got:?}"
    );

    // dave's answer to that account reaches alice's client on her node.
    let to_alice = Jid::parse("alice@fallback.test").unwrap();
    dave.send(&stanza::chat(&to_alice, "answer via prosody"))
        .await
        .unwrap();
    assert_eq!(
        next_body(&mut client).await.as_deref(),
        Some("answer via prosody")
    );
    client.close().await;
    alice.shutdown().await;
    net.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_local_port_refuses_bad_input_and_keeps_serving_the_user() {
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let bob = net.device("bob", "laptop").await.unwrap();
    let mut legit = login("alice@example.org", &alice).await;
    let mut bob_client = login("bob@example.org", &bob).await;

    // Wrong password; another user's JID on alice's port.
    let wrong = C2sClient::connect(&options("alice@example.org", "not the password", &alice)).await;
    assert!(
        matches!(wrong, Err(ClientError::Auth(_))),
        "wrong password: {wrong:?}"
    );
    let other = C2sClient::connect(&options("bob@example.org", PASSWORD, &alice)).await;
    assert!(
        matches!(other, Err(ClientError::Auth(_))),
        "bob on alice's port: {other:?}"
    );

    // Malformed XML ends that stream with not-well-formed (RFC 6120 §4.9.3.13).
    let mut broken = login("alice@example.org", &alice).await;
    broken
        .send_raw(b"<message to='bob@example.org'><body>x</message>")
        .await
        .unwrap();
    let err = broken.recv_within(WAIT).await.expect("a stream error");
    assert_eq!(err.name(), "error", "{err:?}");
    assert!(err.has_child("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams"));
    assert!(
        broken.recv_within(Duration::from_secs(2)).await.is_none(),
        "closed"
    );

    // A stanza nested 5,000 deep: a policy-violation stream error, not a crash (the
    // parser bounds nesting; hardening issue, defect 1).
    let mut deep = login("alice@example.org", &alice).await;
    // The node may close before all of it is written.
    let _ = deep
        .send_raw(&b"<message to='bob@example.org'>".repeat(5000))
        .await;
    let err = deep.recv_within(WAIT).await.expect("a stream error");
    assert!(
        err.has_child("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams"),
        "{err:?}"
    );
    assert!(ping(&mut legit, "after-deep").await, "alice's node answers");

    // A flood of 10,000 stanzas from another session of alice: every one reaches bob,
    // in order, while the legitimate session keeps working.
    let mut flood = login("alice@example.org", &alice).await;
    let to_bob = Jid::parse("bob@example.org").unwrap();
    let sender = tokio::spawn(async move {
        for i in 0..10_000 {
            flood
                .send(&stanza::chat(&to_bob, &format!("flood {i}")))
                .await
                .unwrap();
        }
        flood
    });
    assert!(
        ping(&mut legit, "during-flood").await,
        "alice's node answers"
    );
    let mut received = 0;
    while received < 10_000 {
        let body = next_body(&mut bob_client)
            .await
            .unwrap_or_else(|| panic!("only {received} of 10000 arrived"));
        assert_eq!(body, format!("flood {received}"), "in order");
        received += 1;
    }
    let flood = sender.await.unwrap();
    flood.close().await;

    // The legitimate session still chats.
    legit
        .send(&stanza::chat(
            &Jid::parse("bob@example.org").unwrap(),
            "still here",
        ))
        .await
        .unwrap();
    assert_eq!(
        next_body(&mut bob_client).await.as_deref(),
        Some("still here")
    );
    assert!(ping(&mut legit, "after-flood").await);
    legit.close().await;
    bob_client.close().await;
    alice.shutdown().await;
    bob.shutdown().await;
    net.shutdown();
}

/// A real client logs in to the local port with each SASL mechanism it offers —
/// SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1 (RFC 5802), PLAIN (RFC 4616, over TLS) — and
/// with each a wrong password is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slixmpp_logs_in_with_scram_sha_256_scram_sha_1_and_plain() {
    logs();
    if !have_slixmpp() {
        return;
    }
    let mut net = DevNet::start(&["alice"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        let c = Slix::login_with("alice@example.org", PASSWORD, port(&alice), mechanism)
            .await
            .unwrap_or_else(|seen| panic!("{mechanism}: {seen:?}"));
        c.quit().await;
        let refused = Slix::login_with(
            "alice@example.org",
            "not the password",
            port(&alice),
            mechanism,
        )
        .await;
        let Err(seen) = refused else {
            panic!("{mechanism}: a wrong password logged in")
        };
        assert!(
            seen.iter().any(|e| e["event"] == "failed"),
            "{mechanism}: {seen:?}"
        );
    }
}

/// A desktop configured with `role = "client"` (RFC 6940 §4.2.1): its ordinary XMPP
/// client chats with another user's through it, and `status` says what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_in_client_role_chats_and_says_so_in_status() {
    logs();
    if !have_slixmpp() {
        return;
    }
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let mut opts = net.enroll("bob", "laptop").await.unwrap();
    opts.overlay_client = true;
    let bob = net.start_device(opts).await.unwrap();
    let status = bob.reporter().status().await;
    assert!(
        status.contains("client (RFC 6940 §4.2.1) through peer"),
        "{status}"
    );
    let mut a = Slix::login("alice@example.org", PASSWORD, port(&alice)).await;
    let mut b = Slix::login("bob@example.org", PASSWORD, port(&bob)).await;
    a.message("bob@example.org", "to a client").await;
    assert!(b.got("to a client", WAIT).await.is_some(), "{:?}", b.seen);
    b.message("alice@example.org", "from a client").await;
    assert!(a.got("from a client", WAIT).await.is_some(), "{:?}", a.seen);
    a.quit().await;
    b.quit().await;
}

/// What clients see (XEP-0280, XEP-0203, RFC 6120 §8.3.3.8): a message to one of
/// bob's devices reaches his carbon-enabled other client as `<received/>`, a
/// `<private/>` one does not; an unparsable `to` gets `jid-malformed`; a message kept
/// while bob's client was away carries a `<delay/>` stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_get_received_carbons_jid_malformed_errors_and_delay_stamps() {
    logs();
    if !have_slixmpp() {
        return;
    }
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let laptop = net.device("bob", "laptop").await.unwrap();
    let phone = net.device("bob", "phone").await.unwrap();
    let mut a = Slix::login("alice@example.org", PASSWORD, port(&alice)).await;
    let mut b1 = Slix::login("bob@example.org", PASSWORD, port(&laptop)).await;
    let mut b2 = Slix::login("bob@example.org", PASSWORD, port(&phone)).await;
    // Carbons travel over the stream between bob's two devices, which they open to
    // each other at start (and keep trying to); wait for it.
    wait_own_stream(&laptop, "bob@example.org/phone").await;
    b2.command(serde_json::json!({"carbons": true})).await;
    assert!(
        b2.wait(WAIT, |e| e["event"] == "carbons-enabled")
            .await
            .is_some()
    );

    // To bob's laptop only: the phone's client sees it as a received carbon.
    a.message("bob@example.org/laptop", "for the laptop").await;
    assert!(
        b1.got("for the laptop", WAIT).await.is_some(),
        "{:?}",
        b1.seen
    );
    let carbon = b2
        .wait(WAIT, |e| {
            e["event"] == "carbon" && e["body"] == "for the laptop"
        })
        .await
        .unwrap_or_else(|| panic!("no carbon: {:?}", b2.seen));
    assert_eq!(carbon["kind"], "received");
    assert_eq!(carbon["to"], "bob@example.org/laptop");
    assert!(
        carbon["from"]
            .as_str()
            .unwrap()
            .starts_with("alice@example.org/")
    );
    // A private message is not copied; the marker after it is.
    a.command(serde_json::json!({"message": {"to": "bob@example.org/laptop", "body": "just us", "private": true}}))
        .await;
    a.message("bob@example.org/laptop", "marker").await;
    assert!(b1.got("just us", WAIT).await.is_some());
    assert!(
        b2.wait(WAIT, |e| e["event"] == "carbon" && e["body"] == "marker")
            .await
            .is_some()
    );
    assert!(
        !b2.seen.iter().any(|e| e["body"] == "just us"),
        "a <private/> message reached another device: {:?}",
        b2.seen
    );
    assert!(
        !b2.seen
            .iter()
            .any(|e| e["event"] == "message" && e["body"] == "for the laptop"),
        "the phone's client saw another device's message as its own"
    );

    // An address that is not a JID.
    a.command(serde_json::json!({"raw": "<message to='not a jid@@' type='chat' id='bad1'><body>lost?</body></message>"}))
        .await;
    let err = a
        .wait(WAIT, |e| e["event"] == "error")
        .await
        .unwrap_or_else(|| panic!("no error: {:?}", a.seen));
    assert_eq!(err["condition"], "jid-malformed");

    // Bob's laptop client goes away; what arrives meanwhile waits, stamped.
    b1.quit().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.message("bob@example.org/laptop", "while you were away")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut b1 = Slix::login("bob@example.org", PASSWORD, port(&laptop)).await;
    let kept = b1
        .got("while you were away", WAIT)
        .await
        .unwrap_or_else(|| panic!("not kept: {:?}", b1.seen));
    let stamp = kept["delay"]
        .as_str()
        .unwrap_or_else(|| panic!("no delay: {kept}"));
    assert!(stamp.ends_with('Z') && stamp.len() == 20, "{stamp}");
    assert!(!a.seen.iter().any(|e| e["body"] == "lost?"));
    a.quit().await;
    b1.quit().await;
    b2.quit().await;
}

/// `xor-node demo --stay` hands the client ports to the user with no session of its
/// own left behind: a message sent before the user's client logs in waits in the
/// offline queue and reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stay_leaves_no_hidden_session_to_swallow_messages() {
    use tokio::io::AsyncBufReadExt;
    if !have_slixmpp() {
        return;
    }
    let mut demo = tokio::process::Command::new(xor_tests::daemon::xor_node_bin())
        .args(["demo", "--stay"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut ports = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("the demo reaches --stay within 2 minutes")
            .unwrap()
            .expect("the demo keeps running");
        // "      alice/laptop     client port 127.0.0.1:37341"
        if let Some((label, addr)) = line.trim().split_once(" client port ") {
            ports.insert(label.trim().to_owned(), addr.trim().to_owned());
        }
        if line.contains("still running") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let port = |label: &str| -> u16 {
        let addr: std::net::SocketAddr = ports[label].parse().unwrap();
        addr.port()
    };
    let mut bob = Slix::login("bob@example.org", PASSWORD, port("bob/phone")).await;
    bob.message("alice@example.org/laptop", "sent before you logged in")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut alice = Slix::login("alice@example.org", PASSWORD, port("alice/laptop")).await;
    assert!(
        alice.got("sent before you logged in", WAIT).await.is_some(),
        "the message went to a session the user does not see: {:?}",
        alice.seen
    );
    alice.quit().await;
    bob.quit().await;
    let _ = demo.kill().await;
}

/// Rosters agree across a user's devices: bob approves alice on his laptop; when his
/// phone's client comes online later, alice sees the phone too (RFC 6121 §3 across
/// XEP-0415 devices).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_on_one_device_shows_every_device_to_the_contact() {
    logs();
    if !have_slixmpp() {
        return;
    }
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let laptop = net.device("bob", "laptop").await.unwrap();
    let phone = net.device("bob", "phone").await.unwrap();
    let mut a = Slix::login("alice@example.org", PASSWORD, port(&alice)).await;
    let b1 = Slix::login("bob@example.org", PASSWORD, port(&laptop)).await;
    // The roster sync travels over the stream between bob's devices, which they open
    // to each other at start (and keep trying to); wait for it.
    wait_own_stream(&laptop, "bob@example.org/phone").await;
    // Bob's laptop client approves (slixmpp's auto_authorize).
    a.command(serde_json::json!({"subscribe": "bob@example.org"}))
        .await;
    let online = |resource: &'static str| {
        move |e: &serde_json::Value| {
            e["event"] == "presence"
                && e["from"] == format!("bob@example.org/{resource}")
                && e["type"] == "available"
        }
    };
    assert!(
        a.wait(WAIT, online("laptop")).await.is_some(),
        "alice never saw the laptop: {:?}",
        a.seen
    );
    // The phone learnt of the approval; its client comes online later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let contacts = phone.account().contacts();
    assert!(
        contacts
            .iter()
            .any(|(j, s)| j == "alice@example.org" && (*s == "from" || *s == "both")),
        "the phone's roster: {contacts:?}"
    );
    let b2 = Slix::login("bob@example.org", PASSWORD, port(&phone)).await;
    assert!(
        a.wait(WAIT, online("phone")).await.is_some(),
        "alice never saw bob's phone: {:?}",
        a.seen
    );
    a.quit().await;
    b1.quit().await;
    b2.quit().await;
}

/// Messages that arrive while the user's client is away survive a restart of the
/// device (kept in the profile), and arrive stamped (XEP-0203).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_waiting_for_a_client_survive_a_restart() {
    logs();
    if !have_slixmpp() {
        return;
    }
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let opts = net.enroll("bob", "laptop").await.unwrap();
    let bob = net.start_device(opts.clone()).await.unwrap();
    alice
        .node()
        .send(stanza::chat(
            &Jid::parse("bob@example.org").unwrap(),
            "kept for you",
        ))
        .await
        .unwrap();
    let kept = opts.profile.join("offline.toml");
    for _ in 0..50 {
        if kept.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    xor_node::config::owner_only(&kept, "the offline queue").unwrap();
    bob.shutdown().await;
    let bob = Device::start(opts).await.unwrap();
    let mut b = Slix::login("bob@example.org", PASSWORD, port(&bob)).await;
    let got = b
        .got("kept for you", WAIT)
        .await
        .unwrap_or_else(|| panic!("lost in the restart: {:?}", b.seen));
    assert!(got["delay"].is_string(), "{got}");
    b.quit().await;
    assert!(!kept.exists(), "delivered: the file is gone");
}
