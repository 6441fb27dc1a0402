//! The observer on the virtual network: traffic totals, the deliveries of measured
//! requests (for hop counts), and the events the driver loop acts on.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bytes::Bytes;
use xor_overlay::id::NodeId;
use xor_overlay::node::{Answer, Event, RequestError, RequestId};
use xor_overlay::testnet::{Delivery, Observer};
use xor_overlay::time::Instant;
use xor_overlay::wire::{MessageCode, RawMessage};

/// What the observer collects from the network (shared with the driver loop).
#[derive(Default)]
pub(crate) struct Seen {
    /// While set, the first message this node sends is a request being measured.
    pub(crate) capture: Option<NodeId>,
    pub(crate) captured: Option<u64>,
    /// Deliveries per transaction id, for the measured requests only.
    pub(crate) watched: HashMap<u64, u32>,
    /// Everything written on links (messages, framing, acks, keep-alives).
    pub(crate) bytes: u64,
    pub(crate) messages: u64,
    /// Bytes of the messages of measured requests (the workload): requests and their
    /// answers, at every hop, while the request is pending.
    pub(crate) workload_bytes: u64,
    /// Messages and bytes of everything else (upkeep) by message code.
    pub(crate) upkeep_by_code: BTreeMap<Option<MessageCode>, (u64, u64)>,
    pub(crate) joined: Vec<NodeId>,
    pub(crate) responses: Vec<(Instant, NodeId, RequestId, Result<Answer, RequestError>)>,
}

pub(crate) struct Tap(pub(crate) Rc<RefCell<Seen>>);

/// The transaction id of an encoded message (forwarding header, RFC 6940 §6.3.2:
/// after relo_token, overlay, configuration_sequence, version, ttl, fragment, length).
fn transaction_id(bytes: &Bytes) -> Option<u64> {
    let b = bytes.get(20..28)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

impl Observer for Tap {
    fn sent(&mut self, d: &Delivery) {
        let mut s = self.0.borrow_mut();
        s.messages += 1;
        let tid = transaction_id(&d.bytes);
        if s.capture == Some(d.from) && s.captured.is_none() {
            s.captured = tid;
            if let Some(t) = tid {
                s.watched.insert(t, 0);
            }
        }
        if let Some(t) = tid
            && let Some(n) = s.watched.get_mut(&t)
        {
            *n += 1;
            s.workload_bytes += d.bytes.len() as u64;
        } else {
            // None: a later fragment or undecodable bytes (RFC 6940 §6.3.3).
            let code = RawMessage::decode(&d.bytes).ok().and_then(|r| r.code());
            let e = s.upkeep_by_code.entry(code).or_default();
            e.0 += 1;
            e.1 += d.bytes.len() as u64;
        }
    }

    fn wire(&mut self, _from: NodeId, len: usize) {
        self.0.borrow_mut().bytes += len as u64;
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event) {
        let mut s = self.0.borrow_mut();
        match event {
            Event::Joined => s.joined.push(node),
            Event::Response { request, result } => {
                s.responses.push((at, node, *request, result.clone()));
            }
            _ => {}
        }
    }
}
