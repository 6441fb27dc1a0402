//! NAT traversal for direct XMPP streams (RFC 6940 §6.5.1.5 – §6.5.1.10, §6.5.2;
//! XEP-0415 "through AppAttach and ICE"), in the network lab with coturn on the
//! public segment: two users behind port-restricted NATs — whom no TCP connection
//! can join in either direction — chat directly over the pair ICE found
//! (server-reflexive candidates, hole punching). Both join as RFC 6940 §4.2.1
//! clients through the public bootstrap node, as NATed devices do. Without the
//! `[nat]` STUN server the same test fails (no TCP path exists between them).
//! The NAT matrix, which pairs connect directly and which through TURN, is in
//! `lab_matrix.rs`.

use std::time::Duration;

use xor_tests::coturn::{Coturn, PublicSegment, have_coturn};
use xor_tests::external::have_slixmpp;
use xor_tests::labnet::{DOMAIN, Operator, login, overlay_addr};
use xor_tests::netlab::{Lab, NatKind};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The device's configuration: a client of the overlay, with `nat` as its `[nat]`.
pub(crate) fn natted(nat: String) -> impl FnOnce(String) -> String {
    move |text: String| {
        text.replace("role = \"peer\"", "role = \"client\"")
            .replace("stun = []\n", "")
            .replace("turn = []\n", "")
            .replace("[nat]\n", &format!("[nat]\n{nat}\n"))
    }
}

/// Two users behind `kind` NATs, each with `nat` in its configuration, exchange
/// messages both ways over a direct (not relayed) stream.
async fn chat_behind(kind: NatKind, nat: impl Fn(&Coturn) -> String) {
    let Some(mut lab) = Lab::new() else { return };
    if !have_slixmpp() || !have_coturn() {
        return;
    }
    let mut seg = PublicSegment::start(&mut lab).await.unwrap();
    let boot = overlay_addr(&seg.boot);
    let op = Operator::start(&seg.op, &["boot", "dave", "erin"], &[boot])
        .await
        .unwrap();
    let b = op.device(&seg.boot, "boot", "server", true).await.unwrap();
    let (_r1, h1) = lab.behind_nat("dave", kind, &mut seg.switch, 41).unwrap();
    let (_r2, h2) = lab.behind_nat("erin", kind, &mut seg.switch, 42).unwrap();
    let dave = op
        .device_edited(&h1, "dave", "laptop", natted(nat(seg.coturn())))
        .await
        .unwrap();
    let erin = op
        .device_edited(&h2, "erin", "laptop", natted(nat(seg.coturn())))
        .await
        .unwrap();
    let mut d = login("dave", &h1).await;
    let mut e = login("erin", &h2).await;

    d.message(&format!("erin@{DOMAIN}"), "through the NATs?")
        .await;
    let got = e.got("through the NATs?", WAIT).await;
    assert!(
        got.is_some(),
        "{kind:?}: dave → erin: erin saw {:?}; dave saw {:?}\ncoturn:\n{}",
        e.seen,
        d.seen,
        seg.coturn().log_text()
    );
    e.message(&format!("dave@{DOMAIN}"), "yes, directly").await;
    assert!(
        d.got("yes, directly", WAIT).await.is_some(),
        "{kind:?}: erin → dave: {:?}",
        d.seen
    );
    // The stream's far end, as `status` shows it: on the TURN server when relayed.
    let (ok, status) = dave.cli(&["status"]).await;
    assert!(ok, "{status}");
    let line = status
        .lines()
        .find(|l| l.contains(&format!("erin@{DOMAIN}/laptop")) && l.contains(" at "))
        .unwrap_or_else(|| panic!("no stream to erin in:\n{status}"));
    let relayed = line.contains(&format!(" at {}:", seg.coturn().addr.ip()));
    assert!(!relayed, "{kind:?}: {line}");
    d.quit().await;
    e.quit().await;
    dave.stop().await;
    erin.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_behind_port_restricted_nats_chat_directly_over_ice_with_stun() {
    chat_behind(NatKind::PortRestricted, |c| {
        format!("stun = [\"{}\"]\nturn = []", c.stun_url())
    })
    .await;
}

/// The `[nat]` of a device with coturn as STUN and TURN server.
pub(crate) fn stun_and_turn(c: &Coturn) -> String {
    let (user, password) = xor_tests::coturn::USER;
    format!(
        "stun = [\"{}\"]\nturn = [{{ url = \"{}\", username = \"{user}\", password = \"{password}\" }}]",
        c.stun_url(),
        c.turn_url()
    )
}

/// Which pairs of RFC 4787 NATs ICE joins directly. Hole punching needs each side's
/// packets to pass the other's filter: a NAT with endpoint-independent mapping keeps
/// its server-reflexive port for every destination, so the peer's packets to that
/// port pass once it has sent towards the peer (for a port-restricted filter, to the
/// very port the packets come from). A symmetric NAT maps every destination to a new
/// port: its packets to a port-restricted peer come from a port that peer never sent
/// to, and the peer's packets to its server-reflexive port (mapped for the STUN
/// server only) are refused; two symmetric NATs refuse each other the same way. Those
/// pairs need a relay (RFC 8445 §5.1.1.2, relayed candidates); all others connect
/// directly (through peer-reflexive candidates when one side is symmetric).
pub(crate) fn needs_relay(a: NatKind, b: NatKind) -> bool {
    use NatKind::{PortRestricted, Symmetric};
    matches!(
        (a, b),
        (Symmetric, Symmetric) | (Symmetric, PortRestricted) | (PortRestricted, Symmetric)
    )
}
