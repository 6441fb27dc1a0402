//! The chat workload: every device runs the XMPP usage's device core
//! ([`xor_xmpp::device::Device`]) — the state machine the tokio runtime drives —
//! and users send messages to each other's bare and full JIDs.
//!
//! What is real: the lookups are Fetches of the XMPP-LOCATION records the devices
//! stored (through their own overlay node, routed hop by hop over the virtual
//! network); the routes, the AppAttach attempts, the held-back devices, the fan-out,
//! carbons and duplicate suppression are the core's own decisions.
//!
//! What is modelled: an AppAttach and the direct stream it opens. The connection is
//! up after the AppAttach's trip through the overlay (five one-way delays between
//! random pairs, about the measured hop count) and one round trip of ICE checks; the
//! stream is negotiated after three more round trips (TLS and the stream headers).
//! A stanza takes the pair's one-way delay, in order on its stream. A device that
//! fails is silent: the other end notices after three stream keep-alives (90 s, the
//! runtime's `keepalive` × 3); what was written to it meanwhile is lost, as over a
//! real TCP connection to a crashed host. An AppAttach to a device that is gone fails
//! after the ICE deadline (12 s).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use minidom::Element;
use rand::RngExt;
use xor_overlay::id::NodeId;
use xor_overlay::node::RequestId;
use xor_overlay::testnet::LatencyModel;
use xor_overlay::time::Instant;
use xor_overlay::wire::{ModelSpecifier, StoredDataSpecifier};
use xor_xmpp::device::{Device, DeviceConfig, Output, Write, XmppEvent};
use xor_xmpp::fanout::Device as Peer;
use xor_xmpp::{Jid, stanza};

use crate::metrics::ChatStats;
use crate::models::LatencyImpl;
use crate::sim::{LOCATION, OVERLAY, Sim};

/// How long a silent (failed) device's streams stay open at the other end.
const SILENT_DETECTED: Duration = Duration::from_secs(90);
/// How long an AppAttach to a device that is gone takes to fail.
const ATTACH_FAILS: Duration = Duration::from_secs(12);
/// Overlay hops an AppAttach is modelled to take each way.
const ATTACH_HOPS: usize = 5;

/// What happens next in the chat model.
#[derive(Debug)]
enum Ev {
    /// The device's core asked to be woken.
    Timeout(NodeId),
    /// An AppAttach from `from` reached `to` and the connection is up.
    Connect { from: NodeId, to: NodeId },
    /// The AppAttach from `from` to `to` failed.
    AttachFailed { from: NodeId, to: NodeId },
    /// Stream `id` of `node` is negotiated with `peer`.
    Up { node: NodeId, id: u64, peer: NodeId },
    /// A stanza arrives on stream `id` of `node`.
    Stanza {
        node: NodeId,
        id: u64,
        stanza: Element,
    },
    /// Stream `id` of `node` ended.
    Down { node: NodeId, id: u64 },
}

/// One end of a modelled stream.
#[derive(Debug, Clone, Copy)]
struct Pipe {
    peer: NodeId,
    peer_stream: u64,
    /// When the last stanza written on it arrives (streams keep order).
    last: Instant,
}

/// A message sent, and who got it.
#[derive(Debug)]
struct Msg {
    sent: Instant,
    /// The recipient's devices online when it was sent.
    expected: BTreeSet<NodeId>,
    /// Deliveries to applications, per device.
    got: BTreeMap<NodeId, u32>,
}

/// The chat model's state.
pub(crate) struct Chat {
    cores: BTreeMap<NodeId, Device>,
    latency: LatencyImpl,
    events: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    /// Each device's earliest pending wake-up.
    timers: HashMap<NodeId, Instant>,
    pipes: HashMap<(NodeId, u64), Pipe>,
    /// Fetches in flight: the overlay request → the core's fetch id.
    fetches: HashMap<(NodeId, RequestId), u64>,
    msgs: Vec<Msg>,
    failed_at: HashMap<NodeId, Instant>,
    failed_sends: u64,
    latencies: Vec<Duration>,
}

fn jid_of(user: usize, node: NodeId) -> Jid {
    let name = format!("user{user}@{OVERLAY}/d{:08x}", (node.0 >> 96) as u32);
    Jid::parse(&name).unwrap_or_else(|_| {
        Jid::parse(&format!("user{user}@{OVERLAY}")).unwrap_or_else(|_| unreachable!("a valid JID"))
    })
}

fn addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 5222))
}

impl Chat {
    pub(crate) fn new(latency: LatencyImpl) -> Chat {
        Chat {
            cores: BTreeMap::new(),
            latency,
            events: BTreeMap::new(),
            seq: 0,
            timers: HashMap::new(),
            pipes: HashMap::new(),
            fetches: HashMap::new(),
            msgs: Vec::new(),
            failed_at: HashMap::new(),
            failed_sends: 0,
            latencies: Vec::new(),
        }
    }

    fn at(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.events.insert((t, self.seq), ev);
    }

    /// When the next chat event is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.events.keys().next().map(|(t, _)| *t)
    }

    /// The totals so far.
    pub(crate) fn stats(&self, end: Instant) -> ChatStats {
        let mut s = ChatStats {
            failed_sends: self.failed_sends,
            ..ChatStats::default()
        };
        // Messages sent in the last 30 s may still be under way.
        for m in self
            .msgs
            .iter()
            .filter(|m| m.sent + Duration::from_secs(30) <= end)
        {
            s.messages += 1;
            for d in &m.expected {
                let n = m.got.get(d).copied().unwrap_or(0);
                if n == 0 && self.failed_at.contains_key(d) {
                    continue; // the recipient left before it could get it
                }
                s.expected += 1;
                s.delivered += u64::from(n > 0);
                s.duplicates += u64::from(n.saturating_sub(1));
            }
        }
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let pct = |q: f64| {
            l.get(((l.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        s.latency_p50 = pct(0.5);
        s.latency_p99 = pct(0.99);
        s
    }
}

impl Sim {
    fn chat_mut(&mut self) -> Option<&mut Chat> {
        self.chat.as_mut()
    }

    /// A device joined: its core starts.
    pub(crate) fn chat_joined(&mut self, node: NodeId) {
        let Some(&user) = self.user_of.get(&node) else {
            return;
        };
        let seed = self.rng.random();
        let Some(chat) = self.chat_mut() else { return };
        let core = Device::new(DeviceConfig {
            // The simulator stores the records itself (its `Register` workload).
            upkeep: None,
            me: jid_of(user, node),
            node,
            max_forwards: 4,
            resolve_cache: Duration::from_secs(30),
            max_streams: 256,
            seed,
        });
        chat.cores.insert(node, core);
    }

    /// A device failed silently.
    pub(crate) fn chat_failed(&mut self, node: NodeId) {
        let now = self.now();
        let Some(chat) = self.chat_mut() else { return };
        chat.cores.remove(&node);
        chat.timers.remove(&node);
        chat.failed_at.insert(node, now);
        let mut ends: Vec<(NodeId, u64)> = chat
            .pipes
            .iter()
            .filter(|(_, p)| p.peer == node)
            .map(|(k, _)| *k)
            .collect();
        ends.sort_unstable();
        for (n, id) in ends {
            chat.at(now + SILENT_DETECTED, Ev::Down { node: n, id });
        }
        chat.pipes.retain(|(n, _), _| *n != node);
    }

    /// A user sends a message to another user's bare JID, or (one in five) to one of
    /// its devices.
    pub(crate) fn chat_send(&mut self) {
        let Some(chat) = self.chat.as_ref() else {
            return;
        };
        let senders: Vec<NodeId> = chat.cores.keys().copied().collect();
        if senders.is_empty() {
            return;
        }
        let from = senders[self.rng.random_range(0..senders.len())];
        let Some(&fu) = self.user_of.get(&from) else {
            return;
        };
        let others: Vec<usize> = (0..self.users.len())
            .filter(|u| *u != fu && !self.users[*u].registered.is_empty())
            .collect();
        if others.is_empty() {
            return;
        }
        let to_user = others[self.rng.random_range(0..others.len())];
        let registered: Vec<NodeId> = self.users[to_user].registered.iter().copied().collect();
        let full = self.rng.random_range(0..5) == 0;
        let (to, expected): (Jid, BTreeSet<NodeId>) = if full {
            let d = registered[self.rng.random_range(0..registered.len())];
            (jid_of(to_user, d), [d].into())
        } else {
            let Ok(bare) = Jid::parse(&format!("user{to_user}@{OVERLAY}")) else {
                return;
            };
            (bare, registered.into_iter().collect())
        };
        let now = self.now();
        let Some(chat) = self.chat_mut() else { return };
        let n = chat.msgs.len();
        chat.msgs.push(Msg {
            sent: now,
            expected,
            got: BTreeMap::new(),
        });
        if let Some(core) = chat.cores.get_mut(&from) {
            core.send(n as u64, stanza::chat(&to, &format!("m{n}")), now);
        }
        self.chat_pump(from);
    }

    /// Whether `(node, req)` is a fetch of the chat model; if so it is handed over.
    pub(crate) fn chat_answer(
        &mut self,
        node: NodeId,
        req: RequestId,
        result: &Result<xor_overlay::node::Answer, xor_overlay::node::RequestError>,
    ) -> bool {
        let now = self.now();
        let Some(chat) = self.chat_mut() else {
            return false;
        };
        let Some(id) = chat.fetches.remove(&(node, req)) else {
            return false;
        };
        let answer = match result {
            Ok(a) => match &a.body {
                xor_overlay::wire::Body::FetchAns(f) => Ok(f
                    .kind_responses
                    .first()
                    .map(|k| k.values.parsed().to_vec())
                    .unwrap_or_default()),
                _ => Ok(Vec::new()),
            },
            Err(e) => Err(e.clone()),
        };
        if let Some(core) = chat.cores.get_mut(&node) {
            core.fetched(id, answer, now);
        }
        self.chat_pump(node);
        true
    }

    /// Runs the chat events due by `until`.
    pub(crate) fn chat_run(&mut self, until: Instant) {
        loop {
            let Some(chat) = self.chat_mut() else { return };
            let Some((&key, _)) = chat.events.iter().next() else {
                return;
            };
            if key.0 > until {
                return;
            }
            let Some(ev) = chat.events.remove(&key) else {
                return;
            };
            self.chat_event(key.0, ev);
        }
    }

    fn chat_event(&mut self, now: Instant, ev: Ev) {
        let Some(chat) = self.chat_mut() else { return };
        let touched = match ev {
            Ev::Timeout(node) => {
                if chat.timers.get(&node) != Some(&now) {
                    return;
                }
                chat.timers.remove(&node);
                let Some(core) = chat.cores.get_mut(&node) else {
                    return;
                };
                core.handle_timeout(now);
                vec![node]
            }
            Ev::Connect { from, to } => {
                let rtt = chat.rtt(from, to);
                let (Some(a), true) = (
                    chat.cores
                        .get_mut(&from)
                        .and_then(|c| c.accept_stream(to, true)),
                    chat.cores.contains_key(&to),
                ) else {
                    return;
                };
                let Some(b) = chat
                    .cores
                    .get_mut(&to)
                    .and_then(|c| c.accept_stream(from, false))
                else {
                    return;
                };
                chat.pipes.insert(
                    (from, a.0),
                    Pipe {
                        peer: to,
                        peer_stream: b.0,
                        last: now,
                    },
                );
                chat.pipes.insert(
                    (to, b.0),
                    Pipe {
                        peer: from,
                        peer_stream: a.0,
                        last: now,
                    },
                );
                let up = now + rtt * 3;
                chat.at(
                    up,
                    Ev::Up {
                        node: from,
                        id: a.0,
                        peer: to,
                    },
                );
                chat.at(
                    up,
                    Ev::Up {
                        node: to,
                        id: b.0,
                        peer: from,
                    },
                );
                return;
            }
            Ev::AttachFailed { from, to } => {
                let Some(core) = chat.cores.get_mut(&from) else {
                    return;
                };
                core.attach_failed(to, "the device did not answer".into(), now);
                vec![from]
            }
            Ev::Up { node, id, peer } => {
                let Some(&user) = self.user_of.get(&peer) else {
                    return;
                };
                let Some(chat) = self.chat_mut() else { return };
                if !chat.cores.contains_key(&peer) || !chat.pipes.contains_key(&(node, id)) {
                    // The other end left during the negotiation.
                    chat.pipes.remove(&(node, id));
                    let Some(core) = chat.cores.get_mut(&node) else {
                        return;
                    };
                    core.stream_down(id, now);
                    vec![node]
                } else {
                    let Some(core) = chat.cores.get_mut(&node) else {
                        return;
                    };
                    let device = Peer {
                        node: peer,
                        jid: jid_of(user, peer),
                    };
                    core.stream_up(id, device, addr(), now);
                    vec![node]
                }
            }
            Ev::Stanza { node, id, stanza } => {
                let Some(core) = chat.cores.get_mut(&node) else {
                    return;
                };
                core.stream_stanza(id, stanza, now);
                vec![node]
            }
            Ev::Down { node, id } => {
                chat.pipes.remove(&(node, id));
                let Some(core) = chat.cores.get_mut(&node) else {
                    return;
                };
                core.stream_down(id, now);
                vec![node]
            }
        };
        for n in touched {
            self.chat_pump(n);
        }
    }

    /// Carries out what `node`'s core asks for.
    fn chat_pump(&mut self, node: NodeId) {
        let now = self.now();
        loop {
            let Some(out) = self
                .chat
                .as_mut()
                .and_then(|c| c.cores.get_mut(&node))
                .and_then(Device::poll_output)
            else {
                break;
            };
            if let Output::Fetch { id, resource } = out {
                let spec = StoredDataSpecifier {
                    kind: LOCATION,
                    generation: 0,
                    model_specifier: ModelSpecifier::Dictionary(vec![]),
                };
                let mut req = None;
                self.net
                    .with(node, |n| req = Some(n.fetch(resource, vec![spec], now)));
                if let (Some(r), Some(chat)) = (req, self.chat_mut()) {
                    chat.fetches.insert((node, r), id);
                }
                continue;
            }
            let Some(chat) = self.chat_mut() else { return };
            chat.carry_out(node, out, now);
        }
        let Some(chat) = self.chat_mut() else { return };
        let due = chat.cores.get(&node).and_then(Device::poll_timeout);
        if let Some(t) = due
            && chat.timers.get(&node).is_none_or(|cur| t < *cur)
        {
            chat.timers.insert(node, t);
            chat.at(t.max(now), Ev::Timeout(node));
        }
    }
}

impl Chat {
    /// Carries out one output of `node`'s core (fetches are the simulation's).
    fn carry_out(&mut self, node: NodeId, out: Output, now: Instant) {
        let chat = self;
        match out {
            Output::Attach { node: to, .. } => {
                let alive = chat.cores.contains_key(&to);
                if alive {
                    let route: Duration =
                        (0..ATTACH_HOPS * 2).map(|_| chat.one_way(node, to)).sum();
                    let t = now + route + chat.rtt(node, to);
                    chat.at(t, Ev::Connect { from: node, to });
                } else {
                    chat.at(now + ATTACH_FAILS, Ev::AttachFailed { from: node, to });
                }
            }
            Output::Dispatch { writes, .. } => {
                for w in writes {
                    chat.write(node, w, now);
                }
            }
            Output::Write(w) => chat.write(node, w, now),
            Output::Close { stream } => {
                if let Some(p) = chat.pipes.get(&(node, stream)).copied() {
                    let t = p.last.max(now) + chat.one_way(node, p.peer);
                    chat.at(
                        t,
                        Ev::Down {
                            node: p.peer,
                            id: p.peer_stream,
                        },
                    );
                    chat.at(t, Ev::Down { node, id: stream });
                }
            }
            Output::Event(XmppEvent::Stanza(d)) => {
                let n = stanza::body(&d.stanza)
                    .and_then(|b| b.strip_prefix('m').and_then(|n| n.parse::<usize>().ok()));
                // Copies of our own sends (sent carbons) are not deliveries.
                if d.carbon != Some(xor_xmpp::stanza::Carbon::Sent)
                    && let Some(m) = n.and_then(|n| chat.msgs.get_mut(n))
                {
                    let count = m.got.entry(node).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        let l = now.saturating_duration_since(m.sent);
                        chat.latencies.push(l);
                    }
                }
            }
            Output::Failed { .. } => chat.failed_sends += 1,
            Output::Fetch { .. }
            | Output::Event(_)
            | Output::Connected { .. }
            | Output::Register => {}
        }
    }

    fn one_way(&mut self, a: NodeId, b: NodeId) -> Duration {
        let mut rng = <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(
            self.seq ^ (a.0 as u64) ^ (b.0 as u64).rotate_left(7),
        );
        self.latency.delay(a, b, &mut rng)
    }

    fn rtt(&mut self, a: NodeId, b: NodeId) -> Duration {
        self.one_way(a, b) + self.one_way(b, a)
    }

    /// A stanza written on `node`'s stream: it arrives after the pair's delay, in order.
    fn write(&mut self, node: NodeId, w: Write, now: Instant) {
        let Some(p) = self.pipes.get(&(node, w.stream)).copied() else {
            return;
        };
        if !self.cores.contains_key(&p.peer) {
            return; // lost: written to a device that is gone
        }
        let t = (now + self.one_way(node, p.peer)).max(p.last);
        if let Some(pipe) = self.pipes.get_mut(&(node, w.stream)) {
            pipe.last = t;
        }
        self.at(
            t,
            Ev::Stanza {
                node: p.peer,
                id: p.peer_stream,
                stanza: w.stanza,
            },
        );
    }
}
