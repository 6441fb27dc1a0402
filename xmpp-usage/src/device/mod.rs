//! One device of a user as a sans-IO state machine (XEP-0415 "Sending a stanza",
//! "Establishing a direct connection"): the recipients' routes and their lookups in
//! flight, the AppAttach attempts and the devices held back after a failure, the
//! direct streams that are up, the fan-out and duplicate suppression ([`Router`]),
//! one ordered queue per recipient, and the device's upkeep (`upkeep`: when its
//! location record is stored again, when its user's other devices are looked up).
//!
//! It reads no clock and does no I/O. A driver feeds it
//! - the application's stanzas ([`Device::send`]) and connection requests
//!   ([`Device::ensure`]),
//! - the answers to the fetches and AppAttaches it asked for ([`Device::fetched`],
//!   [`Device::attach_failed`]),
//! - what the direct streams report: negotiated ([`Device::stream_up`]), a stanza
//!   ([`Device::stream_stanza`]), ended ([`Device::stream_down`]),
//! - its start and the stores of its record it asked for ([`Device::start`],
//!   [`Device::registered`]),
//! - and the time ([`Device::handle_timeout`] at [`Device::poll_timeout`]),
//!
//! and carries out what [`Device::poll_output`] returns. The tokio driver is
//! `runtime`; a simulator can drive the same machine over a virtual network.
//!
//! Order (RFC 6120 §10.1): the stanzas to one recipient (bare JID) leave in the order
//! they were given, because only the head of a recipient's queue is worked on: the
//! next one waits until the head is written or has failed.

pub(crate) mod send;
mod streams;
#[cfg(test)]
mod tests;
mod upkeep;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use minidom::Element;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::time::Instant;
use xor_overlay::wire::Destination;

use self::send::{Pending, Resolving};
pub use self::send::{SendError, SendFailure};
use self::streams::{Expected, Reach, StreamEntry};
use self::upkeep::Upkeep;
pub use self::upkeep::{LOST_RETRY, REGISTRATION_RETRY, START_LOOKUPS, UpkeepConfig};
use crate::fanout::{Delivery, Device as Peer, Router};
use crate::jid::Jid;
use crate::resolve::{ResolveError, Route};

/// How long a send waits for a first connection to a device. A device whose record
/// outlived it (a crash) does not answer: the others get the stanza after this at
/// most; the attempt goes on (the next stanza finds the stream if it came), and a
/// failed device is not tried again for [`UNREACHABLE_HOLD`].
pub const FIRST_CONTACT: Duration = Duration::from_secs(5);
/// How long an AppAttach plus the stream negotiation may take before the device
/// counts as unreachable (the overlay runtime gives up before).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a device that could not be reached is not tried again (its record may
/// be stale: a crashed device's location lives until it expires). A stream from it
/// clears this at once.
pub const UNREACHABLE_HOLD: Duration = Duration::from_secs(60);
/// Devices remembered as unreachable, at most.
pub const UNREACHABLE_MAX: usize = 4096;
/// Stanzas kept for one device that is still connecting, at most (see
/// [`Device::send`]); beyond it they are not kept.
pub const LATE_MAX: usize = 256;
/// Recipients with a lookup cached or stanzas queued, at most; beyond it the oldest
/// cached lookups are forgotten (queued stanzas are never dropped).
pub const ROUTES_MAX: usize = 4096;

/// What a device is configured with.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// This device's full JID.
    pub me: Jid,
    /// This device's Node-ID (its own routes are not "other devices").
    pub node: NodeId,
    /// Forwards followed when resolving (XEP-0415 `xmpp_location_address`).
    pub max_forwards: usize,
    /// How long a recipient's looked-up routes are used before looking again.
    pub resolve_cache: Duration,
    /// Other users' devices with an open direct stream, at most: beyond it the least
    /// preferred stream is closed (highest route priority, then least recently used;
    /// never one to this user's own devices).
    pub max_streams: usize,
    /// Seed of the XEP-0359 origin-ids this device mints.
    pub seed: u64,
    /// Whether the core keeps this device's place — the record's refresh and the
    /// lookups of the user's other devices (see `upkeep`) — once [`Device::start`]
    /// is called; `None` leaves both to the driver (the simulator registers by
    /// itself).
    pub upkeep: Option<UpkeepConfig>,
}

/// What the device tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum XmppEvent {
    /// A stanza for the application (once per stanza).
    Stanza(Delivery),
    /// A direct stream to a device is up.
    DeviceConnected(Peer),
    /// The last stream to a device is gone.
    DeviceDisconnected(Peer),
}

/// Where a stanza went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    /// The recipient's devices it was written to.
    pub delivered_to: Vec<Peer>,
    /// Devices it could not be written to.
    pub failed: Vec<(Peer, ConnectError)>,
    /// The recipient's devices still connecting: they get it, first, when their
    /// stream comes up (a bare JID goes as soon as one device is connected).
    pub connecting: Vec<NodeId>,
    /// `sent` carbons to this user's other devices.
    pub carbons: usize,
}

/// Why no stream to a device could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The AppAttach or the connection under it failed.
    #[error("{0}")]
    Attach(String),
    /// The device did not open its stream before the attempt was given up.
    #[error("the device did not connect in time")]
    TimedOut,
    /// The device did not answer within the first-contact wait; the attempt goes on.
    #[error("device {node} did not answer within {waited:?} (still trying)")]
    NoAnswerYet {
        /// The device's Node-ID.
        node: NodeId,
        /// How long the send waited.
        waited: Duration,
    },
    /// The stream to this Node-ID belongs to another user than the route's.
    #[error("device {node} is {found}, not {expected}")]
    WrongUser {
        /// The device's Node-ID.
        node: NodeId,
        /// Whose device its stream is.
        found: Jid,
        /// The user the route was resolved for.
        expected: Jid,
    },
    /// The device failed recently and is not tried again yet.
    #[error("{why} (device {node} not tried again for {left_secs} s)")]
    Held {
        /// The device's Node-ID.
        node: NodeId,
        /// Seconds until it is tried again.
        left_secs: u64,
        /// Why its last attempt failed.
        why: Box<ConnectError>,
    },
    /// The stream exists but its queue stayed full, or it closed under the send.
    #[error("the stream is closed or stuck")]
    StreamStuck,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Which end of a direct XMPP stream this device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRole {
    /// We asked for the connection (AppAttach): we send the first header and expect
    /// a device of `expect`, the user we resolved it under.
    Initiator {
        /// The user.
        expect: Jid,
    },
    /// The peer asked: we answer its header.
    Responder,
}

/// One copy of a stanza to write on a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The stream (see [`Device::accept_stream`]).
    pub stream: u64,
    /// The device at its other end.
    pub device: Peer,
    /// Whether it is a carbon to one of this user's own devices.
    pub carbon: bool,
    /// What to write.
    pub stanza: Element,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Fetch every XMPP-LOCATION entry at `resource`, then call
    /// [`Device::fetched`] with `id`.
    Fetch {
        /// Names the answer.
        id: u64,
        /// Where.
        resource: ResourceId,
    },
    /// AppAttach (application 5222) along `destinations`; the connection comes back
    /// through [`Device::accept_stream`], a failure through [`Device::attach_failed`].
    Attach {
        /// The device.
        node: NodeId,
        /// Its destination list.
        destinations: Vec<Destination>,
    },
    /// The copies of an application stanza (send `token`): write them, and report
    /// to the sender. If none of the copies that are not carbons can be written (their
    /// streams closed meanwhile), give the stanza back with [`Device::send_again`].
    Dispatch {
        /// The send.
        token: u64,
        /// The copies.
        writes: Vec<Write>,
        /// The recipient's devices still connecting: they get it when their stream
        /// comes up.
        connecting: Vec<NodeId>,
    },
    /// A stanza for a stream (a carbon of something received).
    Write(Write),
    /// Close this stream cleanly (redundant, or shutting down).
    Close {
        /// The stream.
        stream: u64,
    },
    /// Tell the application.
    Event(XmppEvent),
    /// Send `token` failed; the stanza comes back with the reason.
    Failed {
        /// The send.
        token: u64,
        /// Why, and the stanza.
        failure: SendFailure,
    },
    /// The connection asked for with [`Device::ensure`] under `token`.
    Connected {
        /// The request.
        token: u64,
        /// The device, or why not.
        result: Result<Peer, ConnectError>,
    },
    /// Store this device's location record again (with [`DeviceConfig::upkeep`]),
    /// then call [`Device::registered`].
    Register,
}

/// The device's state machine (see the module docs).
#[derive(Debug)]
pub struct Device {
    cfg: DeviceConfig,
    router: Router,
    rng: ChaCha12Rng,
    /// Recipients' routes and when they were looked up.
    routes: HashMap<Jid, (Vec<Route>, Instant)>,
    /// Lookups in flight, by the JID looked up.
    resolving: HashMap<Jid, Resolving>,
    /// Fetches in flight: id → (the lookup's JID, the JID fetched).
    fetches: HashMap<u64, (Jid, Jid)>,
    /// Lookups that failed since the queues were last worked on.
    failed_lookups: HashMap<Jid, ResolveError>,
    /// Attempts that failed since the queues were last worked on, and why.
    failed_connects: HashMap<NodeId, ConnectError>,
    /// The stanzas waiting, in order, per recipient (bare JID).
    queues: HashMap<Jid, VecDeque<Pending>>,
    streams: HashMap<NodeId, Vec<StreamEntry>>,
    by_id: HashMap<u64, NodeId>,
    /// Streams this device closed, until they end: their device.
    closing: HashMap<u64, Peer>,
    /// Streams accepted and still negotiating.
    negotiating: HashMap<u64, NodeId>,
    expected: HashMap<NodeId, Expected>,
    /// Copies for devices that were still connecting when their stanza was sent:
    /// written when the stream comes up, dropped if it does not.
    late: HashMap<NodeId, Vec<Element>>,
    /// Devices whose last attempt failed: until when, and why.
    unreachable: HashMap<NodeId, (Instant, ConnectError)>,
    /// The record's refresh and the lookups of own devices, once started.
    upkeep: Option<Upkeep>,
    next_id: u64,
    out: VecDeque<Output>,
}

impl Device {
    /// A device with nothing connected and nothing looked up.
    pub fn new(cfg: DeviceConfig) -> Device {
        Device {
            router: Router::new(cfg.me.clone()),
            rng: ChaCha12Rng::seed_from_u64(cfg.seed),
            cfg,
            routes: HashMap::new(),
            resolving: HashMap::new(),
            fetches: HashMap::new(),
            failed_lookups: HashMap::new(),
            failed_connects: HashMap::new(),
            queues: HashMap::new(),
            streams: HashMap::new(),
            by_id: HashMap::new(),
            negotiating: HashMap::new(),
            closing: HashMap::new(),
            expected: HashMap::new(),
            late: HashMap::new(),
            unreachable: HashMap::new(),
            upkeep: None,
            next_id: 0,
            out: VecDeque::new(),
        }
    }

    /// This device's full JID.
    pub fn me(&self) -> &Jid {
        &self.cfg.me
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Device::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connects = self.expected.values().map(|e| e.deadline);
        let sends = self
            .queues
            .values()
            .filter_map(|q| q.front())
            .filter_map(Pending::deadline);
        let upkeep = self.upkeep.as_ref().and_then(Upkeep::due);
        connects.chain(sends).chain(upkeep).min()
    }

    /// Time has come to `now`: attempts that did not connect are given up, sends
    /// that waited long enough for first contact go on.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<NodeId> = {
            let mut l: Vec<NodeId> = self
                .expected
                .iter()
                .filter(|(_, e)| e.deadline <= now)
                .map(|(n, _)| *n)
                .collect();
            l.sort();
            l
        };
        for node in late {
            self.give_up(node, ConnectError::TimedOut, now);
        }
        self.unreachable.retain(|_, (until, _)| *until > now);
        self.upkeep_timeout(now);
        self.advance_all(now);
    }

    /// The recipients whose devices were looked up, with how many routes each had.
    pub fn resolved_contacts(&self) -> Vec<(Jid, usize)> {
        let me = self.cfg.me.bare();
        let mut out: Vec<(Jid, usize)> = self
            .routes
            .iter()
            .filter(|(j, _)| **j != me)
            .map(|(j, (routes, _))| (j.clone(), routes.len()))
            .collect();
        out.sort_by_key(|(j, _)| j.to_string());
        out
    }

    /// Stanzas waiting for their recipient's devices, all recipients together.
    pub fn queued(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// An XEP-0359 origin-id: the device's Node-ID (unique in the overlay) and a
    /// random part, so two devices never mint the same id.
    fn origin_id(node: NodeId, rng: &mut ChaCha12Rng) -> String {
        format!("{node}-{:016x}", rng.next_u64())
    }

    fn event(&mut self, e: XmppEvent) {
        self.out.push_back(Output::Event(e));
    }
}
