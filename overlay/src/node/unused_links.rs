//! Links nobody routes over. RFC 6940 keeps a link only while it serves routing: a
//! connection that fails is dropped (§6.6.5), and the routing table is what a peer
//! routes over (§10). A node links to far more peers than its table names: the
//! peers met while joining, finger candidates found wanting, the bootstrap node
//! reached for a partition check, peers that attached to it for their own tables.
//! Kept open, each such link costs both ends a connection and a keep-alive every
//! 10 s: in a 200-node simulated ring a node held 66 links while its table named
//! about 14 peers, and the keep-alives were half of its upkeep.
//!
//! So an end probes only the links it *needs* — the peer is in its routing table (a
//! neighbour or a finger), an attach to it is under way, it is this client's
//! admitting peer (§4.2.1), or this node has not joined yet — and every [`SWEEP`]
//! turns the link layer's probes on or off to match ([`Event::Keepalive`]). A probe
//! from the peer arrives as an empty message: the peer needs the link. A link this
//! node does not need, on which nothing arrived and nothing was sent for [`IDLE`],
//! is needed by neither end, and this node closes it. A peer that uses this node as
//! a finger probes it every 10 s, so its link stays.

use std::time::Duration;

use super::{Event, JoinState, LinkId, Node, Timer};
use crate::id::NodeId;
use crate::time::Instant;

/// How often links are checked.
pub const SWEEP: Duration = Duration::from_secs(30);
/// Silence after which a link neither end needs is closed: several of the peer's
/// keep-alive intervals ([`crate::link::KEEPALIVE`]), so a peer that needs the link
/// has shown it.
pub const IDLE: Duration = Duration::from_secs(60);

impl Node {
    /// Whether this node routes over its link to `peer` or is about to.
    fn routes_over(&self, peer: NodeId) -> bool {
        self.table.contains(peer)
            || self.attaching_in_progress(peer)
            || self.client_of() == Some(peer)
    }

    /// Moves the next sweep to `at` if none is due sooner.
    pub(crate) fn sweep_links_by(&mut self, at: Instant) {
        if self.timers.at(&Timer::LinkSweep).is_none_or(|t| at < t) {
            self.timers.set(Timer::LinkSweep, at);
        }
    }

    /// Probes the links this node needs, stops probing the others, and closes those
    /// that neither end has used for [`IDLE`] (Timer::LinkSweep).
    pub(crate) fn sweep_links(&mut self, now: Instant) {
        let mut needed: Vec<(LinkId, bool)> = self
            .links
            .iter()
            .map(|(l, c)| {
                let joining = self.state != JoinState::Joined;
                (*l, joining || self.routes_over(c.peer))
            })
            .collect();
        needed.sort(); // no decision on hash-map order (seeded runs replay)
        let mut unused = Vec::new();
        for (link, need) in needed {
            let Some(c) = self.links.get_mut(&link) else {
                continue;
            };
            if c.keepalive != need {
                c.keepalive = need;
                self.events.push_back(Event::Keepalive { link, on: need });
            }
            let last = c.opened.max(c.heard).max(c.used);
            if !need && now.saturating_duration_since(last) >= IDLE {
                unused.push(c.peer);
            }
        }
        for peer in unused {
            tracing::debug!(node = %self.me, %peer, "closing a link neither end uses");
            self.peer_failed(peer, now);
        }
        if !self.links.is_empty() {
            self.timers.set(Timer::LinkSweep, now + SWEEP);
        }
    }

    /// At the connection limit: closes one link this node does not need (a finger
    /// found wanting, an old bootstrap link), so a new neighbour is not refused for
    /// links nobody routes over.
    pub(crate) fn evict_unused_link(&mut self, now: Instant) {
        let unused = self
            .links
            .iter()
            .filter(|(_, c)| !self.routes_over(c.peer))
            .min_by_key(|(l, _)| l.0)
            .map(|(_, c)| c.peer);
        if let Some(peer) = unused {
            self.peer_failed(peer, now);
        }
    }

    /// A message or keep-alive arrived on `link`.
    pub(crate) fn heard_on(&mut self, link: LinkId, now: Instant) {
        if let Some(c) = self.links.get_mut(&link) {
            c.heard = now;
        }
    }

    /// A message is sent on `link`.
    pub(crate) fn used(&mut self, link: LinkId, now: Instant) {
        if let Some(c) = self.links.get_mut(&link) {
            c.used = now;
        }
    }
}
