//! The hub: one task that owns the direct streams, the devices being connected to and
//! the fan-out router, and hands stanzas to the application. Connections come from
//! the overlay runtime (`Overlay::app_attach` and its application streams); the hub
//! never dials or listens itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::sync::{mpsc, oneshot};
use xor_overlay::id::NodeId;
use xor_overlay::runtime::clock::sleep_until;
use xor_overlay::runtime::{AppError, AppStream, Overlay};

use super::stream::{self, Role, StreamReport, StreamSettings};
use super::{ConnectError, XmppEvent};
use crate::XMPP_APPLICATION;
use crate::fanout::{Device, Router};
use crate::jid::Jid;
use crate::resolve::Route;
use crate::stanza;

/// How long an AppAttach plus the connection may take (the runtime gives up first).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a device that could not be reached is not tried again (its record may
/// be stale: a crashed device's location lives until it expires). A stream from it
/// clears this at once.
pub(crate) const UNREACHABLE_HOLD: Duration = Duration::from_secs(60);
/// Devices remembered as unreachable, at most.
const UNREACHABLE_MAX: usize = 4096;

/// Requests to the hub.
pub(crate) enum HubMsg {
    /// Make sure there is a stream to the device of `route`.
    Ensure {
        route: Route,
        reply: oneshot::Sender<Result<Device, ConnectError>>,
    },
    /// Fan `stanza` out to the connected devices of `recipient` (a bare JID).
    Dispatch {
        stanza: Element,
        /// The bare JIDs whose devices get it: the addressee's, or those its
        /// location record forwards to (XEP-0415 `xmpp_location_address`).
        recipients: Vec<Jid>,
        /// The copies to write, or the stanza back when no device it is addressed to
        /// has a stream (one closed since the sender checked): it may be retried.
        reply: oneshot::Sender<Result<Vec<Outgoing>, Element>>,
    },
    /// Connected devices.
    Devices(oneshot::Sender<Vec<Device>>),
    /// Connected devices and the peer's address on each one's (first) stream.
    Paths(oneshot::Sender<Vec<(Device, std::net::SocketAddr)>>),
    /// A direct connection from the overlay runtime (ours or a peer's AppAttach).
    Stream(AppStream),
    /// An AppAttach of ours failed.
    AttachFailed { node: NodeId, why: AppError },
    /// Close every stream and stop.
    Shutdown(oneshot::Sender<()>),
}

/// One copy of a dispatched stanza and the stream to write it to; the sender writes
/// it, waiting while that stream's queue is full (back-pressure instead of loss).
pub(crate) struct Outgoing {
    /// The device.
    pub device: Device,
    /// Whether it is a carbon to one of our own devices.
    pub carbon: bool,
    /// The stream's queue.
    pub tx: mpsc::Sender<Element>,
    /// What to write.
    pub stanza: Element,
}

struct StreamEntry {
    id: u64,
    device: Device,
    addr: std::net::SocketAddr,
    tx: mpsc::Sender<Element>,
    /// The route priority it was opened for (`u8::MAX` when the peer opened it).
    priority: u8,
    /// Last stanza sent or received.
    used: tokio::time::Instant,
}

struct Expected {
    jid: Jid,
    priority: u8,
    waiters: Vec<oneshot::Sender<Result<Device, ConnectError>>>,
    deadline: tokio::time::Instant,
}

pub(crate) struct Hub {
    me: Jid,
    overlay: Overlay,
    settings: StreamSettings,
    router: Router,
    streams: HashMap<NodeId, Vec<StreamEntry>>,
    expected: HashMap<NodeId, Expected>,
    /// Devices whose last attempt failed: until when, and why.
    unreachable: HashMap<NodeId, (tokio::time::Instant, ConnectError)>,
    next_id: u64,
    events: mpsc::Sender<XmppEvent>,
    reports_tx: mpsc::Sender<StreamReport>,
    self_tx: mpsc::Sender<HubMsg>,
    origin: Arc<dyn Fn() -> String + Send + Sync>,
    /// Told when the last stream to one of this user's other devices goes down.
    own_lost: Arc<tokio::sync::Notify>,
}

impl Hub {
    #[allow(clippy::too_many_arguments)] // wiring of channels done once at start-up
    pub(crate) fn new(
        me: Jid,
        overlay: Overlay,
        settings: StreamSettings,
        events: mpsc::Sender<XmppEvent>,
        reports_tx: mpsc::Sender<StreamReport>,
        self_tx: mpsc::Sender<HubMsg>,
        origin: Arc<dyn Fn() -> String + Send + Sync>,
        own_lost: Arc<tokio::sync::Notify>,
    ) -> Hub {
        Hub {
            router: Router::new(me.clone()),
            me,
            overlay,
            settings,
            streams: HashMap::new(),
            expected: HashMap::new(),
            unreachable: HashMap::new(),
            next_id: 1,
            events,
            reports_tx,
            self_tx,
            origin,
            own_lost,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut msgs: mpsc::Receiver<HubMsg>,
        mut reports: mpsc::Receiver<StreamReport>,
    ) {
        loop {
            // Woken only for a connection that is due (an idle hub sleeps); held-back
            // devices are looked at when asked for, and swept when the map fills.
            let due = self.expected.values().map(|e| e.deadline).min();
            tokio::select! {
                msg = msgs.recv() => match msg {
                    Some(HubMsg::Shutdown(done)) => {
                        self.streams.clear(); // dropping the senders closes every stream
                        let _ = done.send(());
                        return;
                    }
                    Some(msg) => self.message(msg),
                    None => return,
                },
                Some(report) = reports.recv() => self.report(report).await,
                () = sleep_until(due) => self.expire(),
            }
        }
    }

    fn own(&self) -> Vec<Device> {
        self.devices()
            .into_iter()
            .filter(|d| d.jid.bare() == self.me.bare() && d.jid != self.me)
            .collect()
    }

    fn devices(&self) -> Vec<Device> {
        self.streams
            .values()
            .filter_map(|v| v.first())
            .map(|e| e.device.clone())
            .collect()
    }

    fn message(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Ensure { route, reply } => self.ensure(route, reply),
            HubMsg::Dispatch {
                stanza,
                recipients: users,
                reply,
            } => {
                let recipients: Vec<Device> = self
                    .devices()
                    .into_iter()
                    .filter(|d| users.contains(&d.jid.bare()))
                    .collect();
                let to = stanza::to(&stanza);
                let addressed = recipients.iter().any(|d| {
                    d.jid != self.me && to.as_ref().is_none_or(|t| t.is_bare() || *t == d.jid)
                });
                if !addressed && !users.contains(&self.me.bare()) {
                    let _ = reply.send(Err(stanza));
                    return;
                }
                let own = self.own();
                let origin = self.origin.clone();
                let plan = self
                    .router
                    .outgoing(stanza, &recipients, &own, move || origin());
                let out = plan
                    .send
                    .into_iter()
                    .filter_map(|(node, stanza)| {
                        let entry = self.streams.get_mut(&node).and_then(|v| v.first_mut())?;
                        entry.used = tokio::time::Instant::now();
                        Some(Outgoing {
                            carbon: !recipients.iter().any(|d| d.node == node),
                            device: entry.device.clone(),
                            tx: entry.tx.clone(),
                            stanza,
                        })
                    })
                    .collect();
                let _ = reply.send(Ok(out));
            }
            HubMsg::Devices(reply) => {
                let _ = reply.send(self.devices());
            }
            HubMsg::Paths(reply) => {
                let paths = self
                    .streams
                    .values()
                    .filter_map(|v| v.first())
                    .map(|e| (e.device.clone(), e.addr))
                    .collect();
                let _ = reply.send(paths);
            }
            HubMsg::Stream(s) => self.stream(s),
            HubMsg::AttachFailed { node, why } => self.give_up(node, why.into()),
            HubMsg::Shutdown(_) => {}
        }
    }

    /// Sends on the first open stream to `node`.
    fn send_to(&mut self, node: NodeId, el: Element) -> bool {
        self.streams
            .get(&node)
            .and_then(|v| v.first())
            .is_some_and(|e| e.tx.try_send(el).is_ok())
    }

    /// AppAttach (application 5222) through the route; the device connects back to us
    /// (XEP-0415 "Establishing a direct connection").
    fn ensure(&mut self, route: Route, reply: oneshot::Sender<Result<Device, ConnectError>>) {
        if let Some(d) = self.streams.get(&route.node).and_then(|v| v.first()) {
            // A route names a device of the user it was resolved for, or it is refused.
            let result = if d.device.jid.bare() == route.jid.bare() {
                Ok(d.device.clone())
            } else {
                Err(ConnectError::WrongUser {
                    node: route.node,
                    found: d.device.jid.clone(),
                    expected: route.jid.clone(),
                })
            };
            let _ = reply.send(result);
            return;
        }
        if let Some(exp) = self.expected.get_mut(&route.node) {
            exp.waiters.push(reply);
            return;
        }
        let now = tokio::time::Instant::now();
        if let Some((until, why)) = self.unreachable.get(&route.node) {
            if *until > now {
                let _ = reply.send(Err(ConnectError::Held {
                    node: route.node,
                    left_secs: until.duration_since(now).as_secs(),
                    why: Box::new(why.clone()),
                }));
                return;
            }
            self.unreachable.remove(&route.node);
        }
        self.expected.insert(
            route.node,
            Expected {
                jid: route.jid.clone(),
                priority: route.priority,
                waiters: vec![reply],
                deadline: tokio::time::Instant::now() + CONNECT_TIMEOUT,
            },
        );
        let overlay = self.overlay.clone();
        let hub = self.self_tx.clone();
        tokio::spawn(async move {
            let msg = match overlay
                .app_attach(route.destinations.clone(), XMPP_APPLICATION)
                .await
            {
                Ok(stream) => HubMsg::Stream(stream),
                Err(why) => HubMsg::AttachFailed {
                    node: route.node,
                    why,
                },
            };
            let _ = hub.send(msg).await;
        });
    }

    /// A direct connection from the runtime. Ours (we sent the AppAttach): we open
    /// the XMPP stream, expecting the user we resolved the device under; a peer's: we
    /// answer its stream.
    fn stream(&mut self, s: AppStream) {
        if s.application != XMPP_APPLICATION {
            return;
        }
        let node = s.peer.node_id();
        let role = if s.requested {
            let known = self.expected.get(&node).map(|e| e.jid.clone()).or_else(|| {
                self.streams
                    .get(&node)
                    .and_then(|v| v.first())
                    .map(|e| e.device.jid.clone())
            });
            let Some(expect) = known else {
                tracing::debug!(%node, "a stream for a device nobody waits for; closed");
                return;
            };
            Role::Initiator { expect }
        } else {
            Role::Responder
        };
        let id = self.fresh_id();
        tokio::spawn(stream::run(
            id,
            s.stream,
            s.peer,
            role,
            self.settings.clone(),
            self.reports_tx.clone(),
        ));
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn report(&mut self, report: StreamReport) {
        match report {
            StreamReport::Up {
                id,
                device,
                addr,
                tx,
            } => {
                self.unreachable.remove(&device.node);
                let mut priority = u8::MAX;
                if let Some(exp) = self.expected.remove(&device.node) {
                    priority = exp.priority;
                    for w in exp.waiters {
                        let _ = w.send(Ok(device.clone()));
                    }
                }
                let first = !self.streams.contains_key(&device.node);
                self.streams
                    .entry(device.node)
                    .or_default()
                    .push(StreamEntry {
                        id,
                        device: device.clone(),
                        addr,
                        tx,
                        priority,
                        used: tokio::time::Instant::now(),
                    });
                if first {
                    let _ = self
                        .events
                        .send(XmppEvent::DeviceConnected(device.clone()))
                        .await;
                }
                self.bound_streams(device.node).await;
            }
            StreamReport::Stanza { device, stanza } => {
                self.touch(device.node);
                let own = self.own();
                let connected = self.devices();
                let plan = self.router.incoming_from(stanza, &device, &own, &connected);
                for (node, el) in plan.send {
                    self.send_to(node, el);
                }
                if let Some(d) = plan.deliver {
                    let _ = self.events.send(XmppEvent::Stanza(d)).await;
                }
            }
            StreamReport::Down { id, device, reason } => {
                tracing::debug!(?device, %reason, "stream ended");
                let Some(device) = device else { return };
                if let Some(v) = self.streams.get_mut(&device.node) {
                    v.retain(|e| e.id != id);
                    if v.is_empty() {
                        self.streams.remove(&device.node);
                        if device.jid.bare() == self.me.bare() {
                            self.own_lost.notify_one();
                        }
                        let _ = self
                            .events
                            .send(XmppEvent::DeviceDisconnected(device))
                            .await;
                    }
                }
            }
        }
    }

    /// Gives up on connections that did not come.
    fn expire(&mut self) {
        let now = tokio::time::Instant::now();
        let late: Vec<NodeId> = self
            .expected
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(n, _)| *n)
            .collect();
        for node in late {
            self.give_up(node, ConnectError::TimedOut);
        }
        self.unreachable.retain(|_, (until, _)| *until > now);
    }

    fn touch(&mut self, node: NodeId) {
        if let Some(e) = self.streams.get_mut(&node).and_then(|v| v.first_mut()) {
            e.used = tokio::time::Instant::now();
        }
    }

    /// Over `max_streams` other users' devices: closes the least preferred (highest
    /// route priority, then least recently used), never `keep` (just opened) nor one
    /// of this user's own devices. Dropping the hub's sender ends the stream with a
    /// clean close once in-flight sends are done; the peer opens a new one when it
    /// next has something to say.
    async fn bound_streams(&mut self, keep: NodeId) {
        let bare = self.me.bare();
        loop {
            let others: Vec<(NodeId, u8, tokio::time::Instant)> = self
                .streams
                .iter()
                .filter_map(|(n, v)| v.first().map(|e| (*n, e)))
                .filter(|(_, e)| e.device.jid.bare() != bare)
                .map(|(n, e)| (n, e.priority, e.used))
                .collect();
            if others.len() <= self.settings.max_streams {
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
            if let Some(v) = self.streams.remove(&victim)
                && let Some(e) = v.into_iter().next()
            {
                tracing::debug!(device = %e.device.jid, "too many direct streams; closed the least preferred");
                let _ = self
                    .events
                    .send(XmppEvent::DeviceDisconnected(e.device))
                    .await;
            }
        }
    }

    /// Remembers that `node` could not be reached (see [`UNREACHABLE_HOLD`]).
    /// This user's own devices are never held back: XEP-0415 "The Peer MUST strive to
    /// maintain connections to all its user's peers" (and sends never wait for them).
    fn remember_unreachable(&mut self, node: NodeId, why: &ConnectError) {
        if self
            .expected
            .get(&node)
            .is_some_and(|e| e.jid.bare() == self.me.bare())
        {
            return;
        }
        if self.unreachable.len() >= UNREACHABLE_MAX {
            let now = tokio::time::Instant::now();
            self.unreachable.retain(|_, (until, _)| *until > now);
            if self.unreachable.len() >= UNREACHABLE_MAX {
                return;
            }
        }
        let until = tokio::time::Instant::now() + UNREACHABLE_HOLD;
        self.unreachable.insert(node, (until, why.clone()));
    }

    /// The attempt on `node` failed: remembered, and its waiters told why.
    fn give_up(&mut self, node: NodeId, why: ConnectError) {
        self.remember_unreachable(node, &why);
        if let Some(exp) = self.expected.remove(&node) {
            for w in exp.waiters {
                let _ = w.send(Err(why.clone()));
            }
        }
    }
}
