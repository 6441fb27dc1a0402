//! Application streams (AppAttach, §6.5.2) as the runtime hands them to applications
//! such as the XMPP usage: an authenticated [`LinkStream`] to a verified peer, however
//! it came about.
//!
//! - A requester ([`super::Overlay::app_attach`]) expects the answerer on its
//!   application listener. If nothing has come [`REVERSE_DIAL_DELAY`] after the
//!   answer — the requester is behind a NAT — it dials the answer's candidates
//!   itself. The first connection resolves the request.
//! - An answerer dials the requester's candidates (what the core chose, within its
//!   limits) and accepts a requester's own dial on its listener; either way the
//!   stream goes to [`super::Overlay::take_app_streams`].
//! - A connection on the listener from a peer nobody attached to is closed.
//!
//! - With ICE ([`super::ice`]): the requester sends its gathered candidates; the
//!   answerer gathers its own before answering, then both run the checks, and the
//!   stream over the ICE pair resolves the request like a TCP one (whichever comes
//!   first; a later one goes to the application as a second stream).
//!
//! Both ends may end up with two streams to each other (both dials succeeded);
//! applications take every stream they are given (the XMPP usage writes on the first
//! and reads from all).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ice::Gathered;
use super::tls::{Expect, PeerInfo, TlsContext};
use super::transport::{LinkStream, dial};
use super::turn_service::Relays;
use crate::id::NodeId;
pub use crate::node::REVERSE_DIAL_DELAY;
use crate::node::{AnswerToken, RemoteIce};

/// How long an AppAttach plus the connection may take.
pub const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an answered requester may take to dial us instead.
const ANSWERED_WINDOW: Duration = Duration::from_secs(15);
/// Streams queued for the application.
pub const APP_STREAMS: usize = 256;

/// A direct connection to a peer for an application.
#[derive(Debug)]
pub struct AppStream {
    /// The stream.
    pub stream: LinkStream,
    /// The verified peer.
    pub peer: PeerInfo,
    /// The Application-ID.
    pub application: u16,
    /// Whether this node sent the AppAttach (the XMPP usage's stream initiator).
    pub requested: bool,
}

/// Why an application connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The AppAttach failed.
    #[error("AppAttach failed: {0}")]
    Attach(String),
    /// The answer came from another node than the destination's.
    #[error("AppAttach answered by {answered}, not the device {expected}")]
    WrongPeer {
        /// Who was asked.
        expected: NodeId,
        /// Who answered.
        answered: NodeId,
    },
    /// No connection came up in either direction.
    #[error("no connection came up with {peer}: {why}")]
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// What was tried.
        why: String,
    },
    /// The destination does not end with a Node-ID.
    #[error("an application connection needs a destination ending with a Node-ID")]
    NotANode,
    /// The node stopped.
    #[error("the node has stopped")]
    Stopped,
}

struct Pending {
    application: u16,
    reply: Option<oneshot::Sender<Result<AppStream, AppError>>>,
    deadline: Instant,
    /// The answer's candidates, once answered.
    answer: Option<Vec<SocketAddr>>,
    dial_error: Option<String>,
    /// Our gathered ICE agent, until the answer comes.
    ice: Option<Gathered>,
    /// The ICE checks are running.
    ice_running: bool,
    /// Ends our ICE checks when another path connects first (dropped with the entry).
    ice_cancel: Option<tokio::sync::mpsc::Sender<()>>,
}

/// What the driver learns from the dial tasks it started.
#[derive(Debug)]
pub(crate) enum AppReport {
    /// Our reverse dial to an answerer finished.
    Reversed {
        peer: NodeId,
        result: Result<(LinkStream, PeerInfo), String>,
    },
    /// Our dial to a requester finished; the core is told how it went.
    Answered { addrs: Vec<SocketAddr>, ok: bool },
    /// It is time to dial an answerer whose connection did not come.
    ReverseDue(NodeId),
    /// Our ICE attempt (as requester) finished.
    IceDone {
        peer: NodeId,
        result: Result<(LinkStream, PeerInfo), String>,
    },
    /// Gathering for a peer's AppAttach finished: answer it.
    Gathered {
        token: AnswerToken,
        from: NodeId,
        application: u16,
        remote: RemoteIce,
        result: Result<Gathered, String>,
    },
}

/// The driver's application-stream state.
pub(crate) struct Apps {
    tls: TlsContext,
    ice: Arc<Relays>,
    pending: HashMap<NodeId, Pending>,
    answered: HashMap<NodeId, (u16, Instant)>,
    incoming: mpsc::Sender<AppStream>,
    reports: mpsc::Sender<AppReport>,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apps")
            .field("pending", &self.pending.len())
            .field("answered", &self.answered.len())
            .finish()
    }
}

impl Apps {
    pub(crate) fn new(
        tls: TlsContext,
        ice: Arc<Relays>,
        incoming: mpsc::Sender<AppStream>,
        reports: mpsc::Sender<AppReport>,
    ) -> Apps {
        Apps {
            tls,
            ice,
            pending: HashMap::new(),
            answered: HashMap::new(),
            incoming,
            reports,
        }
    }

    /// A request to `peer` for `application` is being sent.
    pub(crate) fn expect(
        &mut self,
        peer: NodeId,
        application: u16,
        reply: oneshot::Sender<Result<AppStream, AppError>>,
        ice: Option<Gathered>,
    ) {
        if let Some(old) = self.pending.get_mut(&peer) {
            if let Some(r) = old.reply.take() {
                let _ = r.send(Err(AppError::Attach(
                    "superseded by a newer request".into(),
                )));
            }
            if let Some(g) = old.ice.take() {
                tokio::spawn(g.close());
            }
        }
        self.pending.insert(
            peer,
            Pending {
                application,
                reply: Some(reply),
                deadline: Instant::now() + APP_CONNECT_TIMEOUT,
                answer: None,
                dial_error: None,
                ice,
                ice_running: false,
                ice_cancel: None,
            },
        );
    }

    /// Our AppAttach to `peer` was answered (with these dialable candidates and
    /// maybe ICE parameters), or failed.
    pub(crate) fn answered(
        &mut self,
        peer: NodeId,
        result: Result<(Vec<SocketAddr>, Option<RemoteIce>), AppError>,
    ) {
        let Some(p) = self.pending.get_mut(&peer) else {
            return;
        };
        match result {
            Err(e) => {
                if let Some(p) = self.pending.remove(&peer) {
                    if let Some(r) = p.reply {
                        let _ = r.send(Err(e));
                    }
                    if let Some(g) = p.ice {
                        tokio::spawn(g.close());
                    }
                }
            }
            Ok((candidates, remote)) => {
                let ice = p.ice.take();
                match (ice, remote) {
                    (Some(g), Some(remote)) if p.reply.is_some() => {
                        p.ice_running = true;
                        let (cancel, cancelled) = tokio::sync::mpsc::channel(1);
                        p.ice_cancel = Some(cancel);
                        let (tls, reports) = (self.tls.clone(), self.reports.clone());
                        tokio::spawn(async move {
                            let result = ice_requester(g, remote, cancelled, &tls, peer).await;
                            let _ = reports.send(AppReport::IceDone { peer, result }).await;
                        });
                    }
                    (Some(g), _) => {
                        tokio::spawn(g.close());
                    }
                    _ => {}
                }
                if p.reply.is_none() {
                    return; // connected already
                }
                p.answer = Some(candidates);
                let reports = self.reports.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(REVERSE_DIAL_DELAY).await;
                    let _ = reports.send(AppReport::ReverseDue(peer)).await;
                });
            }
        }
    }

    /// The answerer's connection has not come: dial it.
    pub(crate) fn reverse_due(&mut self, peer: NodeId) {
        let Some(p) = self.pending.get_mut(&peer) else {
            return;
        };
        let Some(candidates) = p.answer.take().filter(|c| !c.is_empty()) else {
            return;
        };
        if p.reply.is_none() {
            return;
        }
        let (tls, reports) = (self.tls.clone(), self.reports.clone());
        tokio::spawn(async move {
            let result = dial(&tls, &candidates, Expect::Node(peer))
                .await
                .map_err(|e| e.to_string());
            let _ = reports.send(AppReport::Reversed { peer, result }).await;
        });
    }

    /// Our reverse dial to `peer` finished.
    pub(crate) fn reversed(
        &mut self,
        peer: NodeId,
        result: Result<(LinkStream, PeerInfo), String>,
    ) {
        match result {
            Ok((stream, info)) => self.connected(stream, info, true),
            Err(why) => {
                if let Some(p) = self.pending.get_mut(&peer) {
                    p.dial_error = Some(why);
                    // The answerer's own dial may still come; not for long (the
                    // ICE checks, if running, have their own deadline).
                    if !p.ice_running {
                        let soon = Instant::now() + crate::node::REVERSE_GRACE;
                        p.deadline = p.deadline.min(soon);
                    }
                }
            }
        }
    }

    /// Our ICE attempt to `peer` finished.
    pub(crate) fn ice_done(
        &mut self,
        peer: NodeId,
        result: Result<(LinkStream, PeerInfo), String>,
    ) {
        match result {
            Ok((stream, info)) => self.connected(stream, info, true),
            Err(why) => {
                tracing::debug!(%peer, %why, "ICE attempt failed");
                if let Some(p) = self.pending.get_mut(&peer) {
                    p.ice_running = false;
                    let why = match p.dial_error.take() {
                        Some(tcp) => format!("{tcp}; ICE: {why}"),
                        None => format!("ICE: {why}"),
                    };
                    p.dial_error = Some(why);
                    let soon = Instant::now() + crate::node::REVERSE_GRACE;
                    p.deadline = p.deadline.min(soon);
                }
            }
        }
    }

    /// A peer's AppAttach offered ICE: gather ours (the answer waits for it).
    pub(crate) fn gather_for(
        &mut self,
        token: AnswerToken,
        from: NodeId,
        application: u16,
        remote: RemoteIce,
    ) {
        let (relays, reports) = (self.ice.clone(), self.reports.clone());
        tokio::spawn(async move {
            let ice = relays.settings_when_ready().await;
            let result = if ice.enabled() {
                super::ice::gather(&ice, false).await
            } else {
                Err("no STUN or TURN server is configured".into())
            };
            let _ = reports
                .send(AppReport::Gathered {
                    token,
                    from,
                    application,
                    remote,
                    result,
                })
                .await;
        });
    }

    /// Our answer with ICE candidates went out: run the checks as the controlled
    /// agent and hand the stream to the application.
    pub(crate) fn ice_answerer(
        &mut self,
        from: NodeId,
        application: u16,
        gathered: Gathered,
        remote: RemoteIce,
    ) {
        self.answered
            .insert(from, (application, Instant::now() + ANSWERED_WINDOW));
        let (tls, incoming) = (self.tls.clone(), self.incoming.clone());
        tokio::spawn(async move {
            let result = async {
                // Nothing cancels the answerer's checks: they end at their deadline
                // when the requester closes its agent.
                let (_keep, checks) = tokio::sync::mpsc::channel(1);
                let (io, addr) = gathered.connect(remote, false, checks).await?;
                tls.connect_over(io, addr, Expect::Node(from))
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok((stream, peer)) => {
                    let s = AppStream {
                        stream: Box::new(stream),
                        peer,
                        application,
                        requested: false,
                    };
                    if incoming.try_send(s).is_err() {
                        tracing::warn!(%from, "application stream queue full; stream closed");
                    }
                }
                Err(why) => tracing::debug!(%from, %why, "ICE attempt (answerer) failed"),
            }
        });
    }

    /// The core answered an AppAttach from `from`: dial its `candidates`.
    pub(crate) fn dial_requester(
        &mut self,
        from: NodeId,
        application: u16,
        candidates: Vec<SocketAddr>,
    ) {
        self.answered
            .insert(from, (application, Instant::now() + ANSWERED_WINDOW));
        if candidates.is_empty() {
            return; // ICE only
        }
        let (tls, incoming, reports) = (
            self.tls.clone(),
            self.incoming.clone(),
            self.reports.clone(),
        );
        tokio::spawn(async move {
            let result = dial(&tls, &candidates, Expect::Node(from)).await;
            let ok = result.is_ok();
            let _ = reports
                .send(AppReport::Answered {
                    addrs: candidates,
                    ok,
                })
                .await;
            match result {
                Ok((stream, peer)) => {
                    let s = AppStream {
                        stream,
                        peer,
                        application,
                        requested: false,
                    };
                    if incoming.try_send(s).is_err() {
                        tracing::warn!(%from, "application stream queue full; stream closed");
                    }
                }
                Err(e) => {
                    tracing::debug!(%from, error = %e, "could not reach an AppAttach requester")
                }
            }
        });
    }

    /// A connection on the application listener from `peer`.
    pub(crate) fn accepted(&mut self, stream: LinkStream, peer: PeerInfo) {
        let node = peer.node_id();
        if self.pending.get(&node).is_some_and(|p| p.reply.is_some()) {
            return self.connected(stream, peer, true);
        }
        if let Some((application, until)) = self.answered.get(&node).copied()
            && until > Instant::now()
        {
            let s = AppStream {
                stream,
                peer,
                application,
                requested: false,
            };
            if self.incoming.try_send(s).is_err() {
                tracing::warn!(%node, "application stream queue full; stream closed");
            }
            return;
        }
        if self.pending.contains_key(&node) {
            // A second stream for a request already connected: the application
            // takes it too.
            if let Some(p) = self.pending.get(&node) {
                let s = AppStream {
                    stream,
                    peer,
                    application: p.application,
                    requested: true,
                };
                let _ = self.incoming.try_send(s);
            }
            return;
        }
        tracing::warn!(%node, "application connection from a peer nobody attached to; closed");
    }

    fn connected(&mut self, stream: LinkStream, peer: PeerInfo, requested: bool) {
        let node = peer.node_id();
        let Some(p) = self.pending.get_mut(&node) else {
            return;
        };
        // The first path wins: ICE checks still running for this peer stop.
        if let Some(cancel) = p.ice_cancel.take() {
            let _ = cancel.try_send(());
        }
        let s = AppStream {
            stream,
            peer,
            application: p.application,
            requested,
        };
        match p.reply.take() {
            Some(r) => {
                let _ = r.send(Ok(s));
            }
            None => {
                let _ = self.incoming.try_send(s);
            }
        }
    }

    /// When [`Apps::expire`] next has something to do: the earliest deadline of a
    /// request or an answer (none when idle, so an idle node is not woken for it).
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline);
        let answered = self.answered.values().map(|(_, until)| *until);
        pending.chain(answered).min()
    }

    /// Gives up on requests past their deadline and forgets old answers.
    pub(crate) fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(n, _)| *n)
            .collect();
        for peer in late {
            if let Some(p) = self.pending.remove(&peer)
                && let Some(r) = p.reply
            {
                if let Some(g) = p.ice {
                    tokio::spawn(g.close());
                }
                let why = p
                    .dial_error
                    .map(|e| format!("it did not connect to us, and we could not reach it ({e})"))
                    .unwrap_or_else(|| "it did not connect in time".into());
                let _ = r.send(Err(AppError::Unreachable { peer, why }));
            }
        }
        self.answered.retain(|_, (_, until)| *until > now);
    }
}

/// The requester's side of an ICE attempt: checks as the controlling agent, then the
/// TLS server over the pair, and the client must be the node asked.
async fn ice_requester(
    gathered: Gathered,
    remote: RemoteIce,
    cancel: tokio::sync::mpsc::Receiver<()>,
    tls: &TlsContext,
    peer: NodeId,
) -> Result<(LinkStream, PeerInfo), String> {
    let (io, addr) = gathered.connect(remote, true, cancel).await?;
    let (stream, info) = tls.accept_over(io, addr).await.map_err(|e| e.to_string())?;
    if info.node_id() != peer {
        return Err(format!(
            "the ICE peer is {}, not the device {peer}",
            info.node_id()
        ));
    }
    Ok((Box::new(stream), info))
}
