//! `xor-node demo`: a complete overlay on loopback, no set-up. An operator (root CA,
//! domain CA for example.org, HTTPS enrollment server with a signed configuration),
//! three users with one, two and three devices enrolled over HTTPS, one node per
//! device, and an ordinary XMPP client logged in to each device's local port. It then
//! chats and shows where every message went: to every device of the recipient
//! (fan-out) and, as carbons, to the sender's other devices.

// The demo's output is its point.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use xor_xmpp::Jid;
use xor_xmpp::stanza::{self, Carbon};
use xor_xmpp::stream::NS_CLIENT;

use crate::c2s_client::ClientError;
use crate::c2s_client::{C2sClient, ClientOptions};
use crate::daemon::Device;
pub use crate::devnet::{DOMAIN, OVERLAY, PASSWORD};
use crate::devnet::{DevNet, DevNetError};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The development overlay.
    #[error(transparent)]
    DevNet(#[from] DevNetError),
    /// A demo client could not log in or send.
    #[error("demo client: {0}")]
    Client(#[from] ClientError),
    /// A device has no local client port.
    #[error("a device has no client port")]
    NoClientPort,
    /// Messages did not arrive where they should have.
    #[error("{0} expected deliveries did not arrive")]
    Missed(usize),
}

/// The users and their devices.
pub const USERS: &[(&str, &[&str])] = &[
    ("alice", &["laptop"]),
    ("bob", &["laptop", "phone"]),
    ("carol", &["desktop", "laptop", "phone"]),
];

/// One device of the demo with the XMPP client logged in to it.
struct Seat {
    label: String,
    device: Device,
    client: C2sClient,
}

async fn login(device: &Device) -> Result<C2sClient, DemoError> {
    let addr = device.client_addr().ok_or(DemoError::NoClientPort)?;
    let mut c = C2sClient::connect(&ClientOptions {
        jid: device.jid().bare(),
        password: PASSWORD.into(),
        resource: "client".into(),
        server: addr,
        tls_roots: Vec::new(),
        insecure: true,
        timeout: Duration::from_secs(10),
    })
    .await?;
    let mut carbons = stanza::element("iq", NS_CLIENT, &[("type", "set"), ("id", "carbons")]);
    carbons.append_child(stanza::element("enable", stanza::NS_CARBONS, &[]));
    c.send(&carbons).await?;
    c.send(&stanza::element("presence", NS_CLIENT, &[])).await?;
    Ok(c)
}

/// What a client saw of a message with `body`: received directly or as a carbon.
async fn wait_for(c: &mut C2sClient, body: &str) -> Option<&'static str> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let el = c.recv_within(left).await?;
        if el.name() != "message" {
            continue;
        }
        if el.attr("type") == Some("error") {
            tracing::warn!(stanza = ?el, "error bounced to the demo client");
            continue;
        }
        if let Some((kind, inner)) = stanza::unwrap_carbon(&el) {
            if stanza::body(&inner).as_deref() == Some(body) {
                return Some(match kind {
                    Carbon::Sent => "a carbon of what it sent (XEP-0280)",
                    Carbon::Received => "a carbon of what another device received",
                });
            }
        } else if stanza::body(&el).as_deref() == Some(body) {
            return Some("the message");
        }
    }
}

fn bare(user: &str) -> Jid {
    Jid::parse(&format!("{user}@{DOMAIN}")).expect("demo JIDs are valid")
}

/// Runs the demo; with `stay`, keeps everything up until Ctrl-C so you can log in
/// with your own XMPP client.
pub async fn run(stay: bool) -> Result<(), DemoError> {
    println!("xor demo: a private RELOAD overlay on loopback, with XMPP on top\n");
    let users: Vec<&str> = USERS.iter().map(|(u, _)| *u).collect();
    let mut net = DevNet::start(&users).await?;
    println!("[1/4] operator");
    println!("      root CA and configuration signer for overlay {OVERLAY}");
    println!("      domain CA for @{DOMAIN} (may only certify users of {DOMAIN})");
    println!("      HTTPS enrollment server at {}", net.enroll_url());

    println!("[2/4] enrollment (RFC 6940 §11.3, over HTTPS) and one overlay node per device");
    let mut seats: Vec<Seat> = Vec::new();
    for (user, resources) in USERS {
        for resource in *resources {
            let device = net.device(user, resource).await?;
            println!(
                "      {:<28} Node-ID {}  enrolled, joined, registered",
                device.jid().to_string(),
                device.node().overlay().node_id(),
            );
            let client = login(&device).await?;
            seats.push(Seat {
                label: format!("{user}/{resource}"),
                device,
                client,
            });
        }
    }
    println!("      every device registered its location under its user's JID (XMPP-LOCATION)");
    println!(
        "[3/4] an XMPP client is logged in to each device's local port (STARTTLS, SCRAM-SHA-256)"
    );
    for s in &seats {
        if let Some(a) = s.device.client_addr() {
            println!("      {:<16} client port {a}", s.label);
        }
    }
    println!("[4/4] chatting");
    let script: &[(&str, &str, &str)] = &[
        ("alice/laptop", "bob", "Hi Bob! Lunch at noon?"),
        ("bob/phone", "alice", "Sure, see you there."),
        ("carol/desktop", "bob", "Bob, the slides are ready."),
        ("bob/laptop", "carol", "Thanks Carol, reviewing now."),
    ];
    let mut delivered = 0usize;
    let mut missed = 0usize;
    for (from, to, body) in script {
        let Some(sender) = seats.iter().position(|s| s.label == *from) else {
            missed += 1; // the script names a device that is not seated
            continue;
        };
        let from_user = from.split('/').next().unwrap_or_default();
        println!("\n      {from} -> {to}@{DOMAIN}: {body:?}");
        let msg = stanza::chat(&bare(to), body);
        seats[sender].client.send(&msg).await?;
        for (i, seat) in seats.iter_mut().enumerate() {
            let user = seat.label.split('/').next().unwrap_or_default();
            let expect = user == *to || (user == from_user && i != sender);
            if !expect {
                continue;
            }
            match wait_for(&mut seat.client, body).await {
                Some(what) => {
                    delivered += 1;
                    println!("        ok  {:<16} got {what}", seat.label);
                }
                None => {
                    missed += 1;
                    println!(
                        "        MISSING  {:<16} got nothing within 10 s",
                        seat.label
                    );
                }
            }
        }
    }
    println!("\nsummary");
    println!(
        "      {} devices of {} users on one overlay; {delivered} deliveries, {missed} missing",
        seats.len(),
        USERS.len()
    );
    if let Some(s) = seats.iter().find(|s| s.label == "bob/phone") {
        println!("\n      `xor-node status` of bob/phone:");
        for line in s.device.reporter().status().await.lines() {
            println!("        {line}");
        }
    }
    // The demo's own clients log out first: a session left behind would take the
    // messages meant for the user's client (and keep them from the offline queue).
    let mut devices = Vec::new();
    for s in seats {
        s.client.close().await;
        devices.push(s.device);
    }
    for d in &devices {
        for _ in 0..50 {
            if d.account().sessions() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    if stay {
        println!("\nstill running: log in with any XMPP client (self-signed certificate),");
        println!(
            "password {PASSWORD:?}, e.g. as alice@{DOMAIN} at the client port above. Ctrl-C stops."
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("\nshutting down: every device removes its location record and leaves");
    for d in devices {
        d.shutdown().await;
    }
    net.shutdown();
    if missed > 0 {
        return Err(DemoError::Missed(missed));
    }
    Ok(())
}
