//! Fragmentation and reassembly (§6.7).
//!
//! Any node may split a message whose bytes after the forwarding header exceed a
//! link's MTU; only the destination reassembles. Fragments are held for at most the
//! request lifetime (15 s) and within a byte budget: a message that does not fit is
//! dropped, as the RFC requires.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};

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

#[derive(Debug)]
struct Partial {
    first: Option<RawMessage>,
    pieces: BTreeMap<u32, Bytes>,
    total: Option<usize>,
    bytes: usize,
    expires: Instant,
}

/// Why a fragment was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Reassembly would exceed the byte budget.
    NoBuffer,
    /// The fragment contradicts the others (overlap or past the end).
    Inconsistent,
}

/// Reassembly buffers keyed by transaction id.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: HashMap<u64, Partial>,
    held: usize,
}

impl Reassembly {
    /// Adds a fragment; returns the whole message once every piece is there.
    pub fn add(
        &mut self,
        raw: RawMessage,
        now: Instant,
        lifetime: std::time::Duration,
        budget: usize,
    ) -> Result<Option<RawMessage>, Dropped> {
        let key = raw.header.transaction_id;
        let offset = raw.header.fragment.offset();
        let last = raw.header.fragment.is_last();
        if self.held + raw.payload.len() > budget {
            self.discard(key);
            return Err(Dropped::NoBuffer);
        }
        let entry = self.partial.entry(key).or_insert_with(|| Partial {
            first: None,
            pieces: BTreeMap::new(),
            total: None,
            bytes: 0,
            expires: now + lifetime,
        });
        let end = offset as usize + raw.payload.len();
        if last {
            entry.total = Some(end);
        }
        if entry.total.is_some_and(|t| end > t) || entry.pieces.contains_key(&offset) {
            self.discard(key);
            return Err(Dropped::Inconsistent);
        }
        entry.bytes += raw.payload.len();
        self.held += raw.payload.len();
        entry.pieces.insert(offset, raw.payload.clone());
        if offset == 0 {
            entry.first = Some(raw);
        }
        let Some(total) = entry.total else {
            return Ok(None);
        };
        // Complete when the pieces tile [0, total) exactly.
        let mut at = 0usize;
        for (off, piece) in &entry.pieces {
            if *off as usize != at {
                return Ok(None);
            }
            at += piece.len();
        }
        if at != total {
            return Ok(None);
        }
        let done = self.partial.remove(&key).expect("present");
        self.held -= done.bytes;
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

    fn discard(&mut self, key: u64) {
        if let Some(p) = self.partial.remove(&key) {
            self.held -= p.bytes;
        }
    }

    /// Drops buffers older than the request lifetime.
    pub fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .partial
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.discard(k);
        }
    }

    /// When the next buffer expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.partial.values().map(|p| p.expires).min()
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wire::ForwardingHeader;

    fn raw(len: usize) -> RawMessage {
        RawMessage {
            header: ForwardingHeader {
                overlay: 1,
                configuration_sequence: 0,
                ttl: 10,
                fragment: Fragment::WHOLE,
                transaction_id: 5,
                max_response_length: 0,
                via_list: vec![],
                destination_list: vec![],
                options: vec![],
            },
            payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
        }
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
            out = r
                .add(f, Instant::ZERO, Duration::from_secs(15), 1 << 20)
                .unwrap();
        }
        assert_eq!(out, Some(whole));
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn incomplete_fragments_expire_after_the_request_lifetime() {
        let frags = fragment(&raw(1000), 300);
        let mut r = Reassembly::default();
        r.add(
            frags[0].clone(),
            Instant::ZERO,
            Duration::from_secs(15),
            1 << 20,
        )
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
        assert_eq!(
            r.add(
                frags[0].clone(),
                Instant::ZERO,
                Duration::from_secs(15),
                100
            ),
            Err(Dropped::NoBuffer)
        );
    }
}
