//! What the link layer says about a link's health (§6.6.3, §6.6.5), and per-hop
//! recovery.
//!
//! A link whose frames stay unacknowledged for an RTO is *suspect*: "it is RECOMMENDED
//! that the link be removed from the Routing Table" (§6.6.3), and it may be restored
//! "if ACKs resume before the connection is closed". The node takes a suspect peer out
//! of its routing table at once (so neighbour repair starts within about a second,
//! not after the 30 s the link is kept), and routes the requests that link had not
//! acknowledged around it, through the next-best finger or successor (Bamboo's
//! per-hop recovery). The origin's end-to-end retransmission stays as §6.2.1 says; a
//! request that reaches its destination twice is answered once from the
//! transaction-id cache, and the origin takes the first answer.

use bytes::Bytes;

use super::{LinkId, Node};
use crate::id::NodeId;
use crate::link::LinkHealth;
use crate::time::Instant;
use crate::wire::{Destination, RawMessage};

impl Node {
    /// The link layer's view of `link` changed. `unacked` are the messages a newly
    /// [`LinkHealth::Suspect`] link had not acknowledged (see
    /// [`crate::link::FramedLink::take_unacked`]); its requests are routed again
    /// around the link. [`LinkHealth::Up`] puts a suspect peer back into the routing
    /// table; [`LinkHealth::Failed`] closes the link.
    pub fn handle_link_health(
        &mut self,
        link: LinkId,
        health: LinkHealth,
        unacked: Vec<Bytes>,
        now: Instant,
    ) {
        let Some(conn) = self.links.get_mut(&link) else {
            return;
        };
        let peer = conn.peer;
        match health {
            LinkHealth::Suspect => {
                if !std::mem::replace(&mut conn.suspect, true) {
                    tracing::debug!(node = %self.me, %peer, "link suspect; routing around it");
                    self.peer_suspected(peer, now);
                }
                for bytes in unacked {
                    self.reroute(bytes, peer, now);
                }
            }
            LinkHealth::Up => {
                if std::mem::replace(&mut conn.suspect, false) && conn.ready {
                    tracing::debug!(node = %self.me, %peer, "link acknowledges again");
                    if self.table.add(peer) {
                        self.neighbors_dirty = true;
                    }
                }
            }
            LinkHealth::Failed => self.peer_failed(peer, now),
        }
        self.flush(now);
    }

    /// Takes a suspect peer out of the routing table and refills it from the healthy
    /// links; the link stays open (§6.6.5: kept 30 s in case the failure is transient).
    fn peer_suspected(&mut self, peer: NodeId, now: Instant) {
        if !self.table.remove(peer) {
            return;
        }
        self.neighbors_dirty = true;
        self.refill_from_healthy_links();
        self.neighbor_lost_check(now);
    }

    /// Routes a request that `around` did not acknowledge through another hop. Its
    /// via list and TTL were already adjusted when it was forwarded; responses retrace
    /// their via list and are left to the requester's retransmission, as are requests
    /// to the suspect peer itself.
    fn reroute(&mut self, bytes: Bytes, around: NodeId, now: Instant) {
        let Ok(raw) = RawMessage::decode(&bytes) else {
            return;
        };
        if !raw.code().is_some_and(|c| c.is_request())
            || raw.header.destination_list.first() == Some(&Destination::Node(around))
        {
            return;
        }
        tracing::trace!(node = %self.me, %around, tid = raw.header.transaction_id, "rerouting");
        self.route(raw, None, now);
    }
}
