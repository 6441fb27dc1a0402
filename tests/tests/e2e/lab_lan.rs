//! xor between hosts on one LAN (the network lab): every host runs `xor-node` with the
//! defaults of `config-example` (listening on all interfaces), enrolls over HTTPS at
//! an operator host, joins, registers and chats through slixmpp on its local port.
//! Each host's `xor-node status` shows the true ring order.

use std::time::Duration;

use futures::future::join_all;
use xor_tests::daemon::Daemon;
use xor_tests::external::have_slixmpp;
use xor_tests::labnet::{DOMAIN, Operator, login, overlay_addr, run_device};
use xor_tests::netlab::{Host, Lab};

/// (full Node-ID, successors as printed) from `xor-node status`.
async fn status(d: &Daemon) -> (String, Vec<String>) {
    let (ok, out) = d.cli(&["status"]).await;
    assert!(ok, "{out}");
    let id = out
        .lines()
        .find_map(|l| l.split("Node-ID ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let succ = out
        .lines()
        .find_map(|l| l.strip_prefix("successors"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    (id, succ)
}

/// Waits until every daemon's successor list names the next three nodes in ring
/// order (by the 8-digit prefixes `status` prints).
async fn true_ring_order(daemons: &[Daemon], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = join_all(daemons.iter().map(status)).await;
        let mut ids: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        let want = |id: &str| -> Vec<String> {
            let i = ids.iter().position(|x| x == id).unwrap_or(0);
            (1..=3.min(ids.len() - 1))
                .map(|k| ids[(i + k) % ids.len()][..8].to_owned())
                .collect()
        };
        let wrong: Vec<String> = seen
            .iter()
            .filter(|(id, succ)| *succ != want(id))
            .map(|(id, succ)| format!("{id} has successors {succ:?}, not {:?}", want(id)))
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ring order: {wrong:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hosts_on_a_lan_join_resolve_and_chat_with_default_configuration() {
    let Some(mut lab) = Lab::new() else { return };
    if !have_slixmpp() {
        return;
    }
    let mut lan = lab.switch("lan", [192, 168, 7]).unwrap();
    let op_host = lab.host("op", &mut lan, None).unwrap();
    let hosts: Vec<Host> = (0..4)
        .map(|i| lab.host(&format!("h{i}"), &mut lan, None).unwrap())
        .collect();
    let op = Operator::start(
        &op_host,
        &["alice", "bob", "carol"],
        &[overlay_addr(&hosts[0])],
    )
    .await
    .unwrap();
    let placement = [
        ("alice", "desk"),
        ("bob", "laptop"),
        ("bob", "phone"),
        ("carol", "desk"),
    ];
    let mut daemons = Vec::new();
    for (i, (user, res)) in placement.iter().enumerate() {
        daemons.push(op.device(&hosts[i], user, res, i == 0).await.unwrap());
    }
    true_ring_order(&daemons, Duration::from_secs(30)).await;

    let (ok, out) = daemons[3].cli(&["resolve", &format!("bob@{DOMAIN}")]).await;
    assert!(ok && out.contains("has 2 device(s)"), "{out}");

    // alice on h0 writes to bob: both of bob's devices, on h1 and h2, get it; bob
    // answers from his phone.
    let mut alice = login("alice", &hosts[0]).await;
    let mut bob_laptop = login("bob", &hosts[1]).await;
    let mut bob_phone = login("bob", &hosts[2]).await;
    alice
        .message(&format!("bob@{DOMAIN}"), "across the LAN")
        .await;
    for b in [&mut bob_laptop, &mut bob_phone] {
        assert!(
            b.got("across the LAN", Duration::from_secs(20))
                .await
                .is_some(),
            "{:?}",
            b.seen
        );
    }
    bob_phone
        .message(&format!("alice@{DOMAIN}"), "and back")
        .await;
    assert!(
        alice
            .got("and back", Duration::from_secs(20))
            .await
            .is_some(),
        "{:?}",
        alice.seen
    );
    for c in [alice, bob_laptop, bob_phone] {
        c.quit().await;
    }
    for d in daemons {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_hosts_joining_at_once_find_the_true_ring_order() {
    let Some(mut lab) = Lab::new() else { return };
    let mut lan = lab.switch("lan", [192, 168, 8]).unwrap();
    let op_host = lab.host("op", &mut lan, None).unwrap();
    let hosts: Vec<Host> = (0..8)
        .map(|i| lab.host(&format!("h{i}"), &mut lan, None).unwrap())
        .collect();
    let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let op = Operator::start(&op_host, &refs, &[overlay_addr(&hosts[0])])
        .await
        .unwrap();
    let mut configs = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        configs.push(op.enroll(h, &users[i], "pc", i == 0).await.unwrap());
    }
    let first = run_device(&hosts[0], &configs[0]).await.unwrap();
    let rest = join_all(
        hosts[1..]
            .iter()
            .zip(&configs[1..])
            .map(|(h, c)| run_device(h, c)),
    )
    .await;
    let mut daemons = vec![first];
    for d in rest {
        daemons.push(d.unwrap());
    }
    true_ring_order(&daemons, Duration::from_secs(60)).await;
    for d in daemons {
        d.stop().await;
    }
}
