//! Which addresses a peer's Attach or AppAttach may make this node connect to
//! (hardening issue, defect 6).
//!
//! With No-ICE candidates the answerer connects to whatever the requester names
//! (§6.5.1.11, §6.5.1.13), so an enrolled peer could make every node it reaches open
//! connections to a third party. Until ICE checks authenticate candidates (the NAT
//! traversal issue), this node:
//!
//! - reads at most [`MAX_CANDIDATES`] candidates, and refuses a longer list;
//! - never connects to an unspecified, multicast or broadcast address or port 0, nor
//!   to a loopback address unless it is itself on loopback;
//! - dials at most [`MAX_DIALS`] of them, an address at most once at a time
//!   ([`DIAL_WINDOW`]), and after a failed dial refuses it for [`DIAL_DENY`];
//! - answers at most a burst of [`APP_ATTACH_BURST`] AppAttach requests per peer,
//!   then one every [`APP_ATTACH_INTERVAL`].
//!
//! So fifty requests naming a third party cost it one connection attempt a minute
//! from this node. Everything is keyed by address or Node-ID in ordered maps and
//! bounded ([`MAX_TRACKED`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::id::NodeId;
use crate::time::Instant;
use crate::wire::attach::link_type;
use crate::wire::{ErrorCode, ErrorResponse, IceCandidate};

/// Candidates read from one Attach or AppAttach.
pub const MAX_CANDIDATES: usize = 32;
/// Candidates dialled for one Attach or AppAttach (the first that connects wins).
pub const MAX_DIALS: usize = 4;
/// How long a dial may be in flight before the address may be dialled again.
pub const DIAL_WINDOW: Duration = Duration::from_secs(15);
/// How long an address whose dial failed is refused.
pub const DIAL_DENY: Duration = Duration::from_secs(60);
/// AppAttach requests a peer may make at once.
pub const APP_ATTACH_BURST: u32 = 8;
/// Time to earn one more AppAttach request.
pub const APP_ATTACH_INTERVAL: Duration = Duration::from_secs(2);
/// Addresses and peers tracked at most, each.
pub const MAX_TRACKED: usize = 4096;

/// Whether this node may connect to `addr` at all: not unspecified, multicast,
/// broadcast or port 0, and loopback only when `on_loopback`.
pub fn dialable(addr: SocketAddr, on_loopback: bool) -> Result<(), &'static str> {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err("not a unicast address and port");
    }
    if ip.is_loopback() && !on_loopback {
        return Err("a loopback address names this host, not the peer");
    }
    Ok(())
}

/// Dials in flight, refused addresses and AppAttach budgets.
#[derive(Debug, Default)]
pub(crate) struct Dials {
    in_flight: BTreeMap<SocketAddr, Instant>,
    denied: BTreeMap<SocketAddr, Instant>,
    budgets: BTreeMap<NodeId, (f64, Instant)>,
}

fn refuse(code: ErrorCode, text: String) -> ErrorResponse {
    ErrorResponse::new(code, text)
}

impl Dials {
    /// The addresses to connect to for a peer's TLS-TCP candidates, in the peer's
    /// order, at most [`MAX_DIALS`], booked as in flight; or the error to answer with.
    pub(crate) fn choose(
        &mut self,
        candidates: &[IceCandidate],
        on_loopback: bool,
        now: Instant,
    ) -> Result<Vec<SocketAddr>, ErrorResponse> {
        self.expire(now);
        let mut why = String::from("no TLS-TCP-FH-NO-ICE candidate: this overlay is No-ICE");
        let mut chosen: Vec<SocketAddr> = Vec::new();
        let tls = candidates
            .iter()
            .filter(|c| c.overlay_link == link_type::TLS_TCP_FH_NO_ICE)
            .filter_map(IceCandidate::socket_addr);
        for addr in tls {
            if chosen.len() >= MAX_DIALS || chosen.contains(&addr) {
                continue;
            }
            match dialable(addr, on_loopback) {
                Err(e) => why = format!("candidate {addr} refused: {e}"),
                Ok(()) if self.denied.contains_key(&addr) => {
                    why = format!(
                        "candidate {addr} could not be reached less than {DIAL_DENY:?} ago"
                    );
                }
                Ok(()) if self.in_flight.contains_key(&addr) => {
                    why = format!("a connection to {addr} is already being made");
                }
                Ok(()) => chosen.push(addr),
            }
        }
        if chosen.is_empty() {
            let code = if why.contains("already being made") {
                ErrorCode::InProgress
            } else {
                ErrorCode::IncompatibleWithOverlay
            };
            return Err(refuse(code, why));
        }
        if self.in_flight.len() + chosen.len() > MAX_TRACKED {
            return Err(refuse(
                ErrorCode::InProgress,
                "too many connections are being made; retry later".into(),
            ));
        }
        for a in &chosen {
            self.in_flight.insert(*a, now + DIAL_WINDOW);
        }
        Ok(chosen)
    }

    /// The dial to `addrs` succeeded (`ok`: one of them answered as the peer) or
    /// failed (all of them are refused for a while).
    pub(crate) fn done(&mut self, addrs: &[SocketAddr], ok: bool, now: Instant) {
        for addr in addrs {
            self.in_flight.remove(addr);
        }
        if ok {
            return;
        }
        if self.denied.len() + addrs.len() > MAX_TRACKED {
            self.expire(now);
        }
        for addr in addrs {
            if self.denied.len() < MAX_TRACKED {
                self.denied.insert(*addr, now + DIAL_DENY);
            }
        }
    }

    /// Takes one AppAttach from `peer`'s budget; `false` when it is spent.
    pub(crate) fn app_attach_allowed(&mut self, peer: NodeId, now: Instant) -> bool {
        let burst = f64::from(APP_ATTACH_BURST);
        let refill = |(tokens, since): (f64, Instant)| {
            let earned = now.saturating_duration_since(since).as_secs_f64()
                / APP_ATTACH_INTERVAL.as_secs_f64();
            (tokens + earned).min(burst)
        };
        if !self.budgets.contains_key(&peer) && self.budgets.len() >= MAX_TRACKED {
            // Forget peers whose budget is whole again; if none, refuse newcomers
            // until some are.
            self.budgets.retain(|_, b| refill(*b) < burst);
            if self.budgets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let tokens = self.budgets.get(&peer).copied().map_or(burst, refill);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        self.budgets.insert(peer, (left, now));
        allowed
    }

    fn expire(&mut self, now: Instant) {
        self.in_flight.retain(|_, until| *until > now);
        self.denied.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(addr: &str) -> IceCandidate {
        IceCandidate::tls_host(addr.parse().unwrap())
    }

    #[test]
    fn only_unicast_addresses_and_loopback_only_on_loopback() {
        for bad in [
            "0.0.0.0:1",
            "224.0.0.1:5",
            "255.255.255.255:5",
            "192.0.2.1:0",
            "[::]:5",
        ] {
            assert!(dialable(bad.parse().unwrap(), true).is_err(), "{bad}");
        }
        assert!(dialable("127.0.0.1:5".parse().unwrap(), false).is_err());
        assert!(dialable("[::1]:5".parse().unwrap(), false).is_err());
        assert!(dialable("127.0.0.1:5".parse().unwrap(), true).is_ok());
        assert!(dialable("203.0.113.7:6084".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn an_address_is_dialled_once_at_a_time_and_refused_after_failing() {
        let mut d = Dials::default();
        let t0 = Instant::ZERO;
        let third = [tls("198.51.100.9:25")];
        assert!(d.choose(&third, false, t0).is_ok());
        // Forty-nine more requests naming it while the first dial runs: refused.
        for _ in 0..49 {
            let e = d.choose(&third, false, t0).unwrap_err();
            assert_eq!(e.code, ErrorCode::InProgress);
        }
        d.done(&["198.51.100.9:25".parse().unwrap()], false, t0);
        let e = d
            .choose(&third, false, t0 + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleWithOverlay);
        assert!(e.to_string().contains("could not be reached"), "{e}");
        assert!(
            d.choose(&third, false, t0 + DIAL_DENY).is_ok(),
            "refused for a minute"
        );
    }

    #[test]
    fn the_usable_candidates_are_chosen_in_order() {
        let mut d = Dials::default();
        let list = [
            tls("127.0.0.1:9"),
            tls("0.0.0.0:9"),
            tls("203.0.113.5:6084"),
            tls("10.0.0.5:6084"),
        ];
        assert_eq!(
            d.choose(&list, false, Instant::ZERO).unwrap(),
            vec![
                "203.0.113.5:6084".parse::<SocketAddr>().unwrap(),
                "10.0.0.5:6084".parse().unwrap()
            ]
        );
        let e = d.choose(&list[..2], false, Instant::ZERO).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
    }

    #[test]
    fn app_attach_budget_is_a_burst_then_one_per_interval() {
        let mut d = Dials::default();
        let p = NodeId(5);
        let t0 = Instant::ZERO;
        for _ in 0..APP_ATTACH_BURST {
            assert!(d.app_attach_allowed(p, t0));
        }
        assert!(!d.app_attach_allowed(p, t0));
        assert!(
            d.app_attach_allowed(NodeId(6), t0),
            "another peer has its own"
        );
        assert!(d.app_attach_allowed(p, t0 + APP_ATTACH_INTERVAL));
        assert!(!d.app_attach_allowed(p, t0 + APP_ATTACH_INTERVAL));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut d = Dials::default();
        let t0 = Instant::ZERO;
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let addr = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 5));
            if d.choose(&[IceCandidate::tls_host(addr)], false, t0).is_ok() {
                d.done(&[addr], false, t0);
            }
            let _ = d.app_attach_allowed(NodeId(u128::from(i)), t0);
        }
        assert!(d.in_flight.len() <= MAX_TRACKED);
        assert!(d.denied.len() <= MAX_TRACKED);
        assert!(d.budgets.len() <= MAX_TRACKED);
    }
}
