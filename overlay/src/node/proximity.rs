//! Proximity neighbour selection (Dabek et al., "Designing a DHT for low latency and
//! high throughput", NSDI 2004): any peer in finger `i`'s interval is a valid finger
//! (§10.7.4.2), so among those it has met, a node keeps the one with the lowest
//! round-trip time. The link layer measures that time from its acknowledgements
//! ([`crate::link::FramedLink::srtt`]) and the driver reports it
//! ([`Node::handle_link_rtt`]); no probe message is added.
//!
//! To meet candidates, a joined node attaches now and then to the peer responsible
//! for a random point of one finger interval (round-robin over the intervals its
//! successors do not cover; the larger intervals, used by the first hops of every
//! route, hold the most candidates): [`FAST_SAMPLES`] samples [`FAST`] apart after it
//! joins (about one per interval that has candidates at 1,000 nodes), then one every
//! [`STEADY`]. A candidate that is not nearer is not in the routing table, so its link
//! is closed a minute later (`unused_links`). `NodeConfig::proximity` turns all of it
//! off.

use std::time::Duration;

use super::transactions::Purpose;
use super::{JoinState, LinkId, Node, Timer};
use crate::chord::table::{finger_index, finger_start};
use crate::id::{NodeId, ResourceId};
use crate::time::Instant;
use crate::wire::Destination;

/// Samples after joining, [`FAST`] apart.
pub const FAST_SAMPLES: u32 = 8;
/// The gap between the first samples.
pub const FAST: Duration = Duration::from_secs(60);
/// The gap between later samples.
pub const STEADY: Duration = Duration::from_secs(600);

/// Sampling state.
#[derive(Debug, Default)]
pub(crate) struct Proximity {
    /// Samples taken since joining.
    samples: u32,
    /// The finger interval sampled last.
    last: u8,
}

impl Node {
    /// The link layer's smoothed round-trip time of `link` changed (or was first
    /// measured): remember it, and make the peer a finger if it is nearer than the one
    /// in its interval.
    pub fn handle_link_rtt(&mut self, link: LinkId, rtt: Duration, now: Instant) {
        let Some(c) = self.links.get_mut(&link) else {
            return;
        };
        c.rtt = Some(rtt);
        let (peer, usable) = (c.peer, c.ready && !c.suspect);
        if usable {
            self.prefer_nearer_finger(peer);
        }
        self.flush(now);
    }

    /// The round-trip time measured on the link to `peer`.
    fn rtt_to(&self, peer: NodeId) -> Option<Duration> {
        self.link_to(peer)
            .and_then(|l| self.links.get(&l))
            .and_then(|c| c.rtt)
    }

    /// Puts `peer` in its finger interval if it is nearer than the finger there.
    pub(crate) fn prefer_nearer_finger(&mut self, peer: NodeId) {
        if self.state != JoinState::Joined || !self.cfg.proximity {
            return;
        }
        let Some(i) = finger_index(self.me, peer) else {
            return;
        };
        let Some(rtt) = self.rtt_to(peer) else {
            return;
        };
        if i > self.table.finger_count() || self.table.is_neighbor(peer) {
            return; // the neighbour table, not proximity, decides there
        }
        let nearer = match self.table.finger(i) {
            Some(cur) if cur == peer => false,
            Some(cur) => self.rtt_to(cur).is_none_or(|c| rtt < c),
            None => true,
        };
        if nearer && self.table.set_finger(i, peer) {
            tracing::trace!(node = %self.me, %peer, finger = i, ?rtt, "nearer finger");
        }
    }

    /// Starts sampling after the join.
    pub(crate) fn start_proximity(&mut self, now: Instant) {
        self.proximity = Proximity::default();
        if self.cfg.proximity {
            self.timers.set(Timer::ProximitySample, now + FAST);
        }
    }

    /// Attaches to the peer responsible for a random point of the next finger interval
    /// that holds peers beyond the successors (Timer::ProximitySample).
    pub(crate) fn sample_proximity(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        let count = self.table.finger_count();
        let open: Vec<u8> = (1..=count)
            .filter(|i| {
                let start = finger_start(self.me, *i);
                !self.table.successors_cover(start)
            })
            .collect();
        if let Some(&i) = open
            .iter()
            .find(|i| **i > self.proximity.last)
            .or(open.first())
        {
            self.proximity.last = i;
            let target = self.random_point_of_finger(i);
            if !self.responsible(target) {
                self.attach(
                    vec![Destination::Resource(ResourceId(target))],
                    Purpose::Attach {
                        neighbor: false,
                        target: None,
                    },
                    now,
                );
            }
        }
        self.proximity.samples = self.proximity.samples.saturating_add(1);
        let gap = if self.proximity.samples < FAST_SAMPLES {
            FAST
        } else {
            STEADY
        };
        self.timers.set(Timer::ProximitySample, now + gap);
    }
}
