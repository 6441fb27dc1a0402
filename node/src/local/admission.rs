//! Who may connect to the local port and how fast they may guess (hardening issue,
//! defect 5): idle or slow connections cannot lock the user out, and password
//! guessing is slowed per source address.
//!
//! - [`Admission`]: at most `max_pending` connections that have not logged in yet;
//!   a new one evicts the oldest of them instead of being refused (the overlay
//!   listener's [`PendingTable`]), so a handful of idle sockets never keeps the user
//!   out. Logged-in sessions are counted apart.
//! - [`AuthThrottle`]: SASL attempts from one address are evaluated one after the
//!   other, each failed (or unfinished) attempt doubling the wait before the next
//!   (250 ms up to 8 s); a success clears it. Guessing over many parallel connections gains nothing: the
//!   wait is per address, not per connection.
//!
//! Both are plain state with the time passed in, so their rules are unit-tested
//! without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use xor_overlay::runtime::admission::{Admitted, PendingTable};

/// The wait after the first failure; it doubles with each further one.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts from one address.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Failures are forgotten after this long without one.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (the oldest is forgotten first).
pub const MAX_SOURCES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Source {
    failures: u32,
    /// The earliest time the next attempt may be evaluated.
    next: Instant,
    last_seen: Instant,
}

/// Per-address pacing of authentication attempts.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    sources: HashMap<IpAddr, Source>,
}

impl AuthThrottle {
    /// The wait after `failures` consecutive failures.
    pub fn delay(failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let shift = (failures - 1).min(16);
        FIRST_DELAY.saturating_mul(1 << shift).min(MAX_DELAY)
    }

    fn source(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(ip, _)| *ip);
            if let Some(o) = oldest {
                self.sources.remove(&o);
            }
        }
        let s = self.sources.entry(ip).or_insert(Source {
            failures: 0,
            next: now,
            last_seen: now,
        });
        if now.saturating_duration_since(s.last_seen) > FORGET_AFTER {
            s.failures = 0;
        }
        s.last_seen = now;
        s
    }

    /// Books an attempt from `ip`: returns when it may be evaluated. Every attempt
    /// counts as a failure until it succeeds, so attempts from one address are spaced
    /// by a doubling delay however many connections they come on, and a parallel
    /// burst is no faster than a sequence.
    pub fn reserve(&mut self, ip: IpAddr, now: Instant) -> Instant {
        let s = self.source(ip, now);
        let at = s.next.max(now);
        s.failures = s.failures.saturating_add(1);
        s.next = at + Self::delay(s.failures);
        at
    }

    /// The attempt succeeded: the address is trusted again.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.sources.remove(&ip);
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// The connection table of the local port: pending logins (see
/// [`PendingTable`]: a newcomer closes the oldest) and logged-in sessions.
#[derive(Debug)]
pub struct Admission {
    pending: PendingTable,
    max_sessions: usize,
    sessions: usize,
}

impl Admission {
    /// At most `max_pending` connections logging in and `max_sessions` logged in.
    pub fn new(max_pending: usize, max_sessions: usize) -> Admission {
        Admission {
            // Local clients all come from one address: the per-address share is the
            // whole table.
            pending: PendingTable::new(max_pending, max_pending),
            max_sessions: max_sessions.max(1),
            sessions: 0,
        }
    }

    /// A new connection from `ip`: what to do, or `None` when every session slot is
    /// taken by logged-in clients.
    pub fn arrive(&mut self, ip: IpAddr) -> Option<Admitted> {
        (self.sessions < self.max_sessions).then(|| self.pending.arrive(ip))
    }

    /// Connection `id` sent its stream header.
    pub fn spoke(&mut self, id: u64) {
        self.pending.spoke(id);
    }

    /// Connection `id` logged in; `false` if it was evicted meanwhile or every
    /// session slot is taken.
    pub fn logged_in(&mut self, id: u64) -> bool {
        if !self.pending.done(id) || self.sessions >= self.max_sessions {
            return false;
        }
        self.sessions += 1;
        true
    }

    /// Connection `id` ended (`was_session`: after logging in).
    pub fn left(&mut self, id: u64, was_session: bool) {
        if was_session {
            self.sessions = self.sessions.saturating_sub(1);
        } else {
            self.pending.done(id);
        }
    }

    /// Connections logging in now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn failures_space_attempts_from_one_address_and_double_up_to_the_cap() {
        let mut t = AuthThrottle::default();
        let t0 = Instant::now();
        assert_eq!(t.reserve(ip(1), t0), t0, "a fresh address is not delayed");
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = t.reserve(ip(1), at);
            waits.push(next - at);
            at = next;
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // Another address is not affected.
        assert_eq!(t.reserve(ip(2), at), at);
    }

    #[test]
    fn a_parallel_burst_is_no_faster_than_a_sequence() {
        let mut t = AuthThrottle::default();
        let t0 = Instant::now();
        // Sixteen connections trying at the same instant: each waits its turn.
        let slots: Vec<Instant> = (0..16).map(|_| t.reserve(ip(1), t0)).collect();
        for (i, w) in slots.windows(2).enumerate() {
            assert_eq!(w[1] - w[0], AuthThrottle::delay(i as u32 + 1));
        }
        assert!(slots[15] - t0 >= Duration::from_secs(60));
    }

    #[test]
    fn success_clears_and_silence_forgets() {
        let mut t = AuthThrottle::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            t.reserve(ip(1), t0);
        }
        t.succeeded(ip(1));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(t.reserve(ip(1), later), later);
        for _ in 0..5 {
            t.reserve(ip(3), t0);
        }
        let much_later = t0 + FORGET_AFTER + Duration::from_secs(10);
        assert_eq!(t.reserve(ip(3), much_later), much_later);
    }

    #[test]
    fn the_table_of_addresses_is_bounded() {
        let mut t = AuthThrottle::default();
        let t0 = Instant::now();
        for i in 0..5000u32 {
            let a = IpAddr::from(i.to_be_bytes());
            t.reserve(a, t0 + Duration::from_millis(u64::from(i)));
            assert!(t.len() <= MAX_SOURCES);
        }
    }

    #[test]
    fn a_new_connection_evicts_the_oldest_pending_one_never_a_session() {
        let mut a = Admission::new(4, 2);
        let ids: Vec<u64> = (0..4).map(|_| a.arrive(ip(1)).unwrap().id).collect();
        assert!(a.logged_in(ids[1]));
        let fifth = a.arrive(ip(1)).unwrap();
        assert!(
            fifth.evict.is_empty(),
            "a logged-in session freed a pending slot"
        );
        let sixth = a.arrive(ip(1)).unwrap();
        assert_eq!(sixth.evict, vec![ids[0]], "the oldest pending goes");
        assert!(!a.logged_in(ids[0]), "an evicted connection cannot log in");
        assert!(a.logged_in(fifth.id));
        assert!(a.arrive(ip(1)).is_none(), "both session slots are taken");
        a.left(fifth.id, true);
        assert!(a.arrive(ip(1)).is_some());
    }
}
