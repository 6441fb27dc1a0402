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
use tokio::sync::mpsc;
use xor_overlay::id::NodeId;
use xor_overlay::runtime::LinkStream;

use crate::fanout::Device;
use crate::jid::Jid;
use crate::stanza;
use crate::stream::io::{StreamEnd, XmlIo};
use crate::stream::{NS_STREAMS, StreamCondition, StreamError, StreamEvent, writer};

/// Which end of the XMPP stream this is.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// We asked for the connection: we send the first header. `expect` is the user we
    /// resolved the device from.
    Initiator { expect: Jid },
    /// The peer asked (AppAttach): we answer its header.
    Responder,
}

/// How long a stream this end closed waits for the peer's close (RFC 6120 §4.4).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What a stream reports to the hub.
#[derive(Debug)]
pub(crate) enum StreamReport {
    Up {
        id: u64,
        device: Device,
        /// The peer's address on the path: its TCP endpoint, or the remote end of
        /// the ICE pair (a TURN server's relayed address when relayed).
        addr: std::net::SocketAddr,
        tx: mpsc::Sender<Element>,
    },
    Stanza {
        device: Device,
        stanza: Element,
    },
    Down {
        id: u64,
        device: Option<Device>,
        reason: StreamEnd,
    },
}

/// Stream settings.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub(crate) me: Jid,
    pub(crate) max_stanza: usize,
    pub(crate) keepalive: Duration,
    pub(crate) handshake_timeout: Duration,
    /// Devices with an open stream, at most (see the hub).
    pub(crate) max_streams: usize,
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

/// Negotiates the stream; returns the peer device.
async fn negotiate(
    conn: &mut Conn,
    role: &Role,
    s: &StreamSettings,
    node: NodeId,
    vouched: &[Jid],
) -> Result<Device, StreamEnd> {
    let me = s.me.to_string();
    match role {
        Role::Initiator { expect } => {
            if !vouched.contains(&expect.bare()) {
                return Err(conn
                    .fail(StreamError::new(
                        StreamCondition::NotAuthorized,
                        format!("certificate is not {expect}"),
                    ))
                    .await);
            }
            conn.write(&writer::header(Some(&me), Some(&expect.bare_str()), None))
                .await?;
            let StreamEvent::Header(h) = conn.next().await? else {
                return Err(StreamEnd::Unexpected("a stream header"));
            };
            let Some(device) = peer_device(h.from.as_deref(), vouched, node) else {
                return Err(conn
                    .fail(StreamError::new(
                        StreamCondition::InvalidFrom,
                        "the stream header names a JID the certificate does not carry",
                    ))
                    .await);
            };
            if device.jid.bare() != expect.bare() {
                return Err(conn
                    .fail(StreamError::new(
                        StreamCondition::InvalidFrom,
                        "stream from another JID than resolved",
                    ))
                    .await);
            }
            match conn.next().await? {
                StreamEvent::Element(f) if f.is("features", NS_STREAMS) => Ok(device),
                StreamEvent::Element(e) => Err(StreamError::from_element(&e).map_or(
                    StreamEnd::Unexpected("stream features"),
                    StreamEnd::Received,
                )),
                _ => Err(StreamEnd::Unexpected("stream features")),
            }
        }
        Role::Responder => {
            let StreamEvent::Header(h) = conn.next().await? else {
                return Err(StreamEnd::Unexpected("a stream header"));
            };
            let Some(device) = peer_device(h.from.as_deref(), vouched, node) else {
                return Err(conn
                    .fail(StreamError::new(
                        StreamCondition::InvalidFrom,
                        "the stream header names a JID the certificate does not carry",
                    ))
                    .await);
            };
            let to_me =
                h.to.as_deref()
                    .and_then(|t| Jid::parse(t).ok())
                    .is_some_and(|t| t.bare() == s.me.bare());
            if !to_me {
                return Err(conn
                    .fail(StreamError::new(
                        StreamCondition::HostUnknown,
                        "this device is not the stream's addressee",
                    ))
                    .await);
            }
            let mut reply = writer::header(Some(&me), Some(&device.jid.to_string()), None);
            reply.extend(writer::features(&[]));
            conn.write(&reply).await?;
            Ok(device)
        }
    }
}

/// The device named by a stream header's `from`, if the certificate vouches for it and
/// it carries a resource.
fn peer_device(from: Option<&str>, vouched: &[Jid], node: NodeId) -> Option<Device> {
    let jid = Jid::parse(from?).ok()?;
    (!jid.is_bare() && vouched.contains(&jid.bare())).then_some(Device { node, jid })
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

/// Runs a stream until it ends; reports to the hub.
pub(crate) async fn run(
    id: u64,
    io: LinkStream,
    peer: xor_overlay::runtime::PeerInfo,
    role: Role,
    settings: StreamSettings,
    hub: mpsc::Sender<StreamReport>,
) {
    let node = peer.node_id();
    let addr = peer.addr;
    let vouched = cert_jids(&peer);
    let mut conn = Conn::new(io, settings.max_stanza);
    let negotiated = tokio::time::timeout(
        settings.handshake_timeout,
        negotiate(&mut conn, &role, &settings, node, &vouched),
    )
    .await;
    let device = match negotiated {
        Ok(Ok(d)) => d,
        Ok(Err(reason)) => {
            let _ = hub
                .send(StreamReport::Down {
                    id,
                    device: None,
                    reason,
                })
                .await;
            return;
        }
        Err(_) => {
            let e = StreamError::new(
                StreamCondition::ConnectionTimeout,
                "stream negotiation took too long",
            );
            let reason = conn.fail(e).await;
            let _ = hub
                .send(StreamReport::Down {
                    id,
                    device: None,
                    reason,
                })
                .await;
            return;
        }
    };
    let (tx, mut out) = mpsc::channel::<Element>(256);
    if hub
        .send(StreamReport::Up {
            id,
            device: device.clone(),
            addr,
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut keepalive = tokio::time::interval(settings.keepalive);
    keepalive.tick().await;
    let mut last_read = tokio::time::Instant::now();
    // After this end closes (RFC 6120 §4.4), it keeps reading until the peer closes
    // too, for at most CLOSE_WAIT: stanzas the peer sent before it saw the close are
    // still delivered.
    let mut closing: Option<tokio::time::Instant> = None;
    let reason = loop {
        // Hand over everything parsed so far.
        while let Some(ev) = conn.parser.poll() {
            match ev {
                StreamEvent::Element(el) if el.is("error", NS_STREAMS) => {
                    // RFC 6120 §4.9.1.1: the stream is over; no error goes back.
                    let _ = conn.io.shutdown().await;
                    let e = StreamError::from_element(&el)
                        .map_or(StreamEnd::Closed, StreamEnd::Received);
                    let _ = hub
                        .send(StreamReport::Down {
                            id,
                            device: Some(device),
                            reason: e,
                        })
                        .await;
                    return;
                }
                StreamEvent::Element(el) => match check(el, &device) {
                    Ok(stanza) => {
                        if hub
                            .send(StreamReport::Stanza {
                                device: device.clone(),
                                stanza,
                            })
                            .await
                            .is_err()
                        {
                            let _ = conn.write(writer::close()).await;
                            break;
                        }
                    }
                    Err(e) => {
                        let reason = conn.fail(e).await;
                        let _ = hub
                            .send(StreamReport::Down {
                                id,
                                device: Some(device.clone()),
                                reason,
                            })
                            .await;
                        return;
                    }
                },
                StreamEvent::Close => {
                    if closing.is_none() {
                        // Stanzas already handed to this stream go out before our
                        // close: the peer reads until it sees it.
                        while let Ok(el) = out.try_recv() {
                            if conn.write(&writer::element(&el)).await.is_err() {
                                break;
                            }
                        }
                        let _ = conn.write(writer::close()).await;
                    }
                    let _ = conn.io.shutdown().await;
                    let _ = hub
                        .send(StreamReport::Down {
                            id,
                            device: Some(device),
                            reason: StreamEnd::ClosedByPeer,
                        })
                        .await;
                    return;
                }
                StreamEvent::Header(_) => {}
            }
        }
        tokio::select! {
            read = conn.io.read(&mut conn.buf) => match read {
                Ok(0) => break StreamEnd::Eof,
                Err(e) => break StreamEnd::Io(e),
                Ok(n) => {
                    last_read = tokio::time::Instant::now();
                    if let Err(e) = conn.parser.feed(&conn.buf[..n]) {
                        break conn.fail(e).await;
                    }
                }
            },
            next = out.recv(), if closing.is_none() => match next {
                Some(el) => {
                    if let Err(e) = conn.write(&writer::element(&el)).await {
                        break StreamEnd::Io(e);
                    }
                }
                None => {
                    // The hub closed this stream (redundant, or shutting down).
                    if conn.write(writer::close()).await.is_err() {
                        break StreamEnd::Closed;
                    }
                    closing = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                }
            },
            _ = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => {
                let _ = conn.io.shutdown().await;
                break StreamEnd::Closed;
            },
            _ = keepalive.tick() => {
                if last_read.elapsed() > settings.keepalive * 3 {
                    break conn.fail(StreamError::new(StreamCondition::ConnectionTimeout, "nothing received for three keep-alive intervals")).await;
                }
                // RFC 6120 §4.6.1: whitespace keeps the connection (and NATs) alive.
                if let Err(e) = conn.write(b" ").await {
                    break StreamEnd::Io(e);
                }
            }
        }
    };
    let _ = hub
        .send(StreamReport::Down {
            id,
            device: Some(device),
            reason,
        })
        .await;
}
