//! End-to-end tests across the crates over real sockets. The tests are in
//! `tests/e2e/`, one binary with a module per behaviour; this library holds the
//! helpers they share.

pub mod clients;
pub mod coturn;
pub mod daemon;
pub mod dns;
pub mod external;
pub mod labnet;
pub mod netlab;
pub mod operator;
pub mod prosody;

use std::net::SocketAddr;
use std::time::Duration;

use xor_overlay::chord::PeerView;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::link::LinkConfig;
use xor_overlay::node::NodeConfig;
use xor_overlay::runtime::{Overlay, StartError};

/// A node config for a loopback test overlay.
pub fn loopback_config(
    ca: &mut TestCa,
    jid: &str,
    id: NodeId,
    bootstrap: Option<SocketAddr>,
    seed: u64,
) -> NodeConfig {
    let creds = ca.node(jid, id);
    let mut cfg = NodeConfig::new(ca.overlay.clone(), creds, ca.trust_store());
    tune(&mut cfg, bootstrap, seed);
    cfg
}

/// Loopback addresses and short timers for a test node.
pub fn tune(cfg: &mut NodeConfig, bootstrap: Option<SocketAddr>, seed: u64) {
    cfg.listen_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.bootstrap = bootstrap.into_iter().collect();
    cfg.may_start_overlay = bootstrap.is_none();
    cfg.chord_update_interval = Duration::from_secs(5);
    cfg.chord_ping_interval = Duration::from_secs(30);
    cfg.bootstrap_retry = Duration::from_secs(1);
    cfg.seed = seed;
}

/// Kinds the storage tests use: 300 single, 301 array, 302 dictionary, each writable
/// by a node at `H(Node-ID || i)` for `1 <= i <= 64` (NODE-MULTIPLE, RFC 6940 §7.3.4).
pub fn storage_kinds() -> xor_overlay::storage::KindTable {
    use xor_overlay::storage::{KindDef, KindTable, Policy};
    use xor_overlay::wire::DataModel;
    let mut kinds = KindTable::default();
    for (id, model) in [
        (300, DataModel::Single),
        (301, DataModel::Array),
        (302, DataModel::Dictionary),
    ] {
        kinds.insert(KindDef {
            id,
            name: format!("TEST-{id}"),
            model,
            policy: Policy::NodeMultiple(64),
            max_count: 16,
            max_size: 1024,
        });
    }
    kinds
}

/// Starts a node on loopback.
pub async fn start(cfg: NodeConfig) -> Result<Overlay, StartError> {
    Overlay::start(cfg, LinkConfig::default()).await
}

/// The neighbour tables of running nodes, for the invariant checker.
pub async fn views(nodes: &[Overlay]) -> Vec<PeerView> {
    let mut out = Vec::new();
    for n in nodes {
        if let Ok(nb) = n.neighbors().await {
            out.push(PeerView {
                id: nb.node_id,
                successors: nb.successors,
                predecessors: nb.predecessors,
            });
        }
    }
    out
}

/// Polls until the ring is stable (every list exactly right), or `timeout`.
pub async fn wait_stable(nodes: &[Overlay], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let views = views(nodes).await;
        let verdict = xor_overlay::chord::check_stable(&views, 3);
        match verdict {
            Ok(()) => return Ok(()),
            Err(v) if tokio::time::Instant::now() >= deadline => return Err(v.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// An XMPP device config for a loopback test overlay.
pub fn xmpp_config(
    ca: &mut TestCa,
    jid: &str,
    resource: &str,
    id: NodeId,
    bootstrap: Option<SocketAddr>,
    seed: u64,
) -> xor_xmpp::runtime::XmppConfig {
    let creds = ca.node(jid, id);
    let jid = xor_xmpp::Jid::parse(jid).expect("test JID");
    let mut cfg = xor_xmpp::runtime::XmppConfig::new(
        &ca.overlay.clone(),
        creds,
        ca.trust_store(),
        jid,
        resource,
    );
    tune(&mut cfg.node, bootstrap, seed);
    cfg.stream_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.own_devices_refresh = Duration::from_secs(2);
    cfg
}
