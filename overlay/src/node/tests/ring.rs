//! Joining, failing and leaving (§10.5, §10.7, §10.9).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;

#[test]
fn a_single_node_starts_the_overlay_rfc6940_6_4_2_1() {
    let mut r = Ring::new(1);
    let a = r.add();
    r.settle(secs(5));
    assert_eq!(r.net.node(a).unwrap().state(), JoinState::Joined);
    assert_eq!(r.joined_events(a), 1);
    r.assert_stable();
    assert!(r.net.node(a).unwrap().table().is_responsible(12345));
}

#[test]
fn a_second_node_joins_rfc6940_10_5() {
    let mut r = Ring::new(2);
    let a = r.add();
    r.settle(secs(5));
    let b = r.add();
    r.settle(secs(30));
    r.assert_stable();
    let na = r.net.node(a).unwrap();
    assert_eq!(na.table().successors(), &[b]);
    assert_eq!(na.table().predecessors(), &[b]);
    assert_eq!(r.joined_events(b), 1);
}

#[test]
fn a_third_node_joins_rfc6940_10_5() {
    let mut r = Ring::new(3);
    r.add();
    r.settle(secs(5));
    r.add();
    r.settle(secs(30));
    r.add();
    r.settle(secs(30));
    r.assert_stable();
}

#[test]
fn twenty_nodes_join_one_by_one() {
    let mut r = Ring::new(4);
    for _ in 0..20 {
        r.add();
        r.settle(secs(60));
        r.assert_stable();
    }
}

#[test]
fn ten_nodes_join_concurrently() {
    let mut r = Ring::new(5);
    r.add();
    r.settle(secs(5));
    for _ in 0..10 {
        r.add();
    }
    r.settle(secs(180));
    r.assert_stable();
}

#[test]
fn a_node_failing_silently_is_routed_around_rfc6940_10_7_1() {
    let mut r = Ring::grown(6, 10);
    r.assert_stable();
    let victim = r.ids[4];
    r.net.kill(victim);
    // Detection: the periodic Update to the dead neighbour times out after five
    // transmissions (update interval 20 s + 15 s), then reactive Updates repair.
    r.settle(secs(120));
    r.assert_stable();
    assert!(
        r.net
            .views()
            .iter()
            .all(|v| !v.successors.contains(&victim) && !v.predecessors.contains(&victim))
    );
}

#[test]
fn a_crashed_node_is_routed_around_at_once() {
    let mut r = Ring::grown(7, 8);
    r.net.crash(r.ids[3]);
    r.settle(secs(10));
    r.assert_stable();
}

#[test]
fn a_failed_node_forgotten_by_the_network_is_routed_around() {
    let mut r = Ring::grown(7, 8);
    let victim = r.ids[3];
    let addr = r.net.addr(victim);
    r.net.fail_detected_after(victim, secs(31));
    r.net.forget(victim);
    assert!(r.net.node(victim).is_none() && r.net.addr(victim).is_none());
    assert!(addr.is_some());
    r.settle(secs(120));
    r.assert_stable();
    assert_eq!(r.net.live().len(), 7);
    // A live node is never forgotten.
    r.net.forget(r.ids[0]);
    assert!(r.net.node(r.ids[0]).is_some());
}

#[test]
fn a_leaving_node_hands_its_neighbours_over_rfc6940_10_9() {
    let mut r = Ring::grown(8, 8);
    let leaver = r.ids[5];
    r.net.leave(leaver);
    r.run_checked(secs(2));
    assert!(
        r.net
            .events
            .iter()
            .any(|(_, n, e)| *n == leaver && *e == Event::Left)
    );
    r.net.kill(leaver); // the process exits after Left
    r.settle(secs(10));
    r.assert_stable();
}

#[test]
fn two_nodes_failing_at_once_next_to_each_other() {
    let mut r = Ring::grown(9, 12);
    let mut sorted = r.ids.clone();
    sorted.sort();
    r.net.kill(sorted[5]);
    r.net.kill(sorted[6]);
    r.settle(secs(180));
    r.assert_stable();
}

/// Many seeds of concurrent joins followed by simultaneous silent failures. The full
/// sweep (30 seeds) runs with `cargo test -p xor-overlay --release -- --ignored`.
#[test]
fn concurrent_joins_then_failures_across_seeds() {
    stress(100..103);
}

#[test]
#[ignore]
fn concurrent_joins_then_failures_across_many_seeds() {
    stress(100..130);
}

fn stress(seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let mut r = Ring::new(seed);
        r.add();
        r.settle(secs(5));
        for _ in 0..15 {
            r.add();
        }
        r.settle(secs(300));
        let views = r.net.views();
        if let Err(v) = crate::chord::check_stable(&views, 3) {
            panic!(
                "seed {seed}: join not stable: {v} ({} of {} joined)",
                views.len(),
                r.live().len()
            );
        }
        let live = r.live();
        for k in [2usize, 7, 11] {
            r.net.kill(live[k]);
        }
        r.settle(secs(300));
        if let Err(v) = crate::chord::check_stable(&r.net.views(), 3) {
            panic!("seed {seed}: failure not healed: {v}");
        }
    }
}

#[test]
fn nodes_sharing_a_seed_still_draw_distinct_transaction_ids() {
    let mut r = Ring::new(31);
    for _ in 0..5 {
        let id = NodeId((r.ids.len() as u128 + 1) << 124);
        let mut cfg = r.config(id);
        cfg.seed = 0;
        let id = r.net.add(cfg);
        r.ids.push(id);
        r.net.join(id);
        r.settle(secs(60));
    }
    r.assert_stable();
}

/// Counts Update requests per (sender, receiver) on the wire.
#[derive(Clone, Default)]
struct UpdateCounter(Rc<RefCell<BTreeMap<(NodeId, NodeId), u32>>>);

impl crate::testnet::Observer for UpdateCounter {
    fn sent(&mut self, d: &crate::testnet::Delivery) {
        use crate::wire::Decode as _;
        let Ok((rest, _)) = crate::wire::ForwardingHeader::parse_with_length(&d.bytes) else {
            return;
        };
        if let Ok((_, c)) = crate::wire::MessageContents::parse(rest)
            && c.code == crate::wire::MessageCode::UPDATE_REQ
        {
            *self.0.borrow_mut().entry((d.from, d.to)).or_insert(0) += 1;
        }
    }
}

#[test]
fn a_stable_ring_sends_updates_only_periodically_rfc6940_10_7_4_1() {
    let mut r = Ring::new(21);
    for _ in 0..30 {
        r.add();
    }
    r.settle(secs(300));
    r.assert_stable();
    r.run_checked(secs(60));
    let counter = UpdateCounter::default();
    r.net.set_observer(counter.clone());
    // Ten update intervals of 20 s: each node updates its six neighbours once in each.
    r.run_checked(secs(200));
    let counts = counter.0.borrow();
    let total: u32 = counts.values().sum();
    assert!(total <= 30 * 6 * 11, "{total} Updates in ten intervals");
    let worst = counts.values().max().copied().unwrap_or(0);
    assert!(worst <= 11, "one peer sent another {worst} Updates");
}

#[test]
fn corrective_updates_to_one_peer_are_held_down_rfc6940_10_7_3() {
    let mut r = Ring::grown(24, 8);
    r.assert_stable();
    let a = r.ids[2];
    let b = r.net.node(a).unwrap().table().successors()[0];
    let counter = UpdateCounter::default();
    r.net.set_observer(counter.clone());
    // `a` claims, twenty times within two seconds, to know no neighbours at all: `b`
    // knows better each time, but corrects it once.
    let empty = crate::wire::ChordUpdate {
        uptime: 1,
        kind: crate::wire::ChordUpdateKind::Neighbors {
            predecessors: vec![],
            successors: vec![],
        },
    };
    let bogus = |r: &mut Ring| {
        for _ in 0..20 {
            r.net.request(
                a,
                vec![crate::wire::Destination::Node(b)],
                crate::wire::Body::UpdateReq(empty.clone()),
            );
            r.net.run_for(Duration::from_millis(100));
        }
    };
    bogus(&mut r);
    assert_eq!(counter.0.borrow().get(&(b, a)).copied(), Some(1));
    // After the hold-down a new claim is corrected again.
    r.net.run_for(secs(4));
    bogus(&mut r);
    assert_eq!(counter.0.borrow().get(&(b, a)).copied(), Some(2));
}

#[test]
fn at_the_connection_limit_a_link_nobody_routes_over_makes_room() {
    let mut r = Ring::new(25);
    let mut cfg = r.config(NodeId(1000));
    cfg.max_connections = 2;
    let now = Instant::ZERO;
    let mut n = crate::node::Node::new(cfg, now);
    use crate::node::LinkId;
    // Two links that carried no Update: not in the routing table.
    n.handle_link_up(LinkId(1), NodeId(2000), None, now);
    n.handle_link_up(LinkId(2), NodeId(3000), None, now);
    while n.poll_event().is_some() {}
    n.handle_link_up(LinkId(3), NodeId(4000), None, now);
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert!(
        events.contains(&Event::CloseLink(LinkId(1))),
        "the oldest unused link is closed: {events:?}"
    );
    assert!(!events.contains(&Event::CloseLink(LinkId(3))));
    assert_eq!(n.link_to(NodeId(4000)), Some(LinkId(3)));
    assert_eq!(n.link_to(NodeId(2000)), None);
}

/// The bootstrap node crashes and restarts alone on its address: the others find it
/// through their partition checks and the two rings merge (§10.7.4.4).
#[test]
fn a_bootstrap_node_that_restarts_alone_is_merged_back_rfc6940_10_7_4_4() {
    let mut r = Ring::grown(11, 6);
    r.assert_stable();
    let boot = r.ids[0];
    r.net.crash(boot);
    r.net.run_for(secs(2));
    r.net.forget(boot);
    let cfg = r.config_at(0, boot);
    r.net.add(cfg);
    r.net.join(boot);
    r.net.run_for(secs(1));
    assert_eq!(
        r.net.node(boot).unwrap().table().successors(),
        &[] as &[NodeId],
        "it restarted alone"
    );
    r.net.run_for(secs(60));
    r.assert_stable();
}

/// Two nodes: the other one is left without any link and keeps looking, with a
/// doubling delay, until the bootstrap node is back (§10.7.1).
#[test]
fn a_node_without_links_keeps_looking_for_the_overlay_rfc6940_10_7_1() {
    let mut r = Ring::grown(12, 2);
    let (boot, other) = (r.ids[0], r.ids[1]);
    r.net.crash(boot);
    r.net.run_for(secs(2));
    r.net.forget(boot);
    assert_eq!(r.net.node(other).unwrap().link_count(), 0);
    // Down for two minutes: the checks back off meanwhile.
    r.net.record_events(true);
    r.net.run_for(secs(120));
    let attempts = r
        .net
        .take_events()
        .iter()
        .filter(|(_, n, e)| *n == other && matches!(e, Event::Connect { .. }))
        .count();
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} attempts in two minutes"
    );
    let cfg = r.config_at(0, boot);
    r.net.add(cfg);
    r.net.join(boot);
    r.net.run_for(secs(90));
    r.assert_stable();
}

/// A node behind a NAT (it can dial out, nobody can dial it) whose place on the ring
/// is next to another such node: neither can link to the other, so it must not take
/// that place — else both would believe they own the same arc. The ring invariants
/// hold at every step, and the node says why it did not join.
#[test]
fn a_node_does_not_join_next_to_a_neighbour_it_cannot_link_to() {
    let mut r = Ring::new(13);
    for i in 0..4u128 {
        r.add_with(NodeId((i * 4 + 1) << 124));
        r.settle(secs(60));
    }
    r.assert_stable();
    // x sits between two reachable nodes; y right after x.
    let x = NodeId((2 << 124) + 5);
    let y = NodeId((2 << 124) + 9);
    let cfg = r.config_at(4, x);
    r.net.add(cfg);
    r.net.set_unreachable(x);
    r.ids.push(x);
    r.net.join(x);
    r.run_checked(secs(30));
    assert_eq!(r.net.node(x).unwrap().state(), JoinState::Joined);
    let cfg = r.config_at(5, y);
    r.net.add(cfg);
    r.net.set_unreachable(y);
    r.net.record_events(true);
    r.net.join(y);
    r.run_checked(secs(120));
    assert_ne!(r.net.node(y).unwrap().state(), JoinState::Joined);
    let why = r
        .net
        .take_events()
        .into_iter()
        .find_map(|(_, n, e)| match e {
            Event::JoinFailed(JoinFailure::Unlinkable(w)) if n == y => Some(w),
            _ => None,
        })
        .expect("the join failure says why");
    assert!(why.contains(&x.to_string()), "{why}");
    // The nodes on the ring (all but y) are stable.
    check_stable(&r.net.views(), 3).unwrap();
}

/// Eight nodes joining at once with the default `chord-update-interval` (600 s) find
/// their true neighbours from the join's Updates alone (§10.7.3), not from the
/// periodic ones. Two nodes that joined next to each other at the same time used to
/// stay apart: each routed its AttachReq to the other by Node-ID, which ends in the
/// arc the sender believes is its own, so the request was dropped (§6.1.1), held the
/// attach tie-break for 30 s, and nobody tried again (the lab test
/// `lab_lan::eight_hosts_joining_at_once_find_the_true_ring_order` failed in CI so).
#[test]
fn concurrent_joins_find_their_neighbours_without_periodic_updates_rfc6940_10_7_3() {
    for seed in [211, 213, 216, 225, 229, 231, 237, 240] {
        let mut r = Ring::new(seed);
        r.add();
        r.settle(secs(5));
        for _ in 0..8 {
            let id = NodeId((r.rng_u64() as u128) << 64 | r.rng_u64() as u128);
            let mut cfg = r.config(id);
            cfg.chord_update_interval = crate::node::config::DEFAULT_CHORD_UPDATE_INTERVAL;
            let id = r.net.add(cfg);
            r.ids.push(id);
            r.net.join(id);
        }
        r.settle(secs(30));
        let views = r.net.views();
        assert_eq!(views.len(), r.live().len(), "seed {seed}: all joined");
        if let Err(v) = crate::chord::check_stable(&views, 3) {
            panic!("seed {seed}: not stable 30 s after the joins: {v}");
        }
    }
}
