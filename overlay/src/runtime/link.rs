//! Overlay links over TLS: one task per link running a [`FramedLink`], and a listener
//! that accepts and authenticates incoming links without letting one slow or bad
//! handshake hold up the others.

use super::clock::sleep_until;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use super::admission::PendingTable;
use super::clock::Clock;
use super::tls::{ConnectError, PeerInfo, TlsContext};
use super::transport::LinkStream;
use crate::id::NodeId;
use crate::link::{FramedLink, LinkConfig, LinkError, LinkHealth};
use crate::wire::ForwardingHeader;

pub use crate::node::LinkId;

/// Builds the signed Error_Message_Too_Large answer to an oversize request received
/// from `peer` (§6.6). `None` closes without answering.
pub type OversizeResponder = Arc<dyn Fn(&ForwardingHeader, NodeId) -> Option<Bytes> + Send + Sync>;

/// Per-link settings.
#[derive(Clone, Default)]
pub struct LinkOptions {
    /// Framing parameters.
    pub config: LinkConfig,
    /// How to answer an oversize message before closing.
    pub on_oversize: Option<OversizeResponder>,
}

impl std::fmt::Debug for LinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkOptions")
            .field("config", &self.config)
            .finish()
    }
}

/// What a link reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A RELOAD message (or fragment) arrived.
    Message(Bytes),
    /// The link's health changed (§6.6.5).
    Health(LinkHealth, Vec<Bytes>),
    /// The smoothed round-trip time was first measured or moved by a quarter.
    Rtt(Duration),
    /// The link is gone, with the reason if it was not a clean close.
    Closed(Option<String>),
}

enum Command {
    Send(Bytes),
    Keepalive(bool),
    Close,
}

/// Bytes queued for writing above which new messages wait.
const HIGH_WATER: usize = 1 << 20;
/// Events queued for the owner above which reading pauses.
const MAX_PENDING_EVENTS: usize = 64;
/// Commands queued per link.
const COMMAND_QUEUE: usize = 4096;

/// A running link. Dropping it does not close the link; call [`Link::close`].
#[derive(Debug, Clone)]
pub struct Link {
    id: LinkId,
    peer: PeerInfo,
    commands: mpsc::Sender<Command>,
}

/// The link's task has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the link is closed")]
pub struct LinkClosed;

impl Link {
    /// Starts the task of a link over an established TLS stream. Events go to `events`
    /// tagged with `id`.
    pub fn spawn(
        id: LinkId,
        stream: LinkStream,
        peer: PeerInfo,
        options: LinkOptions,
        events: mpsc::Sender<(LinkId, LinkEvent)>,
        clock: Clock,
    ) -> Link {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = LinkTask {
            id,
            peer_node: peer.node_id(),
            framed: FramedLink::new(options.config.clone()),
            responder: options.on_oversize,
            commands: rx,
            events,
            clock,
        };
        tokio::spawn(task.run(stream));
        Link {
            id,
            peer,
            commands: tx,
        }
    }

    /// This link's id.
    pub fn id(&self) -> LinkId {
        self.id
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Queues a message; waits while the link's queue is full.
    pub async fn send(&self, message: Bytes) -> Result<(), LinkClosed> {
        self.commands
            .send(Command::Send(message))
            .await
            .map_err(|_| LinkClosed)
    }

    /// Queues a message if there is room.
    pub fn try_send(&self, message: Bytes) -> Result<(), LinkClosed> {
        self.commands
            .try_send(Command::Send(message))
            .map_err(|_| LinkClosed)
    }

    /// Turns this end's keep-alive probes on or off ([`FramedLink::set_keepalive`]).
    pub fn set_keepalive(&self, on: bool) {
        let _ = self.commands.try_send(Command::Keepalive(on));
    }

    /// Closes the link after what is queued has been written.
    pub fn close(&self) {
        let _ = self.commands.try_send(Command::Close);
    }

    /// Whether the link's task has ended.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

struct LinkTask {
    id: LinkId,
    peer_node: NodeId,
    framed: FramedLink,
    responder: Option<OversizeResponder>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
    clock: Clock,
}

impl LinkTask {
    async fn run(self, stream: LinkStream) {
        let LinkTask {
            id,
            peer_node,
            mut framed,
            responder,
            mut commands,
            events,
            clock,
        } = self;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut out = BytesMut::new();
        let mut readbuf = vec![0u8; 16 * 1024];
        let mut pending: VecDeque<LinkEvent> = VecDeque::new();
        // Some(reason) once the link is closing; it closes when `out` is written.
        let mut closing: Option<Option<String>> = None;
        loop {
            while let Some(bytes) = framed.poll_transmit() {
                out.extend_from_slice(&bytes);
            }
            while let Some(message) = framed.poll_message() {
                pending.push_back(LinkEvent::Message(message));
            }
            if let Some(rtt) = framed.poll_rtt() {
                pending.push_back(LinkEvent::Rtt(rtt));
            }
            if let Some(health) = framed.poll_health() {
                // A suspect link hands back what it had not acknowledged, to be
                // routed around it.
                let unacked = match health {
                    LinkHealth::Suspect => framed.take_unacked(),
                    _ => Vec::new(),
                };
                pending.push_back(LinkEvent::Health(health, unacked));
                if health == LinkHealth::Failed {
                    closing.get_or_insert(Some("no acknowledgement from the peer".into()));
                }
            }
            if closing.is_some() && out.is_empty() {
                break;
            }
            let deadline = framed.poll_timeout().map(|t| clock.deadline(t));
            tokio::select! {
                biased;
                permit = events.reserve(), if !pending.is_empty() => match permit {
                    Ok(permit) => permit.send((id, pending.pop_front().expect("non-empty"))),
                    Err(_) => {
                        // The owner is gone: nobody will read what is pending.
                        pending.clear();
                        closing = Some(None);
                    }
                },
                written = wr.write(&out), if !out.is_empty() => match written {
                    Ok(0) | Err(_) => {
                        closing.get_or_insert(Some("write failed".into()));
                        out.clear();
                    }
                    Ok(n) => {
                        out.advance(n);
                        if out.is_empty() && wr.flush().await.is_err() {
                            closing.get_or_insert(Some("flush failed".into()));
                        }
                    }
                },
                read = rd.read(&mut readbuf), if closing.is_none() && pending.len() < MAX_PENDING_EVENTS => match read {
                    Ok(0) => closing = Some(Some("the peer closed the connection".into())),
                    Err(e) => closing = Some(Some(format!("read failed: {e}"))),
                    Ok(n) => {
                        if let Err(e) = framed.handle_bytes(&readbuf[..n], clock.now()) {
                            refuse(&mut framed, responder.as_ref(), peer_node, &clock, &e);
                            closing = Some(Some(e.to_string()));
                        }
                    }
                },
                command = commands.recv(), if closing.is_none() && out.len() < HIGH_WATER => match command {
                    Some(Command::Send(message)) => {
                        if let Err(e) = framed.send(message, clock.now()) {
                            tracing::warn!(link = id.0, error = %e, "message not sent");
                        }
                    }
                    Some(Command::Keepalive(on)) => framed.set_keepalive(on),
                    Some(Command::Close) | None => closing = Some(None),
                },
                () = sleep_until(deadline), if deadline.is_some() => framed.handle_timeout(clock.now()),
            }
        }
        let _ = wr.shutdown().await;
        for event in pending {
            let _ = events.send((id, event)).await;
        }
        let _ = events
            .send((id, LinkEvent::Closed(closing.flatten())))
            .await;
    }
}

/// Answers an oversize message with Error_Message_Too_Large before closing (§6.6).
fn refuse(
    framed: &mut FramedLink,
    responder: Option<&OversizeResponder>,
    peer: NodeId,
    clock: &Clock,
    e: &LinkError,
) {
    if let (
        LinkError::MessageTooLarge {
            header: Some(header),
            ..
        },
        Some(responder),
    ) = (e, responder)
        && let Some(answer) = responder(header, peer)
    {
        let _ = framed.send(answer, clock.now());
    }
}

/// An authenticated incoming connection.
#[derive(Debug)]
pub struct Accepted {
    /// The stream.
    pub stream: LinkStream,
    /// Who connected.
    pub peer: PeerInfo,
}

/// Handshakes allowed to run at once; a newcomer beyond it closes the oldest.
pub const MAX_HANDSHAKES: usize = 64;
/// Handshakes from one address at once; a newcomer beyond it closes that address's
/// oldest silent one (many real peers may share an address behind a NAT, and a node
/// joining on one host gets a dozen handshakes at once from its neighbours).
pub const HANDSHAKES_PER_ADDRESS: usize = 16;
/// How long an accepted connection may stay silent before its first TLS record.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an accepted connection may take to finish the TLS handshake.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts TLS connections from overlay nodes. Each handshake runs in its own task so a
/// bad or slow peer does not hold up the next one; handshakes are bounded per address
/// and in all, and idle sockets cannot keep real peers out (see [`PendingTable`]).
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    accepted: mpsc::Receiver<Result<Accepted, ConnectError>>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens on `addr`.
    pub async fn bind(addr: SocketAddr, tls: TlsContext) -> std::io::Result<Listener> {
        let tcp = TcpListener::bind(addr).await?;
        let local_addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
        let task = tokio::spawn(accept_loop(tcp, tls, tx));
        Ok(Listener {
            local_addr,
            accepted: rx,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next incoming connection, or why one was refused.
    pub async fn accept(&mut self) -> Option<Result<Accepted, ConnectError>> {
        self.accepted.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Handshakes {
    table: PendingTable,
    tasks: HashMap<u64, AbortHandle>,
}

async fn accept_loop(
    tcp: TcpListener,
    tls: TlsContext,
    tx: mpsc::Sender<Result<Accepted, ConnectError>>,
) {
    let handshakes = Arc::new(std::sync::Mutex::new(Handshakes {
        table: PendingTable::new(MAX_HANDSHAKES, HANDSHAKES_PER_ADDRESS),
        tasks: HashMap::new(),
    }));
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut h = handshakes.lock().unwrap_or_else(|p| p.into_inner());
        let admitted = h.table.arrive(addr.ip());
        for old in admitted.evict {
            if let Some(task) = h.tasks.remove(&old) {
                tracing::debug!(%addr, "handshake slots full: the oldest pending handshake is closed");
                task.abort();
            }
        }
        let id = admitted.id;
        let (tls, tx, slots) = (tls.clone(), tx.clone(), handshakes.clone());
        // Spawned under the lock, so the task's clean-up runs after its handle is kept.
        let task = tokio::spawn(async move {
            let result = handshake(&tls, stream, addr, || {
                let mut h = slots.lock().unwrap_or_else(|p| p.into_inner());
                h.table.spoke(id);
            })
            .await;
            {
                let mut h = slots.lock().unwrap_or_else(|p| p.into_inner());
                h.table.done(id);
                h.tasks.remove(&id);
            }
            if let Err(e) = &result {
                tracing::debug!(%addr, error = %e, "refused incoming link");
            }
            let _ = tx.send(result).await;
        });
        h.tasks.insert(id, task.abort_handle());
    }
}

/// The server side of one handshake, within [`FIRST_BYTE_TIMEOUT`] and
/// [`ACCEPT_TIMEOUT`].
async fn handshake(
    tls: &TlsContext,
    stream: TcpStream,
    addr: SocketAddr,
    spoke: impl FnOnce(),
) -> Result<Accepted, ConnectError> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => spoke(),
        Ok(Ok(_)) => return Err(ConnectError::Tls("closed before the handshake".into())),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Err(_) => return Err(ConnectError::Timeout),
    }
    tokio::time::timeout(ACCEPT_TIMEOUT, tls.accept(stream, addr))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map(|(stream, peer)| Accepted {
            stream: Box::new(stream),
            peer,
        })
}
