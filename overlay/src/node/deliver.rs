//! Messages for this node: reassembly (§6.7), signature verification (§6.3.4),
//! configuration-sequence checks (§6.3.2.1), duplicate requests (§6.2.1), dispatch,
//! and matching answers to transactions with the response-origin checks (§6.3.4).

use bytes::Bytes;

use super::transactions::Purpose;
use super::{Answer, Node, RequestError, Timer};
use crate::id::{NodeId, distance};
use crate::identity::VerifiedSigner;
use crate::respond::{response_header, signed_message};
use crate::time::Instant;
use crate::wire::header::option_flags;
use crate::wire::{
    Body, ConfigUpdateReq, Destination, Encode, ErrorCode, ErrorResponse, ForwardingHeader,
    Message, MessageCode, RawMessage,
};

impl Node {
    /// A message whose destination is this node.
    pub(crate) fn deliver(&mut self, raw: RawMessage, prev: Option<NodeId>, now: Instant) {
        let raw = if raw.header.fragment.is_whole() {
            raw
        } else {
            let lifetime = self.cfg.request_lifetime;
            let from = prev.unwrap_or(self.me);
            let done = self
                .frags
                .add(from, raw, now, lifetime, self.cfg.reassembly);
            self.schedule_housekeeping();
            match done {
                Ok(Some(whole)) => whole,
                Ok(None) => return,
                Err(e) => return tracing::debug!(node = %self.me, ?e, "fragment dropped"),
            }
        };
        let prev_hop = prev.unwrap_or(self.me);
        let header = raw.header.clone();
        let is_request = raw.code().is_some_and(|c| c.is_request());
        let message = match raw.into_message() {
            Ok(m) => m,
            Err(e) if is_request => {
                let error = ErrorResponse::new(ErrorCode::InvalidMessage, e.to_string());
                let header = response_header(&header, prev_hop, self.cfg.initial_ttl);
                return self.send_error(header, error, now);
            }
            Err(_) => return,
        };
        let unix = self.unix_secs(now);
        let signer = match self.certs.verify_message(&self.cfg.trust, &message, unix) {
            Ok(s) => s,
            Err(e) => {
                // §6.3.4: "SHOULD simply drop the message and MUST NOT process it".
                return tracing::debug!(node = %self.me, error = %e, "unverifiable message dropped");
            }
        };
        if message.contents.code.is_response() {
            self.on_response(message, signer, now);
        } else {
            self.on_request(message, signer, prev_hop, now);
        }
    }

    /// Signs and routes an error response under `header`.
    pub(crate) fn send_error(
        &mut self,
        header: ForwardingHeader,
        error: ErrorResponse,
        now: Instant,
    ) {
        if let Ok(body) = error.to_bytes() {
            self.send_response(header, MessageCode::ERROR, body, now);
        }
    }

    /// Signs and routes a response whose security block also carries `certs`.
    pub(crate) fn send_response_with(
        &mut self,
        header: ForwardingHeader,
        code: MessageCode,
        body: Bytes,
        certs: &[Bytes],
        now: Instant,
    ) {
        let signed = signed_message(header, code, body, &self.cfg.credentials).map(|mut m| {
            super::transactions::add_certificates(&mut m.security.certificates, certs);
            m
        });
        match signed.and_then(|m| m.to_raw()) {
            Ok(raw) => self.route(raw, None, now),
            Err(e) => tracing::warn!(error = %e, "response could not be encoded"),
        }
    }

    /// Signs and routes a response under `header`.
    pub(crate) fn send_response(
        &mut self,
        header: ForwardingHeader,
        code: MessageCode,
        body: Bytes,
        now: Instant,
    ) {
        self.send_response_with(header, code, body, &[], now);
    }

    fn on_request(&mut self, message: Message, signer: VerifiedSigner, prev: NodeId, now: Instant) {
        let h = &message.header;
        let tid = h.transaction_id;
        // Duplicate of a request answered within the request lifetime: same answer.
        if let Some(r) = self.dedup.get((tid, signer.node_id), now).cloned() {
            let header = response_header(h, prev, self.cfg.initial_ttl);
            return self.send_response_with(header, r.code, r.body, &r.certs, now);
        }
        let result = self.check_request(&message, prev, now).and_then(|()| {
            let body = Body::parse(
                message.contents.code,
                &message.contents.body,
                &self.cfg.kinds,
            )
            .map_err(|e| ErrorResponse::new(ErrorCode::InvalidMessage, e.to_string()))?;
            self.handle_request(&message, body, &signer, prev, now)
        });
        let (code, body, certs) = match result {
            Ok(None) => return, // answered later (or not at all)
            Ok(Some(reply)) => (reply.body.code(), reply.body.to_bytes(), reply.certs),
            Err(e) => (MessageCode::ERROR, e.to_bytes(), Vec::new()),
        };
        let Ok(mut body) = body else { return };
        let mut code = code;
        let limit = message.header.max_response_length as usize;
        if limit != 0 && body.len() + 200 > limit {
            code = MessageCode::ERROR;
            body = ErrorResponse::new(
                ErrorCode::ResponseTooLarge,
                "response exceeds max_response_length",
            )
            .to_bytes()
            .unwrap_or_default();
        }
        let expires = now + self.cfg.request_lifetime;
        self.dedup.insert(
            (tid, signer.node_id),
            code,
            body.clone(),
            certs.clone(),
            expires,
        );
        self.schedule_housekeeping();
        let header = response_header(&message.header, prev, self.cfg.initial_ttl);
        self.send_response_with(header, code, body, &certs, now);
    }

    /// Checks every request must pass before its method is looked at.
    fn check_request(
        &mut self,
        message: &Message,
        prev: NodeId,
        now: Instant,
    ) -> Result<(), ErrorResponse> {
        let seq = message.header.configuration_sequence;
        let ours = self.cfg.configuration_sequence;
        let config_update = message.contents.code == MessageCode::CONFIG_UPDATE_REQ;
        // ConfigUpdate is exempt: it is how a newer configuration arrives (it is sent
        // with sequence 65535, §6.3.2.1).
        if seq != ours && !config_update {
            // Sequence numbers compare modulo 2^16 like TCP's (§6.3.2.1).
            let newer = seq.wrapping_sub(ours) < 0x8000;
            if newer {
                return Err(ErrorResponse::new(
                    ErrorCode::ConfigTooNew,
                    format!("configuration sequence {seq} is newer than ours ({ours})"),
                ));
            }
            if let Some(doc) = self.cfg.config_document.clone() {
                // "the node MUST generate a ConfigUpdate message to update the requesting
                // node": route it back the way the request came.
                let route = crate::respond::response_destinations(&message.header.via_list, prev);
                let body = Body::ConfigUpdateReq(ConfigUpdateReq::Config(doc));
                self.originate(route, body, Purpose::Fire, now);
            }
            return Err(ErrorResponse::new(
                ErrorCode::ConfigTooOld,
                format!("configuration sequence {seq} is older than ours ({ours})"),
            ));
        }
        if let Some(ext) = message.contents.extensions.iter().find(|e| e.critical) {
            return Err(ErrorResponse::new(
                ErrorCode::UnknownExtension,
                format!("critical extension {} is not supported", ext.kind),
            ));
        }
        if message
            .header
            .options
            .iter()
            .any(|o| o.flags & option_flags::DESTINATION_CRITICAL != 0)
        {
            return Err(ErrorResponse::new(
                ErrorCode::UnsupportedForwardingOption,
                "unknown destination-critical option",
            ));
        }
        Ok(())
    }

    fn on_response(&mut self, message: Message, signer: VerifiedSigner, now: Instant) {
        let tid = message.header.transaction_id;
        let Some(pending) = self.txns.get(tid) else {
            return;
        };
        // A partition check asks precisely for an answer from outside our view of the
        // ring (§10.7.4.4); the signature still names who answered.
        let any_origin = matches!(pending.purpose, Purpose::PartitionPing { .. });
        if !any_origin && !self.response_origin_ok(pending.target.as_ref(), signer.node_id) {
            // §6.3.4: a response from a node that cannot be the answerer is discarded;
            // the request will be retransmitted.
            return tracing::debug!(node = %self.me, from = %signer.node_id, "response from an unexpected node dropped");
        }
        let _span = tracing::debug_span!("transaction", tid = %format_args!("{tid:016x}"), code = ?message.contents.code).entered();
        tracing::debug!(node = %self.me, from = %signer.node_id, "answer received");
        let Some(pending) = self.txns.remove(tid) else {
            return;
        };
        self.timers.cancel(&Timer::Retransmit(tid));
        let body = Body::parse(
            message.contents.code,
            &message.contents.body,
            &self.cfg.kinds,
        );
        let result = match body {
            Ok(Body::Error(e)) => Err(RequestError::Error(e)),
            Ok(mut body) if body.code() == pending.code.answer() => {
                let mut dropped = 0;
                if let (Body::FetchAns(ans), Some(Destination::Resource(r))) =
                    (&mut body, pending.target.as_ref())
                {
                    dropped = self.verify_fetched(*r, ans, &message.security.certificates, now);
                }
                Ok(Answer {
                    from: signer.node_id,
                    body,
                    dropped,
                })
            }
            Ok(other) => Err(RequestError::Invalid(format!(
                "answer {:?} does not match request {:?}",
                other.code(),
                pending.code
            ))),
            Err(e) => Err(RequestError::Invalid(e.to_string())),
        };
        match result {
            Ok(answer) => self.on_answer(pending.purpose, answer, now),
            Err(e) => self.fail_purpose(&pending.purpose, e, now),
        }
    }

    /// §6.3.4: a response to a Node-ID comes from that node (unless it was the wildcard);
    /// a response to a Resource-ID comes from a node at least as close to it as any of
    /// our neighbours.
    fn response_origin_ok(&self, target: Option<&Destination>, from: NodeId) -> bool {
        match target {
            Some(Destination::Node(n)) if *n != NodeId::WILDCARD => *n == from,
            Some(Destination::Resource(r)) => {
                let d = distance(r.0, from.0);
                self.table
                    .neighbors()
                    .iter()
                    .all(|n| d <= distance(r.0, n.0))
                    || from == self.me
            }
            _ => true,
        }
    }

    /// The outcome of a transaction, by purpose.
    pub(crate) fn on_answer(&mut self, purpose: Purpose, answer: Answer, now: Instant) {
        match purpose {
            Purpose::Api(id) => self.complete(id, Ok(answer)),
            Purpose::BootstrapAttach | Purpose::Attach { .. } | Purpose::Heal(_) => {
                self.attach_answered(purpose, answer, now)
            }
            Purpose::Join => self.join_answered(now),
            Purpose::FingerPing(i) => self.finger_found(i, answer.from, now),
            Purpose::Leave => self.leave_progress(now),
            Purpose::Replica {
                resource,
                peer,
                version,
            } => self.replica_stored(resource, peer, version, now),
            Purpose::PartitionPing { via } => self.partition_answered(via, &answer, now),
            Purpose::Update(_) | Purpose::Fire => {}
        }
    }

    /// A transaction failed, by purpose.
    pub(crate) fn fail_purpose(&mut self, purpose: &Purpose, error: RequestError, now: Instant) {
        match purpose {
            Purpose::Api(id) => self.complete(*id, Err(error)),
            Purpose::BootstrapAttach => {
                self.client_check_failed(&error, now);
                self.bootstrap_failed(now)
            }
            Purpose::Attach {
                target: Some(peer), ..
            } => self.attach_request_failed(*peer, now),
            Purpose::Heal(peer) => self.attach_request_failed(*peer, now),
            Purpose::PartitionPing { .. } => self.partition_ping_failed(now),
            Purpose::Attach { .. } | Purpose::FingerPing(_) => {}
            Purpose::Replica { resource, peer, .. } => {
                tracing::debug!(node = %self.me, %peer, %resource, %error, "replica store failed; retried");
                self.replica_failed(*resource, *peer, now);
            }
            Purpose::Fire => tracing::debug!(node = %self.me, %error, "background request failed"),
            Purpose::Join => self.join_failed(error, now),
            Purpose::Update(peer) => {
                if matches!(error, RequestError::Timeout(_)) {
                    self.peer_failed(*peer, now);
                }
            }
            Purpose::Leave => self.leave_progress(now),
        }
    }
}
