//! Which addresses a listener can be reached at, as offered to peers in Attach and
//! AppAttach candidates: never an unspecified address, and loopback only when the
//! listener is bound to loopback or the machine has nothing else.

use std::net::{IpAddr, SocketAddr};

/// The addresses a listener bound to `bound` can be reached at: `bound` itself when it
/// names an address; for a wildcard, the addresses of the machine's interfaces of the
/// same family — IPv4 first, private and public alike, without link-local IPv6 (a
/// peer cannot use it without a scope) — and loopback only if there is nothing else.
pub fn host_addresses(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let ips: Vec<IpAddr> = interfaces.iter().map(|i| i.ip()).collect();
    usable(&ips, bound)
}

/// [`host_addresses`] over a given list of interface addresses.
fn usable(ips: &[IpAddr], bound: SocketAddr) -> Vec<SocketAddr> {
    let family = |ip: &IpAddr| ip.is_ipv4() == bound.is_ipv4() || bound.is_ipv6();
    let link_local_v6 =
        |ip: &IpAddr| matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
    let mut out: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| family(ip) && !ip.is_loopback() && !ip.is_unspecified() && !link_local_v6(ip))
        .collect();
    if out.is_empty() {
        out = ips
            .iter()
            .copied()
            .filter(|ip| family(ip) && ip.is_loopback())
            .collect();
    }
    if out.is_empty() {
        out.push(if bound.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        });
    }
    out.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    out.dedup();
    out.into_iter()
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bound_address_is_offered_as_it_is() {
        let a: SocketAddr = "192.0.2.7:6084".parse().unwrap();
        assert_eq!(host_addresses(a), vec![a]);
    }

    #[test]
    fn a_wildcard_offers_every_interface_but_loopback_and_link_local() {
        let ips = [
            ip("127.0.0.1"),
            ip("10.1.0.10"),
            ip("::1"),
            ip("fe80::1"),
            ip("2001:db8::5"),
            ip("203.0.113.9"),
        ];
        let v4 = usable(&ips, "0.0.0.0:6084".parse().unwrap());
        assert_eq!(
            v4,
            vec![
                "10.1.0.10:6084".parse().unwrap(),
                "203.0.113.9:6084".parse().unwrap()
            ]
        );
        let any = usable(&ips, "[::]:6084".parse().unwrap());
        assert_eq!(any.len(), 3, "{any:?}");
        assert!(any.last().is_some_and(SocketAddr::is_ipv6));
    }

    #[test]
    fn loopback_only_when_there_is_nothing_else() {
        let only_lo = [ip("127.0.0.1"), ip("::1")];
        assert_eq!(
            usable(&only_lo, "0.0.0.0:1".parse().unwrap()),
            vec!["127.0.0.1:1".parse().unwrap()]
        );
        assert_eq!(
            usable(&[], "0.0.0.0:1".parse().unwrap()),
            vec!["127.0.0.1:1".parse().unwrap()]
        );
    }
}
