//! Keeping a device's place: its location record refreshed, and streams to the user's
//! other devices up (XEP-0415: "The Peer MUST strive to maintain connections to all
//! its user's peers") — without polling the overlay while nothing happens.
//!
//! How a device learns about its user's other devices:
//! - at start it looks them up and connects to each (so a device that comes online
//!   connects to the others: they learn of it from its stream, not by looking);
//! - twice more shortly after start ([`START_LOOKUPS`]), for a device that started
//!   at the same moment and was not registered yet when this one looked;
//! - when the last stream to one of them goes down, at once ([`LOST_RETRY`]) and then
//!   backing off while some device stays unreachable (a crashed device's record
//!   lives until its lifetime ends);
//! - otherwise every `own_devices_refresh` (10 minutes by default).
//!
//! The schedule is [`OwnLookups`], sans-IO: times in, the next due time out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use xor_overlay::node::JoinState;

use super::XmppNode;

/// Lookups after start besides the first, for devices that started at the same time.
pub(crate) const START_LOOKUPS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(30)];
/// The first lookup after a stream to an own device went down; doubled while some
/// device stays unreachable, up to the refresh period.
pub(crate) const LOST_RETRY: Duration = Duration::from_secs(2);
/// The next try after a failed refresh of the location record.
const REGISTRATION_RETRY: Duration = Duration::from_secs(30);

/// When the user's other devices are looked up next.
#[derive(Debug, Clone)]
pub(crate) struct OwnLookups {
    period: Duration,
    /// The start-up lookups still to come.
    early: Vec<Instant>,
    next: Instant,
    retry: Duration,
}

impl OwnLookups {
    /// The schedule of a device that looked at `now` (its start).
    pub(crate) fn new(now: Instant, period: Duration) -> OwnLookups {
        let early: Vec<Instant> = START_LOOKUPS.iter().map(|d| now + *d).collect();
        let next = early.first().copied().unwrap_or(now + period);
        OwnLookups {
            period,
            early,
            next,
            retry: LOST_RETRY,
        }
    }

    /// When the next lookup is due.
    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// The stream to one of the user's devices went down at `now`.
    pub(crate) fn lost(&mut self, now: Instant) {
        self.next = self.next.min(now + self.retry);
    }

    /// A lookup at `now` ended; `all_connected`: every device found has a stream.
    pub(crate) fn looked(&mut self, now: Instant, all_connected: bool) {
        self.early.retain(|t| *t > now);
        let regular = self.early.first().copied().unwrap_or(now + self.period);
        if all_connected {
            self.retry = LOST_RETRY;
            self.next = regular;
        } else {
            self.retry = (self.retry * 2).min(self.period);
            self.next = regular.min(now + self.retry);
        }
    }
}

/// Refreshes the location record at 80 % of its lifetime and looks up the user's
/// other devices when [`OwnLookups`] says so; `own_lost` is notified by the driver when
/// the last stream to one of them goes down.
pub(crate) async fn maintain(node: XmppNode, own_lost: Arc<Notify>) {
    node.connect_own_devices().await;
    let refresh = node.cfg.registration_lifetime.mul_f64(0.8);
    let mut next_registration = Instant::now() + refresh;
    let mut lookups = OwnLookups::new(Instant::now(), node.cfg.own_devices_refresh);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(lookups.due().min(next_registration)) => {}
            () = own_lost.notified() => {
                lookups.lost(Instant::now());
                continue;
            }
        }
        if Instant::now() >= next_registration {
            next_registration = match node.register(node.own_location()).await {
                Ok(()) => Instant::now() + refresh,
                Err(e) => {
                    tracing::warn!(error = %e, "location refresh failed; retrying");
                    Instant::now() + REGISTRATION_RETRY
                }
            };
        }
        if Instant::now() >= lookups.due() {
            let all = node.connect_own_devices().await;
            lookups.looked(Instant::now(), all);
        }
    }
}

/// A client that moved to another peer (§4.2.1) stores its new route at once, so the
/// others reach it through the peer that now routes to it.
pub(crate) async fn follow_client_peer(node: XmppNode) {
    let mut watch = node.overlay.state_watch();
    let mut registered = node.overlay.state();
    while watch.changed().await.is_ok() {
        let state = *watch.borrow_and_update();
        if matches!(state, JoinState::Client { .. }) && state != registered {
            match node.register(node.own_location()).await {
                Ok(()) => registered = state,
                Err(e) => {
                    tracing::warn!(error = %e, "storing the new route failed; the refresh retries")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(600);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn after_the_start_lookups_an_idle_device_looks_once_a_period() {
        let t0 = Instant::now();
        let mut l = OwnLookups::new(t0, PERIOD);
        assert_eq!(l.due(), t0 + START_LOOKUPS[0]);
        l.looked(t0 + START_LOOKUPS[0], true);
        assert_eq!(l.due(), t0 + START_LOOKUPS[1]);
        l.looked(t0 + START_LOOKUPS[1], true);
        assert_eq!(l.due(), t0 + START_LOOKUPS[1] + PERIOD);
        let t = l.due();
        l.looked(t, true);
        assert_eq!(l.due(), t + PERIOD);
    }

    #[test]
    fn a_lost_device_is_looked_for_at_once_then_less_and_less_often() {
        let t0 = Instant::now();
        let mut l = OwnLookups::new(t0, PERIOD);
        l.looked(t0 + secs(5), true);
        l.looked(t0 + secs(30), true);
        let lost = t0 + secs(100);
        l.lost(lost);
        assert_eq!(l.due(), lost + LOST_RETRY);
        // It stays unreachable: 2 s, 4 s, 8 s … up to the period.
        let mut t = l.due();
        let mut gaps = Vec::new();
        for _ in 0..12 {
            l.looked(t, false);
            gaps.push(l.due() - t);
            t = l.due();
        }
        assert_eq!(gaps[0], secs(4));
        assert_eq!(gaps[1], secs(8));
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "{gaps:?}");
        assert_eq!(*gaps.last().unwrap(), PERIOD);
        // Back: the quick retry is ready for the next loss.
        l.looked(t, true);
        assert_eq!(l.due(), t + PERIOD);
        l.lost(t + secs(1));
        assert_eq!(l.due(), t + secs(1) + LOST_RETRY);
    }

    #[test]
    fn a_loss_during_start_keeps_the_start_lookups() {
        let t0 = Instant::now();
        let mut l = OwnLookups::new(t0, PERIOD);
        l.lost(t0 + secs(1));
        assert_eq!(l.due(), t0 + secs(1) + LOST_RETRY);
        l.looked(t0 + secs(3), true);
        assert_eq!(l.due(), t0 + START_LOOKUPS[0]);
    }
}
