//! Attach (§6.5.1) with No-ICE TLS candidates (§6.5.1.11, §6.6.5), and bootstrap
//! (§11.4).
//!
//! The node that sends the AttachReq is the TLS server (§6.5.1.13): after its
//! AttachAns it waits for the answerer to connect. The answerer connects to the
//! requester's candidate and checks the certificate carries the requester's Node-ID.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;

use super::dials::MAX_CANDIDATES;
use super::transactions::Purpose;
use super::{Answer, ConnectId, Event, JoinState, Node, Timer};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::{AttachReqAns, Body, Destination, ErrorCode, ErrorResponse, IceCandidate};

/// How long a requester waits for the answerer's connection.
const AWAIT_LINK: Duration = Duration::from_secs(15);

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
        /// The candidate dialled.
        addr: std::net::SocketAddr,
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
}

impl Node {
    /// Our AttachReqAns: role, a TLS host candidate, and the `send_update` flag.
    fn attach_body(&mut self, role: &'static [u8], send_update: bool) -> AttachReqAns {
        let mut ufrag = [0u8; 8];
        let mut password = [0u8; 16];
        rand::Rng::fill_bytes(&mut self.rng, &mut ufrag);
        rand::Rng::fill_bytes(&mut self.rng, &mut password);
        AttachReqAns {
            ufrag: Bytes::from(hex::encode(ufrag)),
            password: Bytes::from(hex::encode(password)),
            role: Bytes::from_static(role),
            candidates: self
                .cfg
                .listen_addr
                .map(IceCandidate::tls_host)
                .into_iter()
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
            let addr = self.dials.choose(&req.candidates, on_loopback, now)?;
            let id = ConnectId(self.fresh_id());
            self.attaches.connecting.insert(
                id,
                Connecting::Answer {
                    peer: from,
                    send_update: req.send_update,
                    addr,
                },
            );
            self.events.push_back(Event::Connect {
                id,
                addr,
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
        if let Body::AttachAns(ans) = &answer.body
            && let Some(addr) = ans
                .candidates
                .iter()
                .filter_map(IceCandidate::socket_addr)
                .find(|a| super::dials::dialable(*a, self.on_loopback()).is_ok())
        {
            self.remember_peer(peer, addr);
        }
        if self.link_of.contains_key(&peer) {
            // Already connected: the existing link serves; an Update follows if asked.
            return self.attach_complete(peer, purpose, now);
        }
        self.attaches.awaiting.insert(peer, purpose);
        self.timers.set(Timer::AwaitLink(peer), now + AWAIT_LINK);
    }

    /// The answerer never connected.
    pub(crate) fn attach_expired(&mut self, peer: NodeId, now: Instant) {
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
        if purpose == Purpose::BootstrapAttach {
            self.bootstrap_failed(now);
        }
    }

    fn attach_complete(&mut self, peer: NodeId, purpose: Purpose, now: Instant) {
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
        if let Some(id) = connect {
            self.connect_done(id, Some(peer), now);
        }
        if let Some(purpose) = self.attaches.awaiting.remove(&peer) {
            self.timers.cancel(&Timer::AwaitLink(peer));
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
                    addr,
                }),
                linked,
            ) => {
                // A link to someone else than the requester is a failed dial too.
                let ok = linked == Some(p);
                self.dials.done(addr, ok, now);
                if ok {
                    self.remember_peer(p, addr);
                }
                if ok && send_update {
                    self.send_update_to(p, true, now);
                }
            }
            (Some(Connecting::Check { addr }), linked) => self.check_connected(addr, linked, now),
            (None, _) => {}
        }
    }

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
        for addr in self.cfg.bootstrap.clone() {
            if Some(addr) == self.cfg.listen_addr {
                continue;
            }
            let id = ConnectId(self.fresh_id());
            self.attaches.connecting.insert(id, Connecting::Bootstrap);
            self.events.push_back(Event::Connect {
                id,
                addr,
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
        // Retry with a doubling delay, up to sixteen times `bootstrap_retry`.
        let shift = self.attaches.bootstrap_failures.min(4);
        self.attaches.bootstrap_failures += 1;
        let retry = self.cfg.bootstrap_retry.saturating_mul(1 << shift);
        self.events.push_back(Event::JoinFailed(format!(
            "no bootstrap node reachable; retrying in {retry:?}"
        )));
        self.timers.set(Timer::Bootstrap, now + retry);
    }
}

/// A candidate list longer than [`MAX_CANDIDATES`] is refused outright.
fn check_candidate_count(candidates: &[IceCandidate]) -> Result<(), ErrorResponse> {
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
    fn on_loopback(&self) -> bool {
        self.cfg.listen_addr.is_some_and(|a| a.ip().is_loopback())
    }

    /// The application's connection to an AppAttach requester's `addr` succeeded
    /// (`ok`) or failed; a failed address is refused for a while.
    pub fn app_dial_done(&mut self, addr: std::net::SocketAddr, ok: bool, now: Instant) {
        self.dials.done(addr, ok, now);
    }

    /// Asks the node at the end of `destination` for an application connection
    /// (§6.5.2). The answer names the peer; it then connects to this node's listener
    /// for `application` (this node is the TLS server, as with Attach, §6.5.1.13).
    pub fn app_attach(
        &mut self,
        destination: Vec<Destination>,
        application: u16,
        now: Instant,
    ) -> super::RequestId {
        let body = self.app_attach_body(application, b"passive");
        self.request(destination, Body::AppAttachReq(body), now)
    }

    fn app_attach_body(&mut self, application: u16, role: &'static [u8]) -> crate::wire::AppAttach {
        let base = self.attach_body(role, false);
        let candidates = self
            .cfg
            .applications
            .iter()
            .filter(|(id, _)| *id == application)
            .map(|(_, addr)| IceCandidate::tls_host(*addr))
            .collect();
        crate::wire::AppAttach {
            ufrag: base.ufrag,
            password: base.password,
            application,
            role: base.role,
            candidates,
        }
    }

    /// An AppAttachReq (§6.5.2.2): an unsupported Application-ID is Error_Not_Found; a
    /// supported one is answered and the application told to connect, within the
    /// limits of [`super::dials`]. The application reports how its dial went with
    /// [`Node::app_dial_done`].
    pub(crate) fn on_app_attach(
        &mut self,
        from: NodeId,
        req: crate::wire::AppAttach,
        now: Instant,
    ) -> Result<Body, ErrorResponse> {
        if !self
            .cfg
            .applications
            .iter()
            .any(|(id, _)| *id == req.application)
        {
            return Err(ErrorResponse::new(
                ErrorCode::NotFound,
                format!("application {} not supported", req.application),
            ));
        }
        check_candidate_count(&req.candidates)?;
        if !self.dials.app_attach_allowed(from, now) {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "too many AppAttach requests from this node; retry later",
            ));
        }
        let on_loopback = self.on_loopback();
        let addr = self.dials.choose(&req.candidates, on_loopback, now)?;
        self.events.push_back(Event::AppAttach {
            from,
            application: req.application,
            addr,
        });
        Ok(Body::AppAttachAns(
            self.app_attach_body(req.application, b"active"),
        ))
    }
}
