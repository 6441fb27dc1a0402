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
        self.available(key, now)?;
        self.take(key, now);
        Ok(())
    }

    /// Whether `key` has a token at `now` (none is taken); `Err` says how long until
    /// it has.
    pub fn available(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let tokens = self.tokens(key, now);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(self.rate.interval.mul_f64(1.0 - tokens))
        }
    }

    /// Whether `key` has never been charged or has earned its whole burst back.
    pub fn is_untouched(&self, key: &str, now: Instant) -> bool {
        self.tokens(key, now) >= f64::from(self.rate.burst)
    }

    fn tokens(&self, key: &str, now: Instant) -> f64 {
        let burst = f64::from(self.rate.burst);
        let (tokens, since) = self.buckets.get(key).copied().unwrap_or((burst, now));
        self.refill(tokens, since, now)
    }

    /// Takes a token from `key` (down to zero).
    pub fn take(&mut self, key: &str, now: Instant) {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.evict(now);
        }
        let tokens = self.tokens(key, now);
        self.buckets
            .insert(key.to_owned(), ((tokens - 1.0).max(0.0), now));
    }

    /// Forgets `key`: it has its whole burst again.
    pub fn forget(&mut self, key: &str) {
        self.buckets.remove(key);
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

/// Failed password checks (hardening issue, defect 7). Failures are counted per
/// (account, client address), per client address, and in all; only failures are
/// charged, and a success clears its (account, address) count. So guessing locks out
/// the guesser's address, never the account: a user with the right password from an
/// address without failures always gets through, even while the overall budget is
/// spent by an attack from many addresses.
#[derive(Debug)]
pub struct AuthFailures {
    per_user_source: RateLimiter,
    per_source: RateLimiter,
    global: RateLimiter,
}

/// Limits of [`AuthFailures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures allowed for one account from one address.
    pub per_user_source: Rate,
    /// Failures allowed from one address, whatever the accounts.
    pub per_source: Rate,
    /// Failures allowed in all; when spent, addresses that failed recently are
    /// refused before their password is checked.
    pub global: Rate,
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            per_user_source: Rate {
                burst: 5,
                interval: Duration::from_secs(180),
            },
            per_source: Rate {
                burst: 20,
                interval: Duration::from_secs(30),
            },
            global: Rate {
                burst: 100,
                interval: Duration::from_millis(500),
            },
        }
    }
}

/// Addresses and (account, address) pairs tracked at most.
const FAILURE_KEYS: usize = 65_536;

impl AuthFailures {
    /// Counts failures within `limits`.
    pub fn new(limits: FailureLimits) -> AuthFailures {
        AuthFailures {
            per_user_source: RateLimiter::new(limits.per_user_source, FAILURE_KEYS),
            per_source: RateLimiter::new(limits.per_source, FAILURE_KEYS),
            global: RateLimiter::new(limits.global, 1),
        }
    }

    fn pair(user: &str, source: &str) -> String {
        format!("{user}\n{source}")
    }

    /// Whether `user` may try a password from `source` now; `Err` says how long to
    /// wait.
    pub fn may_try(&self, user: &str, source: &str, now: Instant) -> Result<(), Duration> {
        self.per_user_source
            .available(&Self::pair(user, source), now)?;
        self.per_source.available(source, now)?;
        if !self.per_source.is_untouched(source, now) {
            self.global.available("", now)?;
        }
        Ok(())
    }

    /// The password was wrong.
    pub fn failed(&mut self, user: &str, source: &str, now: Instant) {
        self.per_user_source.take(&Self::pair(user, source), now);
        self.per_source.take(source, now);
        self.global.take("", now);
    }

    /// The password was right.
    pub fn succeeded(&mut self, user: &str, source: &str) {
        self.per_user_source.forget(&Self::pair(user, source));
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
    fn guessing_locks_out_the_guesser_not_the_account() {
        let mut f = AuthFailures::new(FailureLimits::default());
        let t0 = Instant::now();
        for _ in 0..5 {
            f.may_try("alice", "198.51.100.1", t0).unwrap();
            f.failed("alice", "198.51.100.1", t0);
        }
        assert!(f.may_try("alice", "198.51.100.1", t0).is_err());
        // The real alice, elsewhere, is not affected.
        f.may_try("alice", "192.0.2.7", t0).unwrap();
        f.succeeded("alice", "192.0.2.7");
    }

    #[test]
    fn when_the_global_budget_is_spent_only_clean_addresses_are_checked() {
        let limits = FailureLimits {
            global: Rate {
                burst: 10,
                interval: Duration::from_secs(60),
            },
            ..FailureLimits::default()
        };
        let mut f = AuthFailures::new(limits);
        let t0 = Instant::now();
        for i in 0..10 {
            let src = format!("203.0.113.{i}");
            f.may_try("alice", &src, t0).unwrap();
            f.failed("alice", &src, t0);
        }
        assert!(
            f.may_try("bob", "203.0.113.3", t0).is_err(),
            "a failed address waits"
        );
        f.may_try("alice", "192.0.2.7", t0)
            .expect("an address without failures is still checked");
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
