//! RFC 6120 stream negotiation, sans-IO: one machine for every stream xor opens or
//! accepts.
//!
//! - **Peer streams** (XEP-0415 "Direct XMPP streams"), both ends already
//!   authenticated by TLS certificates: the initiator sends its header, the responder
//!   answers with its header and empty features ([`Role::PeerInitiator`],
//!   [`Role::PeerResponder`]).
//! - **The local client port** ([`Role::Server`]): STARTTLS (required), SASL
//!   (SCRAM-SHA-256, SCRAM-SHA-1, PLAIN; three failures), resource binding to the
//!   account's full JID.
//! - **The C2S fallback client** ([`Role::Client`]): the same steps from the other
//!   side.
//!
//! Feed it the [`StreamEvent`]s the parser makes ([`Negotiation::handle`]) and what
//! the transport did ([`Negotiation::tls_up`], [`Negotiation::resume`],
//! [`Negotiation::timed_out`], [`Negotiation::ended`]); take [`Step`]s from
//! [`Negotiation::poll`]: bytes to write, a new parser, and the points where the
//! driver must act (TLS, the SASL throttle) or stop. `stream::io::XmlIo::negotiate`
//! is the tokio driver. Stream ids, SCRAM nonces and salts come from a seeded RNG.
//! The nonzas are `xmpp-parsers` types (`starttls`, `sasl`, `bind`,
//! `stream_features`).

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use minidom::Element;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{NS_STREAMS, StreamCondition, StreamEnd, StreamError, StreamEvent, writer};
use crate::jid::Jid;

pub use client::{CLIENT_MAX_ELEMENT, ClientConfig};
pub use server::{MAX_AUTH_FAILURES, ServerConfig};

/// Largest element a client may send before it has logged in: SASL and STARTTLS
/// elements are a few hundred bytes, so a stranger's connection holds at most this
/// much parsed XML (plus the parser's 16 KiB token limit and the read buffer).
pub const PRE_AUTH_MAX_ELEMENT: usize = 8 * 1024;

/// Which end of which stream.
#[derive(Debug, Clone)]
pub enum Role {
    /// Opens a direct stream to a device of `expect` (the JID the AppAttach resolved).
    /// `vouched`: the bare JIDs the peer's certificate carries.
    PeerInitiator {
        /// This device.
        me: Jid,
        /// The user at the other end.
        expect: Jid,
        /// The peer certificate's JIDs (bare).
        vouched: Vec<Jid>,
    },
    /// Answers a direct stream.
    PeerResponder {
        /// This device.
        me: Jid,
        /// The peer certificate's JIDs (bare).
        vouched: Vec<Jid>,
    },
    /// The local client port.
    Server(ServerConfig),
    /// The C2S fallback client.
    Client(ClientConfig),
}

/// What a finished negotiation gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A direct stream with this device (full JID, vouched for by its certificate).
    Peer(Jid),
    /// A client logged in on the local port and is bound to the account's JID.
    Session,
    /// The fallback client is bound to this full JID.
    Bound(Jid),
}

/// What the driver does next.
#[derive(Debug)]
pub enum Step {
    /// Write these bytes.
    Write(Vec<u8>),
    /// Read on with a new parser taking elements up to this size (a stream restart,
    /// RFC 6120 §5.4.3.3 and §6.4.6: what was read but not parsed is dropped).
    NewParser(usize),
    /// The other end sent its first stream header (the local port counts the
    /// connection as active from here).
    Opened,
    /// Start TLS on the transport now, then call [`Negotiation::tls_up`].
    StartTls,
    /// A SASL attempt arrived: the driver takes its turn (the local port spaces the
    /// attempts of one address), then calls [`Negotiation::resume`].
    Authenticating,
    /// The negotiation is over. After `Err(StreamEnd::Sent(_))` the error has been
    /// written and the transport should be shut down.
    Done(Result<Outcome, StreamEnd>),
}

/// Which stream of a client–server negotiation: they restart after TLS and after
/// SASL (RFC 6120 §5.4.3.3, §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Plain,
    Tls,
    Authenticated,
}

/// Where the negotiation is.
#[derive(Debug)]
enum Phase {
    /// Waiting for the peer's header (peer streams).
    PeerHeader,
    /// The initiator waits for the responder's features.
    PeerFeatures(Jid),
    Server(server::Phase),
    Client(client::Phase),
    Done,
}

/// One stream's negotiation.
#[derive(Debug)]
pub struct Negotiation {
    role: Role,
    phase: Phase,
    steps: VecDeque<Step>,
    /// Whether this end's header went out (a stream error needs one first, RFC 6120
    /// §4.9.1.1).
    header_sent: bool,
    rng: ChaCha20Rng,
}

impl Negotiation {
    /// A negotiation for `role`; `seed` drives stream ids and SASL nonces.
    pub fn new(role: Role, seed: u64) -> Negotiation {
        let mut n = Negotiation {
            role,
            phase: Phase::Done,
            steps: VecDeque::new(),
            header_sent: false,
            rng: ChaCha20Rng::seed_from_u64(seed),
        };
        n.phase = match &n.role {
            Role::PeerInitiator {
                me,
                expect,
                vouched,
            } => {
                if vouched.contains(&expect.bare()) {
                    let header =
                        writer::header(Some(&me.to_string()), Some(&expect.bare_str()), None);
                    n.write(header);
                    n.header_sent = true;
                    Phase::PeerHeader
                } else {
                    let e = StreamError::new(
                        StreamCondition::NotAuthorized,
                        format!("certificate is not {expect}"),
                    );
                    n.fail(e);
                    Phase::Done
                }
            }
            Role::PeerResponder { .. } => Phase::PeerHeader,
            Role::Server(_) => Phase::Server(server::Phase::Header(Stage::Plain)),
            Role::Client(c) => {
                let header = writer::header(None, Some(c.jid.domain()), None);
                n.write(header);
                n.header_sent = true;
                Phase::Client(client::Phase::Features(Stage::Plain))
            }
        };
        n
    }

    /// The next thing to do, if any. When it returns `None` the driver reads.
    pub fn poll(&mut self) -> Option<Step> {
        self.steps.pop_front()
    }

    /// Whether the negotiation is over (its `Done` step may still be queued).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// An event from the stream.
    pub fn handle(&mut self, ev: StreamEvent) {
        if self.is_done() {
            return;
        }
        if let StreamEvent::Element(el) = &ev
            && el.is("error", NS_STREAMS)
        {
            // RFC 6120 §4.9.1.1: the stream is over; no error goes back.
            let end = StreamError::from_element(el).map_or(StreamEnd::Closed, StreamEnd::Received);
            return self.finish(Err(end));
        }
        if ev == StreamEvent::Close {
            return self.finish(Err(StreamEnd::ClosedByPeer));
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::PeerHeader => self.peer_header(ev),
            Phase::PeerFeatures(jid) => match ev {
                StreamEvent::Element(f) if f.is("features", NS_STREAMS) => {
                    self.finish(Ok(Outcome::Peer(jid)));
                }
                _ => self.finish(Err(StreamEnd::Unexpected("stream features"))),
            },
            Phase::Server(p) => self.server_event(p, ev),
            Phase::Client(p) => self.client_event(p, ev),
            Phase::Done => {}
        }
    }

    /// The transport ended or failed (`end` says how).
    pub fn ended(&mut self, end: StreamEnd) {
        if !self.is_done() {
            self.finish(Err(end));
        }
    }

    /// The time for the negotiation ran out: a `connection-timeout` stream error.
    pub fn timed_out(&mut self, what: &str) {
        if !self.is_done() {
            self.fail(StreamError::new(StreamCondition::ConnectionTimeout, what));
        }
    }

    /// TLS is up after [`Step::StartTls`]: the stream restarts.
    pub fn tls_up(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Server(p) => self.server_tls_up(p),
            Phase::Client(p) => self.client_tls_up(p),
            other => self.phase = other,
        }
    }

    /// The driver's turn came after [`Step::Authenticating`].
    pub fn resume(&mut self) {
        if let Phase::Server(server::Phase::Throttled(auth)) =
            std::mem::replace(&mut self.phase, Phase::Done)
        {
            self.server_auth(auth);
        }
    }

    fn write(&mut self, bytes: Vec<u8>) {
        self.steps.push_back(Step::Write(bytes));
    }

    fn send(&mut self, el: Element) {
        self.write(writer::element(&el));
    }

    fn finish(&mut self, result: Result<Outcome, StreamEnd>) {
        self.phase = Phase::Done;
        self.steps.push_back(Step::Done(result));
    }

    /// Sends stream error `e` (after a header of ours if none went out) and ends.
    fn fail(&mut self, e: StreamError) {
        if !self.header_sent {
            let header = self.own_header(None);
            self.write(header);
            self.header_sent = true;
        }
        self.write(writer::error(&e));
        self.finish(Err(StreamEnd::Sent(e)));
    }

    /// This end's header, answering a stream to `to`.
    fn own_header(&mut self, to: Option<&str>) -> Vec<u8> {
        match &self.role {
            Role::PeerInitiator { me, .. } | Role::PeerResponder { me, .. } => {
                writer::header(Some(&me.to_string()), to, None)
            }
            Role::Server(c) => {
                let domain = c.account.domain().to_owned();
                let id = self.stream_id();
                writer::header(Some(&domain), to, Some(&id))
            }
            Role::Client(c) => writer::header(None, Some(c.jid.domain()), None),
        }
    }

    fn stream_id(&mut self) -> String {
        let mut id = [0u8; 8];
        self.rng.fill_bytes(&mut id);
        hex::encode(id)
    }

    fn peer_header(&mut self, ev: StreamEvent) {
        let StreamEvent::Header(h) = ev else {
            return self.finish(Err(StreamEnd::Unexpected("a stream header")));
        };
        let (me, vouched, expect) = match &self.role {
            Role::PeerInitiator {
                me,
                vouched,
                expect,
            } => (me.clone(), vouched, Some(expect.bare())),
            Role::PeerResponder { me, vouched } => (me.clone(), vouched, None),
            _ => return,
        };
        // The header names a device of a user the certificate carries.
        let device = h
            .from
            .as_deref()
            .and_then(|f| Jid::parse(f).ok())
            .filter(|j| !j.is_bare() && vouched.contains(&j.bare()));
        let Some(device) = device else {
            return self.fail(StreamError::new(
                StreamCondition::InvalidFrom,
                "the stream header names a JID the certificate does not carry",
            ));
        };
        if let Some(expect) = expect {
            if device.bare() != expect {
                return self.fail(StreamError::new(
                    StreamCondition::InvalidFrom,
                    "stream from another JID than resolved",
                ));
            }
            self.phase = Phase::PeerFeatures(device);
            return;
        }
        let to_me =
            h.to.as_deref()
                .and_then(|t| Jid::parse(t).ok())
                .is_some_and(|t| t.bare() == me.bare());
        if !to_me {
            return self.fail(StreamError::new(
                StreamCondition::HostUnknown,
                "this device is not the stream's addressee",
            ));
        }
        let mut reply = self.own_header(Some(&device.to_string()));
        reply.extend(writer::features(&[]));
        self.write(reply);
        self.header_sent = true;
        self.finish(Ok(Outcome::Peer(device)));
    }
}
