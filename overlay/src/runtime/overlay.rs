//! [`Overlay`]: the public async API of a running node. Every call is a command to the
//! node's driver task ([`super::driver`]); the handle is cheap to clone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::addresses::host_addresses;
use super::apps::{APP_STREAMS, AppError, AppStream};
use super::clock::Clock;
use super::driver::{
    Command, Driver, LEAVE_TIMEOUT, Listeners, Neighbors, Outputs, StartError, os_seed,
};
use super::link::Listener;
use super::tls::TlsContext;
use super::turn_server::{RelayLimits, RelayServer};
use super::turn_service::{self, Calls, LinkSecrets, Relays};
use crate::id::{NodeId, ResourceId};
use crate::link::LinkConfig;
use crate::node::config::{IceSettings, ServeRelay};
use crate::node::{
    Answer, ConfigChange, JoinFailure, JoinState, Node, NodeConfig, RequestError, RequestId,
};
use crate::time::Instant;
use crate::wire::{
    Body, Destination, FetchAns, KindId, RouteQueryReq, StoreAns, StoredDataSpecifier,
    StoredDataValue,
};

const COMMANDS: usize = 256;

/// A running overlay node: the public async API.
#[derive(Debug, Clone)]
pub struct Overlay {
    node_id: NodeId,
    local_addr: SocketAddr,
    advertised: Vec<SocketAddr>,
    applications: Vec<(u16, SocketAddr)>,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<JoinState>,
    join_error: watch::Receiver<Option<JoinFailure>>,
    task: Arc<JoinHandle<()>>,
    apps: Arc<std::sync::Mutex<Option<mpsc::Receiver<AppStream>>>>,
    config: watch::Receiver<(u16, Option<Bytes>)>,
    relays: Arc<Relays>,
    relay: Option<Arc<RelayServer>>,
}

impl Overlay {
    /// Binds the overlay listener (`config.listen_addr`; port 0 picks one) and one
    /// listener per application in `config.applications`, offers their addresses as
    /// candidates (every interface's for a wildcard: [`host_addresses`]), starts the
    /// driver task and begins joining.
    pub async fn start(mut config: NodeConfig, link: LinkConfig) -> Result<Overlay, StartError> {
        let requested = config
            .listen_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let tls = TlsContext::new(config.credentials.clone(), config.trust.clone())?;
        let bind = |addr: SocketAddr| {
            let tls = tls.clone();
            async move {
                Listener::bind(addr, tls)
                    .await
                    .map_err(|source| StartError::Listen {
                        addr: addr.to_string(),
                        source,
                    })
            }
        };
        let listener = bind(requested).await?;
        let local_addr = listener.local_addr();
        config.listen_addr = Some(local_addr);
        if config.advertise.is_empty() {
            config.advertise = host_addresses(local_addr);
        }
        let mut app_listeners = Vec::new();
        let mut applications = Vec::new();
        for (app, addr) in std::mem::take(&mut config.applications) {
            let l = bind(addr).await?;
            applications.extend(host_addresses(l.local_addr()).into_iter().map(|a| (app, a)));
            app_listeners.push(l);
        }
        config.applications = applications.clone();
        let advertised = config.advertise.clone();
        let clock = Clock::start();
        if config.seed == 0 {
            config.seed = os_seed();
        }
        if config.epoch_unix_ms == 0 {
            config.epoch_unix_ms = clock.start_unix_ms();
        }
        let (config_tx, config_rx) = watch::channel((
            config.configuration_sequence,
            config.config_document.clone(),
        ));
        // An overlay whose configuration lacks TURN-SERVICE has no relays to record
        // or find (§9).
        let turn_service = config.kinds.get(crate::wire::turn::TURN_SERVICE).is_some();
        let serve = config.ice.serve.clone();
        let turn_density = config.turn_density;
        let ice = config.ice.clone();
        let node = Node::new(config, clock.now());
        let node_id = node.node_id();
        let relays = Arc::new(Relays::new(
            ice.clone(),
            node_id,
            Arc::new(LinkSecrets::default()),
            turn_service,
        ));
        let relay = match serve {
            Some(s) => serve_relay(&s, &advertised, &ice, &relays).await?,
            None => None,
        };
        let (commands, command_rx) = mpsc::channel(COMMANDS);
        let (state_tx, state) = watch::channel(JoinState::Idle);
        let (join_error_tx, join_error) = watch::channel(None);
        let (apps_tx, apps_rx) = mpsc::channel(APP_STREAMS);
        let outputs = Outputs {
            state: state_tx,
            join_error: join_error_tx,
            config: config_tx,
            app_streams: apps_tx,
        };
        let listeners = Listeners {
            overlay: listener,
            apps: app_listeners,
        };
        let driver = Driver::new(node, tls, listeners, clock, link, outputs, relays.clone());
        let span = tracing::info_span!("node", id = %node_id);
        let task = tokio::spawn(driver.run(command_rx).instrument(span));
        let apps = Arc::new(std::sync::Mutex::new(Some(apps_rx)));
        let calls = Calls {
            commands: commands.downgrade(),
            state: state.clone(),
        };
        if let Some(r) = relay.as_ref().filter(|_| turn_service) {
            let addr = r.public_addr();
            tokio::spawn(turn_service::register(
                calls.clone(),
                node_id,
                addr,
                turn_density,
            ));
        } else if relay.is_some() {
            tracing::warn!("the overlay has no TURN-SERVICE Kind: the relay is not recorded");
        }
        if turn_service {
            tokio::spawn(turn_service::discover(calls, relays.clone()));
        }
        Ok(Overlay {
            node_id,
            local_addr,
            advertised,
            applications,
            commands,
            state,
            join_error,
            task: Arc::new(task),
            apps,
            config: config_rx,
            relays,
            relay,
        })
    }

    /// Application streams this node did not ask for, or got twice (once: the first
    /// caller takes them): see [`super::apps`].
    pub fn take_app_streams(&self) -> Option<mpsc::Receiver<AppStream>> {
        self.apps.lock().ok().and_then(|mut a| a.take())
    }

    /// A direct connection for `application` to the node at the end of
    /// `destination` (which must be a Node-ID): an AppAttach (§6.5.2), then the
    /// peer's connection to this node's application listener, or ours to it, or
    /// (with STUN or TURN servers configured) an ICE pair between the two.
    pub async fn app_attach(
        &self,
        destination: Vec<Destination>,
        application: u16,
    ) -> Result<AppStream, AppError> {
        let settings = self.relays.settings_when_ready().await;
        let ice = if settings.enabled() {
            match super::ice::gather(&settings, true).await {
                Ok(g) => Some(g),
                Err(why) => {
                    tracing::debug!(%why, "no ICE candidates; TCP only");
                    None
                }
            }
        } else {
            None
        };
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::AppAttach {
                destination,
                application,
                ice,
                reply,
            })
            .await
            .map_err(|_| AppError::Stopped)?;
        rx.await.unwrap_or(Err(AppError::Stopped))
    }

    /// Where this node's overlay listener can be reached (its host candidates).
    pub fn advertised(&self) -> &[SocketAddr] {
        &self.advertised
    }

    /// Where the listener of `application` can be reached.
    pub fn app_addresses(&self, application: u16) -> Vec<SocketAddr> {
        self.applications
            .iter()
            .filter(|(a, _)| *a == application)
            .map(|(_, addr)| *addr)
            .collect()
    }

    /// Why the last join attempt failed, while the node has not joined.
    pub fn join_error(&self) -> Option<JoinFailure> {
        self.join_error.borrow().clone()
    }

    /// Waits until the node has joined (as a peer or a client), or a join attempt failed for a reason that
    /// trying again will not cure ([`JoinFailure::Unlinkable`]), or `timeout` passed
    /// (then the last failure, if any, says why).
    pub async fn wait_joined(&self, timeout: Duration) -> Result<(), Option<JoinFailure>> {
        let mut state = self.state.clone();
        let mut errors = self.join_error.clone();
        let wait = async {
            loop {
                if state.borrow_and_update().in_overlay() {
                    return Ok(());
                }
                if let Some(f @ JoinFailure::Unlinkable(_)) = errors.borrow_and_update().clone() {
                    return Err(Some(f));
                }
                tokio::select! {
                    r = state.changed() => if r.is_err() { return Err(None) },
                    r = errors.changed() => if r.is_err() { return Err(None) },
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(self.join_error()),
        }
    }

    /// This node's Node-ID.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current join state.
    pub fn state(&self) -> JoinState {
        *self.state.borrow()
    }

    /// The join state as it changes (a client's peer included).
    pub fn state_watch(&self) -> watch::Receiver<JoinState> {
        self.state.clone()
    }

    /// Waits until the node has joined, as a peer or a client (or `timeout` passes).
    pub async fn joined(&self, timeout: Duration) -> bool {
        let mut rx = self.state.clone();
        let wait = rx.wait_for(|s| s.in_overlay());
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }

    /// Sends a request and waits for its answer.
    pub async fn request(
        &self,
        destination: Vec<Destination>,
        body: Body,
    ) -> Result<Answer, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                destination,
                body,
                reply,
            })
            .await
            .map_err(|_| RequestError::Shutdown)?;
        rx.await.unwrap_or(Err(RequestError::Shutdown))
    }

    /// Pings a destination (§6.5.3); the answer names who responded.
    pub async fn ping(&self, destination: Destination) -> Result<Answer, RequestError> {
        self.request(vec![destination.clone()], Body::PingReq(Default::default()))
            .await
    }

    /// Asks the peer at `via` where it would route `destination` (§6.4.2.4, §10.8).
    pub async fn route_query(
        &self,
        via: NodeId,
        destination: Destination,
    ) -> Result<NodeId, RequestError> {
        let body = Body::RouteQueryReq(RouteQueryReq {
            send_update: false,
            destination,
            overlay_specific_data: Bytes::new(),
        });
        match self.request(vec![Destination::Node(via)], body).await?.body {
            Body::RouteQueryAns(a) => Ok(a.next_peer),
            other => Err(RequestError::Invalid(format!(
                "unexpected answer {:?}",
                other.code()
            ))),
        }
    }

    /// The routing table now.
    pub async fn neighbors(&self) -> Result<Neighbors, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Neighbors(tx))
            .await
            .map_err(|_| RequestError::Shutdown)?;
        rx.await.map_err(|_| RequestError::Shutdown)
    }

    /// Runs `f` on the node inside the driver and returns its result (for usages built
    /// on the core, and for tests that inspect a node).
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node) -> T + Send + 'static,
    ) -> Result<T, RequestError> {
        self.with_node_at(move |node, _| f(node)).await
    }

    /// Like [`Overlay::with_node`], with the node's current time.
    pub async fn with_node_at<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> T + Send + 'static,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot::channel();
        let run = Box::new(move |node: &mut Node, now: Instant| {
            let _ = tx.send(f(node, now));
        });
        self.commands
            .send(Command::With(run))
            .await
            .map_err(|_| RequestError::Shutdown)?;
        rx.await.map_err(|_| RequestError::Shutdown)
    }

    /// Applies a verified configuration (e.g. one fetched from the configuration
    /// server) and pushes it to the connected peers (§6.5.4).
    pub async fn apply_config(&self, change: ConfigChange) -> Result<(), RequestError> {
        self.with_node_at(move |node, now| node.apply_config(change, now))
            .await
    }

    /// The configuration in use: its sequence and signed document. It changes when a
    /// newer one arrives in ConfigUpdate; persist it then.
    pub fn configuration(&self) -> watch::Receiver<(u16, Option<Bytes>)> {
        self.config.clone()
    }

    /// Starts a request with `start` (e.g. [`Node::store`]) and waits for its answer.
    pub async fn call(
        &self,
        start: impl FnOnce(&mut Node, Instant) -> RequestId + Send + 'static,
    ) -> Result<Answer, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Call {
                start: Box::new(start),
                reply,
            })
            .await
            .map_err(|_| RequestError::Shutdown)?;
        rx.await.unwrap_or(Err(RequestError::Shutdown))
    }

    /// Stores signed values at `resource` (§7.4.1).
    pub async fn store(
        &self,
        resource: ResourceId,
        kinds: Vec<(KindId, Vec<StoredDataValue>)>,
        lifetime: Duration,
    ) -> Result<StoreAns, RequestError> {
        match self
            .call(move |n, now| n.store(resource, kinds, lifetime, now))
            .await?
            .body
        {
            Body::StoreAns(a) => Ok(a),
            other => Err(RequestError::Invalid(format!(
                "unexpected answer {:?}",
                other.code()
            ))),
        }
    }

    /// Fetches values at `resource` (§7.4.2); values whose signatures fail are dropped.
    pub async fn fetch(
        &self,
        resource: ResourceId,
        specifiers: Vec<StoredDataSpecifier>,
    ) -> Result<FetchAns, RequestError> {
        match self
            .call(move |n, now| n.fetch(resource, specifiers, now))
            .await?
            .body
        {
            Body::FetchAns(a) => Ok(a),
            other => Err(RequestError::Invalid(format!(
                "unexpected answer {:?}",
                other.code()
            ))),
        }
    }

    /// Leaves the overlay gracefully (§10.9) and stops.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(LEAVE_TIMEOUT + Duration::from_secs(1), rx).await;
        }
    }

    /// The relays found in the overlay (RFC 6940 §9) this node gathers candidates
    /// on, by the peer serving each.
    pub fn overlay_relays(&self) -> Vec<(NodeId, SocketAddr)> {
        self.relays.serving()
    }

    /// The STUN and TURN servers the next ICE gathering uses: the configured ones
    /// and the overlay's relays, with this node's credentials for them.
    pub fn ice_settings(&self) -> IceSettings {
        self.relays.settings()
    }

    /// Where this node serves STUN and TURN, if it does.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|r| r.public_addr())
    }

    /// Stops at once, as if the process died: links drop without a Leave.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Whether the driver has stopped.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts the relay `serve` asks for, unless its address is one RFC 6940 §9 says a
/// relay should not have (private or loopback, outside a development overlay).
async fn serve_relay(
    serve: &ServeRelay,
    advertised: &[SocketAddr],
    ice: &IceSettings,
    relays: &Relays,
) -> Result<Option<Arc<RelayServer>>, StartError> {
    let public = serve.public.unwrap_or_else(|| {
        if serve.listen.ip().is_unspecified() {
            advertised
                .iter()
                .map(SocketAddr::ip)
                .find(|ip| !ip.is_loopback())
                .or_else(|| advertised.first().map(SocketAddr::ip))
                .unwrap_or(serve.listen.ip())
        } else {
            serve.listen.ip()
        }
    });
    if !super::turn_server::relay_allowed(public, ice.include_loopback) {
        tracing::warn!(
            %public,
            "not serving a relay on a private or loopback address (RFC 6940 §9)"
        );
        return Ok(None);
    }
    let limits = RelayLimits {
        allow_private_peers: ice.include_loopback,
        ..RelayLimits::default()
    };
    let server = RelayServer::start(serve.listen, public, relays.secrets().clone(), limits)
        .await
        .map_err(|source| StartError::Listen {
            addr: serve.listen.to_string(),
            source,
        })?;
    tracing::info!(addr = %server.public_addr(), "serving STUN and TURN to the overlay");
    Ok(Some(Arc::new(server)))
}
