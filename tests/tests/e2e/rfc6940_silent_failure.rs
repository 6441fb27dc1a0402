//! Five of twenty `xor-node run` daemons on loopback stop answering at once (SIGSTOP:
//! their sockets stay open and the kernel still acknowledges TCP, but nothing answers
//! at the RELOAD layer — a hung process, or a machine whose network vanished). Lookups
//! issued by the others during the next 10 s still find every record (RFC 6940
//! §6.6.3, §6.6.5: the silent links are suspect after an RTO, the requests they held
//! are routed around them).

use std::time::Duration;

use futures::future::join_all;
use xor_node::devnet::{DOMAIN, DevNet};
use xor_overlay::id::{NodeId, ResourceId};
use xor_tests::daemon::{cli, loopback_users};

const USERS: usize = 10;

/// The node responsible for `k` and its two successors: where a record lives.
fn holders(ids: &[NodeId], k: u128) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort();
    let first = ids.iter().position(|n| n.0 >= k).unwrap_or(0);
    (0..3).map(|d| ids[(first + d) % ids.len()]).collect()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_succeed_while_five_of_twenty_daemons_hang() {
    let users: Vec<String> = (0..USERS).map(|u| format!("u{u}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let net = DevNet::start(&refs).await.unwrap();
    let (daemons, ids) = loopback_users(&net, USERS, 2).await.unwrap();
    let jid = |u: usize| format!("u{u}@{DOMAIN}");
    // Every record is stored before anything fails.
    for u in 0..USERS {
        let (ok, out) = daemons[0].cli(&["resolve", &jid(u)]).await;
        assert!(ok && out.contains("has 2 device(s)"), "{out}");
    }
    // Replica stores refused while the ring was still forming are retried after 5 s
    // and 10 s (`REPLICA_RETRY`); let them land, so every copy holds both devices.
    tokio::time::sleep(Duration::from_secs(16)).await;
    // Five victims, never the bootstrap node, and never all three holders of a
    // record (whose data would be gone until its devices store it again).
    let records: Vec<Vec<NodeId>> = (0..USERS)
        .map(|u| holders(&ids, ResourceId::of_name(jid(u).as_bytes()).0))
        .collect();
    let mut victims: Vec<usize> = Vec::new();
    for i in (1..ids.len()).rev() {
        let mut with: Vec<NodeId> = victims.iter().map(|v| ids[*v]).collect();
        with.push(ids[i]);
        if records.iter().all(|h| h.iter().any(|n| !with.contains(n))) {
            victims.push(i);
        }
        if victims.len() == 5 {
            break;
        }
    }
    assert_eq!(victims.len(), 5);
    for v in &victims {
        signal(daemons[*v].pid().unwrap(), "-STOP");
    }
    // Every second for 10 s, three survivors each look up a user they never looked
    // up before (no cached answer).
    let survivors: Vec<usize> = (0..ids.len()).filter(|i| !victims.contains(i)).collect();
    let started = tokio::time::Instant::now();
    let mut lookups = Vec::new();
    for round in 0..10usize {
        tokio::time::sleep_until(started + Duration::from_secs(round as u64)).await;
        for j in 0..3 {
            let from = survivors[(round * 3 + j) % survivors.len()];
            let user = (round + j * 3 + from) % USERS;
            let config = daemons[from].config.clone();
            let target = jid(user);
            lookups.push(tokio::spawn(async move {
                let (ok, out) = cli(&config, &["resolve", &target]).await;
                // Found: the record and at least one device. (Right after start-up a
                // replica can still lack one device's entry; see BENCHMARKS.)
                let found = ok && out.contains("device(s)") && !out.contains("has 0 device(s)");
                (from, target, found, out)
            }));
        }
    }
    let results: Vec<_> = join_all(lookups)
        .await
        .into_iter()
        .map(|r| r.expect("the lookup task"))
        .collect();
    for v in &victims {
        signal(daemons[*v].pid().unwrap(), "-CONT");
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.2)
        .map(|(from, target, _, out)| format!("device {from} → {target}: {out}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} lookups failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}
