//! Detecting and healing a split ring (§10.7.4.4), and finding the overlay again after
//! losing every link (§10.7.1: "it SHOULD periodically try to join the DHT").
//!
//! Every `partition-check-interval`, and a few seconds after a neighbour is lost, a
//! joined node reaches one of its bootstrap nodes B (reusing a link if it has one)
//! and pings its own Node-ID, as a key, through B. In one ring the answer comes
//! from the node itself. If another node S' answers, the ring is
//! split — a bootstrap node that restarted alone, or a network partition that
//! healed — and the node attaches to S' through B and sends it an Update; the two
//! rings then merge through ordinary stabilisation (§10.7.3).
//!
//! A node left with no link at all checks at once, dialling every bootstrap node and
//! the peers it reached before ([`KNOWN_PEERS`] of them), and keeps trying with a
//! doubling delay, from [`RECHECK`] up to [`MAX_RECHECK`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::attach::Connecting;
use super::transactions::Purpose;
use super::{Answer, ConnectId, Event, JoinState, Node, Timer};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::{Body, Destination, PingReq};

/// How soon after losing a neighbour the ring is checked, and the first retry delay.
pub const RECHECK: Duration = Duration::from_secs(5);
/// The longest delay between retries after failed checks.
pub const MAX_RECHECK: Duration = Duration::from_secs(60);
/// Peers remembered with the address they were reached at.
pub const KNOWN_PEERS: usize = 16;

/// Partition-check state.
#[derive(Debug, Default)]
pub(crate) struct Partition {
    /// Consecutive checks that reached nobody.
    failures: u32,
    /// Which bootstrap address to use next.
    rotation: usize,
    /// The node found at each bootstrap address.
    at_address: BTreeMap<SocketAddr, NodeId>,
    /// Peers reached before, most recent last.
    known: VecDeque<(NodeId, SocketAddr)>,
}

impl Node {
    /// Remembers that `peer` was reached at `addr` (for finding the overlay again).
    pub(crate) fn remember_peer(&mut self, peer: NodeId, addr: SocketAddr) {
        let known = &mut self.partition.known;
        known.retain(|(p, _)| *p != peer);
        if known.len() >= KNOWN_PEERS {
            known.pop_front();
        }
        known.push_back((peer, addr));
    }

    /// Moves the next check to `at` if that is sooner.
    pub(crate) fn check_partition_by(&mut self, at: Instant) {
        if self
            .timers
            .at(&Timer::PartitionCheck)
            .is_none_or(|next| at < next)
        {
            self.timers.set(Timer::PartitionCheck, at);
        }
    }

    /// The delay before the next check: the interval, or less after failures.
    fn next_check_in(&self) -> Duration {
        let interval = self.cfg.partition_check_interval;
        if self.partition.failures == 0 {
            return interval;
        }
        let shift = (self.partition.failures - 1).min(16);
        RECHECK
            .saturating_mul(1 << shift)
            .min(MAX_RECHECK)
            .min(interval)
    }

    /// A neighbour was lost: check the ring soon; at once if no link is left.
    pub(crate) fn neighbor_lost_check(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        let soon = if self.links.is_empty() {
            now
        } else {
            now + RECHECK
        };
        self.check_partition_by(soon);
    }

    /// The check (Timer::PartitionCheck).
    pub(crate) fn partition_check(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        let own = self.own_addresses();
        let mut targets: Vec<(SocketAddr, Option<NodeId>)> = self
            .cfg
            .bootstrap
            .iter()
            .filter(|a| !own.contains(a))
            .map(|a| (*a, None))
            .collect();
        let alone = self.links.is_empty();
        if alone {
            let known: Vec<(SocketAddr, Option<NodeId>)> = self
                .partition
                .known
                .iter()
                .rev()
                .map(|(p, a)| (*a, Some(*p)))
                .collect();
            for (addr, peer) in known {
                match targets.iter_mut().find(|(a, _)| *a == addr) {
                    Some(t) => t.1 = t.1.or(peer),
                    None => targets.push((addr, peer)),
                }
            }
        }
        if !targets.is_empty() {
            if alone {
                tracing::info!(node = %self.me, "no link left; looking for the overlay again");
            }
            let chosen: Vec<(SocketAddr, Option<NodeId>)> = if alone {
                targets
            } else {
                let i = self.partition.rotation % targets.len();
                self.partition.rotation = self.partition.rotation.wrapping_add(1);
                vec![targets[i]]
            };
            for (addr, expect) in chosen {
                self.check_through(addr, expect, now);
            }
        }
        // If nothing answers, this is the retry.
        let next = now + self.next_check_in();
        self.timers.set(Timer::PartitionCheck, next);
    }

    fn check_through(&mut self, addr: SocketAddr, expect: Option<NodeId>, now: Instant) {
        let linked = self
            .partition
            .at_address
            .get(&addr)
            .copied()
            .or(expect)
            .filter(|n| self.link_to(*n).is_some());
        match linked {
            Some(via) => self.ping_through(via, now),
            None => {
                let id = ConnectId(self.fresh_id());
                self.attaches
                    .connecting
                    .insert(id, Connecting::Check { addr });
                self.events.push_back(Event::Connect {
                    id,
                    candidates: vec![addr],
                    expect,
                });
            }
        }
    }

    /// A check connection to `addr` is up (`Some(peer)`) or failed.
    pub(crate) fn check_connected(&mut self, addr: SocketAddr, peer: Option<NodeId>, now: Instant) {
        match peer {
            Some(peer) => {
                self.partition.at_address.insert(addr, peer);
                self.ping_through(peer, now);
            }
            None => {
                let others = self
                    .attaches
                    .connecting
                    .values()
                    .any(|c| matches!(c, Connecting::Check { .. }));
                if !others {
                    // Every address tried in this check failed.
                    self.partition.failures = self.partition.failures.saturating_add(1);
                    let next = now + self.next_check_in();
                    self.timers.set(Timer::PartitionCheck, next);
                }
            }
        }
    }

    /// Pings our own Node-ID, as a key, through `via` (the key just after it when
    /// `via` is this node). Not the key after it through `via`: in one ring that
    /// route ends through this node, which heads the via list, so the loop check
    /// refused it; every healthy check then failed and the next came a minute later.
    fn ping_through(&mut self, via: NodeId, now: Instant) {
        let route = if via == self.me {
            vec![Destination::Resource(self.me.wrapping_add(1).as_resource())]
        } else {
            vec![
                Destination::Node(via),
                Destination::Resource(self.me.as_resource()),
            ]
        };
        self.originate(
            route,
            Body::PingReq(PingReq::default()),
            Purpose::PartitionPing { via },
            now,
        );
    }

    /// The check ping was answered: heal if someone we do not know answered.
    pub(crate) fn partition_answered(&mut self, via: NodeId, answer: &Answer, now: Instant) {
        self.partition.failures = 0;
        let s = answer.from;
        let successor = self.table.successors().first().copied();
        if s == self.me || Some(s) == successor || self.attaching(s) {
            let next = now + self.next_check_in();
            self.timers.set(Timer::PartitionCheck, next);
            return;
        }
        tracing::info!(node = %self.me, answered = %s, %via, "another ring answered; merging (RFC 6940 §10.7.4.4)");
        let route = if self.link_to(via).is_some() && via != s {
            vec![Destination::Node(via), Destination::Node(s)]
        } else {
            vec![Destination::Node(s)]
        };
        self.attach(route, Purpose::Heal(s), now);
        self.check_partition_by(now + RECHECK);
    }

    /// The check ping failed.
    pub(crate) fn partition_ping_failed(&mut self, now: Instant) {
        self.partition.failures = self.partition.failures.saturating_add(1);
        let next = now + self.next_check_in();
        self.timers.set(Timer::PartitionCheck, next);
    }
}
