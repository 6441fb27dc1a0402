//! Bootstrap (§11.4): the first links to the overlay, and trying again.

use super::attach::Connecting;
use super::transactions::Purpose;
use super::{ConnectId, Event, JoinFailure, JoinState, Node, Timer};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::Destination;

impl Node {
    /// Tries the bootstrap nodes (§11.4).
    pub(crate) fn bootstrap(&mut self, now: Instant) {
        if self.state != JoinState::Bootstrapping {
            return;
        }
        // Already linked to a peer (e.g. re-joining after losing all successors): use it.
        if !self.links.is_empty() {
            let target = Destination::Resource(self.me.wrapping_add(1).as_resource());
            self.attach(vec![target], Purpose::BootstrapAttach, now);
            return;
        }
        let own = self.own_addresses();
        for addr in self.cfg.bootstrap.clone() {
            if own.contains(&addr) {
                continue;
            }
            let id = ConnectId(self.fresh_id());
            self.attaches.connecting.insert(id, Connecting::Bootstrap);
            self.events.push_back(Event::Connect {
                id,
                candidates: vec![addr],
                expect: None,
            });
        }
        if self.attaches.connecting.is_empty() {
            self.bootstrap_failed(now);
        }
    }

    /// No bootstrap path worked: start the overlay if allowed, else try again later.
    pub(crate) fn bootstrap_failed(&mut self, now: Instant) {
        if self.state != JoinState::Bootstrapping {
            return;
        }
        if self.cfg.may_start_overlay && self.links.is_empty() {
            return self.become_joined(now);
        }
        self.retry_join(
            JoinFailure::NoBootstrap("no bootstrap node answered".into()),
            now,
        );
    }

    /// The join failed for `why`: say so and try again with a doubling delay, up to
    /// sixteen times `bootstrap_retry`.
    pub(crate) fn retry_join(&mut self, why: JoinFailure, now: Instant) {
        self.state = JoinState::Bootstrapping;
        if let JoinFailure::Unlinkable(what) = &why
            && self.cfg.client_fallback
            && !self.cfg.client
        {
            // A place on the ring needs links to its neighbours; a client needs
            // one link (§4.2.1). Bootstrap again at once, as a client.
            tracing::warn!(
                node = %self.me,
                why = %what,
                "cannot take a place on the ring; taking part as a client (RFC 6940 §4.2.1)"
            );
            self.cfg.client = true;
            self.timers.set(Timer::Bootstrap, now);
            return;
        }
        if let Some(peer) = self.client_peer_fallback() {
            // §4.2.1's second option: "establish a connection with an arbitrary peer
            // in the overlay (perhaps based on ... an inability to establish a direct
            // connection with the responsible peer)". The usage's stored Destination
            // List goes through that peer; the client check moves to the responsible
            // peer when it can.
            tracing::info!(
                node = %self.me,
                %peer,
                %why,
                "no link to the responsible peer; a client of a linked peer"
            );
            return self.become_client(peer, now);
        }
        let shift = self.attaches.bootstrap_failures.min(4);
        self.attaches.bootstrap_failures += 1;
        let retry = self.cfg.bootstrap_retry.saturating_mul(1 << shift);
        tracing::warn!(node = %self.me, %why, ?retry, "join attempt failed; retrying");
        self.events.push_back(Event::JoinFailed(why));
        self.timers.set(Timer::Bootstrap, now + retry);
    }

    /// For a client whose responsible peer it cannot link to: the linked peer to go
    /// through instead (the one nearest before its own Node-ID on the ring).
    fn client_peer_fallback(&self) -> Option<NodeId> {
        if !self.cfg.client {
            return None;
        }
        let me = self.me.0;
        self.links
            .values()
            .filter(|c| !c.suspect && c.peer != self.me)
            .map(|c| c.peer)
            .min_by_key(|p| me.wrapping_sub(p.0))
    }
}
