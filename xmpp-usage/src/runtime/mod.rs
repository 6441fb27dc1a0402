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

mod hub;
mod maintain;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use minidom::Element;
use rand::Rng;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use xor_overlay::id::NodeId;
use xor_overlay::identity::{Credentials, TrustStore};
use xor_overlay::link::LinkConfig;
use xor_overlay::node::{JoinFailure, JoinState, NodeConfig, RequestError};
use xor_overlay::runtime::{AppError, Overlay, StartError};
use xor_overlay::wire::{
    DataValue, Destination, Encode, KindId, ModelSpecifier, StoredDataSpecifier, StoredDataValue,
};

use self::hub::{Hub, HubMsg};
use self::stream::StreamSettings;
use crate::XMPP_APPLICATION;
use crate::fanout::{Delivery, Device};
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
    /// stream goes down is looked for again at once (see `runtime::maintain`), so
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

/// What the node tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum XmppEvent {
    /// A stanza for the application (once per stanza).
    Stanza(Delivery),
    /// A direct stream to a device is up.
    DeviceConnected(Device),
    /// The last stream to a device is gone.
    DeviceDisconnected(Device),
}

/// Where a stanza went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    /// The recipient's devices it was written to.
    pub delivered_to: Vec<Device>,
    /// Devices it could not be written to.
    pub failed: Vec<(Device, ConnectError)>,
    /// `sent` carbons to this user's other devices.
    pub carbons: usize,
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
    #[error("none of {jid}'s devices could be reached: {}", list(why))]
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

/// Why no stream to a device could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The AppAttach or the connection under it failed.
    #[error(transparent)]
    Attach(#[from] AppError),
    /// The device did not open its stream before the hub gave up on it.
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

/// `a; b; c` for an error list.
fn list(errors: &[ConnectError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// A failed send, with the stanza when it was not handed to any stream.
struct Undelivered {
    error: XmppError,
    stanza: Option<Element>,
}

impl Undelivered {
    /// None of `recipient`'s devices took the stanza.
    fn unreachable(
        recipient: &Jid,
        why: Vec<ConnectError>,
        stanza: Option<Element>,
    ) -> Undelivered {
        Undelivered {
            error: XmppError::Unreachable {
                jid: recipient.to_string(),
                why,
            },
            stanza,
        }
    }
}

impl From<XmppError> for Undelivered {
    fn from(error: XmppError) -> Undelivered {
        Undelivered {
            error,
            stanza: None,
        }
    }
}

impl From<ResolveError> for Undelivered {
    fn from(error: ResolveError) -> Undelivered {
        XmppError::from(error).into()
    }
}

/// How long a send waits for room in a stream's queue before giving that device up.
const STREAM_WAIT: Duration = Duration::from_secs(10);
/// How long a send waits for a first connection to a device. A device whose record
/// outlived it (a crash) does not answer: the others get the stanza after this at
/// most, the attempt goes on in the background (the next stanza finds the stream if
/// it came), and a failed device is not tried again for a minute.
pub const FIRST_CONTACT: Duration = Duration::from_secs(5);
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

/// Recipients' routes and when they were looked up.
type RouteCache = std::collections::HashMap<Jid, (Vec<Route>, tokio::time::Instant)>;

/// A running XMPP device.
#[derive(Debug, Clone)]
pub struct XmppNode {
    me: Jid,
    overlay: Overlay,
    hub: mpsc::Sender<HubMsg>,
    events: Arc<Mutex<Option<mpsc::Receiver<XmppEvent>>>>,
    cfg: Arc<XmppConfig>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    resolved: Arc<Mutex<RouteCache>>,
    /// The address this device forwards its user to, if it does.
    forward: Arc<std::sync::Mutex<Option<Jid>>>,
}

impl std::fmt::Debug for HubMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubMsg")
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
        let (hub_tx, hub_rx) = mpsc::channel(1024);
        let (reports_tx, reports_rx) = mpsc::channel(1024);
        let settings = StreamSettings {
            me: me.clone(),
            max_stanza: cfg.max_stanza,
            keepalive: cfg.keepalive,
            handshake_timeout: Duration::from_secs(10),
            max_streams: cfg.max_streams,
        };
        // XEP-0359 ids: the device's Node-ID (unique in the overlay) and a random part,
        // so two devices never mint the same id.
        let node_id = overlay.node_id();
        let seed = (node_id.0 as u64) ^ ((node_id.0 >> 64) as u64) ^ cfg.node.seed;
        let origin = Arc::new(std::sync::Mutex::new(
            <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(seed),
        ));
        let fresh: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
            let mut rng = origin.lock().expect("origin-id rng");
            format!("{node_id}-{:016x}", rng.next_u64())
        });
        let own_lost = Arc::new(tokio::sync::Notify::new());
        let hub = Hub::new(
            me.clone(),
            overlay.clone(),
            settings,
            events_tx,
            reports_tx,
            hub_tx.clone(),
            fresh,
            own_lost.clone(),
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
            hub: hub_tx.clone(),
            events: Arc::new(Mutex::new(Some(events_rx))),
            cfg: cfg.clone(),
            tasks: Arc::new(std::sync::Mutex::new(Vec::new())),
            resolved: Arc::new(Mutex::new(std::collections::HashMap::new())),
            forward: Arc::new(std::sync::Mutex::new(None)),
        };
        let mut tasks = vec![tokio::spawn(hub.run(hub_rx, reports_rx))];
        if let Some(mut streams) = overlay.take_app_streams() {
            let hub = hub_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(s) = streams.recv().await {
                    if hub.send(HubMsg::Stream(s)).await.is_err() {
                        return;
                    }
                }
            }));
        }
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
        tasks.push(tokio::spawn(maintain::maintain(node.clone(), own_lost)));
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

    /// The devices of `jid`, by priority (lowest first).
    pub async fn resolve(&self, jid: &Jid) -> Result<Vec<Route>, ResolveError> {
        let mut r = Resolver::new(jid, self.cfg.max_forwards);
        loop {
            match r.step() {
                Step::Fetch(j, res) => {
                    let spec = StoredDataSpecifier {
                        kind: self.cfg.location_kind,
                        generation: 0,
                        model_specifier: ModelSpecifier::Dictionary(vec![]),
                    };
                    match self.overlay.fetch(res, vec![spec]).await {
                        Ok(ans) => {
                            let values = ans
                                .kind_responses
                                .first()
                                .map(|k| k.values.parsed().to_vec())
                                .unwrap_or_default();
                            r.on_values(&j, &values);
                        }
                        Err(e) => r.on_error(&j, e),
                    }
                }
                Step::Wait => tokio::task::yield_now().await,
                Step::Done(result) => return result,
            }
        }
    }

    /// The routes to `jid`, resolved at most `resolve_cache` ago.
    async fn routes_to(&self, jid: &Jid) -> Result<Vec<Route>, ResolveError> {
        let now = tokio::time::Instant::now();
        if let Some((routes, at)) = self.resolved.lock().await.get(jid)
            && now - *at < self.cfg.resolve_cache
        {
            return Ok(routes.clone());
        }
        let routes = self.resolve(jid).await?;
        self.resolved
            .lock()
            .await
            .insert(jid.clone(), (routes.clone(), now));
        Ok(routes)
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
    /// connection attempts in parallel").
    async fn connect_all(&self, routes: Vec<Route>) -> Vec<Result<Device, ConnectError>> {
        let mut waits = Vec::new();
        for route in routes {
            let node = route.node;
            let (reply, rx) = oneshot::channel();
            if self
                .hub
                .send(HubMsg::Ensure { route, reply })
                .await
                .is_err()
            {
                return vec![Err(ConnectError::Stopped)];
            }
            waits.push((node, rx));
        }
        // In parallel, each bounded by FIRST_CONTACT.
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
    /// with `sent` carbons to this user's other devices. Recipients' devices are looked
    /// up at most every `resolve_cache`; if none of the remembered ones answers, they
    /// are looked up again at once.
    pub async fn send(&self, stanza: Element) -> Result<SendReport, XmppError> {
        match self.send_once(stanza).await {
            Err(Undelivered {
                error: first @ XmppError::Unreachable { .. },
                stanza: Some(stanza),
            }) if self.forget(&stanza).await => {
                // Looked up afresh: if that fails too, the first failure says best
                // why (the second is often a refusal to retry the same dial so soon).
                match self.send_once(stanza).await {
                    Err(Undelivered {
                        error: XmppError::Unreachable { .. },
                        ..
                    }) => Err(first),
                    other => other.map_err(|u| u.error),
                }
            }
            other => other.map_err(|u| u.error),
        }
    }

    /// Drops the remembered routes of the stanza's recipient; whether there were any.
    async fn forget(&self, stanza: &Element) -> bool {
        let Some(to) = stanza::to(stanza) else {
            return false;
        };
        self.resolved.lock().await.remove(&to.bare()).is_some()
    }

    /// One attempt; a stanza that reached no stream comes back with the error (the
    /// caller may look the recipient up again and retry without a copy).
    async fn send_once(&self, stanza: Element) -> Result<SendReport, Undelivered> {
        let to = stanza::to(&stanza).ok_or(XmppError::NoRecipient)?;
        let recipient = to.bare();
        let mut why = Vec::new();
        // Carbons go to this user's other devices over their streams; a device that
        // came up since the last look-up is found here (XEP-0280 through XEP-0415).
        if stanza.name() == "message"
            && let Ok(own) = self.routes_to(&self.me.bare()).await
        {
            // Waited for (at most FIRST_CONTACT), so the sent carbons reach them.
            self.connect_all(self.own_routes(own)).await;
        }
        let mut users = vec![recipient.clone()];
        if recipient != self.me.bare() {
            let routes = self.routes_to(&recipient).await?;
            // A forward (XEP-0415 `xmpp_location_address`) names other users: their
            // devices are the recipients.
            for r in &routes {
                if !users.contains(&r.jid) {
                    users.push(r.jid.clone());
                }
            }
            let tried = routes.len();
            why.extend(
                self.connect_all(routes)
                    .await
                    .into_iter()
                    .filter_map(Result::err),
            );
            if why.len() >= tried {
                return Err(Undelivered::unreachable(&recipient, why, Some(stanza)));
            }
        }
        let (reply, rx) = oneshot::channel();
        self.hub
            .send(HubMsg::Dispatch {
                stanza,
                recipients: users,
                reply,
            })
            .await
            .map_err(|_| XmppError::Stopped)?;
        let mut report = SendReport::default();
        // A copy a stream refused because it closed under the send (a redundant
        // stream the peer or the hub just closed) comes back for the retry.
        let mut returned = None;
        let outgoing = match rx.await.map_err(|_| XmppError::Stopped)? {
            Ok(outgoing) => outgoing,
            Err(stanza) => return Err(Undelivered::unreachable(&recipient, why, Some(stanza))),
        };
        for o in outgoing {
            let written = match tokio::time::timeout(STREAM_WAIT, o.tx.send(o.stanza)).await {
                Ok(Ok(())) => true,
                Ok(Err(mpsc::error::SendError(back))) => {
                    if !o.carbon {
                        returned.get_or_insert(back);
                    }
                    false
                }
                Err(_) => false,
            };
            match (o.carbon, written) {
                (true, ok) => report.carbons += usize::from(ok),
                (false, true) => report.delivered_to.push(o.device),
                (false, false) => report.failed.push((o.device, ConnectError::StreamStuck)),
            }
        }
        if report.delivered_to.is_empty() && recipient != self.me.bare() {
            return Err(Undelivered::unreachable(&recipient, why, returned));
        }
        Ok(report)
    }

    /// The recipients whose devices were looked up, with how many routes each had.
    pub async fn resolved_contacts(&self) -> Vec<(Jid, usize)> {
        let mut out: Vec<(Jid, usize)> = self
            .resolved
            .lock()
            .await
            .iter()
            .filter(|(j, _)| **j != self.me.bare())
            .map(|(j, (routes, _))| (j.clone(), routes.len()))
            .collect();
        out.sort_by_key(|(j, _)| j.to_string());
        out
    }

    /// Devices with an open stream.
    pub async fn devices(&self) -> Vec<Device> {
        let (tx, rx) = oneshot::channel();
        if self.hub.send(HubMsg::Devices(tx)).await.is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }

    /// Devices with an open stream, each with the peer's address on it: its TCP
    /// endpoint, or the far end of the ICE pair (the TURN server's relayed address
    /// when the stream is relayed).
    pub async fn device_paths(&self) -> Vec<(Device, std::net::SocketAddr)> {
        let (tx, rx) = oneshot::channel();
        if self.hub.send(HubMsg::Paths(tx)).await.is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
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
        let (tx, rx) = oneshot::channel();
        if self.hub.send(HubMsg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
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
