//! The direct streams: which devices have one, the attempts under way, the devices
//! held back after a failure, and the bound on streams to other users' devices.
//!
//! Over `max_streams` other users' devices, the least preferred stream is closed:
//! highest route priority first (XEP-0415: only those "MUST be considered for closing
//! as redundant"), then least recently used; never the one just opened, never one to
//! this user's own devices. The peer opens a new one when it next has something to say.

use std::net::SocketAddr;

use minidom::Element;
use xor_overlay::id::NodeId;
use xor_overlay::time::Instant;

use super::{
    CONNECT_TIMEOUT, ConnectError, Device, Output, StreamRole, UNREACHABLE_HOLD, UNREACHABLE_MAX,
    Write, XmppEvent,
};
use crate::fanout::Device as Peer;
use crate::jid::Jid;
use crate::resolve::Route;

#[derive(Debug)]
pub(super) struct StreamEntry {
    pub(super) id: u64,
    pub(super) device: Peer,
    pub(super) addr: SocketAddr,
    /// The route priority it was opened for (`u8::MAX` when the peer opened it).
    pub(super) priority: u8,
    /// Last stanza sent or received.
    pub(super) used: Instant,
}

/// An AppAttach of ours under way.
#[derive(Debug)]
pub(super) struct Expected {
    pub(super) jid: Jid,
    pub(super) priority: u8,
    /// [`Device::ensure`] requests waiting for it.
    pub(super) waiters: Vec<u64>,
    pub(super) deadline: Instant,
}

/// Where a device stands for a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reach {
    Connected,
    Trying,
    Failed(ConnectError),
}

impl Device {
    /// Devices with an open stream.
    pub fn devices(&self) -> Vec<Peer> {
        let mut d: Vec<Peer> = self
            .streams
            .values()
            .filter_map(|v| v.first())
            .map(|e| e.device.clone())
            .collect();
        d.sort_by_key(|p| p.node);
        d
    }

    /// Devices with an open stream and the peer's address on each one's first stream.
    pub fn device_paths(&self) -> Vec<(Peer, SocketAddr)> {
        let mut d: Vec<(Peer, SocketAddr)> = self
            .streams
            .values()
            .filter_map(|v| v.first())
            .map(|e| (e.device.clone(), e.addr))
            .collect();
        d.sort_by_key(|(p, _)| p.node);
        d
    }

    /// This user's other devices with a stream.
    pub(super) fn own(&self) -> Vec<Peer> {
        let me = &self.cfg.me;
        self.devices()
            .into_iter()
            .filter(|d| d.jid.bare() == me.bare() && d.jid != *me)
            .collect()
    }

    pub(super) fn stream_to(&self, node: NodeId) -> Option<&StreamEntry> {
        self.streams.get(&node).and_then(|v| v.first())
    }

    /// Makes sure there is a stream to the device of `route`; the answer comes as
    /// [`Output::Connected`] with `token` (at once if there is one or the device is
    /// held back).
    pub fn ensure(&mut self, token: u64, route: &Route, now: Instant) {
        match self.reach(route, now) {
            Reach::Connected => {
                let result = self
                    .stream_to(route.node)
                    .map(|e| e.device.clone())
                    .ok_or(ConnectError::Stopped);
                self.out.push_back(Output::Connected { token, result });
            }
            Reach::Failed(why) => self.out.push_back(Output::Connected {
                token,
                result: Err(why),
            }),
            Reach::Trying => {
                if let Some(e) = self.expected.get_mut(&route.node) {
                    e.waiters.push(token);
                }
            }
        }
    }

    /// Starts an AppAttach to `route`'s device unless it has a stream, one is under
    /// way, or it is held back; where it stands.
    pub(super) fn reach(&mut self, route: &Route, now: Instant) -> Reach {
        if let Some(e) = self.stream_to(route.node) {
            // A route names a device of the user it was resolved for, or it is refused.
            return if e.device.jid.bare() == route.jid.bare() {
                Reach::Connected
            } else {
                Reach::Failed(ConnectError::WrongUser {
                    node: route.node,
                    found: e.device.jid.clone(),
                    expected: route.jid.clone(),
                })
            };
        }
        if self.expected.contains_key(&route.node) {
            return Reach::Trying;
        }
        if let Some((until, why)) = self.unreachable.get(&route.node) {
            if *until > now {
                return Reach::Failed(ConnectError::Held {
                    node: route.node,
                    left_secs: until.saturating_duration_since(now).as_secs(),
                    why: Box::new(why.clone()),
                });
            }
            self.unreachable.remove(&route.node);
        }
        self.expected.insert(
            route.node,
            Expected {
                jid: route.jid.clone(),
                priority: route.priority,
                waiters: Vec::new(),
                deadline: now + CONNECT_TIMEOUT,
            },
        );
        self.out.push_back(Output::Attach {
            node: route.node,
            destinations: route.destinations.clone(),
        });
        Reach::Trying
    }

    /// A direct connection from the overlay runtime with the device `node`: ours
    /// (`requested`: we sent the AppAttach) or a peer's. Its stream id and which end
    /// of the XMPP stream we are, or `None` to close it (nobody waits for it).
    pub fn accept_stream(&mut self, node: NodeId, requested: bool) -> Option<(u64, StreamRole)> {
        let role = if requested {
            let known = self
                .expected
                .get(&node)
                .map(|e| e.jid.clone())
                .or_else(|| self.stream_to(node).map(|e| e.device.jid.clone()))?;
            StreamRole::Initiator { expect: known }
        } else {
            StreamRole::Responder
        };
        let id = self.fresh_id();
        self.negotiating.insert(id, node);
        Some((id, role))
    }

    /// Stream `id` is negotiated: `device` is at its other end, at `addr`.
    pub fn stream_up(&mut self, id: u64, device: Peer, addr: SocketAddr, now: Instant) {
        self.negotiating.remove(&id);
        self.unreachable.remove(&device.node);
        let mut priority = u8::MAX;
        if let Some(exp) = self.expected.remove(&device.node) {
            priority = exp.priority;
            for token in exp.waiters {
                self.out.push_back(Output::Connected {
                    token,
                    result: Ok(device.clone()),
                });
            }
        }
        let first = !self.streams.contains_key(&device.node);
        self.by_id.insert(id, device.node);
        self.streams
            .entry(device.node)
            .or_default()
            .push(StreamEntry {
                id,
                device: device.clone(),
                addr,
                priority,
                used: now,
            });
        if first {
            self.event(XmppEvent::DeviceConnected(device.clone()));
        }
        for stanza in self.late.remove(&device.node).unwrap_or_default() {
            self.out.push_back(Output::Write(Write {
                stream: id,
                device: device.clone(),
                carbon: false,
                stanza,
            }));
        }
        self.bound_streams(device.node);
        self.own_settled(Some(device.node), true, now);
        self.advance_all(now);
    }

    /// A stanza arrived on stream `id` (already checked to come from its device).
    pub fn stream_stanza(&mut self, id: u64, stanza: Element, now: Instant) {
        let open = self
            .by_id
            .get(&id)
            .and_then(|node| self.streams.get_mut(node))
            .and_then(|v| v.iter_mut().find(|e| e.id == id));
        let from = match open {
            Some(entry) => {
                entry.used = now;
                entry.device.clone()
            }
            // Closed by us: what the peer sent before it saw the close still counts
            // (RFC 6120 §4.4).
            None => match self.closing.get(&id) {
                Some(d) => d.clone(),
                None => return,
            },
        };
        let own = self.own();
        let connected = self.devices();
        let plan = self.router.incoming_from(stanza, &from, &own, &connected);
        for (node, stanza) in plan.send {
            if let Some(e) = self.stream_to(node) {
                let w = Write {
                    stream: e.id,
                    device: e.device.clone(),
                    carbon: true,
                    stanza,
                };
                self.out.push_back(Output::Write(w));
            }
        }
        if let Some(d) = plan.deliver {
            self.event(XmppEvent::Stanza(d));
        }
    }

    /// Stream `id` ended (either side closed it, or it failed).
    pub fn stream_down(&mut self, id: u64, now: Instant) {
        if self.closing.remove(&id).is_some() {
            return;
        }
        if let Some(node) = self.negotiating.remove(&id) {
            // A stream of ours that failed before it was up: the attempt failed.
            if self.expected.contains_key(&node) && !self.streams.contains_key(&node) {
                let why = ConnectError::Attach("the stream negotiation failed".into());
                self.give_up(node, why, now);
            }
            return;
        }
        let Some(node) = self.by_id.remove(&id) else {
            return;
        };
        let Some(v) = self.streams.get_mut(&node) else {
            return;
        };
        let Some(pos) = v.iter().position(|e| e.id == id) else {
            return;
        };
        let entry = v.remove(pos);
        if v.is_empty() {
            self.streams.remove(&node);
            if entry.device.jid.bare() == self.cfg.me.bare() {
                self.own_lost(now);
            }
            self.event(XmppEvent::DeviceDisconnected(entry.device));
        }
        self.advance_all(now);
    }

    /// Our AppAttach to `node` failed.
    pub fn attach_failed(&mut self, node: NodeId, why: String, now: Instant) {
        self.give_up(node, ConnectError::Attach(why), now);
    }

    /// Closes every stream (the driver closes them cleanly) and gives up every attempt.
    pub fn shutdown(&mut self) {
        let mut ids: Vec<u64> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        for stream in ids {
            self.out.push_back(Output::Close { stream });
        }
        self.by_id.clear();
        self.streams.clear();
        self.late.clear();
        let mut tokens: Vec<u64> = self.expected.drain().flat_map(|(_, e)| e.waiters).collect();
        tokens.sort_unstable();
        for token in tokens {
            self.out.push_back(Output::Connected {
                token,
                result: Err(ConnectError::Stopped),
            });
        }
        self.fail_all_queued();
    }

    /// Marks the stream to `node` used (a stanza written on it).
    pub(super) fn touch(&mut self, node: NodeId, now: Instant) {
        if let Some(e) = self.streams.get_mut(&node).and_then(|v| v.first_mut()) {
            e.used = now;
        }
    }

    /// See the module docs.
    fn bound_streams(&mut self, keep: NodeId) {
        let bare = self.cfg.me.bare();
        loop {
            let others: Vec<(NodeId, u8, Instant)> = self
                .streams
                .iter()
                .filter_map(|(n, v)| v.first().map(|e| (*n, e)))
                .filter(|(_, e)| e.device.jid.bare() != bare)
                .map(|(n, e)| (n, e.priority, e.used))
                .collect();
            if others.len() <= self.cfg.max_streams {
                return;
            }
            let Some(victim) = others
                .iter()
                .filter(|(n, _, _)| *n != keep)
                .max_by_key(|(n, priority, used)| (*priority, std::cmp::Reverse(*used), *n))
                .map(|(n, _, _)| *n)
            else {
                return;
            };
            let Some(entries) = self.streams.remove(&victim) else {
                return;
            };
            let mut device = None;
            for e in entries {
                self.by_id.remove(&e.id);
                self.out.push_back(Output::Close { stream: e.id });
                if self.closing.len() < super::UNREACHABLE_MAX {
                    self.closing.insert(e.id, e.device.clone());
                }
                device.get_or_insert(e.device);
            }
            if let Some(d) = device {
                tracing::debug!(device = %d.jid, "too many direct streams; closed the least preferred");
                self.event(XmppEvent::DeviceDisconnected(d));
            }
        }
    }

    /// The attempt on `node` failed: remembered (see [`UNREACHABLE_HOLD`]; this user's
    /// own devices are never held back: XEP-0415 "The Peer MUST strive to maintain
    /// connections to all its user's peers"), and its waiters told why.
    pub(super) fn give_up(&mut self, node: NodeId, why: ConnectError, now: Instant) {
        let Some(exp) = self.expected.remove(&node) else {
            return;
        };
        if let Some(lost) = self.late.remove(&node) {
            tracing::debug!(%node, stanzas = lost.len(), "a device that never connected misses these");
        }
        if exp.jid.bare() != self.cfg.me.bare() {
            if self.unreachable.len() >= UNREACHABLE_MAX {
                self.unreachable.retain(|_, (until, _)| *until > now);
            }
            if self.unreachable.len() < UNREACHABLE_MAX {
                self.unreachable
                    .insert(node, (now + UNREACHABLE_HOLD, why.clone()));
            }
        }
        for token in exp.waiters {
            self.out.push_back(Output::Connected {
                token,
                result: Err(why.clone()),
            });
        }
        self.failed_connects.insert(node, why);
        self.own_settled(Some(node), false, now);
        self.advance_all(now);
    }
}
