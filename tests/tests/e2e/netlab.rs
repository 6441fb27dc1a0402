//! The network lab itself (`xor_tests::netlab`): each NAT router of the lab behaves as
//! its RFC 4787 kind says, checked with plain TCP and UDP sockets before xor runs on
//! it.

use std::time::Duration;

use xor_tests::netlab::{Host, Lab, NatKind};

/// Accepts one TCP connection (or reads one UDP datagram) on `port` and prints the
/// peer's address and port.
fn listen(proto: &str, port: u16) -> String {
    let (kind, take) = match proto {
        "tcp" => ("SOCK_STREAM", "s.listen(); c, a = s.accept()"),
        _ => ("SOCK_DGRAM", "d, a = s.recvfrom(100)"),
    };
    format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.{kind}); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', {port})); \
         s.settimeout(4)\n\
         try:\n  {take}; print(a[0], a[1], flush=True)\nexcept OSError:\n  pass"
    )
}

/// Connects (or sends a datagram) from local `port` to `to:port_to`; prints ok or the
/// error.
fn reach(proto: &str, port: u16, to: &str, port_to: u16) -> String {
    let act = match proto {
        "tcp" => format!("s.connect(('{to}', {port_to}))"),
        _ => format!("s.sendto(b'x', ('{to}', {port_to}))"),
    };
    let kind = if proto == "tcp" {
        "SOCK_STREAM"
    } else {
        "SOCK_DGRAM"
    };
    format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.{kind}); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', {port})); \
         s.settimeout(2)\n\
         try:\n  {act}; print('ok')\nexcept Exception as e:\n  print('failed', e)"
    )
}

/// Whether `from` reaches a listener on `to` (TCP or UDP): what the listener saw as
/// the source, or `None`.
async fn probe(
    proto: &str,
    from: &Host,
    from_port: u16,
    to: &Host,
    to_ip: &str,
    to_port: u16,
) -> Option<String> {
    let server = to.spawn_python(&listen(proto, to_port));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = from.python(&reach(proto, from_port, to_ip, to_port));
    let out = tokio::time::timeout(Duration::from_secs(4), server.wait_with_output()).await;
    match out {
        Ok(Ok(o)) if sent == "ok" && !o.stdout.is_empty() => {
            Some(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_routers_map_and_filter_as_rfc_4787_says() {
    let Some(mut lab) = Lab::new() else { return };
    let mut public = lab.public().unwrap();
    let server = lab.host("srv", &mut public, None).unwrap();
    let other = lab.host("oth", &mut public, None).unwrap();
    for (i, kind) in NatKind::ALL.into_iter().enumerate() {
        let (router, host) = lab
            .behind_nat(kind.name(), kind, &mut public, 10 + i as u8)
            .unwrap();
        let (srv, rtr) = (server.ip.to_string(), router.ip.to_string());
        // Out through the NAT: the server sees the router's address.
        let seen = probe("tcp", &host, 40_000, &server, &srv, 7000).await;
        let seen = seen.unwrap_or_else(|| panic!("{kind:?}: TCP out"));
        assert!(seen.starts_with(&rtr), "{kind:?}: seen as {seen}");
        let kept = seen.ends_with(" 40000");
        assert_eq!(
            kept,
            kind != NatKind::Symmetric,
            "{kind:?}: port kept? {seen}"
        );
        let udp_out = probe("udp", &host, 40_001, &server, &srv, 7001).await;
        assert_eq!(
            udp_out.is_some(),
            kind != NatKind::NoUdp,
            "{kind:?}: UDP out"
        );
        // In, unasked, from a host the NATed host never contacted.
        let unasked = probe("tcp", &other, 41_000, &host, &rtr, 7002).await;
        assert_eq!(
            unasked.is_some(),
            kind == NatKind::FullCone,
            "{kind:?}: unasked in"
        );
        // In from the server's address the host contacted, from another port.
        if kind != NatKind::NoUdp {
            let _ = host.python(&reach("udp", 7003, &srv, 7004));
            let back = probe("udp", &server, 7005, &host, &rtr, 7003).await;
            let open = matches!(kind, NatKind::FullCone | NatKind::AddressRestricted);
            assert_eq!(
                back.is_some(),
                open,
                "{kind:?}: in from a contacted address, other port"
            );
        }
    }
}
