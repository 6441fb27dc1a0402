//! AppAttach (§6.5.2): direct connections for applications such as XMPP (5222).
//!
//! As with Attach, the answerer is told to dial the requester's candidates
//! ([`Event::AppAttach`]), within the limits of [`super::dials`]; the runtime also
//! lets the requester dial the answer's candidates when nothing came (see
//! [`super::attach`]), and hands the application the first connection either way.

use std::net::SocketAddr;

use super::attach::check_candidate_count;
use super::dials::{MAX_DIALS, dialable};
use super::{Event, Node};
use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::{AppAttach, Body, Destination, ErrorCode, ErrorResponse, IceCandidate};

impl Node {
    /// The application's connection to AppAttach candidates `addrs` succeeded (`ok`)
    /// or failed; failed addresses are refused for a while.
    pub fn app_dial_done(&mut self, addrs: &[SocketAddr], ok: bool, now: Instant) {
        self.dials.done(addrs, ok, now);
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
    pub fn app_attach(
        &mut self,
        destination: Vec<Destination>,
        application: u16,
        now: Instant,
    ) -> super::RequestId {
        let body = self.app_attach_body(application, b"passive");
        self.request(destination, Body::AppAttachReq(body), now)
    }

    fn app_attach_body(&mut self, application: u16, role: &'static [u8]) -> AppAttach {
        let base = self.attach_body(role, false);
        let candidates = self
            .cfg
            .applications
            .iter()
            .filter(|(id, _)| *id == application)
            .map(|(_, addr)| IceCandidate::tls_host(*addr))
            .collect();
        AppAttach {
            ufrag: base.ufrag,
            password: base.password,
            application,
            role: base.role,
            candidates,
        }
    }

    /// An AppAttachReq (§6.5.2.2): an unsupported Application-ID is Error_Not_Found; a
    /// supported one is answered and the application told to connect, within the
    /// limits of [`super::dials`]. The application reports how its dial went with
    /// [`Node::app_dial_done`].
    pub(crate) fn on_app_attach(
        &mut self,
        from: NodeId,
        req: AppAttach,
        now: Instant,
    ) -> Result<Body, ErrorResponse> {
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
        let candidates = self.dials.choose(&req.candidates, on_loopback, now)?;
        self.events.push_back(Event::AppAttach {
            from,
            application: req.application,
            candidates,
        });
        Ok(Body::AppAttachAns(
            self.app_attach_body(req.application, b"active"),
        ))
    }
}
