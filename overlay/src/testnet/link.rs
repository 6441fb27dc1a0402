//! The virtual network's links: each end runs the real framing layer
//! ([`FramedLink`], §6.6.2, §6.6.5), so acknowledgements, RTT estimates, suspicion and
//! failure of a link to a silent peer come from the same code as in the runtime. A
//! link is a TCP stream: what one end writes arrives in order.

use bytes::Bytes;

use super::{Delivery, Ev, VirtualNet};
use crate::id::NodeId;
use crate::link::{FramedLink, LinkConfig, LinkHealth};
use crate::node::LinkId;
use crate::time::Instant;

/// One end of a link.
pub(super) struct SimLink {
    pub(super) peer: NodeId,
    /// The peer's id for the same link.
    pub(super) remote: LinkId,
    framed: FramedLink,
    timer: Option<Instant>,
    /// When the last bytes written on this end arrive (in-order delivery).
    last_arrival: Instant,
}

impl SimLink {
    pub(super) fn new(peer: NodeId, remote: LinkId, now: Instant) -> SimLink {
        SimLink {
            peer,
            remote,
            framed: FramedLink::new(LinkConfig::default()),
            timer: None,
            last_arrival: now,
        }
    }
}

/// What an end produced that its node must hear about.
#[derive(Default)]
struct Output {
    messages: Vec<Bytes>,
    health: Option<(LinkHealth, Vec<Bytes>)>,
    rtt: Option<std::time::Duration>,
}

impl VirtualNet {
    /// A node's message for `link`: framed, observed, written.
    pub(super) fn send_on(&mut self, id: NodeId, link: LinkId, bytes: Bytes) {
        let now = self.now;
        let Some(l) = self.nodes.get_mut(&id).and_then(|s| s.links.get_mut(&link)) else {
            return;
        };
        if let Err(e) = l.framed.send(bytes.clone(), now) {
            tracing::debug!(error = %e, "virtual link refused a message");
            return;
        }
        let peer = l.peer;
        if let Some(o) = self.observer.as_mut() {
            o.sent(&Delivery {
                at: now,
                from: id,
                to: peer,
                bytes,
            });
        }
        self.pump(id, link);
    }

    /// Turns `node`'s keep-alive probes on `link` on or off.
    pub(super) fn set_keepalive(&mut self, node: NodeId, link: LinkId, on: bool) {
        let Some(l) = self
            .nodes
            .get_mut(&node)
            .and_then(|s| s.links.get_mut(&link))
        else {
            return;
        };
        l.framed.set_keepalive(on);
        self.pump(node, link);
    }

    /// Bytes arrived at `link` of node `to`.
    pub(super) fn receive_on(&mut self, to: NodeId, link: LinkId, bytes: &[u8]) {
        let now = self.now;
        let Some(l) = self
            .nodes
            .get_mut(&to)
            .filter(|s| s.alive)
            .and_then(|s| s.links.get_mut(&link))
        else {
            return;
        };
        if l.framed.handle_bytes(bytes, now).is_err() {
            // Not framed RELOAD (or over max-message-size): the link closes.
            return self.close(to, link);
        }
        self.pump(to, link);
    }

    /// The link timer of `link` at node `node`, armed for `at`.
    pub(super) fn link_timer(&mut self, node: NodeId, link: LinkId, at: Instant) {
        let now = self.now;
        let Some(l) = self
            .nodes
            .get_mut(&node)
            .filter(|s| s.alive)
            .and_then(|s| s.links.get_mut(&link))
            .filter(|l| l.timer == Some(at))
        else {
            return;
        };
        l.timer = None;
        l.framed.handle_timeout(now);

        self.pump(node, link);
    }

    /// Writes what an end has to send, re-arms its timer and tells the node what
    /// arrived and how the link is.
    fn pump(&mut self, id: NodeId, link: LinkId) {
        let now = self.now;
        let Some(l) = self.nodes.get_mut(&id).and_then(|s| s.links.get_mut(&link)) else {
            return;
        };
        let (peer, remote) = (l.peer, l.remote);
        let mut writes = Vec::new();
        while let Some(chunk) = l.framed.poll_transmit() {
            writes.push(chunk);
        }
        let mut out = Output::default();
        while let Some(m) = l.framed.poll_message() {
            out.messages.push(m);
        }
        out.rtt = l.framed.poll_rtt();
        if let Some(h) = l.framed.poll_health() {
            let unacked = match h {
                LinkHealth::Suspect => l.framed.take_unacked(),
                _ => Vec::new(),
            };
            out.health = Some((h, unacked));
        }
        // One timer event per link at a time: a deadline that moves later (every frame
        // heard moves the keep-alive) is left to the armed event, which re-arms when
        // it fires; only an earlier one schedules another. The heap stays small.
        let wanted = l.framed.poll_timeout().map(|t| t.max(now));
        let arm = match (wanted, l.timer) {
            (Some(w), Some(armed)) if armed <= w => None,
            (Some(w), _) => Some(w),
            (None, _) => None,
        };
        if arm.is_some() {
            l.timer = arm;
        }
        let mut last = l.last_arrival;
        for chunk in writes {
            if let Some(o) = self.observer.as_mut() {
                o.wire(id, chunk.len());
            }
            if self.latency.lost(id, peer, &mut self.rng) {
                continue;
            }
            last = last.max(now + self.latency.delay(id, peer, &mut self.rng));
            self.schedule(
                last,
                Ev::Deliver {
                    to: peer,
                    link: remote,
                    bytes: chunk,
                },
            );
        }
        if let Some(l) = self.nodes.get_mut(&id).and_then(|s| s.links.get_mut(&link)) {
            l.last_arrival = last;
        }
        if let Some(at) = arm {
            self.schedule(at, Ev::LinkTimer { node: id, link, at });
        }
        for m in out.messages {
            self.with(id, |n| n.handle_message(link, m, now));
        }
        if let Some(rtt) = out.rtt {
            self.with(id, |n| n.handle_link_rtt(link, rtt, now));
        }
        match out.health {
            Some((LinkHealth::Failed, _)) => self.close(id, link),
            Some((h, unacked)) => self.with(id, |n| n.handle_link_health(link, h, unacked, now)),
            None => {}
        }
    }
}
