//! The TURN Server Usage (RFC 6940 §9) in the runtime: a public peer that serves
//! STUN and TURN ([`super::turn_server`]) records itself under TURN-SERVICE, and a
//! node behind a NAT finds such peers and gathers relayed candidates on them.
//!
//! - Registration: for each `d` from 1 to `turn-density`, a `TurnServer` value at
//!   `H(Node-ID || d)` (NODE-MULTIPLE, §7.3.4), refreshed before it expires and again
//!   after every (re)join.
//! - Discovery: a relay is only usable through a link to it (its credential comes
//!   from the link, [`LinkSecrets`]), so a node fetches TURN-SERVICE at
//!   `H(peer || 1)` for the peers it holds links with — for a client (§4.2.1) that is
//!   its admitting peer, for a peer its neighbours and fingers — and keeps those that
//!   serve. A peer that serves none is asked again after 5 s, then after twice as
//!   long each time, up to 10 minutes. Each found relay is used both as STUN server (server-reflexive
//!   candidates) and as TURN server (relayed candidates), next to any configured ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::driver::{Command, StartRequest};
use super::tls::LinkSecret;
use crate::id::NodeId;
use crate::node::config::{IceSettings, TurnServer as TurnUrl};
use crate::node::{Answer, JoinState, LinkId, RequestError};
use crate::storage::node_multiple_resource;
use crate::wire::turn::{MAX_ITERATION, TURN_SERVICE, TurnServer};
use crate::wire::{
    Body, DataValue, Decode, Encode, IpAddressPort, ModelSpecifier, StoredDataSpecifier,
    StoredDataValue,
};

/// How long a TURN-SERVICE record lives (§7.4.1 lifetime).
pub const RECORD_LIFETIME: Duration = Duration::from_secs(3600);
/// How often a serving peer stores its records again.
pub const REFRESH: Duration = Duration::from_secs(1200);
/// How often a node looks at its linked peers for ones to ask.
pub const DISCOVERY_TICK: Duration = Duration::from_secs(5);
/// How long the answer about one peer (serves or not) is kept at most.
pub const ANSWER_KEPT: Duration = Duration::from_secs(600);
/// How long a first "serves no relay" is kept; each further one doubles it up to
/// [`ANSWER_KEPT`]. Right after a join the answer can come from a node that has not
/// yet received the records it took over (§10.5), so an early "none" is asked again
/// soon.
pub const FIRST_MISS_KEPT: Duration = Duration::from_secs(5);
/// How long after joining the first round waits.
pub const JOIN_SETTLE: Duration = Duration::from_secs(1);
/// Peers asked per round.
pub const ASKED_PER_ROUND: usize = 4;
/// Relays a node keeps using at most.
pub const MAX_RELAYS: usize = 2;

/// The secrets of this node's live links, by peer: what the TURN credentials of the
/// relays on either end are made from.
#[derive(Debug, Default)]
pub struct LinkSecrets {
    links: Mutex<HashMap<NodeId, Vec<(LinkId, LinkSecret)>>>,
    /// Told when a link comes up or goes down (relay discovery waits on it).
    changed: tokio::sync::Notify,
}

fn fingerprint(secret: &LinkSecret) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &secret.0);
    hex::encode(&d.as_ref()[..4])
}

impl LinkSecrets {
    /// A link to `peer` came up.
    pub fn insert(&self, peer: NodeId, link: LinkId, secret: LinkSecret) {
        if let Ok(mut m) = self.links.lock() {
            m.entry(peer).or_default().push((link, secret));
        }
        self.changed.notify_one();
    }

    /// A link went down.
    pub fn remove(&self, link: LinkId) {
        if let Ok(mut m) = self.links.lock() {
            m.retain(|_, v| {
                v.retain(|(l, _)| *l != link);
                !v.is_empty()
            });
        }
        self.changed.notify_one();
    }

    /// The peers this node holds links with.
    pub fn peers(&self) -> Vec<NodeId> {
        self.links
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The credential `own` uses on the relay of `server`, over the newest link to it:
    /// user name `<own Node-ID>.<link fingerprint>`, password from the link's secret.
    pub fn credential(&self, own: NodeId, server: NodeId) -> Option<(String, String)> {
        let m = self.links.lock().ok()?;
        let (_, secret) = m.get(&server)?.last()?;
        Some((
            format!("{own}.{}", fingerprint(secret)),
            hex::encode(&secret.0[..16]),
        ))
    }

    /// The password of `username` ([`LinkSecrets::credential`] on the other end), if
    /// it names a peer linked to this node through the link it fingerprints.
    pub fn password(&self, username: &str) -> Option<String> {
        let (id, print) = username.split_once('.')?;
        let node = NodeId::from_hex(id)?;
        let m = self.links.lock().ok()?;
        m.get(&node)?
            .iter()
            .find(|(_, s)| fingerprint(s) == print)
            .map(|(_, s)| hex::encode(&s.0[..16]))
    }
}

/// The relays a node gathers candidates on: the configured STUN and TURN servers
/// and the overlay's relays found among its linked peers.
#[derive(Debug)]
pub struct Relays {
    configured: IceSettings,
    own: NodeId,
    secrets: Arc<LinkSecrets>,
    found: Mutex<HashMap<NodeId, Found>>,
    /// Whether a first round of discovery has ended (or none will run).
    ready: watch::Sender<bool>,
}

/// How long a gathering waits for the first round of discovery after a join.
pub const READY_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
struct Found {
    /// Where the peer serves, if it does.
    addr: Option<SocketAddr>,
    asked: tokio::time::Instant,
    /// Answers in a row that it serves none.
    misses: u32,
}

impl Found {
    /// How long this answer holds.
    fn kept(&self) -> Duration {
        if self.addr.is_some() {
            return ANSWER_KEPT;
        }
        let doubled = FIRST_MISS_KEPT.saturating_mul(1 << self.misses.saturating_sub(1).min(10));
        doubled.min(ANSWER_KEPT)
    }
}

impl Relays {
    /// Relays of `own`, with the `configured` servers; `discovering`: a
    /// [`discover`] task will look for the overlay's relays.
    pub fn new(
        configured: IceSettings,
        own: NodeId,
        secrets: Arc<LinkSecrets>,
        discovering: bool,
    ) -> Relays {
        Relays {
            configured,
            own,
            secrets,
            found: Mutex::new(HashMap::new()),
            ready: watch::Sender::new(!discovering),
        }
    }

    /// [`Relays::settings`] once the first round of discovery has ended, or after
    /// [`READY_WAIT`]: the first message after a join should not go out without the
    /// relays a moment's wait would have found.
    pub async fn settings_when_ready(&self) -> IceSettings {
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(READY_WAIT, ready.wait_for(|r| *r)).await;
        self.settings()
    }

    /// The live links' secrets.
    pub fn secrets(&self) -> &Arc<LinkSecrets> {
        &self.secrets
    }

    /// The ICE settings for the next gathering.
    pub fn settings(&self) -> IceSettings {
        let mut s = self.configured.clone();
        for (node, addr) in self.serving() {
            if let Some((username, password)) = self.secrets.credential(self.own, node) {
                s.stun.push(format!("stun:{addr}"));
                s.turn.push(TurnUrl {
                    url: format!("turn:{addr}"),
                    username,
                    password,
                });
            }
        }
        s
    }

    /// The overlay's relays found so far, by peer.
    pub fn serving(&self) -> Vec<(NodeId, SocketAddr)> {
        let Ok(found) = self.found.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = found
            .iter()
            .filter_map(|(n, f)| f.addr.map(|a| (*n, a)))
            .collect();
        out.sort();
        out.truncate(MAX_RELAYS);
        out
    }

    /// The linked peers to ask this round.
    fn to_ask(&self) -> Vec<NodeId> {
        let now = tokio::time::Instant::now();
        let linked = self.secrets.peers();
        let Ok(mut found) = self.found.lock() else {
            return Vec::new();
        };
        // Relays whose link is gone are no use until it is back.
        found.retain(|n, f| linked.contains(n) || f.addr.is_none());
        if found.values().filter(|f| f.addr.is_some()).count() >= MAX_RELAYS {
            return Vec::new();
        }
        linked
            .into_iter()
            .filter(|n| found.get(n).is_none_or(|f| now - f.asked >= f.kept()))
            .take(ASKED_PER_ROUND)
            .collect()
    }

    /// When [`Relays::to_ask`] next has a peer to ask (now for a linked peer never
    /// asked); `None` when only a change of links can give it one.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        let linked = self.secrets.peers();
        let found = self.found.lock().ok()?;
        let relays = found
            .iter()
            .filter(|(n, f)| f.addr.is_some() && linked.contains(n))
            .count();
        if relays >= MAX_RELAYS {
            return None;
        }
        let now = tokio::time::Instant::now();
        linked
            .iter()
            .map(|n| found.get(n).map_or(now, |f| f.asked + f.kept()))
            .min()
    }

    fn answered(&self, peer: NodeId, addr: Option<SocketAddr>) {
        if let Ok(mut found) = self.found.lock() {
            let asked = tokio::time::Instant::now();
            let before = found.get(&peer).map_or(0, |f| f.misses);
            let misses = if addr.is_some() { 0 } else { before + 1 };
            found.insert(
                peer,
                Found {
                    addr,
                    asked,
                    misses,
                },
            );
        }
    }
}

/// Requests to the node from a task that must not keep it alive.
#[derive(Clone)]
pub(crate) struct Calls {
    pub(crate) commands: mpsc::WeakSender<Command>,
    pub(crate) state: watch::Receiver<JoinState>,
}

impl Calls {
    /// Starts a request on the node and waits for its answer; `None` on failure.
    async fn run(&self, start: StartRequest) -> Option<Answer> {
        let commands = self.commands.upgrade()?;
        let (reply, rx) = oneshot::channel();
        commands.send(Command::Call { start, reply }).await.ok()?;
        drop(commands);
        match rx.await {
            Ok(Ok(a)) => Some(a),
            Ok(Err(RequestError::Shutdown)) | Err(_) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TURN-SERVICE request failed");
                None
            }
        }
    }

    /// Waits until the node is in the overlay; `false` once it is gone.
    async fn in_overlay(&mut self) -> bool {
        self.state.wait_for(|s| s.in_overlay()).await.is_ok() && !self.gone()
    }

    /// Waits until the node leaves the overlay or `wait` passes.
    async fn while_in_overlay(&self, wait: Duration) {
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(wait, state.wait_for(|s| !s.in_overlay())).await;
    }

    fn gone(&self) -> bool {
        self.commands.upgrade().is_none()
    }
}

/// A failed registration is tried again after this long.
const RETRY: Duration = Duration::from_secs(10);

/// Records `addr` as this node's TURN server under TURN-SERVICE (§9) while the node
/// runs: at every (re)join and every [`REFRESH`].
pub(crate) async fn register(mut calls: Calls, node: NodeId, addr: SocketAddr, density: u8) {
    let density = density.min(MAX_ITERATION);
    if density == 0 {
        tracing::info!("turn-density is 0: the relay is not recorded in the overlay");
        return;
    }
    while calls.in_overlay().await {
        let mut stored = 0;
        for d in 1..=density {
            let value = TurnServer {
                iteration: d,
                server_address: IpAddressPort::Addr(addr),
            };
            let Ok(value) = value.to_bytes() else { return };
            let resource = node_multiple_resource(node, u32::from(d));
            let kinds = vec![(
                TURN_SERVICE,
                vec![StoredDataValue::Single(DataValue::new(value))],
            )];
            let start: StartRequest =
                Box::new(move |n, now| n.store(resource, kinds, RECORD_LIFETIME, now));
            match calls.run(start).await {
                Some(_) => stored += 1,
                None if calls.gone() => return,
                None => {}
            }
        }
        tracing::debug!(%addr, stored, density, "TURN-SERVICE records stored");
        let wait = if stored == density { REFRESH } else { RETRY };
        calls.while_in_overlay(wait).await;
    }
}

/// Looks for relays among the linked peers ([`Relays::to_ask`]) while the node runs.
pub(crate) async fn discover(mut calls: Calls, relays: Arc<Relays>) {
    let mut was_in = false;
    while calls.in_overlay().await {
        if !was_in {
            // Just (re)joined: let the records this node takes over arrive (§10.5)
            // before asking, or it may answer "none" for a relay it is to hold.
            tokio::time::sleep(JOIN_SETTLE).await;
        }
        for peer in relays.to_ask() {
            let resource = node_multiple_resource(peer, 1);
            let specifiers = vec![StoredDataSpecifier {
                kind: TURN_SERVICE,
                generation: 0,
                model_specifier: ModelSpecifier::Single,
            }];
            let start: StartRequest = Box::new(move |n, now| n.fetch(resource, specifiers, now));
            match calls.run(start).await {
                Some(answer) => {
                    let addr = served_at(&answer.body, relays.configured.include_loopback);
                    if let Some(addr) = addr {
                        tracing::info!(%peer, %addr, "relay found in the overlay");
                    }
                    relays.answered(peer, addr);
                }
                None if calls.gone() => return,
                // Not answered: asked again next round.
                None => {}
            }
        }
        relays.ready.send_replace(true);
        // Asleep until a peer is due, a link comes or goes, or the node leaves; rounds
        // at least DISCOVERY_TICK apart. An idle node with its relays is not woken.
        let due = relays
            .next_due()
            .map(|d| d.max(tokio::time::Instant::now() + DISCOVERY_TICK));
        let mut state = calls.state.clone();
        tokio::select! {
            () = super::clock::sleep_until(due) => {}
            () = relays.secrets.changed.notified() => {}
            _ = state.wait_for(|s| !s.in_overlay()) => {}
        }
        was_in = calls.state.borrow().in_overlay();
    }
}

/// The relay address a Fetch of TURN-SERVICE at `H(peer || 1)` returned, if usable.
///
/// The Fetch keeps only values whose signature verifies and whose signer the Kind's
/// NODE-MULTIPLE policy admits at that Resource-ID (§7.3.4): `peer` itself, so a
/// dishonest storing peer cannot name another address for it.
fn served_at(body: &Body, allow_private: bool) -> Option<SocketAddr> {
    let Body::FetchAns(ans) = body else {
        return None;
    };
    ans.kind_responses
        .iter()
        .filter(|r| r.kind == TURN_SERVICE)
        .flat_map(|r| r.values.parsed())
        .find_map(|stored| {
            let StoredDataValue::Single(v) = &stored.value else {
                return None;
            };
            let t = TurnServer::decode(&v.value).ok().filter(|_| v.exists)?;
            match t.server_address {
                IpAddressPort::Addr(a)
                    if t.iteration == 1
                        && a.port() != 0
                        && super::turn_server::relay_allowed(a.ip(), allow_private) =>
                {
                    Some(a)
                }
                _ => None,
            }
        })
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Calls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which linked peers are asked, and when again: a relay is kept, a "serves
    /// none" is asked again after 5 s, then 10 s, 20 s …
    #[tokio::test(start_paused = true)]
    async fn linked_peers_are_asked_and_a_miss_is_asked_again_ever_later() {
        let secrets = Arc::new(LinkSecrets::default());
        let (a, b) = (NodeId(0xa), NodeId(0xb));
        secrets.insert(a, LinkId(1), LinkSecret([1; 32]));
        secrets.insert(b, LinkId(2), LinkSecret([2; 32]));
        let relays = Relays::new(IceSettings::default(), NodeId(0xc), secrets.clone(), true);
        let mut first = relays.to_ask();
        first.sort();
        assert_eq!(first, vec![a, b]);
        let addr: SocketAddr = "203.0.113.9:3478".parse().unwrap();
        relays.answered(a, Some(addr));
        relays.answered(b, None);
        assert!(relays.to_ask().is_empty());
        assert_eq!(relays.serving(), vec![(a, addr)]);
        let s = relays.settings();
        assert_eq!(s.stun, vec![format!("stun:{addr}")]);
        assert_eq!(s.turn[0].url, format!("turn:{addr}"));
        assert!(s.turn[0].username.starts_with(&NodeId(0xc).to_string()));
        for wait in [5, 10, 20, 40] {
            let due = tokio::time::Instant::now() + Duration::from_secs(wait);
            assert_eq!(relays.next_due(), Some(due), "{wait} s");
            tokio::time::advance(Duration::from_secs(wait - 1)).await;
            assert!(relays.to_ask().is_empty(), "{wait} s");
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(relays.to_ask(), vec![b], "{wait} s");
            relays.answered(b, None);
        }
        // The relay's link goes down: no credential, not used, asked again when back.
        secrets.remove(LinkId(1));
        assert!(relays.settings().turn.is_empty());
        assert!(relays.to_ask().is_empty());
        assert!(relays.serving().is_empty());
        secrets.insert(a, LinkId(3), LinkSecret([3; 32]));
        assert_eq!(relays.next_due(), Some(tokio::time::Instant::now()));
        assert_eq!(relays.to_ask(), vec![a]);
        // With MAX_RELAYS found, nothing is due until the links change.
        let c = NodeId(0xd);
        secrets.insert(c, LinkId(4), LinkSecret([4; 32]));
        relays.answered(a, Some(addr));
        relays.answered(c, Some("203.0.113.10:3478".parse().unwrap()));
        assert_eq!(relays.next_due(), None);
    }
}
