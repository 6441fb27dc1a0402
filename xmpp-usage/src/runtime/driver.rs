//! The tokio driver of the device core ([`crate::device::Device`]).
//!
//! The core sits behind one short-held lock (quinn's pattern): whoever has an input
//! feeds it in place — the application's `send` in its own task, a stream task the
//! stanza it just read — and carries out the outputs before unlocking: writes go
//! into the streams' queues, answers to the waiting sends and connects, events
//! come back to be handed to the application after the lock is released. One
//! driver task does what takes time: the overlay fetches and AppAttaches the core
//! asks for (each in a task of its own), its timer, and the peers' connections.
//!
//! # The path of a message, and why nothing waits in a circle
//!
//! Client A's session task (the daemon's local port, or the game's task) calls
//! `send`: the core writes the stanza into the direct stream's queue (boundary 1).
//! The stream task writes it to the TLS connection; at the other device the stream
//! task reads it, feeds the core and hands the delivery to the application's event
//! channel (boundary 2); the daemon's event task gives it to client B's session
//! queue (boundary 3), whose task writes it to B's socket. A message that needs a
//! lookup or a connection first waits in the core and leaves the same way.
//!
//! Who waits for whom:
//! - the streams' queues are unbounded channels whose length the driver counts: a
//!   write never waits (so the core never waits while locked). A sender waits
//!   *after* its stanza is queued, while a stream it wrote to holds more than
//!   [`STREAM_HIGH`] stanzas (at most [`STREAM_WAIT`]); a stream above
//!   [`STREAM_HARD`] is stuck and gets no more. Stream tasks wait only for their
//!   socket.
//! - a stream task waits for room in the application's event channel (bounded):
//!   reading stops, and TCP slows the sending device down.
//! - the application's event handler may send (presence answers): sending waits for
//!   stream queues to drain, which stream tasks do without waiting for the
//!   application. So no chain of waits comes back to where it started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use minidom::Element;
use tokio::sync::{Notify, mpsc, oneshot};
use xor_overlay::id::NodeId;
use xor_overlay::node::RequestError;
use xor_overlay::runtime::clock::{Clock, sleep_until};
use xor_overlay::runtime::{AppStream, Overlay};
use xor_overlay::time::Instant;
use xor_overlay::wire::{Destination, KindId, ModelSpecifier, StoredData, StoredDataSpecifier};

use super::stream::{self, StreamSettings};
use crate::XMPP_APPLICATION;
use crate::device::{ConnectError, Device, Output, SendFailure, SendReport, Write, XmppEvent};
use crate::fanout::Device as Peer;

/// Stanzas queued on a stream above which a sender waits for it to drain.
pub(crate) const STREAM_HIGH: usize = 256;
/// Stanzas queued on a stream at which it counts as stuck: nothing more is queued.
pub(crate) const STREAM_HARD: usize = 8192;
/// How long a send waits for a stream above [`STREAM_HIGH`] to drain.
pub(crate) const STREAM_WAIT: Duration = Duration::from_secs(10);

/// A stream's queue, as the driver and the stream task share it.
#[derive(Debug, Clone)]
pub(crate) struct Outlet {
    tx: mpsc::UnboundedSender<Element>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

/// The stream task's end of an [`Outlet`].
#[derive(Debug)]
pub(crate) struct Inlet {
    pub(crate) rx: mpsc::UnboundedReceiver<Element>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

/// A new stream queue.
pub(crate) fn outlet() -> (Outlet, Inlet) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let out = Outlet {
        tx,
        queued: queued.clone(),
        drained: drained.clone(),
    };
    (
        out,
        Inlet {
            rx,
            queued,
            drained,
        },
    )
}

impl Inlet {
    /// One stanza taken off the queue was written.
    pub(crate) fn written(&self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        if before <= STREAM_HIGH {
            self.drained.notify_waiters();
        }
    }
}

impl Outlet {
    /// Waits while more than [`STREAM_HIGH`] stanzas are queued, until `deadline`.
    async fn room(&self, deadline: tokio::time::Instant) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued.load(Ordering::Acquire) <= STREAM_HIGH || self.tx.is_closed() {
                return;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }
}

/// A dispatched send: the report, and the streams it filled up.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) report: SendReport,
    busy: Vec<Outlet>,
}

impl Sent {
    /// Waits (at most [`STREAM_WAIT`]) until the streams written to have room.
    pub(crate) async fn room(&self) {
        let deadline = tokio::time::Instant::now() + STREAM_WAIT;
        for o in &self.busy {
            o.room(deadline).await;
        }
    }
}

enum Op {
    Fetch {
        id: u64,
        resource: xor_overlay::id::ResourceId,
    },
    Attach {
        node: NodeId,
        destinations: Vec<Destination>,
    },
}

struct Shared {
    core: Device,
    streams: HashMap<u64, Outlet>,
    sends: HashMap<u64, oneshot::Sender<Result<Sent, SendFailure>>>,
    connects: HashMap<u64, oneshot::Sender<Result<Peer, ConnectError>>>,
    ops: Vec<Op>,
    /// Events for the driver task to hand over.
    backlog: Vec<XmppEvent>,
    next_token: u64,
    stopped: bool,
}

/// What an input left to do once the lock is released.
#[must_use]
pub(crate) struct After {
    events: Vec<XmppEvent>,
}

/// The handle every task shares.
#[derive(Clone)]
pub(crate) struct Driver {
    shared: Arc<Mutex<Shared>>,
    clock: Clock,
    /// Ops queued or the core's deadline moved earlier.
    wake: Arc<Notify>,
    events: mpsc::Sender<XmppEvent>,
    /// Notified when the core asks for the location record to be stored again.
    register: Arc<Notify>,
    overlay: Overlay,
    settings: StreamSettings,
    location_kind: KindId,
}

impl Driver {
    pub(crate) fn new(
        core: Device,
        overlay: Overlay,
        settings: StreamSettings,
        location_kind: KindId,
        events: mpsc::Sender<XmppEvent>,
        register: Arc<Notify>,
    ) -> Driver {
        Driver {
            shared: Arc::new(Mutex::new(Shared {
                core,
                streams: HashMap::new(),
                sends: HashMap::new(),
                connects: HashMap::new(),
                ops: Vec::new(),
                backlog: Vec::new(),
                next_token: 0,
                stopped: false,
            })),
            clock: Clock::start(),
            wake: Arc::new(Notify::new()),
            events,
            register,
            overlay,
            settings,
            location_kind,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Feeds the core under the lock and carries out its outputs.
    fn with<R>(&self, f: impl FnOnce(&mut Shared, Instant) -> R) -> (R, After) {
        let now = self.clock.now();
        let mut s = self.lock();
        let before = s.core.poll_timeout();
        let r = f(&mut s, now);
        let (events, register) = s.drain(now);
        let after = s.core.poll_timeout();
        let earlier = after.is_some_and(|a| before.is_none_or(|b| a < b));
        if !s.ops.is_empty() || earlier {
            self.wake.notify_one();
        }
        drop(s);
        if register {
            self.register.notify_one();
        }
        (r, After { events })
    }

    /// Hands the events of an input to the application, waiting for room.
    pub(crate) async fn emit(&self, after: After) {
        for e in after.events {
            if self.events.send(e).await.is_err() {
                return;
            }
        }
    }

    /// Queues a stanza in its recipient's queue at once (its order among the
    /// stanzas to that recipient is fixed here); the outcome comes on the receiver.
    pub(crate) fn submit(&self, stanza: Element) -> oneshot::Receiver<Result<Sent, SendFailure>> {
        let (tx, rx) = oneshot::channel();
        let ((), after) = self.with(|s, now| {
            let token = s.token();
            s.sends.insert(token, tx);
            s.core.send(token, stanza, now);
        });
        self.defer(after);
        rx
    }

    /// Events of an input made where nothing can wait: the driver task hands them
    /// over.
    fn defer(&self, after: After) {
        if after.events.is_empty() {
            return;
        }
        self.lock().backlog.extend(after.events);
        self.wake.notify_one();
    }

    /// Asks for a stream to `route`'s device.
    pub(crate) async fn ensure(
        &self,
        route: &crate::resolve::Route,
    ) -> oneshot::Receiver<Result<Peer, ConnectError>> {
        let (tx, rx) = oneshot::channel();
        let ((), after) = self.with(|s, now| {
            let token = s.token();
            s.connects.insert(token, tx);
            s.core.ensure(token, route, now);
        });
        self.emit(after).await;
        rx
    }

    /// Starts the core's upkeep: the record was just stored.
    pub(crate) async fn start(&self) {
        let ((), after) = self.with(|s, now| s.core.start(now));
        self.emit(after).await;
    }

    /// The record was stored (`ok`) or not, as the core asked.
    pub(crate) async fn registered(&self, ok: bool) {
        let ((), after) = self.with(|s, now| s.core.registered(ok, now));
        self.emit(after).await;
    }

    /// Reads the core.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Device) -> R) -> R {
        f(&self.lock().core)
    }

    /// Closes every stream and fails whatever waits.
    pub(crate) async fn shutdown(&self) {
        let ((), after) = self.with(|s, _| {
            s.stopped = true;
            s.core.shutdown();
        });
        self.emit(after).await;
    }

    pub(crate) async fn stream_up(
        &self,
        id: u64,
        device: Peer,
        addr: std::net::SocketAddr,
        out: Outlet,
    ) -> bool {
        let (up, after) = self.with(|s, now| {
            if s.stopped {
                return false;
            }
            s.streams.insert(id, out);
            s.core.stream_up(id, device, addr, now);
            true
        });
        self.emit(after).await;
        up
    }

    pub(crate) async fn stream_stanza(&self, id: u64, stanza: Element) {
        let ((), after) = self.with(|s, now| s.core.stream_stanza(id, stanza, now));
        self.emit(after).await;
    }

    pub(crate) async fn stream_down(&self, id: u64) {
        let ((), after) = self.with(|s, now| {
            s.streams.remove(&id);
            s.core.stream_down(id, now);
        });
        self.emit(after).await;
    }

    /// A connection from the overlay runtime: its stream task is started.
    async fn accept(&self, s: AppStream) {
        if s.application != XMPP_APPLICATION {
            return;
        }
        let node = s.peer.node_id();
        let (accepted, after) = self.with(|sh, _| {
            if sh.stopped {
                return None;
            }
            sh.core.accept_stream(node, s.requested)
        });
        self.emit(after).await;
        let Some((id, role)) = accepted else {
            tracing::debug!(%node, "a stream for a device nobody waits for; closed");
            return;
        };
        tokio::spawn(stream::run(
            id,
            s.stream,
            s.peer,
            role,
            self.settings.clone(),
            self.clone(),
        ));
    }

    /// The driver task: the core's timer, its fetches and AppAttaches, and the
    /// connections peers open.
    pub(crate) async fn run(self, mut incoming: Option<mpsc::Receiver<AppStream>>) {
        loop {
            let (ops, events, due) = {
                let mut s = self.lock();
                if s.stopped {
                    return;
                }
                let ops = std::mem::take(&mut s.ops);
                let events = std::mem::take(&mut s.backlog);
                let due = s.core.poll_timeout().map(|t| self.clock.deadline(t));
                (ops, events, due)
            };
            for op in ops {
                tokio::spawn(self.clone().carry_out(op));
            }
            self.emit(After { events }).await;
            tokio::select! {
                () = self.wake.notified() => {}
                s = async { incoming.as_mut()?.recv().await }, if incoming.is_some() => match s {
                    Some(s) => self.accept(s).await,
                    None => incoming = None,
                },
                () = sleep_until(due) => {
                    let ((), after) = self.with(|s, now| s.core.handle_timeout(now));
                    self.emit(after).await;
                }
            }
        }
    }

    async fn carry_out(self, op: Op) {
        match op {
            Op::Fetch { id, resource } => {
                let answer = fetch_locations(&self.overlay, self.location_kind, resource).await;
                let ((), after) = self.with(|s, now| s.core.fetched(id, answer, now));
                self.emit(after).await;
            }
            Op::Attach { node, destinations } => {
                match self
                    .overlay
                    .app_attach(destinations, XMPP_APPLICATION)
                    .await
                {
                    Ok(stream) => self.accept(stream).await,
                    Err(why) => {
                        let ((), after) =
                            self.with(|s, now| s.core.attach_failed(node, why.to_string(), now));
                        self.emit(after).await;
                    }
                }
            }
        }
    }
}

/// Every XMPP-LOCATION value at `resource` (all dictionary keys).
pub(crate) async fn fetch_locations(
    overlay: &Overlay,
    kind: KindId,
    resource: xor_overlay::id::ResourceId,
) -> Result<Vec<StoredData>, RequestError> {
    let spec = StoredDataSpecifier {
        kind,
        generation: 0,
        model_specifier: ModelSpecifier::Dictionary(vec![]),
    };
    let ans = overlay.fetch(resource, vec![spec]).await?;
    Ok(ans
        .kind_responses
        .first()
        .map(|k| k.values.parsed().to_vec())
        .unwrap_or_default())
}

/// Why a write did not go into a stream's queue.
enum NotWritten {
    /// The stream is gone: the stanza comes back.
    Closed(Element),
    /// The stream's queue is full.
    Stuck,
}

impl Shared {
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn write(&mut self, w: Write, now: Instant) -> Result<Option<Outlet>, NotWritten> {
        let Some(o) = self.streams.get(&w.stream) else {
            return Err(NotWritten::Closed(w.stanza));
        };
        let queued = o.queued.load(Ordering::Acquire);
        if queued >= STREAM_HARD {
            return Err(NotWritten::Stuck);
        }
        o.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(back)) = o.tx.send(w.stanza) {
            // The stream task ended; its own report may still be on its way.
            self.streams.remove(&w.stream);
            self.core.stream_down(w.stream, now);
            return Err(NotWritten::Closed(back));
        }
        Ok((queued + 1 > STREAM_HIGH).then(|| o.clone()))
    }

    /// Carries out the core's outputs; the events for the application, and whether
    /// the core asked for the location record to be stored again.
    fn drain(&mut self, now: Instant) -> (Vec<XmppEvent>, bool) {
        let mut events = Vec::new();
        let mut register = false;
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Fetch { id, resource } => self.ops.push(Op::Fetch { id, resource }),
                Output::Attach { node, destinations } => {
                    self.ops.push(Op::Attach { node, destinations });
                }
                Output::Write(w) => {
                    let _ = self.write(w, now);
                }
                Output::Dispatch {
                    token,
                    writes,
                    connecting,
                } => self.dispatch(token, writes, connecting, now),
                Output::Close { stream } => {
                    // Dropping the queue's sender makes the stream task close cleanly
                    // once what is queued is written.
                    self.streams.remove(&stream);
                }
                Output::Event(e) => events.push(e),
                Output::Failed { token, failure } => {
                    if let Some(tx) = self.sends.remove(&token) {
                        let _ = tx.send(Err(failure));
                    }
                }
                Output::Connected { token, result } => {
                    if let Some(tx) = self.connects.remove(&token) {
                        let _ = tx.send(result);
                    }
                }
                Output::Register => register = true,
            }
        }
        (events, register)
    }

    fn dispatch(&mut self, token: u64, writes: Vec<Write>, connecting: Vec<NodeId>, now: Instant) {
        let mut report = SendReport {
            connecting,
            ..SendReport::default()
        };
        let mut busy = Vec::new();
        let mut back = None;
        for w in writes {
            let (carbon, device) = (w.carbon, w.device.clone());
            match self.write(w, now) {
                Ok(full) => {
                    if carbon {
                        report.carbons += 1;
                    } else {
                        report.delivered_to.push(device);
                    }
                    busy.extend(full);
                }
                Err(NotWritten::Closed(el)) if !carbon => {
                    back.get_or_insert(el);
                }
                Err(NotWritten::Stuck) if !carbon => {
                    report.failed.push((device, ConnectError::StreamStuck));
                }
                Err(_) => {}
            }
        }
        if report.delivered_to.is_empty()
            && let Some(stanza) = back
        {
            // Every stream it was for closed under it: looked up and tried again
            // (the core's outputs for it are carried out by the caller's loop).
            self.core.send_again(token, stanza, now);
            return;
        }
        if let Some(tx) = self.sends.remove(&token) {
            let _ = tx.send(Ok(Sent { report, busy }));
        }
    }
}
