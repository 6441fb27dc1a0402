//! The XMPP node a game client links, or the daemon runs: it joins the overlay,
//! registers the device's location, keeps streams to the user's other devices,
//! resolves recipients, opens direct streams and fans stanzas out.
//!
//! ```no_run
//! # async fn demo(creds: xor_overlay::identity::Credentials, trust: xor_overlay::identity::TrustStore) -> Result<(), Box<dyn std::error::Error>> {
//! use xor_xmpp::runtime::{XmppConfig, XmppEvent, XmppNode};
//! use xor_xmpp::{Jid, stanza};
//!
//! let jid = Jid::parse("romeo@montague.lit")?;
//! let mut config = XmppConfig::new("chat.example", creds, trust, jid, "phone");
//! config.node.bootstrap = vec!["192.0.2.1:6084".parse()?];
//! let node = XmppNode::start(config).await?;
//! let mut events = node.events().await.expect("taken once");
//! node.send(stanza::chat(&Jid::parse("juliet@capulet.lit")?, "wherefore art thou?")).await?;
//! while let Some(XmppEvent::Stanza(d)) = events.recv().await {
//!     println!("{:?}", stanza::body(&d.stanza));
//! }
//! # Ok(()) }
//! ```

mod driver;
mod maintain;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use minidom::Element;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use xor_overlay::identity::{Credentials, TrustStore};
use xor_overlay::link::LinkConfig;
use xor_overlay::node::{JoinFailure, JoinState, NodeConfig, RequestError};
use xor_overlay::runtime::{Overlay, StartError};
use xor_overlay::wire::{DataValue, Destination, Encode, KindId, StoredDataValue};

use self::driver::Driver;
use self::stream::StreamSettings;
use crate::XMPP_APPLICATION;
use crate::device::SendError;
pub use crate::device::{ConnectError, FIRST_CONTACT, SendReport, XmppEvent};
use crate::fanout::Device;
use crate::jid::Jid;
use crate::kind::{XMPP_LOCATION, resource_of, xmpp_location_kind};
use crate::location::XmppLocation;
use crate::resolve::{ResolveError, Resolver, Route, Step};
use crate::stanza;

/// Everything an XMPP node needs.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// The overlay node (credentials, trust, bootstrap, timers, Kinds).
    pub node: NodeConfig,
    /// Overlay link parameters.
    pub link: LinkConfig,
    /// The user's bare JID; the certificate's `id-on-xmppAddr` must carry it.
    pub jid: Jid,
    /// This device's resource.
    pub resource: String,
    /// This device's route priority (XEP-0415: lower is tried first).
    pub priority: u8,
    /// Where the direct-stream listener binds (port 0 picks one).
    pub stream_listen: SocketAddr,
    /// The XMPP-LOCATION Kind-ID (the XEP's 0x5 unless the overlay says otherwise).
    pub location_kind: KindId,
    /// Lifetime of the location record; it is refreshed at 80 % of it.
    pub registration_lifetime: Duration,
    /// How often the user's other devices are looked up when nothing prompts it.
    /// A device that comes online connects to the others itself, and one whose
    /// stream goes down is looked for again soon (see `device::upkeep`), so
    /// this only catches what those miss; an idle device stays quiet in between.
    pub own_devices_refresh: Duration,
    /// Largest stanza accepted on a stream.
    pub max_stanza: usize,
    /// Other users' devices with an open direct stream, at most. Beyond it the stream
    /// to a device of another user that is least preferred (highest route priority,
    /// XEP-0415: only those "MUST be considered for closing as redundant") and then
    /// least recently used is closed; the user's own devices are never closed.
    pub max_streams: usize,
    /// Whitespace keep-alive interval; a stream silent for three is closed.
    pub keepalive: Duration,
    /// Forwards followed when resolving.
    pub max_forwards: usize,
    /// How long `start` waits to join the overlay.
    pub join_timeout: Duration,
    /// How long a resolved recipient's devices are reused before looking up again.
    pub resolve_cache: Duration,
}

impl XmppConfig {
    /// Defaults for a device of `jid` with `resource`.
    pub fn new(
        overlay: &str,
        credentials: Credentials,
        trust: TrustStore,
        jid: Jid,
        resource: impl Into<String>,
    ) -> XmppConfig {
        let mut node = NodeConfig::new(overlay, credentials, trust);
        node.listen_addr = Some(SocketAddr::from(([0, 0, 0, 0], 0)));
        XmppConfig {
            node,
            link: LinkConfig::default(),
            jid: jid.bare(),
            resource: resource.into(),
            priority: 10,
            stream_listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            location_kind: XMPP_LOCATION,
            registration_lifetime: Duration::from_secs(3600),
            own_devices_refresh: Duration::from_secs(600),
            max_stanza: 256 * 1024,
            max_streams: 256,
            keepalive: Duration::from_secs(30),
            max_forwards: 4,
            join_timeout: Duration::from_secs(30),
            resolve_cache: Duration::from_secs(30),
        }
    }
}

/// Why the node could not start or a stanza could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum XmppError {
    /// The overlay node did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The certificate does not carry the configured JID.
    #[error("the certificate does not carry {0} as id-on-xmppAddr")]
    WrongIdentity(String),
    /// The node could not join the overlay.
    #[error("could not join the overlay (tried for up to {timeout:?}): {}", why.as_ref().map_or_else(|| "no bootstrap node answered".to_owned(), ToString::to_string))]
    NotJoined {
        /// How long it could try.
        timeout: Duration,
        /// Why the last attempt failed.
        why: Option<JoinFailure>,
    },
    /// Binding the stream listener failed.
    #[error("cannot listen for direct streams on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The stanza has no (valid) `to`.
    #[error("the stanza has no valid 'to'")]
    NoRecipient,
    /// The recipient is not registered.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// None of the recipient's devices could be reached.
    #[error(
        "none of {jid}'s devices could be reached: {}",
        crate::device::send::list(why)
    )]
    Unreachable {
        /// The recipient.
        jid: String,
        /// What went wrong with each device tried.
        why: Vec<ConnectError>,
    },
    /// Storing the location failed.
    #[error("registration failed: {0}")]
    Register(RequestError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Attempts at the first registration, and the delay after the first failure (it
/// grows by itself each time).
const REGISTER_ATTEMPTS: u32 = 5;
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// Whether a failed store may succeed once the ring has settled: no answer, no route
/// yet, or a forwarding loop between nodes whose tables still disagree.
fn transient(e: &XmppError) -> bool {
    match e {
        XmppError::Register(RequestError::Timeout(_) | RequestError::NoRoute) => true,
        XmppError::Register(RequestError::Error(err)) => matches!(
            err.code,
            xor_overlay::wire::ErrorCode::InvalidMessage
                | xor_overlay::wire::ErrorCode::NotFound
                | xor_overlay::wire::ErrorCode::InProgress
        ),
        _ => false,
    }
}

/// A running XMPP device.
#[derive(Clone)]
pub struct XmppNode {
    me: Jid,
    overlay: Overlay,
    driver: Driver,
    events: Arc<Mutex<Option<mpsc::Receiver<XmppEvent>>>>,
    cfg: Arc<XmppConfig>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// The address this device forwards its user to, if it does.
    forward: Arc<std::sync::Mutex<Option<Jid>>>,
}

impl std::fmt::Debug for XmppNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppNode").field("me", &self.me).finish()
    }
}

impl XmppNode {
    /// Starts the device: joins the overlay, registers its location, connects to the
    /// user's other devices.
    pub async fn start(cfg: XmppConfig) -> Result<XmppNode, XmppError> {
        Self::start_inner(cfg).await
    }

    async fn start_inner(mut cfg: XmppConfig) -> Result<XmppNode, XmppError> {
        let identity = cfg.node.credentials.identity().clone();
        let vouched = identity
            .xmpp_addrs
            .iter()
            .filter_map(|a| Jid::parse(a).ok())
            .any(|j| j.bare() == cfg.jid);
        if !vouched {
            return Err(XmppError::WrongIdentity(cfg.jid.to_string()));
        }
        // The runtime listens for direct streams and offers its addresses in AppAttach.
        cfg.node.applications = vec![(XMPP_APPLICATION, cfg.stream_listen)];
        if cfg.node.kinds.get(cfg.location_kind).is_none() {
            cfg.node
                .kinds
                .insert(xmpp_location_kind(cfg.location_kind, 64, 1024));
        }
        let stream_listen = cfg.stream_listen;
        let overlay = Overlay::start(cfg.node.clone(), cfg.link.clone())
            .await
            .map_err(|e| match e {
                StartError::Listen { addr, source } if addr == stream_listen.to_string() => {
                    XmppError::Listen {
                        addr: stream_listen,
                        source,
                    }
                }
                other => XmppError::Start(other),
            })?;
        if let Err(why) = overlay.wait_joined(cfg.join_timeout).await {
            overlay.kill();
            return Err(XmppError::NotJoined {
                timeout: cfg.join_timeout,
                why,
            });
        }
        let me = cfg.jid.with_resource(cfg.resource.clone());
        let (events_tx, events_rx) = mpsc::channel(1024);
        let settings = StreamSettings {
            me: me.clone(),
            max_stanza: cfg.max_stanza,
            keepalive: cfg.keepalive,
            handshake_timeout: Duration::from_secs(10),
        };
        let node_id = overlay.node_id();
        let core = crate::device::Device::new(crate::device::DeviceConfig {
            me: me.clone(),
            node: node_id,
            max_forwards: cfg.max_forwards,
            resolve_cache: cfg.resolve_cache,
            max_streams: cfg.max_streams,
            seed: (node_id.0 as u64) ^ ((node_id.0 >> 64) as u64) ^ cfg.node.seed,
            upkeep: Some(crate::device::UpkeepConfig {
                registration_lifetime: cfg.registration_lifetime,
                own_devices_refresh: cfg.own_devices_refresh,
            }),
        });
        let register = Arc::new(tokio::sync::Notify::new());
        let driver = Driver::new(
            core,
            overlay.clone(),
            settings,
            cfg.location_kind,
            events_tx,
            register.clone(),
        );
        cfg.node.listen_addr = Some(overlay.local_addr());
        cfg.node.applications = overlay
            .app_addresses(XMPP_APPLICATION)
            .into_iter()
            .map(|a| (XMPP_APPLICATION, a))
            .collect();
        let cfg = Arc::new(cfg);
        let node = XmppNode {
            me,
            overlay: overlay.clone(),
            driver: driver.clone(),
            events: Arc::new(Mutex::new(Some(events_rx))),
            cfg: cfg.clone(),
            tasks: Arc::new(std::sync::Mutex::new(Vec::new())),
            forward: Arc::new(std::sync::Mutex::new(None)),
        };
        let mut tasks = vec![tokio::spawn(driver.run(overlay.take_app_streams()))];
        // Right after a join the ring may still be settling (several nodes joining at
        // once disagree for a moment on who is responsible): try a few times.
        let mut attempt = 1;
        while let Err(e) = node.register(node.own_location()).await {
            if attempt >= REGISTER_ATTEMPTS || !transient(&e) {
                node.kill();
                return Err(e);
            }
            tracing::debug!(error = %e, attempt, "registration failed; retrying");
            tokio::time::sleep(REGISTER_RETRY * attempt).await;
            attempt += 1;
        }
        tasks.push(tokio::spawn(maintain::registrations(
            node.clone(),
            register,
        )));
        node.driver.start().await;
        tasks.push(tokio::spawn(maintain::follow_client_peer(node.clone())));
        if let Ok(mut t) = node.tasks.lock() {
            t.extend(tasks);
        }
        Ok(node)
    }

    /// This device's full JID.
    pub fn jid(&self) -> &Jid {
        &self.me
    }

    /// The overlay node underneath.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The incoming stanzas and device events (the first caller takes them).
    pub async fn events(&self) -> Option<mpsc::Receiver<XmppEvent>> {
        self.events.lock().await.take()
    }

    /// This device's route: to its Node-ID, through its peer when it is a client
    /// (RFC 6940 §4.2.1: "the Destination List needed to reach the client needs to be
    /// learnable via other mechanisms, such as being stored in the overlay by a
    /// usage"; XEP-0415's `destination_list`).
    pub fn own_location(&self) -> XmppLocation {
        if let Some(to) = self.forward.lock().ok().and_then(|f| f.clone()) {
            return XmppLocation::Address(to.bare_str());
        }
        let me = Destination::Node(self.overlay.node_id());
        let destinations = match self.overlay.state() {
            JoinState::Client { peer } => vec![Destination::Node(peer), me],
            _ => vec![me],
        };
        XmppLocation::Route {
            priority: self.cfg.priority,
            destinations,
        }
    }

    /// Stores this device's location record (XMPP-LOCATION, keyed by its Node-ID).
    async fn register(&self, location: XmppLocation) -> Result<(), XmppError> {
        let value = location
            .to_bytes()
            .map_err(|e| XmppError::Register(RequestError::Invalid(e.to_string())))?;
        self.store_location(DataValue::new(value)).await
    }

    async fn store_location(&self, value: DataValue) -> Result<(), XmppError> {
        let key = Bytes::copy_from_slice(&self.overlay.node_id().to_be_bytes());
        let entry = StoredDataValue::Dictionary { key, value };
        let resource = resource_of(&self.me);
        self.overlay
            .store(
                resource,
                vec![(self.cfg.location_kind, vec![entry])],
                self.cfg.registration_lifetime,
            )
            .await
            .map(|_| ())
            .map_err(XmppError::Register)
    }

    /// Forwards this user to another address from this device (XEP-0415: "in order to
    /// contact me, dereference this XMPP address"), replacing the device's route.
    /// The forward is kept: the periodic refresh stores it again, not a route.
    pub async fn register_forward(&self, to: &Jid) -> Result<(), XmppError> {
        if let Ok(mut f) = self.forward.lock() {
            *f = Some(to.bare());
        }
        self.register(self.own_location()).await
    }

    /// Stops forwarding: this device's route is stored again.
    pub async fn clear_forward(&self) -> Result<(), XmppError> {
        if let Ok(mut f) = self.forward.lock() {
            *f = None;
        }
        self.register(self.own_location()).await
    }

    /// The devices of `jid`, by priority (lowest first), looked up now.
    pub async fn resolve(&self, jid: &Jid) -> Result<Vec<Route>, ResolveError> {
        let mut r = Resolver::new(jid, self.cfg.max_forwards);
        loop {
            match r.step() {
                Step::Fetch(j, res) => {
                    match driver::fetch_locations(&self.overlay, self.cfg.location_kind, res).await
                    {
                        Ok(values) => r.on_values(&j, &values),
                        Err(e) => r.on_error(&j, e),
                    }
                }
                Step::Wait => tokio::task::yield_now().await,
                Step::Done(result) => return result,
            }
        }
    }

    /// Opens (or finds) a direct stream to the device of `route`.
    pub async fn connect(&self, route: Route) -> Result<Device, ConnectError> {
        self.connect_all(vec![route])
            .await
            .pop()
            .unwrap_or(Err(ConnectError::Stopped))
    }

    /// An address of the direct-stream listener (what AppAttach offers first).
    pub fn stream_addr(&self) -> Option<SocketAddr> {
        self.cfg.node.applications.first().map(|(_, a)| *a)
    }

    /// Connects to every route in parallel (XEP-0415: "It is RECOMMENDED to perform
    /// connection attempts in parallel"), waiting at most [`FIRST_CONTACT`].
    async fn connect_all(&self, routes: Vec<Route>) -> Vec<Result<Device, ConnectError>> {
        let mut waits = Vec::new();
        for route in routes {
            waits.push((route.node, self.driver.ensure(&route).await));
        }
        let deadline = tokio::time::Instant::now() + FIRST_CONTACT;
        let mut out = Vec::new();
        for (node, w) in waits {
            out.push(match tokio::time::timeout_at(deadline, w).await {
                Ok(r) => r.unwrap_or(Err(ConnectError::Stopped)),
                Err(_) => Err(ConnectError::NoAnswerYet {
                    node,
                    waited: FIRST_CONTACT,
                }),
            });
        }
        out
    }

    /// Sends a stanza: to every device of a bare JID, or to one device of a full JID,
    /// with `sent` carbons to this user's other devices (see [`crate::device`]).
    /// Returns once the stanza is queued on the streams, after waiting (at most
    /// 10 s) while one of them is full.
    pub async fn send(&self, stanza: Element) -> Result<SendReport, XmppError> {
        self.submit(stanza).outcome().await
    }

    /// Puts a stanza in its recipient's queue now, without waiting: stanzas to one
    /// recipient leave in the order they were submitted. The [`Submission`] tells
    /// how it went.
    pub fn submit(&self, stanza: Element) -> Submission {
        let recipient = stanza::to(&stanza).map(|t| t.bare());
        Submission {
            to_self: recipient.as_ref() == Some(&self.me.bare()),
            recipient,
            rx: Some(self.driver.submit(stanza)),
            got: None,
        }
    }

    /// The recipients whose devices were looked up, with how many routes each had.
    pub async fn resolved_contacts(&self) -> Vec<(Jid, usize)> {
        self.driver.read(crate::device::Device::resolved_contacts)
    }

    /// Devices with an open stream.
    pub async fn devices(&self) -> Vec<Device> {
        self.driver.read(crate::device::Device::devices)
    }

    /// Devices with an open stream, each with the peer's address on it: its TCP
    /// endpoint, or the far end of the ICE pair (the TURN server's relayed address
    /// when the stream is relayed).
    pub async fn device_paths(&self) -> Vec<(Device, std::net::SocketAddr)> {
        self.driver.read(crate::device::Device::device_paths)
    }

    /// This user's other devices among `routes` (a forward from this user's JID leads
    /// to someone else's devices, which are not "own").
    fn own_routes(&self, routes: Vec<Route>) -> Vec<Route> {
        let me = self.overlay.node_id();
        let bare = self.me.bare();
        routes
            .into_iter()
            .filter(|r| r.node != me && r.jid == bare)
            .collect()
    }

    /// Connects to this user's other devices now; whether every registered one is
    /// connected (none registered counts as all; a failed lookup as not).
    pub async fn connect_own_devices(&self) -> bool {
        match self.resolve(&self.me.bare()).await {
            Ok(routes) => self
                .connect_all(self.own_routes(routes))
                .await
                .iter()
                .all(Result::is_ok),
            Err(ResolveError::NotFound(_)) => true,
            Err(_) => false,
        }
    }

    /// Removes this device's location (stores a nonexistent value for the record's
    /// lifetime, RFC 6940 §7.4.1.3), closes the streams and leaves the overlay.
    pub async fn shutdown(&self) {
        let _ = self.store_location(DataValue::absent()).await;
        self.driver.shutdown().await;
        self.overlay.leave().await;
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
    }

    /// Stops at once, as if the process died (for tests).
    pub fn kill(&self) {
        self.overlay.kill();
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
    }
}

/// A stanza given to [`XmppNode::submit`].
#[derive(Debug)]
pub struct Submission {
    recipient: Option<Jid>,
    to_self: bool,
    rx: Option<tokio::sync::oneshot::Receiver<Result<driver::Sent, crate::device::SendFailure>>>,
    got: Option<Result<driver::Sent, crate::device::SendFailure>>,
}

impl Submission {
    /// Whether the outcome is known already: the stanza was written to the streams
    /// at once (its recipient's devices were connected) or failed at once.
    pub fn decided(&mut self) -> bool {
        if self.got.is_none()
            && let Some(rx) = self.rx.as_mut()
            && let Ok(r) = rx.try_recv()
        {
            self.got = Some(r);
        }
        self.got.is_some()
    }

    /// How it went: where the stanza was written, or why it was not. Waits (at most
    /// 10 s) while a stream it was written to is full.
    pub async fn outcome(self) -> Result<SendReport, XmppError> {
        self.finish(true).await
    }

    /// [`Submission::outcome`] without waiting for full streams (for code that
    /// must not be slowed down by a recipient, such as answering what arrived).
    pub async fn outcome_without_waiting(self) -> Result<SendReport, XmppError> {
        self.finish(false).await
    }

    async fn finish(mut self, wait: bool) -> Result<SendReport, XmppError> {
        let got = match (self.got.take(), self.rx.take()) {
            (Some(r), _) => r,
            (None, Some(rx)) => rx.await.map_err(|_| XmppError::Stopped)?,
            (None, None) => return Err(XmppError::Stopped),
        };
        let sent = got.map_err(|f| match f.error {
            SendError::NoRecipient => XmppError::NoRecipient,
            SendError::Resolve(e) => XmppError::Resolve(e),
            SendError::Unreachable { jid, why } => XmppError::Unreachable { jid, why },
            SendError::Stopped => XmppError::Stopped,
        })?;
        if wait {
            sent.room().await;
        }
        let report = sent.report;
        if report.delivered_to.is_empty() && !self.to_self && !report.failed.is_empty() {
            return Err(XmppError::Unreachable {
                jid: self.recipient.map(|r| r.to_string()).unwrap_or_default(),
                why: report.failed.into_iter().map(|(_, e)| e).collect(),
            });
        }
        Ok(report)
    }
}
