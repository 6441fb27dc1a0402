//! A RELOAD peer as a sans-IO state machine: message transport (§6.2 – §6.5),
//! CHORD-RELOAD maintenance (§10) and the storage methods (§7).
//!
//! # Drive loop
//!
//! The driver (the tokio runtime or the simulator) owns the clock and the links:
//!
//! 1. feed inputs: [`Node::handle_link_up`], [`Node::handle_link_down`],
//!    [`Node::handle_link_health`], [`Node::handle_message`], [`Node::handle_connect_failed`],
//!    [`Node::handle_timeout`], and API calls such as [`Node::join`] or
//!    [`Node::request`];
//! 2. after every input, drain [`Node::poll_transmit`] (bytes for a link) and
//!    [`Node::poll_event`] (connect/close requests, answers, state changes);
//! 3. sleep until [`Node::poll_timeout`] or the next input.
//!
//! Every request the node originates is a transaction (§6.2.1): signed once, routed,
//! retransmitted every `overlay-reliability-timer` up to four times with the same
//! transaction id, and matched to its answer after the response-origin checks of
//! §6.3.4.

mod app_attach;
mod attach;
mod bootstrap;
mod chord;
mod client;
pub mod config;
mod deliver;
pub mod dials;
pub mod fragments;
mod health;
pub mod partition;
pub mod proximity;
pub mod reconfig;
mod routing;
mod storage;
pub(crate) mod timers;
mod transactions;
pub mod unused_links;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

pub use app_attach::{AnswerToken, IceOffer, MAX_DEFERRED_ANSWERS, MAX_ICE_CANDIDATES, RemoteIce};
pub use attach::{REVERSE_DIAL_DELAY, REVERSE_GRACE};
pub use config::NodeConfig;
pub use reconfig::{ConfigAuthority, ConfigChange, ConfigRefusal};

use self::attach::Attaches;
use self::fragments::Reassembly;
use self::timers::Timers;
use self::transactions::{Dedup, Purpose, Transactions};
use crate::chord::{PeerView, RoutingTable};
use crate::id::{NodeId, overlay_field};
use crate::identity::CertCache;
use crate::time::Instant;
use crate::wire::{Body, Destination, ErrorResponse};

/// Identifies a link within one node; the driver chooses the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// Identifies a connection the node asked the driver to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectId(pub u64);

/// Identifies an API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Bytes to write on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The link.
    pub link: LinkId,
    /// One encoded RELOAD message (or fragment).
    pub bytes: Bytes,
}

/// A successful answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The verified Node-ID that answered.
    pub from: NodeId,
    /// The response body.
    pub body: Body,
    /// Stored values dropped from a FetchAns because their signatures did not verify
    /// (§7.4.2.2: a partial answer).
    pub dropped: usize,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No answer after all retransmissions (Error_Request_Timeout, §6.2.1).
    #[error("no answer after {0} transmissions")]
    Timeout(u32),
    /// The responder answered with an error.
    #[error("{0}")]
    Error(ErrorResponse),
    /// This node has no link to send on.
    #[error("no route: this node has no usable link")]
    NoRoute,
    /// The request could not be built.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The node left the overlay.
    #[error("the node has left the overlay")]
    Shutdown,
}

/// Something the driver or the application must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Open a link to the peer at one of `candidates` (in order of preference; the
    /// first that connects wins). `expect` is the Node-ID the peer must prove; `None`
    /// for a bootstrap node. Answer with `handle_link_up` or `handle_connect_failed`.
    Connect {
        /// Echo this in the answer.
        id: ConnectId,
        /// Where the peer may be reached.
        candidates: Vec<SocketAddr>,
        /// Who must be at the other end.
        expect: Option<NodeId>,
    },
    /// Close this link.
    CloseLink(LinkId),
    /// Whether the link layer should probe this link when it is idle
    /// ([`crate::link::FramedLink::set_keepalive`]): only an end that routes over the
    /// link keeps it alive. Links start with probing on.
    Keepalive {
        /// The link.
        link: LinkId,
        /// Probe it.
        on: bool,
    },
    /// An API request finished.
    Response {
        /// The request.
        request: RequestId,
        /// Its outcome.
        result: Result<Answer, RequestError>,
    },
    /// The node is part of the ring (§10.5 step 9 done, or it started the overlay).
    Joined,
    /// A join attempt failed; the node keeps trying.
    JoinFailed(JoinFailure),
    /// The neighbour table changed.
    NeighborsChanged,
    /// The Leave procedure finished; close all links.
    Left,
    /// A peer asked for an application connection (AppAttach, §6.5.2) and was answered:
    /// connect to one of `candidates` and check the peer is `from`; report how it went
    /// with [`Node::app_dial_done`].
    AppAttach {
        /// The verified requester.
        from: NodeId,
        /// The Application-ID (e.g. 5222).
        application: u16,
        /// The requester's candidates this node may dial, in order.
        candidates: Vec<SocketAddr>,
        /// The requester offered ICE (§6.5.1.5): gather, answer with
        /// [`Node::answer_app_attach`] (the answer waits for it), then run the checks
        /// against these parameters as the controlled agent (§6.5.1.9).
        ice: Option<(AnswerToken, RemoteIce)>,
    },
    /// A newer configuration was verified and applied (§6.5.4); persist `document` and
    /// refresh the TLS trust from [`Node::config`].
    ConfigChanged {
        /// Its sequence.
        sequence: u16,
        /// The signed document.
        document: Bytes,
    },
}

/// Why a join attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinFailure {
    /// No bootstrap node answered (it may still be starting).
    #[error("{0}")]
    NoBootstrap(String),
    /// The place on the ring is next to a peer this node cannot link to in either
    /// direction (behind NATs, say); trying again does not help until the overlay
    /// changes.
    #[error("{0}")]
    Unlinkable(String),
    /// The admitting peer refused the join.
    #[error("{0}")]
    Refused(String),
}

/// Where the node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinState {
    /// Created, `join` not called.
    Idle,
    /// Connecting to a bootstrap node and attaching to the admitting peer.
    Bootstrapping,
    /// Attaching to the neighbours the admitting peer named (§10.5 step 3).
    Attaching {
        /// The admitting peer.
        admitting: NodeId,
    },
    /// JoinReq sent (§10.5 step 5).
    Joining {
        /// The admitting peer.
        admitting: NodeId,
    },
    /// On the ring.
    Joined,
    /// A client (§4.2.1): linked to the peer responsible for its Node-ID, which routes
    /// to it; not on the ring.
    Client {
        /// The peer responsible for this node's Node-ID.
        peer: NodeId,
    },
    /// Leave requests sent.
    Leaving,
    /// Gone.
    Left,
}

/// Timed work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Retransmit or give up on a transaction.
    Retransmit(u64),
    /// Stop waiting for a peer to connect after its AttachAns.
    AwaitLink(NodeId),
    /// The peer's connection after its AttachAns has not come: dial it.
    ReverseDial(NodeId),
    /// Periodic Updates to the neighbours (§10.7.4.1).
    Stabilize,
    /// Periodic finger search (§10.7.4.2).
    FingerRefresh,
    /// Retry bootstrap nodes.
    Bootstrap,
    /// Give up on the join's neighbour attaches and send the JoinReq.
    JoinAttachDeadline,
    /// Expire duplicate-detection entries and fragment buffers.
    Housekeeping,
    /// Expire stored values.
    Expire,
    /// Stop waiting for LeaveAns.
    LeaveDeadline,
    /// Send replica stores that failed again (peers may briefly disagree on who is
    /// responsible after a failure).
    ReplicaRetry,
    /// Look for another ring through a bootstrap node (§10.7.4.4).
    PartitionCheck,
    /// A client asks again which peer is responsible for it (§4.2.1).
    ClientCheck,
    /// Probe only the links this node routes over; close those nobody uses.
    LinkSweep,
    /// Meet a candidate for a finger (proximity neighbour selection).
    ProximitySample,
}

/// A connected peer.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) peer: NodeId,
    /// An Update has been received from the peer over this link: it can be routed
    /// through (§6.5.1).
    pub(crate) ready: bool,
    /// This node opened the link (else the peer did).
    pub(crate) outgoing: bool,
    /// The link layer reports unacknowledged frames: out of the routing table until
    /// acknowledgements resume (§6.6.3).
    pub(crate) suspect: bool,
    /// When the link came up, a message or keep-alive last arrived on it, and a
    /// message was last sent on it (see [`unused_links`]).
    pub(crate) opened: Instant,
    pub(crate) heard: Instant,
    pub(crate) used: Instant,
    /// Whether the link layer probes it when idle ([`Event::Keepalive`]).
    pub(crate) keepalive: bool,
    /// The link layer's smoothed round-trip time ([`Node::handle_link_rtt`]).
    pub(crate) rtt: Option<std::time::Duration>,
}

impl Conn {
    fn new(peer: NodeId, ready: bool, outgoing: bool, now: Instant) -> Conn {
        Conn {
            peer,
            ready,
            outgoing,
            suspect: false,
            opened: now,
            heard: now,
            used: now,
            keepalive: true,
            rtt: None,
        }
    }
}

/// The sans-IO RELOAD peer.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) me: NodeId,
    pub(crate) overlay: u32,
    pub(crate) rng: ChaCha12Rng,
    pub(crate) started: Instant,
    pub(crate) state: JoinState,
    pub(crate) table: RoutingTable,
    pub(crate) links: HashMap<LinkId, Conn>,
    pub(crate) link_of: HashMap<NodeId, LinkId>,
    pub(crate) txns: Transactions,
    pub(crate) dedup: Dedup,
    pub(crate) frags: Reassembly,
    pub(crate) timers: Timers<Timer>,
    pub(crate) certs: CertCache,
    pub(crate) attaches: Attaches,
    dials: dials::Dials,
    /// AppAttach answers waiting for the runtime's ICE candidates.
    pub(crate) app_ice: app_attach::DeferredAnswers,
    partition: partition::Partition,
    proximity: proximity::Proximity,
    pub(crate) out: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) next_id: u64,
    pub(crate) neighbors_dirty: bool,
    /// Peers whose neighbour lists this node has asked Attaches for during its join.
    pub(crate) join_waiting: HashSet<NodeId>,
    /// Stored data.
    pub(crate) storage: crate::storage::Storage,
    /// The last storage time this node signed (storage times never go backwards).
    pub(crate) last_storage_time: u64,
    /// Versions of each resource known to be stored at each peer (replicas confirmed).
    pub(crate) replicated: HashMap<crate::id::ResourceId, HashMap<NodeId, u64>>,
    /// Replica stores in flight.
    pub(crate) replicating: HashSet<(crate::id::ResourceId, NodeId)>,
    /// Quick retries of failed replica stores since the neighbour table last changed.
    pub(crate) replica_retries: u32,
    /// When this node last sent each peer a corrective Update (see `on_update`).
    pub(crate) corrected: HashMap<NodeId, Instant>,
}

impl Node {
    /// A node that has not joined yet.
    pub fn new(cfg: NodeConfig, now: Instant) -> Node {
        let me = cfg.credentials.node_id();
        Node {
            me,
            overlay: overlay_field(&cfg.overlay),
            // Seed, Node-ID and start time together: nodes sharing a seed, and a node
            // restarting with the same seed, still draw different transaction ids
            // (peers remember answers by transaction id for 15 s).
            rng: ChaCha12Rng::seed_from_u64(
                cfg.seed
                    ^ (me.0 as u64)
                    ^ ((me.0 >> 64) as u64).rotate_left(17)
                    ^ cfg.epoch_unix_ms.rotate_left(31),
            ),
            started: now,
            state: JoinState::Idle,
            table: RoutingTable::new(me, cfg.neighbors.max(3)).with_proximity(cfg.proximity),
            links: HashMap::new(),
            link_of: HashMap::new(),
            txns: Transactions::default(),
            dedup: Dedup::default(),
            frags: Reassembly::default(),
            timers: Timers::default(),
            certs: CertCache::new(4096),
            attaches: Attaches::default(),
            dials: dials::Dials::default(),
            app_ice: app_attach::DeferredAnswers::default(),
            partition: partition::Partition::default(),
            proximity: proximity::Proximity::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            neighbors_dirty: false,
            join_waiting: HashSet::new(),
            storage: crate::storage::Storage::new(
                Box::<crate::storage::MemoryBackend>::default(),
                cfg.storage_limits,
            ),
            last_storage_time: 0,
            replicated: HashMap::new(),
            replicating: HashSet::new(),
            replica_retries: 0,
            corrected: HashMap::new(),
            cfg,
        }
    }

    /// This node's Node-ID.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Where the node is in its life.
    pub fn state(&self) -> JoinState {
        self.state
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The data this node stores.
    pub fn storage(&self) -> &crate::storage::Storage {
        &self.storage
    }

    /// The peer on a link.
    pub fn link_peer(&self, link: LinkId) -> Option<NodeId> {
        self.links.get(&link).map(|c| c.peer)
    }

    /// The link to a peer.
    pub fn link_to(&self, peer: NodeId) -> Option<LinkId> {
        self.link_of.get(&peer).copied()
    }

    /// Number of open links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// This node's neighbour table, for the ring invariant checker.
    pub fn view(&self) -> PeerView {
        PeerView {
            id: self.me,
            successors: self.table.successors().to_vec(),
            predecessors: self.table.predecessors().to_vec(),
        }
    }

    /// Seconds since the node started.
    pub fn uptime(&self, now: Instant) -> u32 {
        (now - self.started).as_secs() as u32
    }

    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        self.cfg.epoch_unix_ms + now.as_micros() / 1000
    }

    pub(crate) fn unix_secs(&self, now: Instant) -> i64 {
        (self.unix_ms(now) / 1000) as i64
    }

    pub(crate) fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn transaction_id(&mut self) -> u64 {
        loop {
            let id = self.rng.next_u64();
            if id != 0 && !self.txns.contains(id) {
                return id;
            }
        }
    }

    /// Bytes to write on a link, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Retransmit(tid) => self.retransmit(tid, now),
                Timer::AwaitLink(peer) => self.attach_expired(peer, now),
                Timer::ReverseDial(peer) => self.reverse_dial(peer),
                Timer::Stabilize => self.stabilize(now),
                Timer::FingerRefresh => self.refresh_fingers(now),
                Timer::Bootstrap => self.bootstrap(now),
                Timer::JoinAttachDeadline => self.send_join(now),
                Timer::Housekeeping => self.housekeeping(now),
                Timer::Expire => self.expire_values(now),
                Timer::LeaveDeadline => self.finish_leave(true, now),
                Timer::ReplicaRetry => self.sync_replicas(now),
                Timer::PartitionCheck => self.partition_check(now),
                Timer::ClientCheck => self.client_check(now),
                Timer::LinkSweep => self.sweep_links(now),
                Timer::ProximitySample => self.sample_proximity(now),
            }
        }
        self.flush(now);
    }

    fn housekeeping(&mut self, now: Instant) {
        self.dedup.expire(now);
        self.frags.expire(now);
        self.schedule_housekeeping();
    }

    pub(crate) fn schedule_housekeeping(&mut self) {
        let next = [self.dedup.next_expiry(), self.frags.next_expiry()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(at) => self.timers.set(Timer::Housekeeping, at),
            None => self.timers.cancel(&Timer::Housekeeping),
        }
    }

    /// Work that follows any input: reactive Updates (§10.7.1, §10.7.3).
    pub(crate) fn flush(&mut self, now: Instant) {
        if std::mem::take(&mut self.neighbors_dirty) {
            self.events.push_back(Event::NeighborsChanged);
            self.replica_retries = 0;
            if self.cfg.chord_reactive && self.state == JoinState::Joined {
                self.update_neighbors(now);
            }
            self.sync_replicas(now);
        }
    }

    /// A link to `peer` is up. `connect` is set when the node asked for it.
    ///
    /// Both ends of an attach may dial (the answerer the requester's candidates, the
    /// requester the answer's when nothing came), so two links to one peer can come
    /// up. Both ends then keep the same one: the link opened by the node with the
    /// smaller Node-ID.
    pub fn handle_link_up(
        &mut self,
        link: LinkId,
        peer: NodeId,
        connect: Option<ConnectId>,
        now: Instant,
    ) {
        let outgoing = connect.is_some();
        if let Some(old) = self.link_of.get(&peer).copied() {
            let keep_new = self.links.get(&old).is_some_and(|c| {
                let opener = |out: bool| if out { self.me } else { peer };
                c.outgoing != outgoing && opener(outgoing) < opener(c.outgoing)
            });
            let closed = if keep_new {
                let ready = self.links.remove(&old).is_some_and(|c| c.ready);
                self.links
                    .insert(link, Conn::new(peer, ready, outgoing, now));
                self.link_of.insert(peer, link);
                old
            } else {
                link
            };
            self.events.push_back(Event::CloseLink(closed));
            if let Some(id) = connect {
                self.connect_done(id, Some(peer), now);
            }
            if keep_new {
                self.link_ready_for_attach(peer, None, now);
            }
            self.flush(now);
            return;
        }
        if self.links.len() >= self.cfg.max_connections {
            self.evict_unused_link(now);
        }
        if peer == self.me || self.links.len() >= self.cfg.max_connections {
            // Never to ourselves, and a bounded connection table.
            self.events.push_back(Event::CloseLink(link));
            if let Some(id) = connect {
                self.connect_done(id, Some(peer), now);
            }
            self.flush(now);
            return;
        }
        self.links
            .insert(link, Conn::new(peer, false, outgoing, now));
        self.link_of.insert(peer, link);
        self.sweep_links_by(now + unused_links::SWEEP);
        self.link_ready_for_attach(peer, connect, now);
        self.flush(now);
    }

    /// A link closed (or failed, §6.6.5).
    pub fn handle_link_down(&mut self, link: LinkId, now: Instant) {
        if let Some(conn) = self.links.remove(&link) {
            if self.link_of.get(&conn.peer) == Some(&link) {
                self.link_of.remove(&conn.peer);
            }
            self.peer_lost(conn.peer, now);
            if self.links.is_empty() {
                self.neighbor_lost_check(now);
            }
        }
        self.flush(now);
    }

    /// The driver could not open the link asked for by `Event::Connect`; `why` says
    /// what went wrong with each candidate (it is quoted in join errors).
    pub fn handle_connect_failed(&mut self, id: ConnectId, why: &str, now: Instant) {
        self.note_dial_failure(id, why);
        self.connect_done(id, None, now);
        self.flush(now);
    }

    /// Starts joining through the configured bootstrap nodes (§10.5, §11.4), or
    /// starts the overlay if allowed and there are none.
    pub fn join(&mut self, now: Instant) {
        if self.state != JoinState::Idle {
            return;
        }
        self.state = JoinState::Bootstrapping;
        if self.cfg.bootstrap.is_empty() || (self.cfg.may_start_overlay && self.is_own_bootstrap())
        {
            if self.cfg.may_start_overlay {
                self.become_joined(now);
            } else {
                self.events
                    .push_back(Event::JoinFailed(JoinFailure::NoBootstrap(
                        "no bootstrap nodes configured".into(),
                    )));
            }
        } else {
            self.bootstrap(now);
        }
        self.flush(now);
    }

    fn is_own_bootstrap(&self) -> bool {
        let own = self.own_addresses();
        !own.is_empty() && self.cfg.bootstrap.iter().all(|b| own.contains(b))
    }

    /// Where peers can reach this node's listener (host candidates).
    pub fn own_addresses(&self) -> Vec<SocketAddr> {
        if self.cfg.advertise.is_empty() {
            self.cfg.listen_addr.into_iter().collect()
        } else {
            self.cfg.advertise.clone()
        }
    }

    /// Sends a request to `destination` (a Node-ID or Resource-ID, or a source route) and
    /// reports the answer as [`Event::Response`].
    pub fn request(
        &mut self,
        destination: Vec<Destination>,
        body: Body,
        now: Instant,
    ) -> RequestId {
        let id = RequestId(self.fresh_id());
        self.originate(destination, body, Purpose::Api(id), now);
        self.flush(now);
        id
    }

    /// Pings a destination (§6.5.3).
    pub fn ping(&mut self, destination: Destination, now: Instant) -> RequestId {
        self.request(vec![destination], Body::PingReq(Default::default()), now)
    }

    pub(crate) fn complete(&mut self, request: RequestId, result: Result<Answer, RequestError>) {
        self.events.push_back(Event::Response { request, result });
    }
}
