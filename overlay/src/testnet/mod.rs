//! A deterministic network of sans-IO [`Node`]s in virtual time: an event heap, links
//! whose ends run the real framing layer ([`link`]), a latency model and a seeded RNG. The core's tests
//! use it directly; the simulator (`xor-sim`) drives it with its latency, churn and
//! workload models. The same seed gives the same run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use crate::chord::PeerView;
use crate::id::NodeId;
use crate::node::{ConnectId, Event, LinkId, Node, NodeConfig, RequestId};
use crate::time::Instant;
use crate::wire::{Body, Destination};

mod link;
use link::SimLink;

/// How long a message takes between two nodes, and whether it is lost.
pub trait LatencyModel {
    /// One-way delay from `from` to `to`.
    fn delay(&mut self, from: NodeId, to: NodeId, rng: &mut ChaCha12Rng) -> Duration;
    /// Whether this message is lost (links are reliable streams: a lost message is a
    /// broken link only in extreme models; the default loses nothing).
    fn lost(&mut self, _from: NodeId, _to: NodeId, _rng: &mut ChaCha12Rng) -> bool {
        false
    }
}

/// The same delay for every message.
#[derive(Debug, Clone, Copy)]
pub struct ConstantLatency(pub Duration);

impl LatencyModel for ConstantLatency {
    fn delay(&mut self, _: NodeId, _: NodeId, _: &mut ChaCha12Rng) -> Duration {
        self.0
    }
}

/// One message put on a link, as observers see it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When it was sent.
    pub at: Instant,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The encoded message.
    pub bytes: Bytes,
}

/// Watches traffic and events (the simulator's metrics).
pub trait Observer {
    /// A node sent a message on a link.
    fn sent(&mut self, _d: &Delivery) {}
    /// `len` bytes were written on a link by `from`: framed messages and
    /// acknowledgements (all the overlay's bytes above TLS).
    fn wire(&mut self, _from: NodeId, _len: usize) {}
    /// A node reported an event.
    fn event(&mut self, _at: Instant, _node: NodeId, _event: &Event) {}
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: NodeId,
        link: LinkId,
        bytes: Bytes,
    },
    LinkUp {
        node: NodeId,
        link: LinkId,
        peer: NodeId,
        connect: Option<ConnectId>,
    },
    LinkDown {
        node: NodeId,
        link: LinkId,
    },
    ConnectFailed {
        node: NodeId,
        id: ConnectId,
    },
    Timer {
        node: NodeId,
        at: Instant,
    },
    LinkTimer {
        node: NodeId,
        link: LinkId,
        at: Instant,
    },
}

struct SimNode {
    node: Node,
    addr: SocketAddr,
    alive: bool,
    /// Local link → its end.
    links: HashMap<LinkId, SimLink>,
    timer: Option<Instant>,
}

/// The virtual network.
pub struct VirtualNet {
    now: Instant,
    nodes: BTreeMap<NodeId, SimNode>,
    by_addr: HashMap<SocketAddr, NodeId>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Ev>,
    seq: u64,
    next_link: u64,
    rng: ChaCha12Rng,
    latency: Box<dyn LatencyModel>,
    observer: Option<Box<dyn Observer>>,
    /// Every event every node reported, in order.
    pub events: Vec<(Instant, NodeId, Event)>,
    record_events: bool,
    /// Nodes nobody can connect to (behind a NAT): they can only dial out.
    unreachable: std::collections::BTreeSet<NodeId>,
}

impl std::fmt::Debug for VirtualNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualNet")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl VirtualNet {
    /// An empty network.
    pub fn new(seed: u64, latency: impl LatencyModel + 'static) -> VirtualNet {
        VirtualNet {
            now: Instant::ZERO,
            nodes: BTreeMap::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            next_link: 1,
            rng: ChaCha12Rng::seed_from_u64(seed),
            latency: Box::new(latency),
            observer: None,
            events: Vec::new(),
            record_events: true,
            unreachable: Default::default(),
        }
    }

    /// Watches traffic and events.
    pub fn set_observer(&mut self, observer: impl Observer + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// Whether to keep every event in [`VirtualNet::events`] (off for long simulations).
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The address a node listens on.
    pub fn address_of(index: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + index)), 4000)
    }

    /// Makes `id` unreachable, as behind a NAT: connections to it fail, its own
    /// connections succeed.
    pub fn set_unreachable(&mut self, id: NodeId) {
        self.unreachable.insert(id);
    }

    /// Adds a node (not joined yet). Its `listen_addr` must be unique.
    pub fn add(&mut self, cfg: NodeConfig) -> NodeId {
        let addr = cfg.listen_addr.expect("test nodes need a listen address");
        let node = Node::new(cfg, self.now);
        let id = node.node_id();
        self.by_addr.insert(addr, id);
        self.nodes.insert(
            id,
            SimNode {
                node,
                addr,
                alive: true,
                links: HashMap::new(),
                timer: None,
            },
        );
        id
    }

    /// Starts a node's join.
    pub fn join(&mut self, id: NodeId) {
        let now = self.now;
        self.with(id, |n| n.join(now));
    }

    /// Starts a node's graceful leave.
    pub fn leave(&mut self, id: NodeId) {
        let now = self.now;
        self.with(id, |n| n.leave(now));
    }

    /// Sends an API request from a node.
    pub fn request(&mut self, id: NodeId, dest: Vec<Destination>, body: Body) -> Option<RequestId> {
        let now = self.now;
        let mut out = None;
        self.with(id, |n| out = Some(n.request(dest, body, now)));
        out
    }

    /// Runs `f` on a live node and processes what it produced.
    pub fn with(&mut self, id: NodeId, f: impl FnOnce(&mut Node)) {
        let Some(sim) = self.nodes.get_mut(&id) else {
            return;
        };
        if !sim.alive {
            return;
        }
        f(&mut sim.node);
        self.drain(id);
    }

    /// The node, alive or not.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id).map(|s| &s.node)
    }

    /// Whether the node is alive.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|s| s.alive)
    }

    /// Live nodes.
    pub fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, s)| s.alive)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Neighbour tables of the live ring members, for the invariant checker: joined
    /// nodes, and joining nodes that a joined node already lists (their admitting peer
    /// took them in before its JoinAns reached them).
    pub fn views(&self) -> Vec<PeerView> {
        use crate::node::JoinState;
        let live = |s: &&SimNode| s.alive;
        let joined: Vec<PeerView> = self
            .nodes
            .values()
            .filter(live)
            .filter(|s| s.node.state() == JoinState::Joined)
            .map(|s| s.node.view())
            .collect();
        let listed: std::collections::HashSet<NodeId> = joined
            .iter()
            .flat_map(|v| v.successors.iter().chain(&v.predecessors).copied())
            .collect();
        let joining = self
            .nodes
            .values()
            .filter(live)
            .filter(|s| {
                matches!(s.node.state(), JoinState::Joining { .. })
                    && listed.contains(&s.node.node_id())
            })
            .map(|s| s.node.view());
        let mut all = joined.clone();
        all.extend(joining);
        all
    }

    /// Stops a node without telling anyone: its peers must notice (a silent failure).
    pub fn kill(&mut self, id: NodeId) {
        if let Some(s) = self.nodes.get_mut(&id) {
            s.alive = false;
            s.links.clear();
        }
    }

    /// Drops a dead node's state for good (long churn runs would otherwise keep every
    /// node that ever ran). Messages and link events still under way to it are
    /// discarded, connection attempts to its address fail. A live node is kept.
    pub fn forget(&mut self, id: NodeId) {
        if self.nodes.get(&id).is_some_and(|s| !s.alive)
            && let Some(s) = self.nodes.remove(&id)
        {
            self.by_addr.remove(&s.addr);
        }
    }

    /// Stops a node the way a crashed process does: its links close at once.
    pub fn crash(&mut self, id: NodeId) {
        self.fail_detected_after(id, Duration::from_millis(1));
    }

    /// Stops a node silently, as a machine that vanished: what it was sending is lost,
    /// and each peer's link to it closes `detect` later — the time the link layer takes
    /// to declare a peer dead (in the runtime, an unacknowledged frame's RTO plus
    /// `link::FAILURE_RETENTION`).
    pub fn fail_detected_after(&mut self, id: NodeId, detect: Duration) {
        let mut links: Vec<(NodeId, LinkId)> = match self.nodes.get(&id) {
            Some(s) => s.links.values().map(|l| (l.peer, l.remote)).collect(),
            None => return,
        };
        // In a fixed order: the same seed must give the same run.
        links.sort_by_key(|(peer, link)| (*peer, link.0));
        self.kill(id);
        for (peer, remote) in links {
            let at = self.now + detect;
            self.schedule(
                at,
                Ev::LinkDown {
                    node: peer,
                    link: remote,
                },
            );
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.pending.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq)));
    }

    /// Processes everything a node produced and re-arms its timer.
    fn drain(&mut self, id: NodeId) {
        let now = self.now;
        let Some(sim) = self.nodes.get_mut(&id) else {
            return;
        };
        let mut transmits = Vec::new();
        while let Some(t) = sim.node.poll_transmit() {
            transmits.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = sim.node.poll_event() {
            events.push(e);
        }
        let wanted = sim.node.poll_timeout().map(|t| t.max(now));
        if wanted != sim.timer {
            sim.timer = wanted;
            if let Some(at) = wanted {
                self.schedule(at, Ev::Timer { node: id, at });
            }
        }
        for t in transmits {
            self.send_on(id, t.link, t.bytes);
        }
        for e in events {
            if let Some(o) = self.observer.as_mut() {
                o.event(now, id, &e);
            }
            match &e {
                Event::Connect {
                    id: cid,
                    candidates,
                    expect,
                } => self.connect(id, *cid, candidates, *expect),
                Event::CloseLink(link) => self.close(id, *link),
                Event::Keepalive { link, on } => self.set_keepalive(id, *link, *on),
                _ => {}
            }
            if self.record_events {
                self.events.push((now, id, e));
            }
        }
    }

    /// Connects to the first candidate a live node listens on (the virtual network
    /// has no NATs: any address that exists is reachable).
    fn connect(
        &mut self,
        from: NodeId,
        cid: ConnectId,
        candidates: &[SocketAddr],
        expect: Option<NodeId>,
    ) {
        let target = candidates
            .iter()
            .find_map(|a| self.by_addr.get(a).copied())
            .filter(|t| self.is_alive(*t));
        let rtt = match target {
            Some(t) => {
                self.latency.delay(from, t, &mut self.rng)
                    + self.latency.delay(t, from, &mut self.rng)
            }
            None => Duration::from_secs(1),
        };
        let at = self.now + rtt * 2; // TCP and TLS handshakes
        match target {
            Some(t)
                if expect.is_none_or(|e| e == t) && t != from && !self.unreachable.contains(&t) =>
            {
                let (la, lb) = (LinkId(self.next_link), LinkId(self.next_link + 1));
                self.next_link += 2;
                let now = self.now;
                self.nodes
                    .get_mut(&from)
                    .map(|s| s.links.insert(la, SimLink::new(t, lb, now)));
                self.nodes
                    .get_mut(&t)
                    .map(|s| s.links.insert(lb, SimLink::new(from, la, now)));
                self.schedule(
                    at,
                    Ev::LinkUp {
                        node: t,
                        link: lb,
                        peer: from,
                        connect: None,
                    },
                );
                self.schedule(
                    at,
                    Ev::LinkUp {
                        node: from,
                        link: la,
                        peer: t,
                        connect: Some(cid),
                    },
                );
            }
            _ => self.schedule(
                at,
                Ev::ConnectFailed {
                    node: from,
                    id: cid,
                },
            ),
        }
    }

    fn close(&mut self, id: NodeId, link: LinkId) {
        let Some((peer, remote)) = self
            .nodes
            .get_mut(&id)
            .and_then(|s| s.links.remove(&link))
            .map(|l| (l.peer, l.remote))
        else {
            return;
        };
        let at = self.now + self.latency.delay(id, peer, &mut self.rng);
        self.schedule(
            at,
            Ev::LinkDown {
                node: peer,
                link: remote,
            },
        );
        let now = self.now;
        self.with(id, |n| n.handle_link_down(link, now));
    }

    /// Processes the next event; `false` when there is none before `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        let Some(Reverse((at, seq))) = self.queue.peek().copied() else {
            return false;
        };
        if at > until {
            return false;
        }
        self.queue.pop();
        let Some(ev) = self.pending.remove(&seq) else {
            return true;
        };
        self.now = self.now.max(at);
        let now = self.now;
        match ev {
            Ev::Deliver { to, link, bytes } => self.receive_on(to, link, &bytes),
            Ev::LinkUp {
                node,
                link,
                peer,
                connect,
            } => {
                if self
                    .nodes
                    .get(&node)
                    .is_some_and(|s| s.links.contains_key(&link))
                {
                    self.with(node, |n| n.handle_link_up(link, peer, connect, now));
                } else if let Some(cid) = connect {
                    self.with(node, |n| n.handle_connect_failed(cid, "no node there", now));
                }
            }
            Ev::LinkDown { node, link } => {
                if self
                    .nodes
                    .get_mut(&node)
                    .is_some_and(|s| s.links.remove(&link).is_some())
                {
                    self.with(node, |n| n.handle_link_down(link, now));
                }
            }
            Ev::ConnectFailed { node, id } => {
                self.with(node, |n| n.handle_connect_failed(id, "no node there", now))
            }
            Ev::Timer { node, at } => {
                let due = self
                    .nodes
                    .get(&node)
                    .is_some_and(|s| s.alive && s.timer == Some(at));
                if due {
                    if let Some(s) = self.nodes.get_mut(&node) {
                        s.timer = None;
                    }
                    self.with(node, |n| n.handle_timeout(now));
                }
            }
            Ev::LinkTimer { node, link, at } => self.link_timer(node, link, at),
        }
        true
    }

    /// Runs until `until`, calling `check` after every event.
    pub fn run_until_checked(&mut self, until: Instant, mut check: impl FnMut(&VirtualNet)) {
        while self.step(until) {
            check(self);
        }
        self.now = self.now.max(until);
    }

    /// Runs until `until`.
    pub fn run_until(&mut self, until: Instant) {
        self.run_until_checked(until, |_| {});
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// The address of a node.
    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&id).map(|s| s.addr)
    }

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<(Instant, NodeId, Event)> {
        std::mem::take(&mut self.events)
    }
}
