//! Message receipt and forwarding (§6.1): the destination list decides whether a
//! message is for this node, goes to a directly connected node, or follows the Chord
//! next hop (§10.3). Symmetric recursive routing (§6.2): requests grow the via list;
//! responses retrace it.

use std::collections::HashSet;

use bytes::Bytes;

use super::fragments::fragment;
use super::{LinkId, Node, RequestError, Transmit};
use crate::chord::NextHop;
use crate::id::NodeId;
use crate::respond::response_header;
use crate::time::Instant;
use crate::wire::header::option_flags;
use crate::wire::{Destination, ErrorCode, ErrorResponse, RawMessage};

/// Whether the message is (or may be) a request; non-first fragments count as requests.
fn maybe_request(raw: &RawMessage) -> bool {
    raw.code().is_none_or(|c| c.is_request())
}

impl Node {
    /// A message arrived on `link`.
    pub fn handle_message(&mut self, link: LinkId, bytes: Bytes, now: Instant) {
        let Some(prev) = self.links.get(&link).map(|c| c.peer) else {
            return;
        };
        self.heard_on(link, now);
        if bytes.is_empty() {
            return; // the peer's keep-alive (see `unused_links`)
        }
        match RawMessage::decode(&bytes) {
            Ok(raw) => self.receive(raw, prev, now),
            Err(e) => tracing::debug!(node = %self.me, error = %e, "undecodable message dropped"),
        }
        self.flush(now);
    }

    fn receive(&mut self, raw: RawMessage, prev: NodeId, now: Instant) {
        if raw.header.overlay != self.overlay {
            let e = ErrorResponse::new(ErrorCode::IncompatibleWithOverlay, "wrong overlay");
            return self.routing_error(&raw, Some(prev), e, now);
        }
        if raw.header.ttl > self.cfg.initial_ttl {
            // "MUST discard the message and send an Error_TTL_Exceeded error" (§6.3.2)
            let e = ErrorResponse::new(ErrorCode::TtlExceeded, "TTL above initial-ttl");
            return self.routing_error(&raw, Some(prev), e, now);
        }
        self.route(raw, Some(prev), now);
    }

    /// Whether this node is responsible for `k` (only once it is on the ring).
    pub(crate) fn responsible(&self, k: u128) -> bool {
        self.state == super::JoinState::Joined && self.table.is_responsible(k)
    }

    /// The link of the ready peer to route `k` through (§10.3). A node that has not
    /// joined sends everything through any peer it is attached to (§4.2.1).
    fn next_link(&self, k: u128) -> Option<LinkId> {
        if let Some(l) = self.client_of().and_then(|p| self.link_to(p)) {
            return Some(l); // §4.2.1: a client sends everything through its peer
        }
        if let NextHop::Peer(p) = self.table.closest_preceding(k)
            && let Some(l) = self.link_to(p)
        {
            return Some(l);
        }
        if self.state == super::JoinState::Joined && !self.table.peers().is_empty() {
            return None;
        }
        let mut links: Vec<(&LinkId, &super::Conn)> = self.links.iter().collect();
        links.sort_by_key(|(l, c)| (c.suspect, !c.ready, **l));
        links.first().map(|(l, _)| **l)
    }

    /// Routes a message from `prev` (`None` if it originates here) per §6.1.
    pub(crate) fn route(&mut self, mut raw: RawMessage, prev: Option<NodeId>, now: Instant) {
        let list = &raw.header.destination_list;
        let unique: HashSet<&Destination> = list.iter().collect();
        if unique.len() != list.len() {
            // §13.6.5: duplicate destinations are a loop.
            let e = ErrorResponse::new(
                ErrorCode::InvalidMessage,
                "duplicate entries in the destination list",
            );
            return self.routing_error(&raw, prev, e, now);
        }
        loop {
            let Some(first) = raw.header.destination_list.first().cloned() else {
                return;
            };
            let last = raw.header.destination_list.len() == 1;
            let link = match first {
                Destination::Node(n) if n == self.me => {
                    if last {
                        return self.deliver(raw, prev, now);
                    }
                    raw.header.destination_list.remove(0);
                    continue;
                }
                Destination::Node(NodeId::WILDCARD) => return self.deliver(raw, prev, now),
                Destination::Node(n) => match self.link_to(n) {
                    Some(link) => Some(link),
                    // §6.1.1: our range, not us, not connected: drop silently. A
                    // request of our own fails at once (retransmitting cannot help).
                    None if self.responsible(n.0) => {
                        if prev.is_none() {
                            self.fail_unroutable(&raw, now);
                        }
                        return;
                    }
                    None => self.next_link(n.0),
                },
                Destination::Resource(r) if self.responsible(r.0) => {
                    if last {
                        return self.deliver(raw, prev, now);
                    }
                    return; // §6.1.1: a Resource-ID must be the only entry
                }
                Destination::Resource(r) => match self.table.known_owner(r.0) {
                    Some(owner) if self.client_of().is_none() => self.link_to(owner),
                    _ => None,
                }
                .or_else(|| self.next_link(r.0)),
                other => {
                    let e = ErrorResponse::new(
                        ErrorCode::InvalidMessage,
                        format!("cannot route to destination {other:?}"),
                    );
                    return self.routing_error(&raw, prev, e, now);
                }
            };
            match link {
                Some(link) => return self.forward(raw, prev, link, now),
                None => {
                    let e = ErrorResponse::new(ErrorCode::NotFound, "no route to the destination");
                    return self.routing_error(&raw, prev, e, now);
                }
            }
        }
    }

    /// Sends `raw` on `link`, adjusting TTL and via list when forwarding (§6.1.2).
    fn forward(&mut self, mut raw: RawMessage, prev: Option<NodeId>, link: LinkId, now: Instant) {
        if let Some(prev) = prev {
            let request = maybe_request(&raw);
            if raw.header.ttl == 0 {
                let e = ErrorResponse::new(ErrorCode::TtlExceeded, "TTL reached zero");
                return self.routing_error(&raw, Some(prev), e, now);
            }
            if request {
                if raw.header.via_list.contains(&Destination::Node(self.me)) {
                    let e = ErrorResponse::new(
                        ErrorCode::InvalidMessage,
                        "routing loop: this node is already in the via list",
                    );
                    return self.routing_error(&raw, Some(prev), e, now);
                }
                if raw
                    .header
                    .options
                    .iter()
                    .any(|o| o.flags & option_flags::FORWARD_CRITICAL != 0)
                {
                    let e = ErrorResponse::new(
                        ErrorCode::UnsupportedForwardingOption,
                        "unknown forward-critical option",
                    );
                    return self.routing_error(&raw, Some(prev), e, now);
                }
                raw.header.via_list.push(Destination::Node(prev));
            }
            raw.header.ttl -= 1;
        }
        let pieces = match self.cfg.fragment_mtu {
            Some(mtu) => fragment(&raw, mtu.saturating_sub(raw.header.encoded_len() + 32)),
            None => vec![raw],
        };
        for piece in pieces {
            match piece.encode() {
                Ok(bytes)
                    if bytes.len() <= self.cfg.max_message_size
                        || self.cfg.fragment_mtu.is_some() =>
                {
                    self.used(link, now);
                    self.out.push_back(Transmit { link, bytes });
                }
                Ok(bytes) => {
                    tracing::debug!(len = bytes.len(), "message over max-message-size not sent")
                }
                Err(e) => tracing::debug!(error = %e, "message could not be encoded"),
            }
        }
    }

    /// A request could not be routed or processed: answer it with `error` (responses and
    /// fragments of unknown kind are dropped). For a request this node originated, the
    /// transaction fails at once when the node has no link at all.
    pub(crate) fn routing_error(
        &mut self,
        raw: &RawMessage,
        prev: Option<NodeId>,
        error: ErrorResponse,
        now: Instant,
    ) {
        if !raw.code().is_some_and(|c| c.is_request()) {
            return;
        }
        match prev {
            Some(prev) => {
                let header = response_header(&raw.header, prev, self.cfg.initial_ttl);
                self.send_error(header, error, now);
            }
            None if self.links.is_empty() => self.fail_unroutable(raw, now),
            None => {} // retransmission will try again
        }
    }

    /// A request this node originated cannot be routed: its transaction fails now.
    fn fail_unroutable(&mut self, raw: &RawMessage, now: Instant) {
        let tid = raw.header.transaction_id;
        self.timers.cancel(&super::Timer::Retransmit(tid));
        if let Some(p) = self.txns.remove(tid) {
            self.fail_purpose(&p.purpose, RequestError::NoRoute, now);
        }
    }
}
