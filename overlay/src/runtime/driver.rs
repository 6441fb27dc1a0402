//! The tokio driver of one node: a single task owns the sans-IO [`Node`], the
//! listeners, the link tasks, the application streams being set up and the timers, and
//! serves the [`super::Overlay`] handles' commands. Every channel is bounded.

use super::clock::sleep_until;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::apps::{AppError, AppReport, AppStream, Apps};
use super::clock::Clock;
use super::link::{Accepted, Link, LinkEvent, LinkOptions, Listener, OversizeResponder};
use super::tls::{ConnectError, Expect, PeerInfo, TlsContext};
use super::transport::{LinkStream, dial};
use super::turn_service::{LinkSecrets, Relays};
use crate::id::NodeId;
use crate::link::{LinkConfig, LinkHealth};
use crate::node::{
    Answer, ConnectId, Event, JoinFailure, JoinState, LinkId, Node, RequestError, RequestId,
};
use crate::respond::error_response;
use crate::time::Instant;
use crate::wire::{Body, Destination, ErrorResponse};

/// The outcome of an outgoing connection.
type Connected = (ConnectId, Result<(LinkStream, PeerInfo), ConnectError>);

/// Starts a request on the node.
pub(crate) type StartRequest = Box<dyn FnOnce(&mut Node, Instant) -> RequestId + Send>;

/// A closure run on the node inside the driver.
pub(crate) type WithNode = Box<dyn FnOnce(&mut Node, Instant) + Send>;

/// Commands the API sends to the driver task.
pub(crate) enum Command {
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
    AppAttach {
        destination: Vec<Destination>,
        application: u16,
        ice: Option<super::ice::Gathered>,
        reply: oneshot::Sender<Result<AppStream, AppError>>,
    },
}

/// Queue sizes.
const LINK_EVENTS: usize = 1024;
const CONNECTS: usize = 64;
const APP_REPORTS: usize = 256;
/// How long a graceful leave may take.
pub(crate) const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Where the driver reports to the [`super::Overlay`] handles.
pub(crate) struct Outputs {
    pub(crate) state: watch::Sender<JoinState>,
    pub(crate) join_error: watch::Sender<Option<JoinFailure>>,
    pub(crate) config: watch::Sender<(u16, Option<Bytes>)>,
    /// Application streams nobody asked for ([`Overlay::take_app_streams`]).
    ///
    /// [`Overlay::take_app_streams`]: super::Overlay::take_app_streams
    pub(crate) app_streams: mpsc::Sender<AppStream>,
}

/// The node's listeners: overlay links, and one per application.
pub(crate) struct Listeners {
    pub(crate) overlay: Listener,
    pub(crate) apps: Vec<Listener>,
}

/// The next connection accepted on any of `listeners`.
async fn accept_app(listeners: &mut [Listener]) -> Option<Result<Accepted, ConnectError>> {
    if listeners.is_empty() {
        return std::future::pending().await;
    }
    let polls = listeners.iter_mut().map(|l| Box::pin(l.accept()));
    futures_select_first(polls).await
}

/// The first of several futures to finish.
async fn futures_select_first<F: std::future::Future + Unpin>(
    futures: impl Iterator<Item = F>,
) -> F::Output {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(v) = std::future::Future::poll(std::pin::Pin::new(f), cx)
            {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

pub(crate) struct Driver {
    node: Node,
    tls: TlsContext,
    listeners: Listeners,
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
    apps: Apps,
    /// The live links' secrets, for the TURN credentials (see [`super::turn_service`]).
    secrets: Arc<LinkSecrets>,
    app_reports: mpsc::Receiver<AppReport>,
    /// AppAttach requests in flight: the Node-ID each is for.
    app_requests: HashMap<RequestId, NodeId>,
}

impl Driver {
    pub(crate) fn new(
        node: Node,
        tls: TlsContext,
        listeners: Listeners,
        clock: Clock,
        config: LinkConfig,
        out: Outputs,
        relays: Arc<Relays>,
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
        let (reports_tx, app_reports) = mpsc::channel(APP_REPORTS);
        Driver {
            secrets: relays.secrets().clone(),
            apps: Apps::new(tls.clone(), relays, out.app_streams.clone(), reports_tx),
            app_reports,
            app_requests: HashMap::new(),
            node,
            tls,
            listeners,
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

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let now = self.clock.now();
        self.node.join(now);
        let mut leave_deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.drain() {
                break;
            }
            let timeout = self.node.poll_timeout().map(|t| self.clock.deadline(t));
            let app_expiry = self.apps.next_expiry();
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
                Some(accepted) = self.listeners.overlay.accept() => match accepted {
                    Ok(Accepted { stream, peer }) => self.link_up(stream, peer, None),
                    Err(e) => tracing::debug!(error = %e, "incoming link refused"),
                },
                Some(accepted) = accept_app(&mut self.listeners.apps) => match accepted {
                    Ok(Accepted { stream, peer }) => self.apps.accepted(stream, peer),
                    Err(e) => tracing::debug!(error = %e, "incoming application connection refused"),
                },
                Some(report) = self.app_reports.recv() => self.app_report(report),
                () = sleep_until(app_expiry) => self.apps.expire(),
                Some((id, result)) = self.connect_rx.recv() => match result {
                    Ok((stream, peer)) => self.link_up(stream, peer, Some(id)),
                    Err(e) => {
                        tracing::debug!(error = %e, "outgoing link failed");
                        let now = self.clock.now();
                        self.node.handle_connect_failed(id, &e.to_string(), now);
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
            Command::AppAttach {
                destination,
                application,
                ice,
                reply,
            } => {
                let Some(Destination::Node(peer)) = destination.last().cloned() else {
                    let _ = reply.send(Err(AppError::NotANode));
                    if let Some(g) = ice {
                        tokio::spawn(g.close());
                    }
                    return None;
                };
                let offer = ice.as_ref().map(|g| g.offer.clone());
                self.apps.expect(peer, application, reply, ice);
                let id = self.node.app_attach(destination, application, offer, now);
                self.app_requests.insert(id, peer);
            }
        }
        None
    }

    /// The answer to one of our AppAttach requests.
    fn app_answered(&mut self, peer: NodeId, result: Result<Answer, RequestError>) {
        let result = match result {
            Err(e) => Err(AppError::Attach(e.to_string())),
            Ok(a) if a.from != peer => Err(AppError::WrongPeer {
                expected: peer,
                answered: a.from,
            }),
            Ok(a) => match &a.body {
                Body::AppAttachAns(ans) => Ok((
                    self.node.app_answer_candidates(ans),
                    self.node.app_answer_ice(ans),
                )),
                other => Err(AppError::Attach(format!(
                    "unexpected answer {:?}",
                    other.code()
                ))),
            },
        };
        self.apps.answered(peer, result);
    }

    fn app_report(&mut self, report: AppReport) {
        match report {
            AppReport::Reversed { peer, result } => self.apps.reversed(peer, result),
            AppReport::Answered { addrs, ok } => {
                let now = self.clock.now();
                self.node.app_dial_done(&addrs, ok, now);
            }
            AppReport::ReverseDue(peer) => self.apps.reverse_due(peer),
            AppReport::IceDone { peer, result } => self.apps.ice_done(peer, result),
            AppReport::Gathered {
                token,
                from,
                application,
                remote,
                result,
            } => {
                let now = self.clock.now();
                let offer = result.as_ref().ok().map(|g| g.offer.clone());
                self.node.answer_app_attach(token, offer, now);
                match result {
                    Ok(g) => self.apps.ice_answerer(from, application, g, remote),
                    Err(why) => {
                        tracing::debug!(%from, %why, "no ICE candidates; answered TCP only")
                    }
                }
            }
        }
    }

    fn link_event(&mut self, link: LinkId, event: LinkEvent) {
        let now = self.clock.now();
        match event {
            LinkEvent::Message(bytes) => self.node.handle_message(link, bytes, now),
            LinkEvent::Rtt(rtt) => self.node.handle_link_rtt(link, rtt, now),
            LinkEvent::Health(LinkHealth::Failed, _) => {
                if let Some(l) = self.forget_link(link) {
                    l.close();
                }
                self.node.handle_link_down(link, now);
            }
            LinkEvent::Health(health, unacked) => {
                tracing::debug!(
                    link = link.0,
                    ?health,
                    unacked = unacked.len(),
                    "link health"
                );
                self.node.handle_link_health(link, health, unacked, now);
            }
            LinkEvent::Closed(reason) => {
                if self.forget_link(link).is_some() {
                    tracing::debug!(link = link.0, ?reason, "link closed");
                    self.node.handle_link_down(link, now);
                }
            }
        }
    }

    /// Takes a link out of the driver's tables (the caller closes it if it must).
    fn forget_link(&mut self, link: LinkId) -> Option<Link> {
        self.secrets.remove(link);
        self.links.remove(&link)
    }

    fn link_up(&mut self, stream: LinkStream, peer: PeerInfo, connect: Option<ConnectId>) {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        let peer_id = peer.node_id();
        self.secrets.insert(peer_id, id, peer.secret);
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
                Event::Connect {
                    id,
                    candidates,
                    expect,
                } => self.connect(id, candidates, expect),
                Event::CloseLink(link) => {
                    if let Some(l) = self.forget_link(link) {
                        l.close();
                    }
                }
                Event::Keepalive { link, on } => {
                    if let Some(l) = self.links.get(&link) {
                        l.set_keepalive(on);
                    }
                }
                Event::Response { request, result } => {
                    if let Some(peer) = self.app_requests.remove(&request) {
                        self.app_answered(peer, result);
                    } else if let Some(reply) = self.pending.remove(&request) {
                        let _ = reply.send(result);
                    }
                }
                Event::Joined => {
                    tracing::info!("joined the overlay");
                    let _ = self.out.join_error.send(None);
                }
                Event::JoinFailed(why) => {
                    tracing::warn!(%why, "join attempt failed");
                    let _ = self.out.join_error.send(Some(why));
                }
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
                    candidates,
                    ice,
                } => {
                    if let Some((token, remote)) = ice {
                        self.apps.gather_for(token, from, application, remote);
                    }
                    self.apps.dial_requester(from, application, candidates);
                }
            }
        }
        let state = self.node.state();
        self.out
            .state
            .send_if_modified(|s| std::mem::replace(s, state) != state);
        left
    }

    fn connect(&mut self, id: ConnectId, candidates: Vec<SocketAddr>, expect: Option<NodeId>) {
        let tls = self.tls.clone();
        let tx = self.connect_tx.clone();
        let expect = expect.map_or(Expect::AnyNode, Expect::Node);
        self.connect_tasks.retain(|t| !t.is_finished());
        self.connect_tasks.push(tokio::spawn(async move {
            let result = dial(&tls, &candidates, expect).await;
            let _ = tx.send((id, result)).await;
        }));
    }
}

/// A seed from the operating system's RNG, for nodes not given one.
pub(crate) fn os_seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}
