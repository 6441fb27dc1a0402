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
//! [`LinkHealth::Failed`]. The messages a suspect link has not acknowledged can be
//! taken back ([`FramedLink::take_unacked`]) and routed around it: per-hop recovery,
//! so a request does not wait for its origin's end-to-end retransmission (§6.2.1).
//!
//! Keep-alive: a link from which nothing has been heard for
//! [`LinkConfig::keepalive`] sends an empty data frame, which the peer acknowledges
//! like any other; so a silent peer is suspect within `keepalive` + RTO even on an
//! idle link. The framing allows an empty `message<0..2^24-1>`; a receiver
//! acknowledges it and hands it on as an empty message, which tells the node that
//! the peer keeps the link alive (README Decisions). Only the ends that route over
//! a link probe it ([`FramedLink::set_keepalive`]); the other end only answers.
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
/// Read-buffer capacity an idle link keeps.
const IDLE_BUFFER: usize = 4096;
/// Bytes of unacknowledged messages kept per link for rerouting around a suspect
/// link; messages beyond it are left to their origin's retransmission.
pub const MAX_KEPT_BYTES: usize = 256 * 1024;

/// A data frame waiting for its acknowledgement.
#[derive(Debug)]
struct Outstanding {
    sequence: u32,
    sent: Instant,
    /// The message, while the budget of [`MAX_KEPT_BYTES`] allows.
    message: Option<Bytes>,
}

/// Link parameters.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `max-message-size` from the overlay configuration (§6.6, §11.1).
    pub max_message_size: usize,
    /// Probe the peer after this long without hearing from it (`None`: never).
    pub keepalive: Option<Duration>,
}

/// The default [`LinkConfig::keepalive`]: a silent peer is suspect within about 11 s.
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// How much later an end probes after hearing the peer's probe (see `keepalive_due`).
pub const PROBE_DEFERENCE: Duration = Duration::from_secs(1);

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            max_message_size: 64 * 1024,
            keepalive: Some(KEEPALIVE),
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
    /// Unacknowledged frames, oldest first.
    outstanding: VecDeque<Outstanding>,
    /// Bytes of the messages kept in `outstanding`.
    kept_bytes: usize,
    rtt: RttEstimator,
    health: LinkHealth,
    health_changed: bool,
    oversize: Option<Oversize>,
    closed: bool,
    /// When a frame last arrived (acknowledgements included).
    last_heard: Option<Instant>,
    /// Whether this end probes an idle link.
    probing: bool,
    /// The smoothed RTT last handed out by [`FramedLink::poll_rtt`].
    rtt_reported: Option<Duration>,
    /// The last frame heard was the peer's keep-alive.
    heard_probe: bool,
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
            kept_bytes: 0,
            rtt: RttEstimator::new(),
            health: LinkHealth::Up,
            health_changed: false,
            oversize: None,
            closed: false,
            last_heard: None,
            probing: true,
            rtt_reported: None,
            heard_probe: false,
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
        let kept = (self.kept_bytes + message.len() <= MAX_KEPT_BYTES).then(|| message.clone());
        self.push_data(message, kept, now);
        Ok(())
    }

    /// Writes a data frame and tracks it until acknowledged.
    fn push_data(&mut self, message: Bytes, kept: Option<Bytes>, now: Instant) {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.push_frame(&FramedMessage::Data { sequence, message });
        if self.outstanding.len() >= MAX_TRACKED {
            // Keep the oldest (it decides health); forget the sample of the newest.
            if let Some(old) = self.outstanding.remove(1) {
                self.forget(old);
            }
        }
        self.kept_bytes += kept.as_ref().map_or(0, Bytes::len);
        self.outstanding.push_back(Outstanding {
            sequence,
            sent: now,
            message: kept,
        });
    }

    fn forget(&mut self, o: Outstanding) {
        self.kept_bytes -= o.message.map_or(0, |m| m.len());
    }

    /// The messages sent on this link and not acknowledged yet (as far as they were
    /// kept, oldest first), for routing them around a suspect link. Their frames still
    /// count for the link's health.
    pub fn take_unacked(&mut self) -> Vec<Bytes> {
        self.kept_bytes = 0;
        self.outstanding
            .iter_mut()
            .filter_map(|o| o.message.take())
            .collect()
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
        self.last_heard = Some(now);
        if let Some(over) = &self.oversize {
            return self.read_oversize_header(over.len);
        }
        loop {
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(FramedMessage::Data { sequence, message })) => {
                    self.acknowledge(sequence);
                    self.heard_probe = message.is_empty();
                    self.inbound.push_back(message); // empty: a keep-alive
                }
                Ok(Some(FramedMessage::Ack {
                    ack_sequence,
                    received,
                })) => {
                    self.heard_probe = false;
                    self.on_ack(ack_sequence, received, now);
                }
                Ok(None) => {
                    if self.inbuf.is_empty() && self.inbuf.capacity() > IDLE_BUFFER {
                        // An idle link does not hold on to its largest message's buffer.
                        self.inbuf = BytesMut::new();
                    }
                    return Ok(());
                }
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
        if let Some(o) = self.outstanding.iter().find(|o| o.sequence == ack_sequence) {
            self.rtt.sample(now - o.sent);
        }
        // TCP delivers in order: anything sent before the acknowledged frame arrived.
        let in_order = |s: u32| ack_sequence.wrapping_sub(s) < 0x8000_0000;
        let (mut freed, mut front) = (0, true);
        self.outstanding.retain(|o| {
            let done = acked(o.sequence) || (front && in_order(o.sequence));
            if done {
                freed += o.message.as_ref().map_or(0, Bytes::len);
            }
            front &= done;
            !done
        });
        self.kept_bytes -= freed;
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

    /// The smoothed RTT when it is first measured or has moved by more than a quarter
    /// since it was last handed out (for proximity neighbour selection).
    pub fn poll_rtt(&mut self) -> Option<Duration> {
        let now = self.rtt.srtt?;
        let moved = self
            .rtt_reported
            .is_none_or(|was| now.abs_diff(was) > was / 4);
        moved.then(|| {
            self.rtt_reported = Some(now);
            now
        })
    }

    /// A change of health since the last call.
    pub fn poll_health(&mut self) -> Option<LinkHealth> {
        std::mem::take(&mut self.health_changed).then_some(self.health)
    }

    /// When [`FramedLink::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let Some(oldest) = self.outstanding.front().map(|o| o.sent) else {
            return self.keepalive_due();
        };
        Some(match self.health {
            LinkHealth::Up => oldest + self.rtt.rto,
            LinkHealth::Suspect => oldest + self.rtt.rto + FAILURE_RETENTION,
            LinkHealth::Failed => return None,
        })
    }

    /// Advances health detection to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(oldest) = self.outstanding.front().map(|o| o.sent) else {
            if self.keepalive_due().is_some_and(|t| t <= now) && !self.closed {
                self.push_data(Bytes::new(), None, now);
            }
            return;
        };
        // The same sums as `poll_timeout`: a deadline it reports has passed here.
        if now >= oldest + self.rtt.rto + FAILURE_RETENTION {
            self.set_health(LinkHealth::Failed);
        } else if now >= oldest + self.rtt.rto {
            self.set_health(LinkHealth::Suspect);
        }
    }

    /// When an idle link probes its peer: [`LinkConfig::keepalive`] after the last
    /// frame heard (nothing is probed before the first, nor while probing is off).
    /// After the peer's own probe, [`PROBE_DEFERENCE`] later: when both ends probe,
    /// their timers would otherwise restart together (one at the probe, the other at
    /// its ack) and fire together, two probes where one serves; this way the end
    /// whose probe was answered keeps probing and the other only answers.
    fn keepalive_due(&self) -> Option<Instant> {
        let interval = self.config.keepalive.filter(|_| self.probing)?;
        let defer = if self.heard_probe {
            PROBE_DEFERENCE
        } else {
            Duration::ZERO
        };
        Some(self.last_heard? + interval + defer)
    }

    /// Turns this end's keep-alive probes on or off (on by default). An end that does
    /// not route over the link leaves probing to the peer, and still acknowledges.
    pub fn set_keepalive(&mut self, on: bool) {
        self.probing = on;
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
        assert_eq!(
            a.poll_timeout(),
            Some(Instant::from_millis(20) + KEEPALIVE),
            "everything acknowledged: only the keep-alive is due"
        );
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
    fn an_idle_link_probes_its_peer_and_a_silent_one_becomes_suspect() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        a.send(Bytes::from_static(b"hello"), Instant::ZERO).unwrap();
        pump(&mut a, &mut b, Instant::ZERO);
        pump(&mut b, &mut a, Instant::from_millis(20));
        assert_eq!(b.poll_message().as_deref(), Some(&b"hello"[..]));
        // Heard at 20 ms: the probe is due KEEPALIVE later.
        let due = Instant::from_millis(20) + KEEPALIVE;
        assert_eq!(a.poll_timeout(), Some(due));
        a.handle_timeout(due);
        let probe = a.poll_transmit().expect("a keep-alive frame");
        assert_eq!(
            probe.len(),
            8,
            "an empty data frame: type, sequence, 24-bit length"
        );
        b.handle_bytes(&probe, due).unwrap();
        assert_eq!(
            b.poll_message().as_deref(),
            Some(&b""[..]),
            "a keep-alive is handed on as an empty message"
        );
        assert_eq!(b.poll_message(), None);
        pump(&mut b, &mut a, due);
        assert_eq!(a.poll_timeout(), Some(due + KEEPALIVE), "acknowledged");
        // The peer goes silent: the next probe is not acknowledged.
        a.handle_timeout(due + KEEPALIVE);
        assert!(a.poll_transmit().is_some());
        let rto = a.rto();
        a.handle_timeout(due + KEEPALIVE + rto);
        assert_eq!(a.poll_health(), Some(LinkHealth::Suspect));
        let none = FramedLink::new(LinkConfig {
            keepalive: None,
            ..LinkConfig::default()
        });
        assert_eq!(none.poll_timeout(), None);
    }

    #[test]
    fn the_rtt_is_handed_out_when_first_measured_and_when_it_moves_by_a_quarter() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        assert_eq!(a.poll_rtt(), None, "nothing measured yet");
        let mut now = Instant::ZERO;
        let mut round = |a: &mut FramedLink, b: &mut FramedLink, rtt_ms: u64| {
            a.send(Bytes::from_static(b"x"), now).unwrap();
            pump(a, b, now);
            now += Duration::from_millis(rtt_ms);
            pump(b, a, now);
        };
        round(&mut a, &mut b, 40);
        assert_eq!(a.poll_rtt(), Some(Duration::from_millis(40)));
        assert_eq!(a.poll_rtt(), None, "handed out once");
        round(&mut a, &mut b, 44);
        assert_eq!(a.poll_rtt(), None, "40.5 ms is within a quarter");
        for _ in 0..8 {
            round(&mut a, &mut b, 200);
        }
        let moved = a.poll_rtt().expect("moved by more than a quarter");
        assert!(moved > Duration::from_millis(50), "{moved:?}");
    }

    /// Runs `x`'s timers at `now`; what it sends reaches `y` after `d`, and `y`'s
    /// acks come back after `d` more. Returns the frames `x` sent.
    fn probe(x: &mut FramedLink, y: &mut FramedLink, now: Instant, d: Duration) -> u32 {
        let mut sent = 0;
        x.handle_timeout(now);
        while let Some(bytes) = x.poll_transmit() {
            sent += 1;
            y.handle_bytes(&bytes, now + d).unwrap();
            while y.poll_message().is_some() {}
            while let Some(ack) = y.poll_transmit() {
                x.handle_bytes(&ack, now + d * 2).unwrap();
            }
        }
        sent
    }

    #[test]
    fn when_both_ends_probe_only_one_does_each_interval() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        let d = Duration::from_millis(40); // one way
        a.send(Bytes::from_static(b"hello"), Instant::ZERO).unwrap();
        pump(&mut a, &mut b, Instant::ZERO + d);
        pump(&mut b, &mut a, Instant::ZERO + d * 2);
        let _ = b.poll_message();
        // A minute of idleness, frames carried after `d`: count each end's probes.
        let (mut now, mut probes) = (Instant::ZERO + d * 2, [0u32; 2]);
        let end = now + Duration::from_secs(60);
        while now < end {
            let next = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("someone probes");
            now = next;
            probes[0] += probe(&mut a, &mut b, now, d);
            probes[1] += probe(&mut b, &mut a, now, d);
        }
        assert_eq!(
            probes.iter().sum::<u32>(),
            6,
            "one probe per interval: {probes:?}"
        );
        assert!(
            probes.contains(&0),
            "and always from the same end: {probes:?}"
        );
        assert_eq!(a.health(), LinkHealth::Up);
        assert_eq!(b.health(), LinkHealth::Up);
    }

    #[test]
    fn an_end_that_does_not_probe_still_answers_probes() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        b.set_keepalive(false);
        a.send(Bytes::from_static(b"hello"), Instant::ZERO).unwrap();
        pump(&mut a, &mut b, Instant::ZERO);
        pump(&mut b, &mut a, Instant::from_millis(20));
        assert_eq!(b.poll_message().as_deref(), Some(&b"hello"[..]));
        assert_eq!(b.poll_timeout(), None, "b never probes");
        let due = Instant::from_millis(20) + KEEPALIVE;
        assert_eq!(a.poll_timeout(), Some(due), "a still does");
        a.handle_timeout(due);
        pump(&mut a, &mut b, due);
        assert_eq!(b.poll_message().as_deref(), Some(&b""[..]));
        pump(&mut b, &mut a, due);
        assert_eq!(a.poll_timeout(), Some(due + KEEPALIVE), "b acknowledged");
        b.set_keepalive(true);
        assert_eq!(
            b.poll_timeout(),
            Some(due + KEEPALIVE + PROBE_DEFERENCE),
            "on again, after the peer's next probe would have come"
        );
    }

    #[test]
    fn a_reported_deadline_is_acted_on_at_that_instant_whatever_the_rto_precision() {
        // RFC 6298 sums give RTOs finer than the clock's microseconds; the deadline
        // must still count as reached (it looped for ever in the simulator).
        for rtt_us in [1_000_001u64, 1_000_003, 777_777, 1_234_567] {
            let (mut a, mut b) = (
                FramedLink::new(LinkConfig::default()),
                FramedLink::new(LinkConfig::default()),
            );
            let mut now = Instant::ZERO;
            for _ in 0..3 {
                a.send(Bytes::from_static(b"x"), now).unwrap();
                pump(&mut a, &mut b, now);
                now += Duration::from_micros(rtt_us);
                pump(&mut b, &mut a, now);
            }
            a.send(Bytes::from_static(b"y"), now).unwrap();
            let deadline = a.poll_timeout().unwrap();
            a.handle_timeout(deadline);
            assert_eq!(
                a.poll_health(),
                Some(LinkHealth::Suspect),
                "rtt {rtt_us} µs"
            );
            assert!(a.poll_timeout().unwrap() > deadline);
        }
    }

    #[test]
    fn a_suspect_link_hands_back_what_it_had_not_acknowledged_within_its_budget() {
        let (mut a, mut b) = (
            FramedLink::new(LinkConfig::default()),
            FramedLink::new(LinkConfig::default()),
        );
        a.send(Bytes::from_static(b"acked"), Instant::ZERO).unwrap();
        pump(&mut a, &mut b, Instant::ZERO);
        pump(&mut b, &mut a, Instant::ZERO);
        a.send(Bytes::from_static(b"lost 1"), Instant::ZERO)
            .unwrap();
        a.send(Bytes::from_static(b"lost 2"), Instant::ZERO)
            .unwrap();
        assert_eq!(
            a.take_unacked(),
            vec![Bytes::from_static(b"lost 1"), Bytes::from_static(b"lost 2")]
        );
        assert!(a.take_unacked().is_empty(), "handed back once");
        a.handle_timeout(Instant::from_secs(2));
        assert_eq!(
            a.poll_health(),
            Some(LinkHealth::Suspect),
            "still unacknowledged"
        );
        // At most MAX_KEPT_BYTES are kept; the rest is left to the origin.
        let mut c = FramedLink::new(LinkConfig::default());
        let big = Bytes::from(vec![0u8; 60_000]);
        for _ in 0..5 {
            c.send(big.clone(), Instant::ZERO).unwrap();
        }
        let kept = c.take_unacked();
        assert_eq!(kept.len(), MAX_KEPT_BYTES / 60_000);
        assert!(kept.iter().map(Bytes::len).sum::<usize>() <= MAX_KEPT_BYTES);
    }

    #[test]
    fn oversize_message_reports_its_header_rfc6940_6_6() {
        let mut b = FramedLink::new(LinkConfig {
            max_message_size: 100,
            ..LinkConfig::default()
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
