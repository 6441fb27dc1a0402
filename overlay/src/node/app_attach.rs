//! AppAttach (§6.5.2): direct connections for applications such as XMPP (5222).
//!
//! As with Attach, the answerer is told to dial the requester's candidates
//! ([`Event::AppAttach`]), within the limits of [`super::dials`]; the runtime also
//! lets the requester dial the answer's candidates when nothing came (see
//! [`super::attach`]), and hands the application the first connection either way.
//!
//! With ICE (§6.5.1.5 – §6.5.1.10): a requester whose runtime gathered candidates
//! sends them (UDP, link type DTLS-UDP-SR) beside its TLS-TCP ones, with the agent's
//! ufrag and password. The answerer's answer then waits until its runtime has
//! gathered too ([`Node::answer_app_attach`]; the request is "answered later", as
//! §6.5.2.2 lets a peer "generate its own response" after processing), and both run
//! connectivity checks, the requester controlling (§6.5.1.9). Whatever path connects
//! first — TCP either way, or the ICE pair — carries the application's stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use super::attach::check_candidate_count;
use super::dials::{MAX_DIALS, dialable};
use super::{Event, Node};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::codec::Encode;
use crate::wire::{
    AppAttach, Body, Destination, ErrorCode, ErrorResponse, ForwardingHeader, IceCandidate,
    Message, MessageCode, attach::link_type,
};

/// Remote ICE candidates read from one AppAttach (more are ignored).
pub const MAX_ICE_CANDIDATES: usize = 16;
/// AppAttach answers that may wait for the runtime's ICE gathering at once; beyond
/// that a request is answered at once without ICE.
pub const MAX_DEFERRED_ANSWERS: usize = 64;

/// This node's side of an ICE exchange: the agent's credentials and its gathered
/// candidates (§6.5.1.5; non-trickle: all of them go in the one message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceOffer {
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub password: String,
    /// Gathered candidates (host, server-reflexive, relayed), link type DTLS-UDP-SR.
    pub candidates: Vec<IceCandidate>,
}

/// The peer's ICE parameters from its AppAttach (checked: UTF-8 credentials,
/// unicast UDP candidates, at most [`MAX_ICE_CANDIDATES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIce {
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub password: String,
    /// The peer's ICE candidates.
    pub candidates: Vec<IceCandidate>,
}

/// Names an AppAttach answer that waits for [`Node::answer_app_attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnswerToken(pub u64);

#[derive(Debug)]
struct Deferred {
    header: ForwardingHeader,
    request: (u64, NodeId),
    application: u16,
    max_response_length: usize,
    expires: Instant,
}

/// AppAttach answers waiting for ICE candidates.
#[derive(Debug, Default)]
pub(crate) struct DeferredAnswers {
    waiting: BTreeMap<AnswerToken, Deferred>,
    next: u64,
}

impl RemoteIce {
    /// The ICE part of a peer's AppAttach, if it has one this node can use.
    pub fn from_app_attach(msg: &AppAttach, on_loopback: bool) -> Option<RemoteIce> {
        let ufrag = std::str::from_utf8(&msg.ufrag).ok()?;
        let password = std::str::from_utf8(&msg.password).ok()?;
        // RFC 8445 §5.3: ufrag at least 4, password at least 22 characters, ice-chars.
        let ice_chars = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        if ufrag.len() < 4 || password.len() < 22 || !ice_chars(ufrag) || !ice_chars(password) {
            return None;
        }
        let candidates: Vec<IceCandidate> = msg
            .candidates
            .iter()
            .filter(|c| c.overlay_link == link_type::DTLS_UDP_SR)
            .filter(|c| {
                c.socket_addr()
                    .is_some_and(|a| dialable(a, on_loopback).is_ok())
            })
            .take(MAX_ICE_CANDIDATES)
            .cloned()
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(RemoteIce {
            ufrag: ufrag.to_owned(),
            password: password.to_owned(),
            candidates,
        })
    }
}

impl Node {
    /// The application's connection to AppAttach candidates `addrs` succeeded (`ok`)
    /// or failed; failed addresses are refused for a while.
    pub fn app_dial_done(&mut self, addrs: &[SocketAddr], ok: bool, now: Instant) {
        self.dials.done(addrs, ok, now);
    }

    /// The ICE parameters of an AppAttach answer, if it has usable ones.
    pub fn app_answer_ice(&self, answer: &AppAttach) -> Option<RemoteIce> {
        RemoteIce::from_app_attach(answer, self.on_loopback())
    }

    /// The candidates of an AppAttach answer this node may dial, in order (for a
    /// requester whose peer's connection did not come).
    pub fn app_answer_candidates(&self, answer: &AppAttach) -> Vec<SocketAddr> {
        let on_loopback = self.on_loopback();
        answer
            .candidates
            .iter()
            .filter_map(IceCandidate::socket_addr)
            .filter(|a| dialable(*a, on_loopback).is_ok())
            .take(MAX_DIALS)
            .collect()
    }

    /// Asks the node at the end of `destination` for an application connection
    /// (§6.5.2). The answer names the peer; it then connects to this node's listener
    /// for `application` (this node is the TLS server, as with Attach, §6.5.1.13).
    /// With `ice`, the request offers the runtime's gathered ICE candidates too.
    pub fn app_attach(
        &mut self,
        destination: Vec<Destination>,
        application: u16,
        ice: Option<IceOffer>,
        now: Instant,
    ) -> super::RequestId {
        let body = self.app_attach_body(application, b"passive", ice);
        self.request(destination, Body::AppAttachReq(body), now)
    }

    fn app_attach_body(
        &mut self,
        application: u16,
        role: &'static [u8],
        ice: Option<IceOffer>,
    ) -> AppAttach {
        let base = self.attach_body(role, false);
        let mut candidates: Vec<IceCandidate> = self
            .cfg
            .applications
            .iter()
            .filter(|(id, _)| *id == application)
            .map(|(_, addr)| IceCandidate::tls_host(*addr))
            .collect();
        let (ufrag, password) = match ice {
            Some(offer) => {
                candidates.extend(offer.candidates.into_iter().take(MAX_ICE_CANDIDATES));
                (Bytes::from(offer.ufrag), Bytes::from(offer.password))
            }
            None => (base.ufrag, base.password),
        };
        AppAttach {
            ufrag,
            password,
            application,
            role: base.role,
            candidates,
        }
    }

    /// Sends the answer that waited for ICE gathering (see [`Event::AppAttach`]),
    /// with this node's `offer` if gathering worked. An unknown or expired token is
    /// ignored.
    pub fn answer_app_attach(&mut self, token: AnswerToken, offer: Option<IceOffer>, now: Instant) {
        self.expire_deferred(now);
        let Some(d) = self.app_ice.waiting.remove(&token) else {
            return;
        };
        let body = Body::AppAttachAns(self.app_attach_body(d.application, b"active", offer));
        let Ok(mut bytes) = body.to_bytes() else {
            return;
        };
        let mut code = body.code();
        if d.max_response_length != 0 && bytes.len() + 200 > d.max_response_length {
            code = MessageCode::ERROR;
            bytes = ErrorResponse::new(
                ErrorCode::ResponseTooLarge,
                "response exceeds max_response_length",
            )
            .to_bytes()
            .unwrap_or_default();
        }
        // A retransmission of the request gets the same answer (§6.2.1).
        let expires = now + self.cfg.request_lifetime;
        self.dedup
            .insert(d.request, code, bytes.clone(), Vec::new(), expires);
        self.schedule_housekeeping();
        self.send_response(d.header, code, bytes, now);
    }

    fn expire_deferred(&mut self, now: Instant) {
        self.app_ice.waiting.retain(|_, d| d.expires > now);
    }

    /// An AppAttachReq (§6.5.2.2): an unsupported Application-ID is Error_Not_Found; a
    /// supported one is answered and the application told to connect, within the
    /// limits of [`super::dials`]. The application reports how its dial went with
    /// [`Node::app_dial_done`].
    /// `Ok(None)`: the answer waits for ICE gathering.
    pub(crate) fn on_app_attach(
        &mut self,
        from: NodeId,
        req: AppAttach,
        message: &Message,
        prev: NodeId,
        now: Instant,
    ) -> Result<Option<Body>, ErrorResponse> {
        if !self
            .cfg
            .applications
            .iter()
            .any(|(id, _)| *id == req.application)
        {
            return Err(ErrorResponse::new(
                ErrorCode::NotFound,
                format!("application {} not supported", req.application),
            ));
        }
        check_candidate_count(&req.candidates)?;
        if !self.dials.app_attach_allowed(from, now) {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "too many AppAttach requests from this node; retry later",
            ));
        }
        let on_loopback = self.on_loopback();
        let remote_ice = RemoteIce::from_app_attach(&req, on_loopback);
        let candidates = match self.dials.choose(&req.candidates, on_loopback, now) {
            Ok(c) => c,
            // ICE may still connect where no TCP candidate can be dialled.
            Err(_) if remote_ice.is_some() => Vec::new(),
            Err(e) => return Err(e),
        };
        self.expire_deferred(now);
        let request = (message.header.transaction_id, from);
        if self.app_ice.waiting.values().any(|d| d.request == request) {
            return Ok(None); // a retransmission while gathering: answered once, soon
        }
        let ice = match remote_ice {
            Some(remote) if self.app_ice.waiting.len() < MAX_DEFERRED_ANSWERS => {
                let token = AnswerToken(self.app_ice.next);
                self.app_ice.next += 1;
                self.app_ice.waiting.insert(
                    token,
                    Deferred {
                        header: crate::respond::response_header(
                            &message.header,
                            prev,
                            self.cfg.initial_ttl,
                        ),
                        request,
                        application: req.application,
                        max_response_length: message.header.max_response_length as usize,
                        expires: now + self.cfg.request_lifetime,
                    },
                );
                Some((token, remote))
            }
            _ => None,
        };
        let deferred = ice.is_some();
        self.events.push_back(Event::AppAttach {
            from,
            application: req.application,
            candidates,
            ice,
        });
        if deferred {
            return Ok(None);
        }
        Ok(Some(Body::AppAttachAns(self.app_attach_body(
            req.application,
            b"active",
            None,
        ))))
    }
}
