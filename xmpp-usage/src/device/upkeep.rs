//! Keeping a device's place: its location record refreshed, and streams to the user's
//! other devices up (XEP-0415: "The Peer MUST strive to maintain connections to all
//! its user's peers") — without polling the overlay while nothing happens.
//!
//! How a device learns about its user's other devices:
//! - at start it looks them up and connects to each (so a device that comes online
//!   connects to the others: they learn of it from its stream, not by looking);
//! - twice more shortly after start ([`START_LOOKUPS`]), for a device that started
//!   at the same moment and was not registered yet when this one looked;
//! - when the last stream to one of them goes down, soon ([`LOST_RETRY`]) and then
//!   backing off while some device stays unreachable (a crashed device's record
//!   lives until its lifetime ends);
//! - otherwise every `own_devices_refresh` (10 minutes by default).
//!
//! The record is stored again at 80 % of its lifetime ([`Output::Register`]; the
//! driver stores it and answers with [`Device::registered`]), 30 s after a failed try.

use std::collections::BTreeSet;
use std::time::Duration;

use xor_overlay::id::NodeId;
use xor_overlay::time::Instant;

use super::{Device, Output, Reach};
use crate::resolve::{ResolveError, Route};

/// Lookups after start besides the first, for devices that started at the same time.
pub const START_LOOKUPS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(30)];
/// The first lookup after a stream to an own device went down; doubled while some
/// device stays unreachable, up to the refresh period.
pub const LOST_RETRY: Duration = Duration::from_secs(2);
/// The next try after a failed refresh of the location record.
pub const REGISTRATION_RETRY: Duration = Duration::from_secs(30);

/// How a device keeps its place (off in [`super::DeviceConfig`] by default: the
/// driver then registers and looks by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpkeepConfig {
    /// Lifetime of the stored location record; refreshed at 80 % of it.
    pub registration_lifetime: Duration,
    /// How often the user's other devices are looked up while nothing changes.
    pub own_devices_refresh: Duration,
}

/// When the user's other devices are looked up next.
#[derive(Debug, Clone)]
pub(super) struct OwnLookups {
    period: Duration,
    /// The start-up lookups still to come.
    early: Vec<Instant>,
    next: Instant,
    retry: Duration,
}

impl OwnLookups {
    /// The schedule of a device that looked at `now` (its start).
    pub(super) fn new(now: Instant, period: Duration) -> OwnLookups {
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
    pub(super) fn due(&self) -> Instant {
        self.next
    }

    /// The stream to one of the user's devices went down at `now`.
    pub(super) fn lost(&mut self, now: Instant) {
        self.next = self.next.min(now + self.retry);
    }

    /// A lookup at `now` ended; `all_connected`: every device found has a stream.
    pub(super) fn looked(&mut self, now: Instant, all_connected: bool) {
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

/// The upkeep of one device.
#[derive(Debug)]
pub(super) struct Upkeep {
    lookups: OwnLookups,
    refresh: Duration,
    /// When the record is stored next; `None` while a store is under way.
    register_at: Option<Instant>,
    /// The lookup of the user's devices under way.
    looking: Option<Looking>,
}

#[derive(Debug, Default)]
struct Looking {
    /// Its lookup has answered.
    resolved: bool,
    /// Devices found that are still connecting.
    waiting: BTreeSet<NodeId>,
    /// Every device settled so far is connected.
    all: bool,
}

impl Upkeep {
    /// The upkeep of a device that registered at `now`.
    pub(super) fn new(cfg: UpkeepConfig, now: Instant) -> Upkeep {
        let refresh = cfg.registration_lifetime.mul_f64(0.8);
        Upkeep {
            lookups: OwnLookups::new(now, cfg.own_devices_refresh),
            refresh,
            register_at: Some(now + refresh),
            looking: None,
        }
    }

    /// When something is due.
    pub(super) fn due(&self) -> Option<Instant> {
        let lookup = self.looking.is_none().then(|| self.lookups.due());
        [self.register_at, lookup].into_iter().flatten().min()
    }
}

impl Device {
    /// Starts keeping this device's place (with [`super::DeviceConfig::upkeep`]): the
    /// record was just stored; the user's other devices are looked up now.
    pub fn start(&mut self, now: Instant) {
        let Some(cfg) = self.cfg.upkeep else {
            return;
        };
        self.upkeep = Some(Upkeep::new(cfg, now));
        self.look_for_own(now);
    }

    /// The answer to [`Output::Register`].
    pub fn registered(&mut self, ok: bool, now: Instant) {
        if let Some(u) = &mut self.upkeep {
            let wait = if ok { u.refresh } else { REGISTRATION_RETRY };
            u.register_at = Some(now + wait);
        }
    }

    /// What is due in the upkeep at `now`.
    pub(super) fn upkeep_timeout(&mut self, now: Instant) {
        let Some(u) = &mut self.upkeep else { return };
        if u.register_at.is_some_and(|t| t <= now) {
            u.register_at = None;
            self.out.push_back(Output::Register);
        }
        if self
            .upkeep
            .as_ref()
            .and_then(Upkeep::due)
            .is_some_and(|t| t <= now)
        {
            self.look_for_own(now);
        }
    }

    /// Looks the user's devices up afresh and connects to each.
    fn look_for_own(&mut self, now: Instant) {
        let me = self.cfg.me.bare();
        let Some(u) = &mut self.upkeep else { return };
        u.looking = Some(Looking {
            all: true,
            ..Looking::default()
        });
        self.routes.remove(&me);
        self.failed_lookups.remove(&me);
        if !self.resolving.contains_key(&me) {
            self.start_lookup(&me, now);
        }
    }

    /// The lookup of this user's JID ended with `result`; whether it was the
    /// upkeep's.
    pub(super) fn own_resolved(
        &mut self,
        result: &Result<Vec<Route>, ResolveError>,
        now: Instant,
    ) -> bool {
        let Some(looking) = self.upkeep.as_mut().and_then(|u| u.looking.as_mut()) else {
            return false;
        };
        if looking.resolved {
            return false;
        }
        looking.resolved = true;
        let routes = match result {
            Ok(routes) => routes.clone(),
            // No record: no other device to connect to.
            Err(ResolveError::NotFound(_)) => Vec::new(),
            Err(_) => {
                looking.all = false;
                Vec::new()
            }
        };
        let (node, bare) = (self.cfg.node, self.cfg.me.bare());
        // A forward from this user's JID leads to someone else's devices, not own.
        for route in routes.iter().filter(|r| r.node != node && r.jid == bare) {
            let reach = self.reach(route, now);
            let Some(looking) = self.upkeep.as_mut().and_then(|u| u.looking.as_mut()) else {
                return true;
            };
            match reach {
                Reach::Connected => {}
                Reach::Failed(_) => looking.all = false,
                Reach::Trying => {
                    looking.waiting.insert(route.node);
                }
            }
        }
        self.own_settled(None, true, now);
        true
    }

    /// An attempt on `node` ended (`up`: it connected). Ends the lookup of the
    /// user's devices once none is left connecting.
    pub(super) fn own_settled(&mut self, node: Option<NodeId>, up: bool, now: Instant) {
        let Some(u) = &mut self.upkeep else { return };
        let Some(looking) = &mut u.looking else {
            return;
        };
        if let Some(n) = node {
            if !looking.waiting.remove(&n) {
                return;
            }
            looking.all &= up;
        }
        if looking.resolved && looking.waiting.is_empty() {
            let all = looking.all;
            u.looking = None;
            u.lookups.looked(now, all);
        }
    }

    /// The last stream to one of this user's other devices went down.
    pub(super) fn own_lost(&mut self, now: Instant) {
        if let Some(u) = &mut self.upkeep {
            u.lookups.lost(now);
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
        let t0 = Instant::ZERO;
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
        let t0 = Instant::ZERO;
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
        let t0 = Instant::ZERO;
        let mut l = OwnLookups::new(t0, PERIOD);
        l.lost(t0 + secs(1));
        assert_eq!(l.due(), t0 + secs(1) + LOST_RETRY);
        l.looked(t0 + secs(3), true);
        assert_eq!(l.due(), t0 + START_LOOKUPS[0]);
    }
}
