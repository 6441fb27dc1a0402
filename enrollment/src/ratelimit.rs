//! Token buckets keyed by user name or client address, in bounded memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many requests a key may make: `burst` at once, then one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Time to earn one more.
    pub interval: Duration,
}

/// A token bucket per key. When more than `capacity` keys are tracked, full buckets
/// are forgotten first, then the oldest.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimiter {
    /// Limits each key to `rate`, tracking at most `capacity` keys.
    pub fn new(rate: Rate, capacity: usize) -> RateLimiter {
        RateLimiter {
            rate,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(since).as_secs_f64()
            / self.rate.interval.as_secs_f64().max(1e-9);
        (tokens + earned).min(f64::from(self.rate.burst))
    }

    /// Takes one token for `key` at `now`; `Err` says how long until one is available.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.evict(now);
        }
        let burst = f64::from(self.rate.burst);
        let (tokens, since) = self.buckets.get(key).copied().unwrap_or((burst, now));
        let tokens = self.refill(tokens, since, now);
        if tokens >= 1.0 {
            self.buckets.insert(key.to_owned(), (tokens - 1.0, now));
            Ok(())
        } else {
            self.buckets.insert(key.to_owned(), (tokens, now));
            Err(self.rate.interval.mul_f64(1.0 - tokens))
        }
    }

    fn evict(&mut self, now: Instant) {
        let burst = f64::from(self.rate.burst);
        let full: Vec<String> = self
            .buckets
            .iter()
            .filter(|(_, (t, s))| self.refill(*t, *s, now) >= burst)
            .map(|(k, _)| k.clone())
            .collect();
        for k in full {
            self.buckets.remove(&k);
        }
        if self.buckets.len() >= self.capacity
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let rate = Rate {
            burst: 3,
            interval: Duration::from_secs(10),
        };
        let mut rl = RateLimiter::new(rate, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check("alice", t0).unwrap();
        }
        let wait = rl.check("alice", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        rl.check("bob", t0).unwrap();
        rl.check("alice", t0 + Duration::from_secs(10)).unwrap();
        assert!(rl.check("alice", t0 + Duration::from_secs(11)).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let rate = Rate {
            burst: 1,
            interval: Duration::from_secs(60),
        };
        let mut rl = RateLimiter::new(rate, 50);
        let t0 = Instant::now();
        for i in 0..10_000 {
            let _ = rl.check(&format!("client-{i}"), t0 + Duration::from_millis(i));
            assert!(rl.len() <= 50);
        }
    }
}
