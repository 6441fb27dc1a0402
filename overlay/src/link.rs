//! The framed overlay link (§6.6.2, §6.6.5) as a sans-IO state machine.
//!
//! One `FramedLink` per TLS connection. Bytes read from the stream go into
//! [`FramedLink::handle_bytes`]; RELOAD messages come out of
//! [`FramedLink::poll_message`]; bytes to write come out of
//! [`FramedLink::poll_transmit`]. Every data frame is acknowledged at once; the acks
//! give RTT samples from which an RFC 6298 RTO is computed. On TLS/TCP the RTO is not
//! used to retransmit but to notice a failing link (§6.6.5): when a frame stays
//! unacknowledged for an RTO the link is [`LinkHealth::Suspect`] (take it out of the
//! routing table); if nothing is acknowledged for the 30 s that follow, it has
//! [`LinkHealth::Failed`].
//!
//! Drive loop: after every `handle_*` or `send`, drain `poll_message` and
//! `poll_transmit`, then sleep until `poll_timeout` and call `handle_timeout`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::time::Instant;
use crate::wire::codec::decode_prefix;
use crate::wire::framing::{FRAME_DATA, MAX_FRAMED_MESSAGE};
use crate::wire::{Encode, ForwardingHeader, FrameDecoder, FrameError, FramedMessage};

/// How long a suspect link is kept before it is declared failed (§6.6.5).
pub const FAILURE_RETENTION: Duration = Duration::from_secs(30);
/// RFC 6298 initial RTO.
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// RFC 6298 (2.4): RTO is at least one second.
const MIN_RTO: Duration = Duration::from_secs(1);
const MAX_RTO: Duration = Duration::from_secs(60);
/// Outstanding frames remembered for RTT samples; older ones only count for health.
const MAX_TRACKED: usize = 1024;

/// Link parameters.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `max-message-size` from the overlay configuration (§6.6, §11.1).
    pub max_message_size: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            max_message_size: 64 * 1024,
        }
    }
}

/// What the link thinks of its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkHealth {
    /// Frames are acknowledged in time.
    Up,
    /// A frame has waited longer than the RTO: route around this link.
    Suspect,
    /// Nothing was acknowledged for [`FAILURE_RETENTION`] after the RTO: close it.
    Failed,
}

/// Why the link must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The peer sent a message larger than `max-message-size` (§6.6). `header` is its
    /// forwarding header when it fit, so the caller can answer Error_Message_Too_Large
    /// before closing; `None` means close without an error.
    #[error("peer sent a {len}-byte message; max-message-size is {max}")]
    MessageTooLarge {
        /// The announced message length.
        len: usize,
        /// The configured limit.
        max: usize,
        /// The message's forwarding header, if it was readable.
        header: Option<Box<ForwardingHeader>>,
    },
    /// The byte stream is not framed RELOAD.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message to send is larger than `max-message-size`.
    #[error("refusing to send a {len}-byte message; max-message-size is {max}")]
    SendTooLarge {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// RFC 6298 round-trip estimator.
#[derive(Debug, Clone)]
struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
}

impl RttEstimator {
    fn new() -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
        }
    }

    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + (self.rttvar * 4).max(Duration::from_millis(1))).clamp(MIN_RTO, MAX_RTO);
    }
}

/// Partial state while reading the head of an oversize message.
#[derive(Debug)]
struct Oversize {
    len: usize,
}

/// The framing state of one overlay link.
#[derive(Debug)]
pub struct FramedLink {
    config: LinkConfig,
    decoder: FrameDecoder,
    inbuf: BytesMut,
    outbuf: BytesMut,
    inbound: VecDeque<Bytes>,
    next_sequence: u32,
    /// The 32 most recent sequence numbers received.
    recent: VecDeque<u32>,
    /// Unacknowledged frames: (sequence, sent at).
    outstanding: VecDeque<(u32, Instant)>,
    rtt: RttEstimator,
    health: LinkHealth,
    health_changed: bool,
    oversize: Option<Oversize>,
    closed: bool,
}

impl FramedLink {
    /// A new link; sequence numbers start at zero (§6.6.2).
    pub fn new(config: LinkConfig) -> FramedLink {
        FramedLink {
            decoder: FrameDecoder::new(config.max_message_size),
            config,
            inbuf: BytesMut::new(),
            outbuf: BytesMut::new(),
            inbound: VecDeque::new(),
            next_sequence: 0,
            recent: VecDeque::with_capacity(32),
            outstanding: VecDeque::new(),
            rtt: RttEstimator::new(),
            health: LinkHealth::Up,
            health_changed: false,
            oversize: None,
            closed: false,
        }
    }

    /// Frames `message` as the next data frame.
    pub fn send(&mut self, message: Bytes, now: Instant) -> Result<(), LinkError> {
        if message.len() > self.config.max_message_size.min(MAX_FRAMED_MESSAGE) {
            return Err(LinkError::SendTooLarge {
                len: message.len(),
                max: self.config.max_message_size,
            });
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.push_frame(&FramedMessage::Data { sequence, message });
        if self.outstanding.len() >= MAX_TRACKED {
            // Keep the oldest (it decides health); forget the sample of the newest.
            self.outstanding.remove(1);
        }
        self.outstanding.push_back((sequence, now));
        Ok(())
    }

    fn push_frame(&mut self, frame: &FramedMessage) {
        // Data frames were checked against the 24-bit limit; acks always encode.
        let _ = frame.encode(&mut self.outbuf);
    }

    /// Feeds bytes read from the stream.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) -> Result<(), LinkError> {
        if self.closed {
            return Ok(());
        }
        self.inbuf.extend_from_slice(bytes);
        if let Some(over) = &self.oversize {
            return self.read_oversize_header(over.len);
        }
        loop {
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(FramedMessage::Data { sequence, message })) => {
                    self.acknowledge(sequence);
                    self.inbound.push_back(message);
                }
                Ok(Some(FramedMessage::Ack {
                    ack_sequence,
                    received,
                })) => {
                    self.on_ack(ack_sequence, received, now);
                }
                Ok(None) => return Ok(()),
                Err(FrameError::TooLarge { len, .. }) => {
                    self.oversize = Some(Oversize { len });
                    return self.read_oversize_header(len);
                }
                Err(FrameError::Malformed(e)) => {
                    self.closed = true;
                    return Err(LinkError::Malformed(e.to_string()));
                }
            }
        }
    }

    /// Waits for the forwarding header of an oversize message so the caller can answer
    /// it, reading at most `max-message-size` bytes of it (§6.6).
    fn read_oversize_header(&mut self, len: usize) -> Result<(), LinkError> {
        let max = self.config.max_message_size;
        debug_assert_eq!(self.inbuf.first(), Some(&FRAME_DATA));
        let body = &self.inbuf[8.min(self.inbuf.len())..];
        let fail = |header| LinkError::MessageTooLarge { len, max, header };
        match decode_prefix(body, ForwardingHeader::parse_with_length) {
            Ok((_, (header, _))) => {
                self.closed = true;
                Err(fail(Some(Box::new(header))))
            }
            Err(e) if e.kind == crate::wire::DecodeErrorKind::Truncated && body.len() < max => {
                Ok(())
            }
            Err(_) => {
                self.closed = true;
                Err(fail(None))
            }
        }
    }

    fn acknowledge(&mut self, sequence: u32) {
        let mut received = 0u32;
        for m in &self.recent {
            let d = sequence.wrapping_sub(*m);
            if d > 0 && d < 32 {
                received |= 1 << d;
            }
        }
        if self.recent.len() == 32 {
            self.recent.pop_front();
        }
        self.recent.push_back(sequence);
        self.push_frame(&FramedMessage::Ack {
            ack_sequence: sequence,
            received,
        });
    }

    fn on_ack(&mut self, ack_sequence: u32, received: u32, now: Instant) {
        let acked = |seq: u32| {
            let d = ack_sequence.wrapping_sub(seq);
            d == 0 || (d < 32 && received & (1 << d) != 0)
        };
        if let Some((_, sent)) = self.outstanding.iter().find(|(s, _)| *s == ack_sequence) {
            self.rtt.sample(now - *sent);
        }
        self.outstanding.retain(|(s, _)| !acked(*s));
        // TCP delivers in order: anything sent before the acknowledged frame arrived.
        while let Some((s, _)) = self.outstanding.front() {
            if ack_sequence.wrapping_sub(*s) < 0x8000_0000 {
                self.outstanding.pop_front();
            } else {
                break;
            }
        }
        if self.outstanding.is_empty() && self.health != LinkHealth::Up {
            self.set_health(LinkHealth::Up);
        }
    }

    fn set_health(&mut self, health: LinkHealth) {
        if self.health != health {
            self.health = health;
            self.health_changed = true;
        }
    }

    /// The next received RELOAD message (or fragment).
    pub fn poll_message(&mut self) -> Option<Bytes> {
        self.inbound.pop_front()
    }

    /// Bytes to write to the stream.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.outbuf.is_empty() {
            None
        } else {
            Some(self.outbuf.split().freeze())
        }
    }

    /// A change of health since the last call.
    pub fn poll_health(&mut self) -> Option<LinkHealth> {
        std::mem::take(&mut self.health_changed).then_some(self.health)
    }

    /// When [`FramedLink::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (_, oldest) = self.outstanding.front()?;
        Some(match self.health {
            LinkHealth::Up => *oldest + self.rtt.rto,
            LinkHealth::Suspect => *oldest + self.rtt.rto + FAILURE_RETENTION,
            LinkHealth::Failed => return None,
        })
    }

    /// Advances health detection to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((_, oldest)) = self.outstanding.front() else {
            return;
        };
        let waited = now - *oldest;
        if waited >= self.rtt.rto + FAILURE_RETENTION {
            self.set_health(LinkHealth::Failed);
        } else if waited >= self.rtt.rto {
            self.set_health(LinkHealth::Suspect);
        }
    }

    /// Current health.
    pub fn health(&self) -> LinkHealth {
        self.health
    }

    /// Smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt
    }

    /// Current RTO.
    pub fn rto(&self) -> Duration {
        self.rtt.rto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(from: &mut FramedLink, to: &mut FramedLink, now: Instant) {
        while let Some(b) = from.poll_transmit() {
            to.handle_bytes(&b, now).unwrap();
        }
    }

    #[test]
    fn messages_are_framed_delivered_and_acknowledged_rfc6940_6_6_2() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        a.send(Bytes::from_static(b"one"), Instant::ZERO).unwrap();
        a.send(Bytes::from_static(b"two"), Instant::ZERO).unwrap();
        pump(&mut a, &mut b, Instant::from_millis(10));
        assert_eq!(b.poll_message().as_deref(), Some(&b"one"[..]));
        assert_eq!(b.poll_message().as_deref(), Some(&b"two"[..]));
        pump(&mut b, &mut a, Instant::from_millis(20));
        assert_eq!(a.srtt(), Some(Duration::from_millis(20)));
        assert_eq!(a.poll_timeout(), None, "everything acknowledged");
    }

    #[test]
    fn ack_bitmask_names_recent_sequences_rfc6940_6_6_2() {
        let mut b = FramedLink::new(LinkConfig::default());
        for seq in [0u32, 1, 3] {
            let frame = FramedMessage::Data {
                sequence: seq,
                message: Bytes::new(),
            };
            b.handle_bytes(&frame.to_bytes().unwrap(), Instant::ZERO)
                .unwrap();
        }
        let out = b.poll_transmit().unwrap();
        let mut acks = Vec::new();
        let mut buf = BytesMut::from(&out[..]);
        while let Ok(Some(f)) = FrameDecoder::new(100).decode(&mut buf) {
            acks.push(f);
        }
        // The ack of 3 flags 1 (bit 2) and 0 (bit 3).
        assert_eq!(
            acks[2],
            FramedMessage::Ack {
                ack_sequence: 3,
                received: (1 << 2) | (1 << 3)
            }
        );
    }

    #[test]
    fn unacknowledged_link_becomes_suspect_then_failed_rfc6940_6_6_5() {
        let mut a = FramedLink::new(LinkConfig::default());
        a.send(Bytes::from_static(b"x"), Instant::ZERO).unwrap();
        let rto = a.rto();
        assert_eq!(a.poll_timeout(), Some(Instant::ZERO + rto));
        a.handle_timeout(Instant::ZERO + rto);
        assert_eq!(a.poll_health(), Some(LinkHealth::Suspect));
        a.handle_timeout(Instant::ZERO + rto + FAILURE_RETENTION);
        assert_eq!(a.poll_health(), Some(LinkHealth::Failed));
    }

    #[test]
    fn a_late_ack_restores_a_suspect_link() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        a.send(Bytes::from_static(b"x"), Instant::ZERO).unwrap();
        pump(&mut a, &mut b, Instant::ZERO);
        a.handle_timeout(Instant::from_secs(2));
        assert_eq!(a.poll_health(), Some(LinkHealth::Suspect));
        pump(&mut b, &mut a, Instant::from_secs(3));
        assert_eq!(a.poll_health(), Some(LinkHealth::Up));
    }

    #[test]
    fn oversize_message_reports_its_header_rfc6940_6_6() {
        let mut b = FramedLink::new(LinkConfig {
            max_message_size: 100,
        });
        let header = ForwardingHeader {
            overlay: 1,
            configuration_sequence: 0,
            ttl: 100,
            fragment: crate::wire::Fragment::WHOLE,
            transaction_id: 77,
            max_response_length: 0,
            via_list: vec![],
            destination_list: vec![],
            options: vec![],
        };
        let mut msg = BytesMut::new();
        header.encode_with_payload_len(&mut msg, 200).unwrap();
        msg.extend_from_slice(&[0u8; 200]);
        let frame = FramedMessage::Data {
            sequence: 0,
            message: msg.freeze(),
        }
        .to_bytes()
        .unwrap();
        // The first bytes announce the length; the header arrives in pieces.
        assert_eq!(b.handle_bytes(&frame[..20], Instant::ZERO), Ok(()));
        match b.handle_bytes(&frame[20..60], Instant::ZERO) {
            Err(LinkError::MessageTooLarge {
                len: 238,
                max: 100,
                header: Some(h),
            }) => assert_eq!(h.transaction_id, 77),
            other => panic!("expected MessageTooLarge with header, got {other:?}"),
        }
        assert!(b.poll_message().is_none());
    }
}
