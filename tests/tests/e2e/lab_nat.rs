//! xor through NATs, before any traversal (the network lab): users behind every RFC
//! 4787 kind of NAT join through a public bootstrap node and chat with a public user
//! in both directions — the NATed side dials out, for overlay links and for direct
//! streams alike. Two NATed users who cannot reach each other get a clear error at
//! once, and the ring does not split; with the bootstrap node serving a relay they
//! chat through it, the one that could not take its place on the ring a client.

use std::time::{Duration, Instant};

use xor_tests::external::have_slixmpp;
use xor_tests::labnet::{DOMAIN, Operator, login, overlay_addr};
use xor_tests::netlab::{Lab, NatKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_behind_every_nat_kind_join_and_chat_with_a_public_user() {
    let Some(mut lab) = Lab::new() else { return };
    if !have_slixmpp() {
        return;
    }
    let mut public = lab.public().unwrap();
    let op_host = lab.host("op", &mut public, None).unwrap();
    let boot_host = lab.host("boot", &mut public, None).unwrap();
    let pub_host = lab.host("pub", &mut public, None).unwrap();
    let natted: Vec<String> = NatKind::ALL
        .iter()
        .map(|k| format!("n{}", k.name()))
        .collect();
    let mut users: Vec<&str> = vec!["boot", "alice"];
    users.extend(natted.iter().map(String::as_str));
    let op = Operator::start(&op_host, &users, &[overlay_addr(&boot_host)])
        .await
        .unwrap();
    let b = op.device(&boot_host, "boot", "server", true).await.unwrap();
    let p = op.device(&pub_host, "alice", "desk", false).await.unwrap();
    let mut alice = login("alice", &pub_host).await;
    for (i, kind) in NatKind::ALL.into_iter().enumerate() {
        let (_router, host) = lab
            .behind_nat(kind.name(), kind, &mut public, 20 + i as u8)
            .unwrap();
        let user = &natted[i];
        let started = Instant::now();
        let n = op
            .device(&host, user, "laptop", false)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let joined_in = started.elapsed();
        let mut client = login(user, &host).await;
        // The public user writes first: the NATed device answers the AppAttach by
        // dialling out.
        let to_n = format!("{user}@{DOMAIN}");
        alice.message(&to_n, &format!("hello {kind:?}")).await;
        assert!(
            client
                .got(&format!("hello {kind:?}"), Duration::from_secs(20))
                .await
                .is_some(),
            "{kind:?}: public → NATed: {:?}",
            client.seen
        );
        // The NATed user writes: the public device cannot reach it, so it reaches
        // the public device.
        client
            .message(&format!("alice@{DOMAIN}"), &format!("hi from {kind:?}"))
            .await;
        assert!(
            alice
                .got(&format!("hi from {kind:?}"), Duration::from_secs(20))
                .await
                .is_some(),
            "{kind:?}: NATed → public: {:?}",
            alice.seen
        );
        assert!(
            joined_in < Duration::from_secs(30),
            "{kind:?} joined in {joined_in:?}"
        );
        client.quit().await;
        n.stop().await;
    }
    alice.quit().await;
    p.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_natted_users_who_cannot_link_get_a_clear_error_at_once() {
    let Some(mut lab) = Lab::new() else { return };
    if !have_slixmpp() {
        return;
    }
    let mut public = lab.public().unwrap();
    let op_host = lab.host("op", &mut public, None).unwrap();
    let boot_host = lab.host("boot", &mut public, None).unwrap();
    let pub_host = lab.host("pub", &mut public, None).unwrap();
    let op = Operator::start(
        &op_host,
        &["boot", "alice", "dave", "erin"],
        &[overlay_addr(&boot_host)],
    )
    .await
    .unwrap();
    let b = op.device(&boot_host, "boot", "server", true).await.unwrap();
    let p = op.device(&pub_host, "alice", "desk", false).await.unwrap();
    let (_r1, h1) = lab
        .behind_nat("dave", NatKind::PortRestricted, &mut public, 31)
        .unwrap();
    let (_r2, h2) = lab
        .behind_nat("erin", NatKind::Symmetric, &mut public, 32)
        .unwrap();
    let dave = op.device(&h1, "dave", "laptop", false).await.unwrap();
    // Erin's device either takes a place next to dave's — which it cannot link to, so
    // it takes part as a client instead — or joins elsewhere; either way it starts,
    // and a message between the two fails within seconds with the reason.
    let config = op.enroll(&h2, "erin", "laptop", false).await.unwrap();
    let started = Instant::now();
    match xor_tests::labnet::run_device(&h2, &config).await {
        Err(why) => panic!("erin's device did not start: {why}"),
        Ok(erin) => {
            let mut d = login("dave", &h1).await;
            let sent = Instant::now();
            d.message(&format!("erin@{DOMAIN}"), "can you hear me?")
                .await;
            let bounce = d
                .wait(Duration::from_secs(20), |e| e["event"] == "error")
                .await
                .expect("an error comes back");
            let waited = sent.elapsed();
            assert!(
                waited < Duration::from_secs(10),
                "the error took {waited:?}"
            );
            let text = bounce["text"].as_str().unwrap_or_default();
            assert_eq!(bounce["condition"], "recipient-unavailable", "{bounce}");
            assert!(
                text.contains("could not reach it"),
                "a clear reason: {text}"
            );
            d.quit().await;
            erin.stop().await;
        }
    }
    let _ = started;
    // Dave, alice and the bootstrap node still form one ring with everyone reachable.
    let (ok, out) = p.cli(&["resolve", &format!("dave@{DOMAIN}")]).await;
    assert!(ok && out.contains("has 1 device(s)"), "{out}");
    dave.stop().await;
    p.stop().await;
    b.stop().await;
}

/// Two users behind NATs no TCP connection crosses (port-restricted and symmetric),
/// both with the default role "peer", and a public bootstrap node that serves STUN
/// and TURN (`[nat] relay`) — nothing else is configured. Dave takes a place on the
/// ring (his only neighbour is the bootstrap node, which he dials); Erin's place would
/// be next to Dave, whom she cannot link to, so she takes part as a client (RFC 6940
/// §4.2.1) instead of failing. Both find the bootstrap node's relay in the overlay
/// (§9) and chat both ways over a relayed stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_cannot_link_to_its_neighbour_becomes_a_client_and_chats_through_the_relay() {
    let Some(mut lab) = Lab::new() else { return };
    if !have_slixmpp() {
        return;
    }
    let mut public = lab.public().unwrap();
    let op_host = lab.host("op", &mut public, None).unwrap();
    let boot_host = lab.host("boot", &mut public, None).unwrap();
    let boot = overlay_addr(&boot_host);
    let op = Operator::start(&op_host, &["boot", "dave", "erin"], &[boot])
        .await
        .unwrap();
    let serve = format!("[nat]\nrelay = \"{}:3478\"\n", boot.ip());
    let b = op
        .device_with(&boot_host, "boot", "server", true, |t| {
            t.replace("[nat]\n", &serve)
        })
        .await
        .unwrap();
    let (_r1, h1) = lab
        .behind_nat("dave", NatKind::PortRestricted, &mut public, 33)
        .unwrap();
    let (_r2, h2) = lab
        .behind_nat("erin", NatKind::Symmetric, &mut public, 34)
        .unwrap();
    let dave = op.device(&h1, "dave", "laptop", false).await.unwrap();
    let erin = op.device(&h2, "erin", "laptop", false).await.unwrap();
    let state = |status: &str| {
        status
            .lines()
            .find(|l| l.starts_with("state"))
            .unwrap_or_default()
            .to_owned()
    };
    let (_, s) = dave.cli(&["status"]).await;
    assert!(state(&s).contains("Joined"), "dave is a peer: {s}");
    let (_, s) = erin.cli(&["status"]).await;
    assert!(
        state(&s).contains("client"),
        "erin fell back to a client: {s}"
    );

    let mut d = login("dave", &h1).await;
    let mut e = login("erin", &h2).await;
    d.message(&format!("erin@{DOMAIN}"), "through the relay?")
        .await;
    assert!(
        e.got("through the relay?", Duration::from_secs(30))
            .await
            .is_some(),
        "dave → erin: {:?} / {:?}",
        e.seen,
        d.seen
    );
    e.message(&format!("dave@{DOMAIN}"), "yes").await;
    assert!(
        d.got("yes", Duration::from_secs(30)).await.is_some(),
        "erin → dave: {:?}",
        d.seen
    );
    let (_, s) = dave.cli(&["status"]).await;
    let line = s
        .lines()
        .find(|l| l.contains(&format!("erin@{DOMAIN}/laptop")) && l.contains(" at "))
        .unwrap_or_else(|| panic!("no stream to erin in:\n{s}"));
    assert!(
        line.contains(&format!(" at {}:", boot.ip())),
        "relayed: {line}"
    );
    d.quit().await;
    e.quit().await;
    erin.stop().await;
    dave.stop().await;
    b.stop().await;
}
