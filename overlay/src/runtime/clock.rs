//! The one place the runtime reads the real clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::Instant;

/// Maps the monotonic tokio clock to the core's [`Instant`] and to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
    start_unix_ms: u64,
}

impl Clock {
    /// A clock whose zero is now.
    #[allow(clippy::disallowed_methods)] // the runtime is where real time enters
    pub fn start() -> Clock {
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start: tokio::time::Instant::now(),
            start_unix_ms,
        }
    }

    /// Now, as the core counts time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }

    /// Milliseconds since the Unix epoch at `at`.
    pub fn unix_ms(&self, at: Instant) -> u64 {
        self.start_unix_ms + at.as_micros() / 1000
    }

    /// Wall-clock milliseconds at which the core's zero lies.
    pub fn start_unix_ms(&self) -> u64 {
        self.start_unix_ms
    }

    /// The tokio deadline for a core instant.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.start + Duration::from_micros(at.as_micros())
    }
}

/// Sleeps until `deadline`, or forever without one: the timer arm of a driver's
/// `select!` that only wakes when something is due.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
