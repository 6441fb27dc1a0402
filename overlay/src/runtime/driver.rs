//! The tokio driver of one node: a single task owns the sans-IO [`Node`], the
//! listener, the link tasks and the timers, and serves the async API of
//! [`Overlay`]. Every channel is bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::clock::Clock;
use super::link::{Accepted, Link, LinkEvent, LinkOptions, Listener, OversizeResponder};
use super::tls::{ConnectError, Expect, PeerInfo, TlsContext};
use crate::id::NodeId;
use crate::id::ResourceId;
use crate::link::{LinkConfig, LinkHealth};
use crate::node::{
    Answer, ConfigChange, ConnectId, Event, JoinState, LinkId, Node, NodeConfig, RequestError,
    RequestId,
};
use crate::respond::error_response;
use crate::time::Instant;
use crate::wire::{
    Body, Destination, ErrorResponse, FetchAns, KindId, RouteQueryReq, StoreAns,
    StoredDataSpecifier, StoredDataValue,
};

/// The outcome of an outgoing connection.
type Connected = (
    ConnectId,
    Result<(tokio_rustls::TlsStream<tokio::net::TcpStream>, PeerInfo), ConnectError>,
);

/// Starts a request on the node.
type StartRequest = Box<dyn FnOnce(&mut Node, Instant) -> RequestId + Send>;

/// Commands the API sends to the driver task.
/// A closure run on the node inside the driver.
type WithNode = Box<dyn FnOnce(&mut Node, Instant) + Send>;

enum Command {
    Request {
        destination: Vec<Destination>,
        body: Body,
        reply: oneshot::Sender<Result<Answer, RequestError>>,
    },
    Neighbors(oneshot::Sender<Neighbors>),
    Leave(oneshot::Sender<()>),
    With(WithNode),
    Call {
        start: StartRequest,
        reply: oneshot::Sender<Result<Answer, RequestError>>,
    },
}

/// Queue sizes.
const COMMANDS: usize = 256;
const LINK_EVENTS: usize = 1024;
const CONNECTS: usize = 64;
const APP_REQUESTS: usize = 256;
/// How long a graceful leave may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer that asked for an application connection and was answered (§6.5.2): the
/// application connects to `addr` as TLS client and checks the peer is `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRequest {
    /// The verified requester.
    pub from: NodeId,
    /// The Application-ID.
    pub application: u16,
    /// Where the requester listens for the application.
    pub addr: SocketAddr,
}

/// A snapshot of the routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbors {
    /// This node.
    pub node_id: NodeId,
    /// Predecessors, nearest first.
    pub predecessors: Vec<NodeId>,
    /// Successors, nearest first.
    pub successors: Vec<NodeId>,
    /// Fingers, ascending.
    pub fingers: Vec<NodeId>,
    /// Open links.
    pub links: usize,
    /// Join state.
    pub state: JoinState,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is missing or taken.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS setup failed (bad key or certificate).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] ConnectError),
}

/// A running overlay node: the public async API.
#[derive(Debug, Clone)]
pub struct Overlay {
    node_id: NodeId,
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<JoinState>,
    task: Arc<JoinHandle<()>>,
    apps: Arc<std::sync::Mutex<Option<mpsc::Receiver<AppRequest>>>>,
    config: watch::Receiver<(u16, Option<Bytes>)>,
}

/// Where the driver reports to the [`Overlay`] handles.
struct Outputs {
    state: watch::Sender<JoinState>,
    apps: mpsc::Sender<AppRequest>,
    config: watch::Sender<(u16, Option<Bytes>)>,
}

impl Overlay {
    /// Binds the listener (`config.listen_addr`; port 0 picks one and the real address
    /// is what Attach offers), starts the driver task and begins joining.
    pub async fn start(mut config: NodeConfig, link: LinkConfig) -> Result<Overlay, StartError> {
        let requested = config
            .listen_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let tls = TlsContext::new(config.credentials.clone(), config.trust.clone())?;
        let listener = Listener::bind(requested, tls.clone())
            .await
            .map_err(|source| StartError::Listen {
                addr: requested.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr();
        config.listen_addr = Some(local_addr);
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
        let node = Node::new(config, clock.now());
        let node_id = node.node_id();
        let (commands, command_rx) = mpsc::channel(COMMANDS);
        let (state_tx, state) = watch::channel(JoinState::Idle);
        let (apps_tx, apps_rx) = mpsc::channel(APP_REQUESTS);
        let outputs = Outputs {
            state: state_tx,
            apps: apps_tx,
            config: config_tx,
        };
        let driver = Driver::new(node, tls, listener, clock, link, outputs);
        let span = tracing::info_span!("node", id = %node_id);
        let task = tokio::spawn(driver.run(command_rx).instrument(span));
        let apps = Arc::new(std::sync::Mutex::new(Some(apps_rx)));
        Ok(Overlay {
            node_id,
            local_addr,
            commands,
            state,
            task: Arc::new(task),
            apps,
            config: config_rx,
        })
    }

    /// The AppAttach requests this node answered (once: the first caller takes them).
    pub fn take_app_requests(&self) -> Option<mpsc::Receiver<AppRequest>> {
        self.apps.lock().ok().and_then(|mut a| a.take())
    }

    /// Asks the node at the end of `destination` for an application connection
    /// (§6.5.2); returns who answered. The peer then connects to this node's
    /// application listener.
    pub async fn app_attach(
        &self,
        destination: Vec<Destination>,
        application: u16,
    ) -> Result<NodeId, RequestError> {
        Ok(self
            .call(move |n, now| n.app_attach(destination, application, now))
            .await?
            .from)
    }

    /// Reports how the application's connection to an AppAttach requester went (see
    /// [`Node::app_dial_done`]); an address that failed is refused for a while.
    pub async fn app_dial_done(&self, addr: SocketAddr, ok: bool) {
        let _ = self
            .with_node_at(move |n, now| n.app_dial_done(addr, ok, now))
            .await;
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

    /// Waits until the node has joined (or `timeout` passes).
    pub async fn joined(&self, timeout: Duration) -> bool {
        let mut rx = self.state.clone();
        let wait = rx.wait_for(|s| *s == JoinState::Joined);
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

    /// Stops at once, as if the process died: links drop without a Leave.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Whether the driver has stopped.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }
}

struct Driver {
    node: Node,
    tls: TlsContext,
    listener: Listener,
    clock: Clock,
    link_options: LinkOptions,
    links: HashMap<LinkId, Link>,
    connect_tasks: Vec<JoinHandle<()>>,
    next_link: u64,
    pending: HashMap<RequestId, oneshot::Sender<Result<Answer, RequestError>>>,
    out: Outputs,
    leaving: Option<oneshot::Sender<()>>,
    link_tx: mpsc::Sender<(LinkId, LinkEvent)>,
    link_rx: mpsc::Receiver<(LinkId, LinkEvent)>,
    connect_tx: mpsc::Sender<Connected>,
    connect_rx: mpsc::Receiver<Connected>,
}

impl Driver {
    fn new(
        node: Node,
        tls: TlsContext,
        listener: Listener,
        clock: Clock,
        config: LinkConfig,
        out: Outputs,
    ) -> Driver {
        let creds = node.config().credentials.clone();
        let ttl = node.config().initial_ttl;
        let max = config.max_message_size;
        let responder: OversizeResponder = Arc::new(move |header, peer| {
            let error = ErrorResponse::new(
                crate::wire::ErrorCode::MessageTooLarge,
                format!("max-message-size is {max}"),
            );
            error_response(header, peer, &error, &creds, ttl).ok()
        });
        let (link_tx, link_rx) = mpsc::channel(LINK_EVENTS);
        let (connect_tx, connect_rx) = mpsc::channel(CONNECTS);
        Driver {
            node,
            tls,
            listener,
            clock,
            link_options: LinkOptions {
                config,
                on_oversize: Some(responder),
            },
            links: HashMap::new(),
            connect_tasks: Vec::new(),
            next_link: 1,
            pending: HashMap::new(),
            out,
            leaving: None,
            link_tx,
            link_rx,
            connect_tx,
            connect_rx,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let now = self.clock.now();
        self.node.join(now);
        let mut leave_deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.drain() {
                break;
            }
            let timeout = self.node.poll_timeout().map(|t| self.clock.deadline(t));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        if let Some(deadline) = self.command(command) {
                            leave_deadline = Some(deadline);
                        }
                    }
                    None => {
                        // Every handle is gone: leave quietly.
                        let now = self.clock.now();
                        self.node.leave(now);
                        leave_deadline.get_or_insert(tokio::time::Instant::now() + LEAVE_TIMEOUT);
                    }
                },
                Some((link, event)) = self.link_rx.recv() => self.link_event(link, event),
                Some(accepted) = self.listener.accept() => match accepted {
                    Ok(Accepted { stream, peer }) => self.link_up(stream, peer, None),
                    Err(e) => tracing::debug!(error = %e, "incoming link refused"),
                },
                Some((id, result)) = self.connect_rx.recv() => match result {
                    Ok((stream, peer)) => self.link_up(stream, peer, Some(id)),
                    Err(e) => {
                        tracing::debug!(error = %e, "outgoing link failed");
                        let now = self.clock.now();
                        self.node.handle_connect_failed(id, now);
                    }
                },
                () = sleep_until(timeout) => {
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                },
                () = sleep_until(leave_deadline) => break,
            }
        }
        for link in self.links.values() {
            link.close();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for task in self.connect_tasks {
            task.abort();
        }
        let _ = self.out.state.send(JoinState::Left);
        if let Some(done) = self.leaving.take() {
            let _ = done.send(());
        }
    }

    fn command(&mut self, command: Command) -> Option<tokio::time::Instant> {
        let now = self.clock.now();
        match command {
            Command::Request {
                destination,
                body,
                reply,
            } => {
                let code = body.code();
                let id = self.node.request(destination, body, now);
                tracing::debug!(request = id.0, ?code, "request");
                self.pending.insert(id, reply);
            }
            Command::Neighbors(reply) => {
                let t = self.node.table();
                let _ = reply.send(Neighbors {
                    node_id: self.node.node_id(),
                    predecessors: t.predecessors().to_vec(),
                    successors: t.successors().to_vec(),
                    fingers: t.fingers(),
                    links: self.node.link_count(),
                    state: self.node.state(),
                });
            }
            Command::Leave(done) => {
                self.leaving = Some(done);
                self.node.leave(now);
                return Some(tokio::time::Instant::now() + LEAVE_TIMEOUT);
            }
            Command::With(f) => f(&mut self.node, now),
            Command::Call { start, reply } => {
                let id = start(&mut self.node, now);
                self.pending.insert(id, reply);
            }
        }
        None
    }

    fn link_event(&mut self, link: LinkId, event: LinkEvent) {
        let now = self.clock.now();
        match event {
            LinkEvent::Message(bytes) => self.node.handle_message(link, bytes, now),
            LinkEvent::Health(LinkHealth::Failed) => {
                if let Some(l) = self.links.remove(&link) {
                    l.close();
                }
                self.node.handle_link_down(link, now);
            }
            LinkEvent::Health(health) => tracing::debug!(link = link.0, ?health, "link health"),
            LinkEvent::Closed(reason) => {
                if self.links.remove(&link).is_some() {
                    tracing::debug!(link = link.0, ?reason, "link closed");
                    self.node.handle_link_down(link, now);
                }
            }
        }
    }

    fn link_up(
        &mut self,
        stream: tokio_rustls::TlsStream<tokio::net::TcpStream>,
        peer: PeerInfo,
        connect: Option<ConnectId>,
    ) {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        let peer_id = peer.node_id();
        let link = Link::spawn(
            id,
            stream,
            peer,
            self.link_options.clone(),
            self.link_tx.clone(),
            self.clock,
        );
        self.links.insert(id, link);
        let now = self.clock.now();
        self.node.handle_link_up(id, peer_id, connect, now);
    }

    /// Acts on everything the node produced; returns `true` when the node has left.
    fn drain(&mut self) -> bool {
        while let Some(t) = self.node.poll_transmit() {
            match self.links.get(&t.link) {
                Some(link) => {
                    if link.try_send(t.bytes).is_err() {
                        tracing::debug!(
                            link = t.link.0,
                            "link queue full or closed; message dropped"
                        );
                    }
                }
                None => tracing::debug!(link = t.link.0, "message for a closed link dropped"),
            }
        }
        let mut left = false;
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::Connect { id, addr, expect } => self.connect(id, addr, expect),
                Event::CloseLink(link) => {
                    if let Some(l) = self.links.remove(&link) {
                        l.close();
                    }
                }
                Event::Response { request, result } => {
                    if let Some(reply) = self.pending.remove(&request) {
                        let _ = reply.send(result);
                    }
                }
                Event::Joined => tracing::info!("joined the overlay"),
                Event::JoinFailed(why) => tracing::warn!(%why, "join attempt failed"),
                Event::NeighborsChanged => {}
                Event::ConfigChanged { sequence, document } => {
                    // New roots, bad nodes and revoked CAs apply to the next handshakes.
                    if let Ok(mut trust) = self.tls.trust().write() {
                        *trust = self.node.config().trust.clone();
                    }
                    let _ = self.out.config.send((sequence, Some(document)));
                }
                Event::Left => left = true,
                Event::AppAttach {
                    from,
                    application,
                    addr,
                } => {
                    let request = AppRequest {
                        from,
                        application,
                        addr,
                    };
                    if self.out.apps.try_send(request).is_err() {
                        tracing::warn!(%from, application, "application queue full; AppAttach dropped");
                    }
                }
            }
        }
        let state = self.node.state();
        self.out
            .state
            .send_if_modified(|s| std::mem::replace(s, state) != state);
        left
    }

    fn connect(&mut self, id: ConnectId, addr: SocketAddr, expect: Option<NodeId>) {
        let tls = self.tls.clone();
        let tx = self.connect_tx.clone();
        let expect = expect.map_or(Expect::AnyNode, Expect::Node);
        self.connect_tasks.retain(|t| !t.is_finished());
        self.connect_tasks.push(tokio::spawn(async move {
            let result = tls.connect(addr, expect).await;
            let _ = tx.send((id, result)).await;
        }));
    }
}

/// A seed from the operating system's RNG, for nodes not given one.
fn os_seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
