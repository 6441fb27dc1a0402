//! The one link abstraction of the runtime: the core asks for "a link to this peer at
//! these candidates" ([`crate::node::Event::Connect`], [`crate::node::Event::AppAttach`])
//! and gets an authenticated byte stream ([`LinkStream`]) with the verified peer,
//! whatever carries it. Overlay links, the XMPP usage's direct streams and every test
//! take streams from here; today the only transport is TLS over TCP (link type
//! TLS-TCP-FH-NO-ICE, §6.6.5), and a new one (DTLS over ICE) is added here without
//! touching the core, the link tasks or the applications.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use super::tls::{ConnectError, Expect, PeerInfo, TlsContext};

/// An authenticated, reliable, ordered byte stream to a peer.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> AsyncStream for T {}

/// A link's byte stream, whatever transport carries it.
pub type LinkStream = Box<dyn AsyncStream>;

/// How long after starting one candidate the next is tried, while the first is still
/// connecting (RFC 8305's "Happy Eyeballs" spacing).
pub const STAGGER: Duration = Duration::from_millis(250);

/// Connects to the peer at one of `candidates` (tried in order, each [`STAGGER`]
/// after the previous unless one has connected) and authenticates it as `expect`.
/// The first to connect wins; the others are dropped. The error lists what went
/// wrong with each candidate.
pub async fn dial(
    tls: &TlsContext,
    candidates: &[SocketAddr],
    expect: Expect,
) -> Result<(LinkStream, PeerInfo), ConnectError> {
    if candidates.is_empty() {
        return Err(ConnectError::Tls("no candidate to connect to".into()));
    }
    let mut attempts = JoinSet::new();
    for (i, addr) in candidates.iter().copied().enumerate() {
        let tls = tls.clone();
        let wait = STAGGER * i as u32;
        attempts.spawn(async move {
            tokio::time::sleep(wait).await;
            (addr, tls.connect(addr, expect).await)
        });
    }
    let mut errors = Vec::new();
    while let Some(done) = attempts.join_next().await {
        match done {
            Ok((_, Ok((stream, peer)))) => {
                attempts.abort_all();
                return Ok((Box::new(stream), peer));
            }
            Ok((addr, Err(e))) => errors.push(format!("{addr}: {e}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(ConnectError::Candidates(errors.join("; ")))
}
