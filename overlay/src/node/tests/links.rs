//! Links nobody routes over are closed; the links of every routing table stay
//! (`node::unused_links`).

use std::collections::BTreeMap;

use super::{Ring, routing};
use crate::id::NodeId;
use crate::node::unused_links::{IDLE, SWEEP};

/// Every node's links as peers, and every node's routing table.
fn snapshot(r: &Ring) -> (BTreeMap<NodeId, Vec<NodeId>>, BTreeMap<NodeId, Vec<NodeId>>) {
    let (mut links, mut tables) = (BTreeMap::new(), BTreeMap::new());
    for id in r.live() {
        let n = r.net.node(id).expect("live");
        let mut peers: Vec<NodeId> = n.links.values().map(|c| c.peer).collect();
        peers.sort();
        links.insert(id, peers);
        tables.insert(id, n.table().peers());
    }
    (links, tables)
}

#[test]
fn a_link_neither_end_routes_over_is_closed_and_every_table_keeps_its_links() {
    let mut r = Ring::grown(31, 20);
    // Right after the joins: links met while joining and searching for fingers.
    let (before, _) = snapshot(&r);
    let unused_before = before
        .iter()
        .flat_map(|(a, peers)| peers.iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| {
            let routes =
                |x: NodeId, y: NodeId| r.net.node(x).is_some_and(|n| n.table().contains(y));
            !routes(*a, *b) && !routes(*b, *a)
        })
        .count();
    assert!(
        unused_before > 0,
        "the joins leave links nobody routes over"
    );
    // Quiet: no workload, so only keep-alives and periodic Updates cross the links.
    r.run_checked(IDLE + SWEEP * 2);
    let (_, tables_settled) = snapshot(&r);
    r.run_checked(IDLE * 5);
    let (links, tables) = snapshot(&r);
    for (id, peers) in &tables_settled {
        let lost: Vec<&NodeId> = peers.iter().filter(|p| !tables[id].contains(p)).collect();
        assert!(
            lost.is_empty(),
            "{id} lost table entries {lost:?} while idle"
        );
    }
    let now = r.net.now();
    for (id, peers) in &links {
        let node = r.net.node(*id).expect("live");
        for c in node.links.values() {
            let routes = |x: &NodeId, y: &NodeId| tables[x].contains(y);
            let last = c.opened.max(c.heard).max(c.used);
            assert!(
                routes(id, &c.peer)
                    || routes(&c.peer, id)
                    || now.saturating_duration_since(last) < IDLE + SWEEP,
                "{id} keeps a link to {} that neither routes over",
                c.peer
            );
        }
        for p in &tables[id] {
            assert!(peers.contains(p), "{id} routes over {p} without a link");
        }
    }
    let total = |m: &BTreeMap<NodeId, Vec<NodeId>>| m.values().map(Vec::len).sum::<usize>();
    assert!(total(&links) < total(&before), "links were closed");
    r.assert_stable();
    // And the ring still routes: a ping from every node to a point half way round
    // is answered by the node responsible for it.
    routing::assert_pings_reach_the_responsible_nodes(&mut r, 1 << 127);
}
