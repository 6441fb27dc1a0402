//! Transactions this node originated (§6.2.1) and answers it gave (duplicate
//! detection within the maximum request lifetime, §6.2.1).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::{Node, RequestError, RequestId, Timer};
use crate::id::NodeId;
use crate::respond::signed_message;
use crate::time::Instant;
use crate::wire::{Body, Destination, Encode, ForwardingHeader, Fragment, MessageCode, RawMessage};

/// Why the node sent a request, which decides what happens to the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// An API call.
    Api(RequestId),
    /// Attach during bootstrap to the peer responsible for `me + 1` (§11.4).
    BootstrapAttach,
    /// Attach to a neighbour or a finger; `target` is the Node-ID when it is known.
    Attach {
        /// For the neighbour table (else a finger).
        neighbor: bool,
        /// The peer attached to, when the destination names it.
        target: Option<NodeId>,
    },
    /// JoinReq to the admitting peer.
    Join,
    /// An Update to a neighbour; failure means the neighbour failed.
    Update(NodeId),
    /// A Ping searching for finger `i` (§10.7.4.2).
    FingerPing(u8),
    /// A LeaveReq.
    Leave,
    /// A replica (or hand-over) store of `resource` at version `version` to `peer`.
    Replica {
        /// The resource.
        resource: crate::id::ResourceId,
        /// The peer.
        peer: NodeId,
        /// The data version sent (sum of the Kinds' generation counters).
        version: u64,
    },
    /// A Ping through bootstrap node `via` looking for another ring (§10.7.4.4).
    PartitionPing {
        /// The bootstrap node it went through.
        via: NodeId,
    },
    /// An Attach to a node of another ring, followed by an Update (§10.7.4.4).
    Heal(NodeId),
    /// Anything else whose answer is not needed.
    Fire,
}

/// An outstanding request.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) raw: RawMessage,
    pub(crate) purpose: Purpose,
    pub(crate) attempts: u32,
    /// The request's final destination, for the response-origin checks (§6.3.4).
    pub(crate) target: Option<Destination>,
    pub(crate) code: MessageCode,
}

/// Outstanding requests by transaction id.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    pending: HashMap<u64, Pending>,
}

impl Transactions {
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Pending> {
        self.pending.get(&id)
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Pending> {
        self.pending.remove(&id)
    }

    pub(crate) fn ids_with(&self, f: impl Fn(&Pending) -> bool) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, p)| f(p))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// A remembered answer: code and body, re-sent under a fresh header when the same
/// request arrives again.
#[derive(Debug, Clone)]
pub(crate) struct Remembered {
    pub(crate) code: MessageCode,
    pub(crate) body: Bytes,
    pub(crate) certs: Vec<Bytes>,
    expires: Instant,
}

/// Most remembered answers.
const DEDUP_CAPACITY: usize = 4096;

/// Answers given within the request lifetime, by transaction id.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    answers: HashMap<(u64, NodeId), Remembered>,
    order: VecDeque<(Instant, (u64, NodeId))>,
}

impl Dedup {
    /// The answer given to `requester`'s transaction `id`, if still remembered.
    pub(crate) fn get(&self, id: (u64, NodeId), now: Instant) -> Option<&Remembered> {
        self.answers.get(&id).filter(|r| r.expires > now)
    }

    pub(crate) fn insert(
        &mut self,
        id: (u64, NodeId),
        code: MessageCode,
        body: Bytes,
        certs: Vec<Bytes>,
        expires: Instant,
    ) {
        if self.answers.len() >= DEDUP_CAPACITY
            && let Some((_, old)) = self.order.pop_front()
        {
            self.answers.remove(&old);
        }
        self.answers.insert(
            id,
            Remembered {
                code,
                body,
                certs,
                expires,
            },
        );
        self.order.push_back((expires, id));
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front().copied() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.answers.get(&id).is_some_and(|r| r.expires <= now) {
                self.answers.remove(&id);
            }
        }
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }
}

/// Appends certificates to a security block's bucket, each once.
pub(crate) fn add_certificates(bucket: &mut Vec<crate::wire::GenericCertificate>, extra: &[Bytes]) {
    for c in extra {
        if !bucket.iter().any(|b| b.certificate == *c) {
            bucket.push(crate::wire::GenericCertificate::x509(c.clone()));
        }
    }
}

impl Node {
    /// Builds, signs and routes a request; it is retransmitted until answered.
    pub(crate) fn originate(
        &mut self,
        destination: Vec<Destination>,
        body: Body,
        purpose: Purpose,
        now: Instant,
    ) -> Option<u64> {
        self.originate_with_certs(destination, body, purpose, &[], now)
    }

    /// [`Node::originate`] with more certificates in the security block (those of the
    /// stored values a Store carries, §6.3.4).
    pub(crate) fn originate_with_certs(
        &mut self,
        destination: Vec<Destination>,
        body: Body,
        purpose: Purpose,
        extra_certs: &[Bytes],
        now: Instant,
    ) -> Option<u64> {
        let code = body.code();
        let encoded = match body.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                self.fail_purpose(&purpose, RequestError::Invalid(e.to_string()), now);
                return None;
            }
        };
        let tid = self.transaction_id();
        let header = ForwardingHeader {
            overlay: self.overlay,
            // A ConfigUpdate carries 65535 so it is accepted whatever the receiver's
            // sequence (§6.3.2.1).
            configuration_sequence: if code == MessageCode::CONFIG_UPDATE_REQ {
                0xffff
            } else {
                self.cfg.configuration_sequence
            },
            ttl: self.cfg.initial_ttl,
            fragment: Fragment::WHOLE,
            transaction_id: tid,
            max_response_length: 0,
            via_list: Vec::new(),
            destination_list: destination.clone(),
            options: Vec::new(),
        };
        let signed = signed_message(header, code, encoded, &self.cfg.credentials).map(|mut m| {
            add_certificates(&mut m.security.certificates, extra_certs);
            m
        });
        let raw = match signed.and_then(|m| m.to_raw()) {
            Ok(raw) => raw,
            Err(e) => {
                self.fail_purpose(&purpose, RequestError::Invalid(e.to_string()), now);
                return None;
            }
        };
        if raw.header.encoded_len() + raw.payload.len() > self.cfg.max_message_size {
            self.fail_purpose(
                &purpose,
                RequestError::Invalid("request exceeds max-message-size".into()),
                now,
            );
            return None;
        }
        let _span =
            tracing::debug_span!("transaction", tid = %format_args!("{tid:016x}"), ?code).entered();
        tracing::debug!(node = %self.me, ?destination, "request sent");
        let target = destination.last().cloned();
        self.txns.pending.insert(
            tid,
            Pending {
                raw: raw.clone(),
                purpose,
                attempts: 1,
                target,
                code,
            },
        );
        self.timers
            .set(Timer::Retransmit(tid), now + self.cfg.reliability_timer);
        self.route(raw, None, now);
        Some(tid)
    }

    /// The reliability timer fired: send again with the same transaction id, or give up
    /// after the last transmission (§6.2.1).
    pub(crate) fn retransmit(&mut self, tid: u64, now: Instant) {
        let Some(p) = self.txns.pending.get_mut(&tid) else {
            return;
        };
        if p.attempts > self.cfg.max_retransmits {
            let attempts = p.attempts;
            if let Some(p) = self.txns.remove(tid) {
                self.fail_purpose(&p.purpose, RequestError::Timeout(attempts), now);
            }
            return;
        }
        p.attempts += 1;
        let raw = p.raw.clone();
        self.timers
            .set(Timer::Retransmit(tid), now + self.cfg.reliability_timer);
        self.route(raw, None, now);
    }

    /// Abandons every transaction (on leave).
    pub(crate) fn abandon_all(&mut self, now: Instant) {
        for tid in self.txns.ids_with(|_| true) {
            self.timers.cancel(&Timer::Retransmit(tid));
            if let Some(p) = self.txns.remove(tid) {
                self.fail_purpose(&p.purpose, RequestError::Shutdown, now);
            }
        }
    }
}
