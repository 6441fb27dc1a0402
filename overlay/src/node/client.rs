//! Client mode (RFC 6940 §4.2.1, first option): "Establish a connection to the peer
//! responsible for the client's Node-ID in the overlay. Then, requests may be sent
//! from/to the client using its Node-ID in the same manner as if it were a peer,
//! because the responsible peer in the overlay will handle the final step of routing
//! to the client."
//!
//! A client bootstraps as a joining node does (§11.4: an Attach to its own Node-ID
//! plus one, which reaches the peer responsible for it) and stops there: no Join, no
//! Updates of its own, so no peer ever puts it in a routing table or replicates data
//! to it, and it stores nothing for others. Everything it sends goes over that link
//! (its routing table stays empty). "These updates can indicate that the peer is no
//! longer responsible for the client's Node-ID. The client would then need to form a
//! connection to the appropriate peer": every `client_check_interval` it sends the
//! same Attach again and moves when another peer answers; when the link to its peer
//! closes it bootstraps again at once.

use super::transactions::Purpose;
use super::{Event, JoinState, Node, RequestError, Timer};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::Destination;

impl JoinState {
    /// Whether the node takes part in the overlay: on the ring, or as a client.
    pub fn in_overlay(self) -> bool {
        matches!(self, JoinState::Joined | JoinState::Client { .. })
    }
}

impl Node {
    /// The peer a client is attached to (`None` for a peer or a node not yet in).
    pub fn client_of(&self) -> Option<NodeId> {
        match self.state {
            JoinState::Client { peer } => Some(peer),
            _ => None,
        }
    }

    /// The bootstrap Attach of a client was answered by `peer`, now linked: it is the
    /// client's peer from now on (it was already, or responsibility moved to it).
    pub(crate) fn become_client(&mut self, peer: NodeId, now: Instant) {
        let previous = self.client_of();
        if previous == Some(peer) {
            return;
        }
        self.state = JoinState::Client { peer };
        self.attaches.bootstrap_failures = 0;
        self.attaches.join_seen.clear();
        self.join_waiting.clear();
        self.timers.cancel(&Timer::JoinAttachDeadline);
        self.timers.cancel(&Timer::Bootstrap);
        tracing::info!(node = %self.me, %peer, ?previous, "in the overlay as a client (§4.2.1)");
        if let Some(old) = previous.and_then(|p| self.link_to(p)) {
            // The old peer no longer routes to us; its link serves nothing.
            self.events.push_back(Event::CloseLink(old));
        }
        if previous.is_none() {
            self.events.push_back(Event::Joined);
        }
        let check = self.cfg.client_check_interval;
        self.timers.set(Timer::ClientCheck, now + check);
    }

    /// Timer::ClientCheck: which peer is responsible for us now?
    pub(crate) fn client_check(&mut self, now: Instant) {
        if !matches!(self.state, JoinState::Client { .. }) {
            return;
        }
        let target = Destination::Resource(self.me.wrapping_add(1).as_resource());
        self.attach(vec![target], Purpose::BootstrapAttach, now);
        let check = self.cfg.client_check_interval;
        self.timers.set(Timer::ClientCheck, now + check);
    }

    /// The client check's Attach went unanswered: the only hop it took was the
    /// client's peer, which is gone (a silent failure the link has not noticed yet).
    pub(crate) fn client_check_failed(&mut self, error: &RequestError, now: Instant) {
        if let (Some(peer), RequestError::Timeout(_)) = (self.client_of(), error) {
            tracing::info!(node = %self.me, %peer, "the client's peer does not answer");
            self.peer_failed(peer, now);
        }
    }

    /// A link closed: a client that lost its peer bootstraps again.
    pub(crate) fn client_peer_lost(&mut self, lost: NodeId, now: Instant) {
        if self.client_of() == Some(lost) {
            tracing::info!(node = %self.me, peer = %lost, "lost the client's peer; bootstrapping again");
            self.timers.cancel(&Timer::ClientCheck);
            self.state = JoinState::Bootstrapping;
            self.bootstrap(now);
        }
    }
}
