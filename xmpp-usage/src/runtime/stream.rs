//! One direct XMPP stream over TLS (XEP-0415 "Direct XMPP streams"): the RFC 6120
//! stream negotiation, stanza checks, keep-alives and the clean close.
//!
//! The AppAttach requester opens the XMPP stream (the *initiator*) and the answerer
//! *responds*, whichever of them opened the connection underneath (the overlay
//! runtime's application streams, `xor_overlay::runtime::apps`). Both sides were
//! authenticated by TLS: the peer's certificate carries the Node-ID at the end of the
//! destination list and the JID it claims. Its stream header must name that JID and
//! every stanza's `from` must be that JID (else `invalid-from`).

use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xor_overlay::runtime::LinkStream;

use super::driver::{Driver, outlet};
use crate::device::StreamRole as Role;
use crate::fanout::Device;
use crate::jid::Jid;
use crate::stanza;
use crate::stream::io::{StreamEnd, XmlIo};
use crate::stream::negotiate::{self, Negotiation, Outcome, Step};
use crate::stream::{NS_STREAMS, StreamCondition, StreamError, StreamEvent, writer};

/// How long a stream this end closed waits for the peer's close (RFC 6120 §4.4).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Stream settings.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub(crate) me: Jid,
    pub(crate) max_stanza: usize,
    pub(crate) keepalive: Duration,
    pub(crate) handshake_timeout: Duration,
}

type Conn = XmlIo<LinkStream>;

/// The JIDs the peer's certificate vouches for.
fn cert_jids(peer: &xor_overlay::runtime::PeerInfo) -> Vec<Jid> {
    peer.identity
        .xmpp_addrs
        .iter()
        .filter_map(|a| Jid::parse(a).ok())
        .map(|j| j.bare())
        .collect()
}

/// Negotiates the stream (the one negotiation machine, peer roles); the peer's full
/// JID.
async fn negotiate(
    conn: &mut Conn,
    id: u64,
    role: &Role,
    s: &StreamSettings,
    vouched: Vec<Jid>,
) -> Result<Jid, StreamEnd> {
    let me = s.me.clone();
    let role = match role {
        Role::Initiator { expect } => negotiate::Role::PeerInitiator {
            me,
            expect: expect.clone(),
            vouched,
        },
        Role::Responder => negotiate::Role::PeerResponder { me, vouched },
    };
    // Peer streams draw nothing at random (no stream id, no SASL): any seed will do.
    let mut n = Negotiation::new(role, id);
    let step = match tokio::time::timeout(s.handshake_timeout, conn.negotiate(&mut n)).await {
        Ok(step) => step,
        Err(_) => {
            n.timed_out("stream negotiation took too long");
            conn.negotiate(&mut n).await
        }
    };
    match step {
        Step::Done(Ok(Outcome::Peer(jid))) => Ok(jid),
        Step::Done(Err(e)) => Err(e),
        _ => Err(StreamEnd::Unexpected("a peer stream")),
    }
}

/// Checks a received top-level element: a stanza whose `from` is the peer (filled in
/// when absent).
fn check(mut el: Element, device: &Device) -> Result<Element, StreamError> {
    if !stanza::is_stanza(&el) {
        return Err(StreamError::new(
            StreamCondition::UnsupportedStanzaType,
            format!("<{}/> in {} is not a stanza", el.name(), el.ns()),
        ));
    }
    match stanza::from(&el) {
        None if el.attr("from").is_some() => Err(StreamError::new(
            StreamCondition::InvalidFrom,
            "malformed from",
        )),
        None => {
            stanza::set_attr(&mut el, "from", &device.jid.to_string());
            Ok(el)
        }
        Some(f) if f == device.jid || f == device.jid.bare() => Ok(el),
        Some(f) => Err(StreamError::new(
            StreamCondition::InvalidFrom,
            format!("{f} is not {}", device.jid),
        )),
    }
}

/// Runs a stream until it ends, feeding the device core through `driver`.
pub(crate) async fn run(
    id: u64,
    io: LinkStream,
    peer: xor_overlay::runtime::PeerInfo,
    role: Role,
    settings: StreamSettings,
    driver: Driver,
) {
    let node = peer.node_id();
    let addr = peer.addr;
    let vouched = cert_jids(&peer);
    let mut conn = Conn::new(io, settings.max_stanza);
    let device = match negotiate(&mut conn, id, &role, &settings, vouched).await {
        Ok(jid) => Device { node, jid },
        Err(reason) => {
            tracing::debug!(%node, %reason, "stream negotiation failed");
            driver.stream_down(id).await;
            return;
        }
    };
    let (tx, mut out) = outlet();
    if !driver.stream_up(id, device.clone(), addr, tx).await {
        let _ = conn.write(writer::close()).await;
        return;
    }
    let reason = serve(&mut conn, &mut out, &device, &settings, &driver, id).await;
    out.rx.close();
    tracing::debug!(device = %device.jid, %reason, "stream ended");
    driver.stream_down(id).await;
}

/// Carries stanzas both ways until the stream ends; why it ended.
async fn serve(
    conn: &mut Conn,
    out: &mut super::driver::Inlet,
    device: &Device,
    settings: &StreamSettings,
    driver: &Driver,
    id: u64,
) -> StreamEnd {
    let mut keepalive = tokio::time::interval(settings.keepalive);
    keepalive.tick().await;
    let mut last_read = tokio::time::Instant::now();
    // After this end closes (RFC 6120 §4.4), it keeps reading until the peer closes
    // too, for at most CLOSE_WAIT: stanzas the peer sent before it saw the close are
    // still delivered.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        // Hand over everything parsed so far.
        while let Some(ev) = conn.parser.poll() {
            match ev {
                StreamEvent::Element(el) if el.is("error", NS_STREAMS) => {
                    // RFC 6120 §4.9.1.1: the stream is over; no error goes back.
                    let _ = conn.io.shutdown().await;
                    return StreamError::from_element(&el)
                        .map_or(StreamEnd::Closed, StreamEnd::Received);
                }
                StreamEvent::Element(el) => match check(el, device) {
                    Ok(stanza) => driver.stream_stanza(id, stanza).await,
                    Err(e) => return conn.fail(e).await,
                },
                StreamEvent::Close => {
                    // Nothing more is queued here: a send that comes now finds the
                    // queue closed and goes to a new stream.
                    out.rx.close();
                    if closing.is_none() {
                        // Stanzas already handed to this stream go out before our
                        // close: the peer reads until it sees it.
                        while let Ok(el) = out.rx.try_recv() {
                            if conn.write(&writer::element(&el)).await.is_err() {
                                break;
                            }
                            out.written();
                        }
                        let _ = conn.write(writer::close()).await;
                    }
                    let _ = conn.io.shutdown().await;
                    return StreamEnd::ClosedByPeer;
                }
                StreamEvent::Header(_) => {}
            }
        }
        tokio::select! {
            read = conn.io.read(&mut conn.buf) => match read {
                Ok(0) => return StreamEnd::Eof,
                Err(e) => return StreamEnd::Io(e),
                Ok(n) => {
                    last_read = tokio::time::Instant::now();
                    if let Err(e) = conn.parser.feed(&conn.buf[..n]) {
                        return conn.fail(e).await;
                    }
                }
            },
            next = out.rx.recv(), if closing.is_none() => match next {
                Some(el) => {
                    let written = conn.write(&writer::element(&el)).await;
                    out.written();
                    if let Err(e) = written {
                        return StreamEnd::Io(e);
                    }
                }
                None => {
                    // The core closed this stream (redundant, or shutting down).
                    if conn.write(writer::close()).await.is_err() {
                        return StreamEnd::Closed;
                    }
                    closing = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                }
            },
            _ = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => {
                let _ = conn.io.shutdown().await;
                return StreamEnd::Closed;
            },
            _ = keepalive.tick() => {
                if last_read.elapsed() > settings.keepalive * 3 {
                    return conn.fail(StreamError::new(StreamCondition::ConnectionTimeout, "nothing received for three keep-alive intervals")).await;
                }
                // RFC 6120 §4.6.1: whitespace keeps the connection (and NATs) alive.
                if let Err(e) = conn.write(b" ").await {
                    return StreamEnd::Io(e);
                }
            }
        }
    }
}
