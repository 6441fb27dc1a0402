//! The simulation: the overlay's own sans-IO nodes on the deterministic virtual
//! network (`xor_overlay::testnet`), churn and workload on top, metrics on the side.
//! Nothing here re-implements the protocol.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use xor_overlay::chord::check_ring;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::identity::testca::TestCa;
use xor_overlay::node::{JoinState, NodeConfig, RequestId};
use xor_overlay::storage::{KindDef, KindTable, Policy};
use xor_overlay::testnet::VirtualNet;
use xor_overlay::time::Instant;
use xor_overlay::wire::DataModel;

use crate::chat::Chat;
use crate::metrics::{Metrics, Sample};
use crate::models::{Churn, Latency, LatencyImpl};
use crate::tap::{Seen, Tap};

pub(crate) const OVERLAY: &str = "sim.xor";
/// The XMPP-LOCATION-style Kind: a dictionary per user, keyed by Node-ID.
pub const LOCATION: u32 = 0x5;
/// A single value per node at H(Node-ID), for the random store/fetch workload.
pub const BLOB: u32 = 4001;
/// How long stored values live; refreshed by the workload.
pub(crate) const LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// Where a run is, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The initial population joins.
    Joining,
    /// The ring settles before measuring.
    Settling,
    /// Churn and workload, measured.
    Measuring,
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Nodes at the start (and the population churn keeps).
    pub nodes: usize,
    /// Simulated time after the initial joins.
    pub duration: Duration,
    /// The seed.
    pub seed: u64,
    /// Message delays.
    pub latency: Latency,
    /// Joins and failures.
    pub churn: Churn,
    /// Initial nodes joining per simulated second.
    pub join_rate: f64,
    /// XMPP-LOCATION lookups per simulated second (whole overlay).
    pub lookup_rate: f64,
    /// Random stores (and fetches back) per simulated second.
    pub store_rate: f64,
    /// Routed pings per simulated second.
    pub ping_rate: f64,
    /// Most devices per user (each user gets 1..=this).
    pub max_devices: u32,
    /// `chord-update-interval`.
    pub update_interval: Duration,
    /// Predecessors and successors each node keeps (the node's default is 3; RFC 6940
    /// §10.7 recommends O(log N)).
    pub neighbors: usize,
    /// Proximity neighbour selection (`NodeConfig::proximity`).
    pub proximity: bool,
    /// Chat messages per simulated second (whole overlay): every device runs the
    /// XMPP usage's device core (`chat` module); 0 turns the chat workload off.
    pub chat_rate: f64,
    /// Metrics sampling period.
    pub sample: Duration,
    /// How often the ring invariants are checked.
    pub check_every: Duration,
}

impl SimConfig {
    /// Defaults for `nodes` nodes.
    pub fn new(nodes: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            duration: Duration::from_secs(600),
            seed,
            latency: Latency::wide_area(),
            churn: Churn::None,
            join_rate: 20.0,
            lookup_rate: 10.0,
            store_rate: 2.0,
            ping_rate: 5.0,
            max_devices: 5,
            update_interval: Duration::from_secs(60),
            neighbors: 3,
            proximity: true,
            chat_rate: 0.0,
            sample: Duration::from_secs(60),
            check_every: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lookup { user: usize },
    Fetch { owner: NodeId },
    Store,
    Ping,
    Register { user: usize },
}

pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) started: Instant,
    pub(crate) tid: Option<u64>,
    pub(crate) target: ResourceId,
}

pub(crate) struct User {
    pub(crate) resource: ResourceId,
    pub(crate) devices: Vec<NodeId>,
    /// Devices whose registration was acknowledged.
    pub(crate) registered: BTreeSet<NodeId>,
}

/// A running simulation.
pub struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) net: VirtualNet,
    pub(crate) ca: TestCa,
    pub(crate) rng: ChaCha12Rng,
    pub(crate) seen: Rc<RefCell<Seen>>,
    pub(crate) users: Vec<User>,
    pub(crate) user_of: HashMap<NodeId, usize>,
    pub(crate) open_user: Option<(usize, u32)>,
    pub(crate) next_index: u32,
    pub(crate) live: BTreeSet<NodeId>,
    pub(crate) joined: BTreeSet<NodeId>,
    pub(crate) sessions: Vec<(Instant, NodeId)>,
    /// Whether the measured phase has started.
    pub(crate) measuring: bool,
    pub(crate) pending: HashMap<(NodeId, RequestId), Pending>,
    pub(crate) blobs: Vec<NodeId>,
    pub(crate) metrics: Metrics,
    /// The chat workload, when on.
    pub(crate) chat: Option<Chat>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.net.now())
            .field("live", &self.live.len())
            .finish()
    }
}

fn kinds() -> KindTable {
    let mut k = KindTable::default();
    k.insert(KindDef {
        id: LOCATION,
        name: "XMPP-LOCATION".into(),
        model: DataModel::Dictionary,
        policy: Policy::UserNodeMatch,
        max_count: 16,
        max_size: 1024,
    });
    k.insert(KindDef {
        id: BLOB,
        name: "BLOB".into(),
        model: DataModel::Single,
        policy: Policy::NodeMatch,
        max_count: 1,
        max_size: 1024,
    });
    k
}

/// An exponential inter-arrival time for `rate` events per second.
fn interval(rate: f64, rng: &mut ChaCha12Rng) -> Option<Duration> {
    (rate > 0.0).then(|| {
        let u: f64 = rng.random::<f64>().max(1e-12);
        Duration::from_secs_f64(-u.ln() / rate)
    })
}

impl Sim {
    /// A simulation of `cfg` (no node yet).
    pub fn new(cfg: SimConfig) -> Sim {
        let mut net = VirtualNet::new(cfg.seed, LatencyImpl::new(cfg.latency.clone()));
        net.record_events(false);
        let seen = Rc::new(RefCell::new(Seen::default()));
        net.set_observer(Tap(seen.clone()));
        let chat = (cfg.chat_rate > 0.0).then(|| Chat::new(LatencyImpl::new(cfg.latency.clone())));
        Sim {
            ca: TestCa::new(OVERLAY, cfg.seed),
            rng: ChaCha12Rng::seed_from_u64(cfg.seed ^ 0x51_u64.rotate_left(17)),
            metrics: Metrics::new(cfg.seed),
            cfg,
            net,
            seen,
            users: Vec::new(),
            user_of: HashMap::new(),
            open_user: None,
            next_index: 0,
            live: BTreeSet::new(),
            joined: BTreeSet::new(),
            sessions: Vec::new(),
            measuring: false,
            pending: HashMap::new(),
            blobs: Vec::new(),
            chat,
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Live nodes.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// The collected metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The device's user: fills the current user up to its drawn device count.
    fn assign_user(&mut self, id: NodeId) -> usize {
        let (u, left) = match self.open_user {
            Some((u, left)) if left > 0 => (u, left),
            _ => {
                let devices = self.rng.random_range(1..=self.cfg.max_devices.max(1));
                let u = self.users.len();
                let name = format!("user{u}@{OVERLAY}");
                self.users.push(User {
                    resource: ResourceId::of_name(name.as_bytes()),
                    devices: Vec::new(),
                    registered: BTreeSet::new(),
                });
                (u, devices)
            }
        };
        self.open_user = Some((u, left - 1));
        self.users[u].devices.push(id);
        self.user_of.insert(id, u);
        u
    }

    fn config(
        &mut self,
        id: NodeId,
        user: usize,
        boot: Option<std::net::SocketAddr>,
    ) -> NodeConfig {
        let i = self.next_index;
        self.next_index += 1;
        let creds = self.ca.node(&format!("user{user}@{OVERLAY}"), id);
        let mut cfg = NodeConfig::new(OVERLAY, creds, self.ca.trust_store());
        cfg.listen_addr = Some(VirtualNet::address_of(i));
        cfg.bootstrap = boot.into_iter().collect();
        cfg.may_start_overlay = boot.is_none();
        cfg.chord_update_interval = self.cfg.update_interval;
        cfg.chord_ping_interval = self.cfg.update_interval * 5;
        cfg.neighbors = self.cfg.neighbors;
        cfg.proximity = self.cfg.proximity;
        cfg.epoch_unix_ms = 1_800_000_000_000;
        cfg.seed = self.rng.random();
        cfg.kinds = kinds();
        cfg
    }

    /// Adds a node and starts its join. It bootstraps from a random joined node; the
    /// very first node starts the overlay.
    fn add_node(&mut self) -> NodeId {
        let id = NodeId(self.rng.random());
        let user = self.assign_user(id);
        let boot = match self.random_joined() {
            Some(n) => self.net.addr(n),
            None => self.live.iter().next().and_then(|n| self.net.addr(*n)),
        };
        let cfg = self.config(id, user, boot);
        let id = self.net.add(cfg);
        self.live.insert(id);
        self.net.join(id);
        if let Churn::Poisson(session) = self.cfg.churn {
            // The initial population's sessions start when measuring starts (see
            // `measure`); until then they are kept as offsets from zero.
            let base = if self.measuring {
                self.now()
            } else {
                Instant::ZERO
            };
            self.sessions.push((base + session.draw(&mut self.rng), id));
        }
        self.metrics.joins += 1;
        id
    }

    pub(crate) fn random_joined(&mut self) -> Option<NodeId> {
        if self.joined.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.joined.len());
        self.joined.iter().nth(i).copied()
    }

    /// A node fails silently. Its peers notice from their links: a frame it does not
    /// acknowledge within the RTO makes the link suspect (routed around at once), and
    /// 30 s more close it (§6.6.5) — the runtime's link layer, run by the virtual
    /// network.
    fn fail(&mut self, id: NodeId) {
        self.net.kill(id);
        self.net.forget(id);
        self.live.remove(&id);
        self.joined.remove(&id);
        if let Some(&u) = self.user_of.get(&id) {
            self.users[u].registered.remove(&id);
        }
        self.pending.retain(|(n, _), _| *n != id);
        self.chat_failed(id);
        self.metrics.failures += 1;
    }

    /// The live joined node responsible for `r` (ground truth).
    pub(crate) fn responsible(&self, r: ResourceId) -> Option<NodeId> {
        self.joined
            .range(NodeId(r.0)..)
            .next()
            .or_else(|| self.joined.iter().next())
            .copied()
    }

    /// Record availability: of the users with a live registered device, how many have
    /// their record at the node now responsible for it.
    fn availability(&self) -> (usize, usize) {
        let mut expected = 0;
        let mut present = 0;
        for u in &self.users {
            if !u.registered.iter().any(|d| self.live.contains(d)) {
                continue;
            }
            expected += 1;
            let holder = self.responsible(u.resource);
            if holder
                .and_then(|h| self.net.node(h))
                .is_some_and(|n| n.storage().get(u.resource, LOCATION).is_some())
            {
                present += 1;
            }
        }
        (present, expected)
    }

    fn check_invariants(&mut self) {
        if let Err(v) = check_ring(&self.net.views()) {
            let at = self.now().saturating_duration_since(Instant::ZERO);
            self.metrics.violation(at, format!("{v:?}"));
        }
    }

    fn sample(&mut self, period: Duration) {
        let (present, expected) = self.availability();
        let (bytes, messages, workload, by_code) = {
            let mut s = self.seen.borrow_mut();
            (
                std::mem::take(&mut s.bytes),
                std::mem::take(&mut s.messages),
                std::mem::take(&mut s.workload_bytes),
                std::mem::take(&mut s.upkeep_by_code),
            )
        };
        let upkeep = bytes.saturating_sub(workload);
        let in_messages: u64 = by_code.values().map(|v| v.1).sum();
        self.metrics.upkeep(
            by_code.into_iter().map(|(code, v)| {
                let name = code.map_or_else(|| "later fragments".to_owned(), |c| c.to_string());
                (name, v)
            }),
            upkeep.saturating_sub(in_messages),
        );
        let per_node_s = |b: u64| b as f64 / period.as_secs_f64() / self.live.len().max(1) as f64;
        let at = self.now().saturating_duration_since(Instant::ZERO);
        let joined = self
            .live
            .iter()
            .filter(|id| {
                self.net
                    .node(**id)
                    .is_some_and(|n| n.state() == JoinState::Joined)
            })
            .count();
        let links: usize = self
            .live
            .iter()
            .filter_map(|id| self.net.node(*id))
            .map(|n| n.link_count())
            .sum();
        self.metrics.close_sample(Sample {
            at,
            live: self.live.len(),
            joined,
            records_expected: expected,
            records_present: present,
            bytes_per_node_s: per_node_s(bytes),
            upkeep_per_node_s: per_node_s(upkeep),
            messages,
            links_per_node: links as f64 / self.live.len().max(1) as f64,
            ..Sample::default()
        });
    }

    /// Runs the whole scenario: initial joins, then `duration` of churn and workload.
    /// `progress` is called now and then with the phase and the fraction of it done.
    pub fn run(&mut self, mut progress: impl FnMut(Phase, f64, &Sim)) {
        // Phase 1: the initial population joins at `join_rate`.
        let gap = Duration::from_secs_f64(1.0 / self.cfg.join_rate.max(0.001));
        for i in 0..self.cfg.nodes {
            self.add_node();
            let until = self.now() + gap;
            self.advance(until);
            if i % 64 == 0 {
                progress(Phase::Joining, i as f64 / self.cfg.nodes as f64, self);
            }
        }
        // Let the ring settle (two update intervals) before measuring.
        let start = self.now();
        let settle = self.cfg.update_interval * 2;
        let step = Duration::from_secs(10);
        while self.now() < start + settle {
            let until = (self.now() + step).min(start + settle);
            self.advance(until);
            let done = until.saturating_duration_since(start).as_secs_f64() / settle.as_secs_f64();
            progress(Phase::Settling, done, self);
        }
        self.metrics
            .start_measuring(self.now().saturating_duration_since(Instant::ZERO));
        // Traffic is counted from here: the joins' and the settling's would otherwise
        // all land in the first sample (and the run's average).
        {
            let mut seen = self.seen.borrow_mut();
            seen.bytes = 0;
            seen.messages = 0;
            seen.workload_bytes = 0;
            seen.upkeep_by_code.clear();
        }
        self.measure(progress);
    }

    fn measure(&mut self, mut progress: impl FnMut(Phase, f64, &Sim)) {
        let start = self.now();
        // Churn starts now: the initial nodes' sessions did not run while they joined
        // (otherwise every session shorter than the join phase would end at once).
        self.measuring = true;
        for (end, _) in &mut self.sessions {
            *end = start + end.saturating_duration_since(Instant::ZERO);
        }
        let end = start + self.cfg.duration;
        let mut next_sample = start + self.cfg.sample;
        let mut next_check = start + self.cfg.check_every;
        let mut next_op: [Option<Instant>; 3] = [0, 1, 2].map(|i| {
            let rate = [
                self.cfg.lookup_rate,
                self.cfg.store_rate,
                self.cfg.ping_rate,
            ][i];
            interval(rate, &mut self.rng).map(|d| start + d)
        });
        let arrival_rate = match self.cfg.churn {
            Churn::Poisson(s) => self.cfg.nodes as f64 / s.mean().as_secs_f64(),
            _ => 0.0,
        };
        let mut next_arrival = interval(arrival_rate, &mut self.rng).map(|d| start + d);
        let mut next_chat = interval(self.cfg.chat_rate, &mut self.rng).map(|d| start + d);
        let mut schedule: Vec<(Instant, i64)> = match &self.cfg.churn {
            Churn::Schedule(s) => s.iter().map(|(t, n)| (start + *t, *n)).collect(),
            Churn::MassFailure { at, fraction } => {
                let n = (self.live.len() as f64 * fraction).round() as i64;
                vec![(start + *at, -n)]
            }
            _ => Vec::new(),
        };
        schedule.sort_by_key(|(t, _)| *t);
        schedule.reverse();
        loop {
            let session_end = self.sessions.iter().map(|(t, _)| *t).min();
            let candidates = [
                Some(end),
                Some(next_sample),
                Some(next_check),
                next_op[0],
                next_op[1],
                next_op[2],
                next_arrival,
                schedule.last().map(|(t, _)| *t),
                session_end,
                next_chat,
                self.chat.as_ref().and_then(Chat::next_due),
            ];
            let Some(t) = candidates.into_iter().flatten().min() else {
                break;
            };
            self.advance(t);
            if t >= end {
                self.sample(self.cfg.sample);
                break;
            }
            if t == next_sample {
                self.sample(self.cfg.sample);
                next_sample = t + self.cfg.sample;
                let done = (t.saturating_duration_since(start)).as_secs_f64()
                    / self.cfg.duration.as_secs_f64();
                progress(Phase::Measuring, done, self);
            }
            if t == next_check {
                self.check_invariants();
                next_check = t + self.cfg.check_every;
            }
            for (i, slot) in next_op.iter_mut().enumerate() {
                if *slot == Some(t) {
                    self.workload(i as u8);
                    let rate = [
                        self.cfg.lookup_rate,
                        self.cfg.store_rate,
                        self.cfg.ping_rate,
                    ][i];
                    *slot = interval(rate, &mut self.rng).map(|d| t + d);
                }
            }
            self.chat_run(t);
            if next_chat == Some(t) {
                self.chat_send();
                next_chat = interval(self.cfg.chat_rate, &mut self.rng).map(|d| t + d);
            }
            if next_arrival == Some(t) {
                self.add_node();
                next_arrival = interval(arrival_rate, &mut self.rng).map(|d| t + d);
            }
            while schedule.last().is_some_and(|(at, _)| *at <= t) {
                let Some((_, n)) = schedule.pop() else { break };
                self.apply_schedule(n);
            }
            let due: Vec<NodeId> = self
                .sessions
                .iter()
                .filter(|(at, _)| *at <= t)
                .map(|(_, id)| *id)
                .collect();
            if !due.is_empty() {
                self.sessions.retain(|(at, _)| *at > t);
                for id in due {
                    if self.live.contains(&id) {
                        self.fail(id);
                    }
                }
            }
        }
        self.metrics.chat = self.chat.as_ref().map(|c| c.stats(self.now()));
        self.metrics
            .finish(self.now().saturating_duration_since(Instant::ZERO));
    }

    fn apply_schedule(&mut self, n: i64) {
        if n > 0 {
            for _ in 0..n {
                self.add_node();
            }
        } else {
            let mut victims: Vec<NodeId> = self.live.iter().copied().collect();
            for _ in 0..(-n) as usize {
                if victims.is_empty() {
                    break;
                }
                let i = self.rng.random_range(0..victims.len());
                let v = victims.swap_remove(i);
                self.fail(v);
            }
        }
    }

    /// Runs the network to `until`, absorbing events as they come.
    fn advance(&mut self, until: Instant) {
        while self.net.step(until) {
            if !self.seen.borrow().joined.is_empty() || !self.seen.borrow().responses.is_empty() {
                self.absorb();
            }
        }
        self.net.run_until(until);
        self.absorb();
        // Requests whose origin never answers (it failed) are not waited for forever.
        let now = self.now();
        let stale: Vec<(NodeId, RequestId)> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) > Duration::from_secs(120))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(p) = self.pending.remove(&k)
                && let Some(t) = p.tid
            {
                self.seen.borrow_mut().watched.remove(&t);
            }
        }
    }
}
