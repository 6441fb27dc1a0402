//! Attach (§6.5.1) with No-ICE TLS candidates (§6.5.1.11, §6.6.5).
//!
//! The answerer connects to the requester's candidates and checks the certificate
//! carries the requester's Node-ID; the requester is then the TLS server
//! (§6.5.1.13). A requester behind a NAT cannot be reached that way, so when no
//! connection has come [`REVERSE_DIAL_DELAY`] after the AttachAns, the requester
//! dials the answer's candidates itself (and, having opened the TCP connection, is
//! the TLS client: see README Decisions). Whichever link comes up first serves; if
//! both do, both ends keep the one opened by the smaller Node-ID
//! ([`Node::handle_link_up`]). A requester that cannot reach the answerer either
//! gives up [`REVERSE_GRACE`] after its own dial failed, not after the full wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::dials::{MAX_CANDIDATES, dialable};
use super::transactions::Purpose;
use super::{Answer, ConnectId, Event, JoinState, Node, Timer};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::{AttachReqAns, Body, Destination, ErrorCode, ErrorResponse, IceCandidate};

/// How long a requester waits for the answerer's connection.
const AWAIT_LINK: Duration = Duration::from_secs(15);
/// How long a requester waits for the answerer's connection before dialling the
/// answer's candidates itself.
pub const REVERSE_DIAL_DELAY: Duration = Duration::from_millis(500);
/// How long a requester still waits for the answerer once its own dial failed.
pub const REVERSE_GRACE: Duration = Duration::from_secs(3);
/// Dial failures remembered (for the reasons given in join errors).
const DIAL_FAILURES: usize = 64;
/// The purpose of an attach to a would-be neighbour.
const NEIGHBOR: Purpose = Purpose::Attach {
    neighbor: true,
    target: None,
};

/// To `peer` through `via` (the peer that named it, which has a link to it), or by
/// its Node-ID.
fn neighbor_route(peer: NodeId, via: Option<NodeId>) -> Vec<Destination> {
    match via {
        Some(v) if v != peer => vec![Destination::Node(v), Destination::Node(peer)],
        _ => vec![Destination::Node(peer)],
    }
}

/// Why the node is opening a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Connecting {
    /// To a bootstrap address (§11.4); the peer is learnt from its certificate.
    Bootstrap,
    /// To a bootstrap node or a known peer for a partition check (§10.7.4.4).
    Check {
        /// The address dialled.
        addr: std::net::SocketAddr,
    },
    /// To the sender of an AttachReq we answered.
    Answer {
        /// The requester.
        peer: NodeId,
        /// Whether it asked for an Update once connected.
        send_update: bool,
        /// The candidates dialled.
        addrs: Vec<SocketAddr>,
    },
    /// To the answerer of our AttachReq, whose connection did not come.
    Reverse {
        /// The answerer.
        peer: NodeId,
        /// The candidates dialled.
        addrs: Vec<SocketAddr>,
    },
}

/// Attach bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Attaches {
    /// Connections asked of the driver.
    pub(crate) connecting: HashMap<ConnectId, Connecting>,
    /// Peers that answered our AttachReq and will connect to us: why we attached.
    pub(crate) awaiting: HashMap<NodeId, Purpose>,
    /// Node-IDs with an AttachReq of ours in flight (for the tie-break of §6.5.1.2).
    pub(crate) requested: HashSet<NodeId>,
    /// Bootstrap attempts that failed since the node last joined (for the backoff).
    pub(crate) bootstrap_failures: u32,
    /// The answer's candidates of attaches we wait on, for the reverse dial.
    pub(crate) reverse: HashMap<NodeId, Vec<SocketAddr>>,
    /// Requesters whose AttachReq we answered and that may connect to us themselves
    /// (when our dial cannot reach them): whether they asked for an Update, and until
    /// when we expect them.
    pub(crate) answered: HashMap<NodeId, (bool, Instant)>,
    /// Why the last dials to peers failed, newest last.
    pub(crate) dial_failures: VecDeque<(NodeId, String)>,
    /// During a join: the peers the Updates received so far name (and their senders).
    /// The closest of them before this node will precede it on the ring; the join
    /// completes only with a link to it and to the admitting peer (no place next to a
    /// neighbour this node cannot reach).
    pub(crate) join_seen: std::collections::BTreeSet<NodeId>,
}

impl Node {
    /// Our AttachReqAns: role, a TLS host candidate, and the `send_update` flag.
    pub(crate) fn attach_body(&mut self, role: &'static [u8], send_update: bool) -> AttachReqAns {
        let mut ufrag = [0u8; 8];
        let mut password = [0u8; 16];
        rand::Rng::fill_bytes(&mut self.rng, &mut ufrag);
        rand::Rng::fill_bytes(&mut self.rng, &mut password);
        AttachReqAns {
            ufrag: Bytes::from(hex::encode(ufrag)),
            password: Bytes::from(hex::encode(password)),
            role: Bytes::from_static(role),
            candidates: self
                .own_addresses()
                .into_iter()
                .map(IceCandidate::tls_host)
                .collect(),
            send_update,
        }
    }

    /// Attaches to `destination` (a Node-ID, a Resource-ID or a source route).
    pub(crate) fn attach(
        &mut self,
        destination: Vec<Destination>,
        mut purpose: Purpose,
        now: Instant,
    ) {
        if let (Purpose::Attach { target, .. }, Some(Destination::Node(n))) =
            (&mut purpose, destination.last())
        {
            *target = Some(*n);
        }
        if let Some(Destination::Node(n)) = destination.last() {
            if *n == self.me || self.attaching(*n) {
                return;
            }
            self.attaches.requested.insert(*n);
        }
        // "passive" for the offerer (§6.5.1.1).
        let body = self.attach_body(b"passive", true);
        self.originate(destination, Body::AttachReq(body), purpose, now);
    }

    /// Attaches to `peer`, which would enter the neighbour table (§10.7.3: "x MUST
    /// attempt to Attach to the new peers"), through `via`, the peer that named it
    /// (§10.6). The route goes through `via` even when we have no link to it: a peer
    /// that joined at the same time as us may lie in the arc we believe is ours, where
    /// routing by its Node-ID ends with us.
    pub(crate) fn attach_neighbor(&mut self, peer: NodeId, via: Option<NodeId>, now: Instant) {
        self.attach(neighbor_route(peer, via), NEIGHBOR, now);
    }

    /// Whether `peer` is routable already, or an attach to it is under way. A link
    /// that carried no Update yet (e.g. a bootstrap link) is attached over again so the
    /// peer answers with the Update that makes it routable.
    pub(crate) fn attaching(&self, peer: NodeId) -> bool {
        self.link_to(peer)
            .and_then(|l| self.links.get(&l))
            .is_some_and(|c| c.ready)
            || self.attaching_in_progress(peer)
    }

    /// Whether an attach to or from `peer` is under way.
    pub(crate) fn attaching_in_progress(&self, peer: NodeId) -> bool {
        self.attaches.requested.contains(&peer) || self.attaches.awaiting.contains_key(&peer)
    }

    /// An AttachReq from `from` (§6.5.1.2).
    pub(crate) fn on_attach_req(
        &mut self,
        from: NodeId,
        req: AttachReqAns,
        now: Instant,
    ) -> Result<Body, ErrorResponse> {
        if from == self.me {
            return Err(ErrorResponse::new(
                ErrorCode::InvalidMessage,
                "attach to oneself",
            ));
        }
        let connected = self.link_of.contains_key(&from);
        if !connected {
            if self.attaches.awaiting.contains_key(&from) {
                return Err(ErrorResponse::new(
                    ErrorCode::InProgress,
                    "our own attach to you is completing",
                ));
            }
            if self.attaches.requested.contains(&from) {
                // Tie-break: the smaller Node-ID gives way.
                if self.me > from {
                    return Err(ErrorResponse::new(
                        ErrorCode::InProgress,
                        "attach in progress; larger Node-ID wins",
                    ));
                }
                self.attaches.requested.remove(&from);
            }
        }
        check_candidate_count(&req.candidates)?;
        if connected {
            if req.send_update {
                self.send_update_to(from, true, now);
            }
        } else {
            let on_loopback = self.on_loopback();
            let addrs = self.dials.choose(&req.candidates, on_loopback, now)?;
            if self.attaches.answered.len() >= 1024 {
                self.attaches.answered.retain(|_, (_, until)| *until > now);
            }
            if self.attaches.answered.len() < 1024 {
                self.attaches
                    .answered
                    .insert(from, (req.send_update, now + AWAIT_LINK));
            }
            let id = ConnectId(self.fresh_id());
            self.attaches.connecting.insert(
                id,
                Connecting::Answer {
                    peer: from,
                    send_update: req.send_update,
                    addrs: addrs.clone(),
                },
            );
            self.events.push_back(Event::Connect {
                id,
                candidates: addrs,
                expect: Some(from),
            });
        }
        // "active" for the answerer.
        Ok(Body::AttachAns(self.attach_body(b"active", false)))
    }

    /// Our AttachReq was answered by `answer.from`.
    pub(crate) fn attach_answered(&mut self, purpose: Purpose, answer: Answer, now: Instant) {
        let peer = answer.from;
        self.attaches.requested.remove(&peer);
        if peer == self.me {
            return;
        }
        let candidates: Vec<SocketAddr> = match &answer.body {
            Body::AttachAns(ans) => ans
                .candidates
                .iter()
                .filter_map(IceCandidate::socket_addr)
                .filter(|a| dialable(*a, self.on_loopback()).is_ok())
                .take(super::dials::MAX_DIALS)
                .collect(),
            _ => Vec::new(),
        };
        if let Some(addr) = candidates.first() {
            self.remember_peer(peer, *addr);
        }
        if self.link_of.contains_key(&peer) {
            // Already connected: the existing link serves; an Update follows if asked.
            return self.attach_complete(peer, purpose, now);
        }
        tracing::debug!(node = %self.me, %peer, ?candidates, "attach answered; waiting for the peer's connection");
        self.attaches.awaiting.insert(peer, purpose);
        self.timers.set(Timer::AwaitLink(peer), now + AWAIT_LINK);
        if !candidates.is_empty() {
            self.attaches.reverse.insert(peer, candidates);
            self.timers
                .set(Timer::ReverseDial(peer), now + REVERSE_DIAL_DELAY);
        }
    }

    /// The answerer's connection has not come: dial the answer's candidates.
    pub(crate) fn reverse_dial(&mut self, peer: NodeId) {
        let Some(addrs) = self.attaches.reverse.remove(&peer) else {
            return;
        };
        if !self.attaches.awaiting.contains_key(&peer) || self.link_of.contains_key(&peer) {
            return;
        }
        tracing::debug!(node = %self.me, %peer, candidates = ?addrs, "the answerer did not connect; dialling it");
        let id = ConnectId(self.fresh_id());
        self.attaches.connecting.insert(
            id,
            Connecting::Reverse {
                peer,
                addrs: addrs.clone(),
            },
        );
        self.events.push_back(Event::Connect {
            id,
            candidates: addrs,
            expect: Some(peer),
        });
    }

    /// Remembers why the connection `id` failed (for join errors).
    pub(crate) fn note_dial_failure(&mut self, id: ConnectId, why: &str) {
        let (peer, addrs) = match self.attaches.connecting.get(&id) {
            Some(Connecting::Answer { peer, addrs, .. } | Connecting::Reverse { peer, addrs }) => {
                (*peer, addrs)
            }
            _ => return,
        };
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let text = format!("dialling {} failed: {why}", list.join(", "));
        let failures = &mut self.attaches.dial_failures;
        failures.retain(|(p, _)| *p != peer);
        if failures.len() >= DIAL_FAILURES {
            failures.pop_front();
        }
        failures.push_back((peer, text));
    }

    /// Why reaching `peer` failed, as far as this node knows.
    pub(crate) fn dial_failure(&self, peer: NodeId) -> String {
        let ours = self
            .attaches
            .dial_failures
            .iter()
            .rev()
            .find(|(p, _)| *p == peer)
            .map(|(_, w)| w.clone());
        match ours {
            Some(w) => format!("{w}; it could not reach this node either"),
            None => "no connection came up in either direction".into(),
        }
    }

    /// The answerer never connected.
    pub(crate) fn attach_expired(&mut self, peer: NodeId, now: Instant) {
        self.attaches.reverse.remove(&peer);
        self.timers.cancel(&Timer::ReverseDial(peer));
        if let Some(purpose) = self.attaches.awaiting.remove(&peer) {
            tracing::debug!(node = %self.me, %peer, "attach answered but the peer never connected");
            self.attach_failed(peer, purpose, now);
        }
    }

    /// Our AttachReq to `peer` got an error or no answer.
    pub(crate) fn attach_request_failed(&mut self, peer: NodeId, now: Instant) {
        self.attaches.requested.remove(&peer);
        if self.join_waiting.remove(&peer) {
            self.maybe_send_join(now);
        }
    }

    fn attach_failed(&mut self, peer: NodeId, purpose: Purpose, now: Instant) {
        if self.join_waiting.remove(&peer) {
            self.maybe_send_join(now);
        }
        if purpose == Purpose::BootstrapAttach && self.state == JoinState::Bootstrapping {
            // The admitting peer answered but no link came up with it.
            let why = format!(
                "could not link to {peer}, the admitting peer (the next node on the ring): {}",
                self.dial_failure(peer)
            );
            self.retry_join(super::JoinFailure::Unlinkable(why), now);
        }
    }

    fn attach_complete(&mut self, peer: NodeId, purpose: Purpose, now: Instant) {
        if purpose == Purpose::BootstrapAttach
            && self.cfg.client
            && matches!(
                self.state,
                JoinState::Bootstrapping | JoinState::Client { .. }
            )
        {
            // §4.2.1: the peer responsible for our Node-ID is all a client needs.
            return self.become_client(peer, now);
        }
        if purpose == Purpose::BootstrapAttach && self.state == JoinState::Bootstrapping {
            // The admitting peer answers with an Update (send_update), which carries on
            // the join (§10.5 steps 2–3).
            self.state = JoinState::Attaching { admitting: peer };
            self.timers.set(
                Timer::JoinAttachDeadline,
                now + AWAIT_LINK + Duration::from_secs(15),
            );
        }
        if purpose == Purpose::Heal(peer) {
            // §10.7.4.4: "followed by an Update sent to S'".
            self.send_update_to(peer, true, now);
        }
        self.join_waiting.remove(&peer);
        self.maybe_send_join(now);
    }

    /// A link is up: match it to an attach or bootstrap in progress.
    pub(crate) fn link_ready_for_attach(
        &mut self,
        peer: NodeId,
        connect: Option<ConnectId>,
        now: Instant,
    ) {
        match connect {
            Some(id) => self.connect_done(id, Some(peer), now),
            None => {
                // The requester of an attach we answered connected to us itself (our
                // dial to it failed, or has not come through): the link serves, and
                // the Update it asked for goes out now.
                if let Some((send_update, until)) = self.attaches.answered.remove(&peer)
                    && until > now
                {
                    let mut ours: Vec<ConnectId> = self
                        .attaches
                        .connecting
                        .iter()
                        .filter(
                            |(_, c)| matches!(c, Connecting::Answer { peer: p, .. } if *p == peer),
                        )
                        .map(|(id, _)| *id)
                        .collect();
                    ours.sort(); // no decision on hash-map order (seeded runs replay)
                    for id in ours {
                        if let Some(Connecting::Answer { addrs, .. }) =
                            self.attaches.connecting.remove(&id)
                        {
                            self.dials.done(&addrs, true, now);
                        }
                    }
                    if send_update {
                        self.send_update_to(peer, true, now);
                    }
                }
            }
        }
        if let Some(purpose) = self.attaches.awaiting.remove(&peer) {
            self.timers.cancel(&Timer::AwaitLink(peer));
            self.timers.cancel(&Timer::ReverseDial(peer));
            self.attaches.reverse.remove(&peer);
            self.attach_complete(peer, purpose, now);
        }
    }

    /// A connection asked of the driver is up (`Some(peer)`) or failed (`None`).
    pub(crate) fn connect_done(&mut self, id: ConnectId, peer: Option<NodeId>, now: Instant) {
        match (self.attaches.connecting.remove(&id), peer) {
            (Some(Connecting::Bootstrap), Some(peer)) => {
                if self.state == JoinState::Bootstrapping {
                    // §11.4: Attach to our own Node-ID plus one over the bootstrap link.
                    self.timers.cancel(&Timer::Bootstrap);
                    let target = Destination::Resource(self.me.wrapping_add(1).as_resource());
                    let _ = peer;
                    self.attach(vec![target], Purpose::BootstrapAttach, now);
                }
            }
            (Some(Connecting::Bootstrap), None) => {
                if self.state == JoinState::Bootstrapping
                    && !self
                        .attaches
                        .connecting
                        .values()
                        .any(|c| *c == Connecting::Bootstrap)
                {
                    self.bootstrap_failed(now);
                }
            }
            (
                Some(Connecting::Answer {
                    peer: p,
                    send_update,
                    addrs,
                }),
                linked,
            ) => {
                // A link to someone else than the requester is a failed dial too.
                let ok = linked == Some(p);
                self.dials.done(&addrs, ok, now);
                if ok {
                    self.attaches.answered.remove(&p);
                    if send_update {
                        self.send_update_to(p, true, now);
                    }
                }
            }
            (Some(Connecting::Reverse { peer: p, .. }), linked) => {
                if linked != Some(p) && self.attaches.awaiting.contains_key(&p) {
                    // Neither end reached the other so far: wait only a little more.
                    let give_up = now + REVERSE_GRACE;
                    if self
                        .timers
                        .at(&Timer::AwaitLink(p))
                        .is_some_and(|at| at > give_up)
                    {
                        self.timers.set(Timer::AwaitLink(p), give_up);
                    }
                }
            }
            (Some(Connecting::Check { addr }), linked) => self.check_connected(addr, linked, now),
            (None, _) => {}
        }
    }
}

/// A candidate list longer than [`MAX_CANDIDATES`] is refused outright.
pub(crate) fn check_candidate_count(candidates: &[IceCandidate]) -> Result<(), ErrorResponse> {
    if candidates.len() > MAX_CANDIDATES {
        return Err(ErrorResponse::new(
            ErrorCode::InvalidMessage,
            format!(
                "{} candidates; at most {MAX_CANDIDATES} are read",
                candidates.len()
            ),
        ));
    }
    Ok(())
}

impl Node {
    /// Whether this node listens on loopback (a development overlay on one host):
    /// only then are loopback candidates meaningful.
    pub(crate) fn on_loopback(&self) -> bool {
        self.own_addresses().iter().any(|a| a.ip().is_loopback())
    }
}
