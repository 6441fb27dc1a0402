//! Fragmentation and reassembly (§6.7).
//!
//! Any node may split a message whose bytes after the forwarding header exceed a
//! link's MTU; only the destination reassembles. Fragments are held for at most the
//! request lifetime (15 s) and within [`ReassemblyLimits`]: a message that does not
//! fit is dropped, as the RFC requires.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::{Fragment, RawMessage};

/// Splits `raw` so that each fragment's payload is at most `chunk` bytes (at least 256,
/// §6.7). Every fragment carries a full copy of the header.
pub fn fragment(raw: &RawMessage, chunk: usize) -> Vec<RawMessage> {
    let chunk = chunk.max(256);
    if raw.payload.len() <= chunk || !raw.header.fragment.is_whole() {
        return vec![raw.clone()];
    }
    let count = raw.payload.len().div_ceil(chunk);
    let size = raw.payload.len().div_ceil(count);
    (0..count)
        .map(|i| {
            let start = i * size;
            let end = ((i + 1) * size).min(raw.payload.len());
            let mut header = raw.header.clone();
            header.fragment = Fragment::new(end == raw.payload.len(), start as u32);
            RawMessage {
                header,
                payload: raw.payload.slice(start..end),
            }
        })
        .collect()
}

/// Bounds on what reassembly may hold (hardening issue, defect 3). Fragments cannot
/// be verified before the message is whole, so every byte held is a stranger's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Cost of everything held: payload bytes, each first fragment's forwarding
    /// header, and [`ENTRY_COST`] per partial message.
    pub bytes: usize,
    /// Partial messages held at once; beyond it the oldest is dropped.
    pub messages: usize,
    /// Partial messages held for one previous hop; beyond it that peer's new ones are
    /// refused, so one link cannot push out the others' messages. One hop's messages
    /// may also cost at most a quarter of `bytes`.
    pub per_peer: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            bytes: 1 << 20,
            messages: 256,
            per_peer: 16,
        }
    }
}

/// What a partial message costs beyond its bytes: the map entry, the piece map and
/// the bookkeeping (an estimate on the high side).
pub const ENTRY_COST: usize = 256;

#[derive(Debug)]
struct Partial {
    first: Option<RawMessage>,
    pieces: BTreeMap<u32, Bytes>,
    total: Option<usize>,
    cost: usize,
    expires: Instant,
}

/// Why a fragment was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Reassembly would exceed a limit.
    NoBuffer,
    /// The fragment contradicts the others (overlap, past the end, or empty).
    Inconsistent,
}

/// A partial message: the previous hop it came from and its transaction id. Keying
/// by the hop keeps one peer's fragments from mixing into another's message.
type Key = (NodeId, u64);

/// Reassembly buffers. Every partial message lives for the same request lifetime,
/// so arrival order is expiry order: expiring is a walk from the front of a queue.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: HashMap<Key, Partial>,
    order: VecDeque<(Instant, Key)>,
    /// Partial messages and their cost, per previous hop.
    per_peer: HashMap<NodeId, (usize, usize)>,
    held: usize,
}

impl Reassembly {
    /// Adds a fragment that came from `prev`; returns the whole message once every
    /// piece is there.
    pub fn add(
        &mut self,
        prev: NodeId,
        raw: RawMessage,
        now: Instant,
        lifetime: std::time::Duration,
        limits: ReassemblyLimits,
    ) -> Result<Option<RawMessage>, Dropped> {
        let key = (prev, raw.header.transaction_id);
        let offset = raw.header.fragment.offset();
        let last = raw.header.fragment.is_last();
        if raw.payload.is_empty() {
            self.discard(key);
            return Err(Dropped::Inconsistent);
        }
        let mut cost = raw.payload.len();
        if offset == 0 {
            cost += raw.header.encoded_len();
        }
        let (peer_messages, peer_cost) = self.per_peer.get(&prev).copied().unwrap_or_default();
        if !self.partial.contains_key(&key) {
            if peer_messages >= limits.per_peer {
                return Err(Dropped::NoBuffer);
            }
            cost += ENTRY_COST;
            while self.partial.len() >= limits.messages.max(1) && self.drop_oldest(None) {}
        }
        if peer_cost + cost > limits.bytes / 4 {
            self.discard(key);
            return Err(Dropped::NoBuffer);
        }
        while self.held + cost > limits.bytes {
            if !self.drop_oldest(Some(key)) {
                self.discard(key);
                return Err(Dropped::NoBuffer);
            }
        }
        let entry = match self.partial.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let expires = now + lifetime;
                self.order.push_back((expires, key));
                self.per_peer.entry(prev).or_default().0 += 1;
                v.insert(Partial {
                    first: None,
                    pieces: BTreeMap::new(),
                    total: None,
                    cost: 0,
                    expires,
                })
            }
        };
        let end = offset as usize + raw.payload.len();
        if last {
            entry.total = Some(end);
        }
        let overlaps = entry
            .pieces
            .range(..=offset)
            .next_back()
            .is_some_and(|(o, p)| *o as usize + p.len() > offset as usize)
            || entry
                .pieces
                .range(offset..)
                .next()
                .is_some_and(|(o, _)| (*o as usize) < end);
        if entry.total.is_some_and(|t| end > t) || overlaps {
            self.discard(key);
            return Err(Dropped::Inconsistent);
        }
        entry.cost += cost;
        self.held += cost;
        self.per_peer.entry(prev).or_default().1 += cost;
        entry.pieces.insert(offset, raw.payload.clone());
        if offset == 0 {
            entry.first = Some(raw);
        }
        let Some(total) = entry.total else {
            return Ok(None);
        };
        // Pieces never overlap, so they tile [0, total) when their lengths add up.
        let have: usize = entry.pieces.values().map(Bytes::len).sum();
        if have != total {
            return Ok(None);
        }
        let Some(done) = self.remove(key) else {
            return Err(Dropped::Inconsistent);
        };
        let mut payload = BytesMut::with_capacity(total);
        for piece in done.pieces.values() {
            payload.extend_from_slice(piece);
        }
        let Some(mut first) = done.first else {
            return Err(Dropped::Inconsistent);
        };
        first.header.fragment = Fragment::WHOLE;
        first.payload = payload.freeze();
        Ok(Some(first))
    }

    fn remove(&mut self, key: Key) -> Option<Partial> {
        let p = self.partial.remove(&key)?;
        self.held -= p.cost;
        if let Some((n, c)) = self.per_peer.get_mut(&key.0) {
            *n -= 1;
            *c -= p.cost;
            if *n == 0 {
                self.per_peer.remove(&key.0);
            }
        }
        // Completed and discarded messages leave their place in the queue behind;
        // it is compacted when mostly stale, so it stays proportional to what is held.
        if self.order.len() > 2 * self.partial.len() + 64 {
            let partial = &self.partial;
            self.order
                .retain(|(at, k)| partial.get(k).is_some_and(|p| p.expires == *at));
        }
        Some(p)
    }

    fn discard(&mut self, key: Key) {
        self.remove(key);
    }

    /// Drops the oldest partial message other than `keep`; whether there was one.
    fn drop_oldest(&mut self, keep: Option<Key>) -> bool {
        let mut kept = None;
        let mut dropped = false;
        while let Some((at, key)) = self.order.pop_front() {
            if Some(key) == keep {
                kept = Some((at, key));
            } else if self.partial.get(&key).is_some_and(|p| p.expires == at) {
                self.remove(key);
                dropped = true;
                break;
            }
        }
        if let Some(k) = kept {
            self.order.push_front(k);
        }
        dropped
    }

    /// Drops buffers older than the request lifetime.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front().copied() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.partial.get(&key).is_some_and(|p| p.expires == at) {
                self.remove(key);
            }
        }
    }

    /// When the next buffer expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    /// Cost held (bytes, headers and per-message overhead).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Partial messages held.
    pub fn messages(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wire::ForwardingHeader;

    const PEER: NodeId = NodeId(7);
    const LIFE: Duration = Duration::from_secs(15);
    const LIMITS: ReassemblyLimits = ReassemblyLimits {
        bytes: 1 << 20,
        messages: 256,
        per_peer: 16,
    };

    fn raw_tid(len: usize, tid: u64) -> RawMessage {
        RawMessage {
            header: ForwardingHeader {
                overlay: 1,
                configuration_sequence: 0,
                ttl: 10,
                fragment: Fragment::WHOLE,
                transaction_id: tid,
                max_response_length: 0,
                via_list: vec![],
                destination_list: vec![],
                options: vec![],
            },
            payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
        }
    }

    fn raw(len: usize) -> RawMessage {
        raw_tid(len, 5)
    }

    /// A first fragment that is not the last, as an attacker sends them: a fresh
    /// transaction id each time, `len` payload bytes, never completed.
    fn opener(tid: u64, len: usize, via: usize) -> RawMessage {
        let mut m = raw_tid(len, tid);
        m.header.fragment = Fragment::new(false, 0);
        m.header.via_list = (0..via)
            .map(|i| crate::wire::Destination::Node(NodeId(i as u128)))
            .collect();
        m
    }

    #[test]
    fn fragments_reassemble_in_any_order_rfc6940_6_7() {
        let whole = raw(1000);
        let mut frags = fragment(&whole, 300);
        assert_eq!(frags.len(), 4);
        assert!(frags[3].header.fragment.is_last());
        assert_eq!(frags[1].header.fragment.offset(), 250);
        frags.reverse();
        let mut r = Reassembly::default();
        let mut out = None;
        for f in frags {
            out = r.add(PEER, f, Instant::ZERO, LIFE, LIMITS).unwrap();
        }
        assert_eq!(out, Some(whole));
        assert_eq!(r.held(), 0);
        assert_eq!(r.messages(), 0);
    }

    #[test]
    fn incomplete_fragments_expire_after_the_request_lifetime() {
        let frags = fragment(&raw(1000), 300);
        let mut r = Reassembly::default();
        r.add(PEER, frags[0].clone(), Instant::ZERO, LIFE, LIMITS)
            .unwrap();
        assert_eq!(r.next_expiry(), Some(Instant::from_secs(15)));
        r.expire(Instant::from_secs(14));
        assert!(r.held() > 0);
        r.expire(Instant::from_secs(15));
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn reassembly_is_bounded() {
        let frags = fragment(&raw(1000), 300);
        let mut r = Reassembly::default();
        let tiny = ReassemblyLimits {
            bytes: 100,
            ..LIMITS
        };
        assert_eq!(
            r.add(PEER, frags[0].clone(), Instant::ZERO, LIFE, tiny),
            Err(Dropped::NoBuffer)
        );
    }

    /// The attack of the hardening issue (defect 3): empty first fragments with fresh
    /// transaction ids used to be held without limit (1 GB in 26 s).
    #[test]
    fn empty_fragments_are_refused() {
        let mut r = Reassembly::default();
        for tid in 0..10_000 {
            assert_eq!(
                r.add(PEER, opener(tid, 0, 0), Instant::ZERO, LIFE, LIMITS),
                Err(Dropped::Inconsistent)
            );
        }
        assert_eq!(r.messages(), 0);
    }

    #[test]
    fn one_peer_holds_at_most_its_share_of_messages_and_bytes() {
        let mut r = Reassembly::default();
        for tid in 0..100 {
            let _ = r.add(PEER, opener(tid, 1, 0), Instant::ZERO, LIFE, LIMITS);
        }
        assert_eq!(r.messages(), LIMITS.per_peer, "at the per-peer limit");
        // Another peer still gets its messages reassembled.
        let whole = raw_tid(1000, 99_999);
        let mut out = None;
        for f in fragment(&whole, 300) {
            out = r.add(NodeId(8), f, Instant::ZERO, LIFE, LIMITS).unwrap();
        }
        assert_eq!(out, Some(whole));
        // Large openers from one peer stop at a quarter of the budget.
        let mut r = Reassembly::default();
        for tid in 0..16 {
            let _ = r.add(PEER, opener(tid, 60_000, 0), Instant::ZERO, LIFE, LIMITS);
        }
        assert!(r.held() <= LIMITS.bytes / 4, "{}", r.held());
    }

    #[test]
    fn headers_count_against_the_budget() {
        // A first fragment with a long via list keeps its whole header: that is
        // counted, not only the one payload byte.
        let mut r = Reassembly::default();
        let m = opener(1, 1, 200);
        let header = m.header.encoded_len();
        assert!(header > 3000, "{header}");
        r.add(PEER, m, Instant::ZERO, LIFE, LIMITS).unwrap();
        assert_eq!(r.held(), 1 + header + ENTRY_COST);
    }

    #[test]
    fn many_peers_fill_the_table_and_the_oldest_partial_goes_first() {
        let mut r = Reassembly::default();
        for peer in 0..1000u128 {
            let now = Instant::from_millis(peer as u64);
            let _ = r.add(NodeId(peer), opener(1, 10, 0), now, LIFE, LIMITS);
            assert!(r.messages() <= LIMITS.messages);
            assert!(r.held() <= LIMITS.bytes);
        }
        // The newest are kept: they expire last.
        assert_eq!(r.messages(), LIMITS.messages);
        assert_eq!(
            r.next_expiry(),
            Some(Instant::from_millis(1000 - LIMITS.messages as u64) + LIFE)
        );
    }

    #[test]
    fn expiry_is_a_walk_from_the_front_and_the_queue_stays_small() {
        let mut r = Reassembly::default();
        // Many messages completing at once leave no growing queue behind.
        for tid in 0..10_000u64 {
            for f in fragment(&raw_tid(600, tid), 300) {
                r.add(PEER, f, Instant::from_millis(tid), LIFE, LIMITS)
                    .unwrap();
            }
            assert!(r.order.len() <= 2 * r.messages() + 65);
        }
        assert_eq!(r.messages(), 0);
    }

    #[test]
    fn overlapping_pieces_are_inconsistent() {
        let mut r = Reassembly::default();
        let mut a = raw(600);
        a.header.fragment = Fragment::new(false, 0);
        let mut b = raw(100);
        b.header.fragment = Fragment::new(true, 500);
        r.add(PEER, a, Instant::ZERO, LIFE, LIMITS).unwrap();
        assert_eq!(
            r.add(PEER, b, Instant::ZERO, LIFE, LIMITS),
            Err(Dropped::Inconsistent)
        );
        assert_eq!(r.messages(), 0);
    }
}
