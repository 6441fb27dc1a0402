//! The bounded-cost soak: twenty `xor-node run` daemons (ten users, two devices each)
//! on loopback, slixmpp clients chatting and lookups running throughout, while one
//! enrolled attacker (mallory) runs each attack of the hardening issue in turn. No
//! daemon dies, every message and lookup succeeds, and every daemon's resident memory
//! stays under [`RSS_BOUND_KIB`].
//!
//! Each attack lasts `XOR_SOAK_SECS` seconds (10 by default; the figures in
//! `BENCHMARKS.md` are from a run with 60).

#![allow(clippy::print_stdout)] // the report is for the person running the soak

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use xor_enrollment::client::load_profile;
use xor_node::devnet::{DOMAIN, DevNet, OVERLAY, PASSWORD};
use xor_overlay::id::NodeId;
use xor_overlay::link::{FramedLink, LinkConfig};
use xor_overlay::node::NodeConfig;
use xor_overlay::runtime::{Expect, Overlay, TlsContext};
use xor_overlay::time::Instant as CoreInstant;
use xor_overlay::wire::{
    AppAttach, Body, Destination, ForwardingHeader, Fragment, IceCandidate, RawMessage,
};
use xor_tests::daemon::{Daemon, loopback_users};
use xor_tests::external::{Slix, have_slixmpp};
use xor_xmpp::XMPP_APPLICATION;

/// The most resident memory an honest daemon may use during the soak. Measured at
/// about 30 MiB under every attack (`BENCHMARKS.md`); the bound leaves room for
/// allocator slack, not for growth with the attack's length.
const RSS_BOUND_KIB: u64 = 96 * 1024;
const USERS: usize = 10;
const CHATTERS: usize = 4;
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn phase_secs() -> u64 {
    std::env::var("XOR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

struct Honest {
    daemons: Vec<Daemon>,
    /// The Node-ID of each daemon's device.
    ids: Vec<NodeId>,
}

async fn honest_overlay(net: &DevNet) -> Honest {
    let (daemons, ids) = loopback_users(net, USERS, 2).await.unwrap();
    Honest { daemons, ids }
}

/// What the chatting clients saw during one phase.
#[derive(Debug, Default)]
struct ChatReport {
    sent: usize,
    delivered: usize,
    lookups: usize,
    failures: Vec<String>,
}

/// The chatting users' slixmpp clients (u0..u3, device d0) send one message round
/// after another, each to the next user's bare JID, and a lookup runs each round,
/// until `stop`.
async fn chat_until(
    clients: &mut [Slix],
    lookup_from: &Daemon,
    phase: &str,
    stop: &AtomicBool,
) -> ChatReport {
    let mut r = ChatReport::default();
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        for i in 0..clients.len() {
            let to = format!("u{}@{DOMAIN}", (i + 1) % clients.len());
            clients[i]
                .message(&to, &format!("{phase} round {round} from u{i}"))
                .await;
            r.sent += 1;
        }
        for i in 0..clients.len() {
            let from = (i + clients.len() - 1) % clients.len();
            let body = format!("{phase} round {round} from u{from}");
            if clients[i]
                .got(&body, Duration::from_secs(20))
                .await
                .is_some()
            {
                r.delivered += 1;
            } else {
                r.failures.push(format!("u{i} did not get {body:?}"));
            }
        }
        let target = format!("u{}@{DOMAIN}", round % USERS);
        let (ok, out) = lookup_from.cli(&["resolve", &target]).await;
        if ok && out.contains("has 2 device(s)") {
            r.lookups += 1;
        } else {
            r.failures.push(format!("resolve {target}: {out}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    r
}

/// Mallory: an enrolled device's overlay node that takes direct streams, and a second
/// enrolled device (not in the overlay) whose links carry the fragment flood (a node
/// keeps one link per peer, so the first device's would be closed as a duplicate).
struct Mallory {
    overlay: Overlay,
    flooder: TlsContext,
}

async fn mallory(net: &DevNet, bootstrap: SocketAddr) -> Mallory {
    let opts = net.enroll("mallory", "evil").await.unwrap();
    let profile = load_profile(&opts.profile, OVERLAY).unwrap();
    let trust = xor_enrollment::config::sign::trust_of(&profile.config).unwrap();
    let mut cfg = NodeConfig::new(OVERLAY, profile.credentials.clone(), trust.clone());
    xor_enrollment::authority::configure_node(
        &profile.config,
        profile.document.clone(),
        &mut cfg,
        None,
    )
    .unwrap();
    cfg.listen_addr = Some(SocketAddr::new(LOCALHOST, 0));
    cfg.bootstrap = vec![bootstrap];
    let second = net.enroll("mallory", "flood").await.unwrap();
    let second = load_profile(&second.profile, OVERLAY).unwrap();
    let flooder = TlsContext::new(second.credentials, trust).unwrap();
    cfg.applications = vec![(XMPP_APPLICATION, SocketAddr::new(LOCALHOST, 0))];
    let overlay = Overlay::start(cfg, LinkConfig::default()).await.unwrap();
    assert!(
        overlay.joined(Duration::from_secs(30)).await,
        "mallory joins"
    );
    Mallory { overlay, flooder }
}

fn app_attach(candidates: Vec<IceCandidate>) -> Body {
    Body::AppAttachReq(AppAttach {
        ufrag: Bytes::from_static(b"0123456789abcdef"),
        password: Bytes::from_static(b"0123456789abcdef0123456789abcdef"),
        application: XMPP_APPLICATION,
        role: Bytes::from_static(b"passive"),
        candidates,
    })
}

/// Defect 1: stanzas nested 5,000 deep on direct streams, as often as the victim
/// answers AppAttach.
async fn deep_stanzas(m: &Mallory, victim: NodeId, until: Instant) -> usize {
    let mut refused = 0;
    while Instant::now() < until {
        let ask = m
            .overlay
            .app_attach(vec![Destination::Node(victim)], XMPP_APPLICATION)
            .await;
        if let Ok(acc) = ask {
            let mut io = acc.stream;
            let header = format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='mallory@{DOMAIN}/evil' to='u1@{DOMAIN}' version='1.0'>"
            );
            let _ = io.write_all(header.as_bytes()).await;
            let _ = io.write_all(&b"<message>".repeat(5000)).await;
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), io.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if String::from_utf8_lossy(&got).contains("policy-violation") {
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    refused
}

/// Defect 3: first fragments with fresh transaction ids, never completed, over a
/// link of mallory's own to the victim.
async fn fragment_flood(m: &Mallory, victim: NodeId, addr: SocketAddr, until: Instant) -> u64 {
    let Ok((io, _)) = m.flooder.connect(addr, Expect::Node(victim)).await else {
        return 0;
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut framed = FramedLink::new(LinkConfig::default());
    let start = Instant::now();
    let now = || CoreInstant::from_micros(start.elapsed().as_micros() as u64);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let mut sent = 0u64;
    let overlay = xor_overlay::id::overlay_field(OVERLAY);
    while Instant::now() < until {
        for _ in 0..256 {
            sent += 1;
            let raw = RawMessage {
                header: ForwardingHeader {
                    overlay,
                    configuration_sequence: 1,
                    ttl: 10,
                    fragment: Fragment::new(false, 0),
                    transaction_id: sent,
                    max_response_length: 0,
                    via_list: vec![],
                    destination_list: vec![Destination::Node(victim)],
                    options: vec![],
                },
                payload: Bytes::from_static(b"\x00"),
            };
            let _ = framed.send(raw.encode().expect("encodes"), now());
        }
        let mut out = Vec::new();
        while let Some(b) = framed.poll_transmit() {
            out.extend_from_slice(&b);
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    reader.abort();
    sent
}

/// Defect 4: idle sockets to the victim's overlay listener from one and from many
/// addresses, reopened whenever the node closes them.
async fn hold_sockets(target: SocketAddr, until: Instant) -> usize {
    let sources: Vec<IpAddr> = (2..34).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    let mut opened = 0;
    let mut held: Vec<TcpStream> = Vec::new();
    while Instant::now() < until {
        held.retain(|s| {
            let mut b = [0u8; 1];
            matches!(s.try_read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        for (i, ip) in sources.iter().enumerate() {
            let want = if i == 0 { 64 } else { 2 };
            let have = held
                .iter()
                .filter(|s| s.local_addr().is_ok_and(|a| a.ip() == *ip))
                .count();
            for _ in have..want {
                let sock = TcpSocket::new_v4().unwrap();
                sock.bind(SocketAddr::new(*ip, 0)).unwrap();
                if let Ok(s) = sock.connect(target).await {
                    held.push(s);
                    opened += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    opened
}

/// Defect 5 (a local process): idle sockets, password guesses and big elements
/// before login on the victim's client port.
async fn local_port(client: SocketAddr, until: Instant) -> usize {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' version='1.0'>"
    );
    let mut attempts = 0;
    let mut idle = Vec::new();
    while Instant::now() < until {
        for _ in 0..8 {
            if let Ok(s) = TcpStream::connect(client).await {
                idle.push(s);
            }
        }
        idle.truncate(64);
        let mut big = TcpStream::connect(client).await.ok();
        if let Some(s) = big.as_mut() {
            let _ = s.write_all(header.as_bytes()).await;
            let _ = s.write_all(&b"<a>".repeat(20_000)).await;
        }
        let guess = xor_node::c2s_client::ClientOptions {
            jid: xor_xmpp::Jid::parse(&format!("u1@{DOMAIN}")).unwrap(),
            password: format!("guess {attempts}"),
            resource: "x".into(),
            server: client,
            tls_roots: Vec::new(),
            insecure: true,
            timeout: Duration::from_secs(5),
        };
        let _ = xor_node::c2s_client::C2sClient::connect(&guess).await;
        attempts += 1;
    }
    attempts
}

/// Defect 6: AppAttach naming a third party's address; returns how many connections
/// the third party received.
async fn third_party(m: &Mallory, victims: &[NodeId], until: Instant) -> usize {
    let third = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = third.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = third.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    while Instant::now() < until {
        for v in victims {
            let _ = m
                .overlay
                .request(
                    vec![Destination::Node(*v)],
                    app_attach(vec![IceCandidate::tls_host(addr)]),
                )
                .await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.abort();
    hits.load(Ordering::SeqCst)
}

/// Defect 7: password guesses at the enrollment server from another address.
async fn enrollment_guesses(net: &DevNet, until: Instant) -> usize {
    let mut n = 0;
    let mut client = net.client_settings();
    client.local_address = Some(IpAddr::from([127, 0, 0, 66]));
    let config =
        xor_enrollment::client::fetch_config(OVERLAY, Some(net.config_url()), None, &client)
            .await
            .unwrap()
            .verified
            .config;
    while Instant::now() < until {
        let _ =
            xor_enrollment::client::enroll(&config, &format!("u1@{DOMAIN}"), "guess", 1, &client)
                .await;
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_nodes_keep_chatting_through_every_attack_in_bounded_memory() {
    if !have_slixmpp() {
        return;
    }
    let users: Vec<String> = (0..USERS)
        .map(|u| format!("u{u}"))
        .chain(["mallory".to_owned(), "late".to_owned()])
        .collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let net = DevNet::start(&user_refs).await.unwrap();
    let honest = honest_overlay(&net).await;
    let mut clients = Vec::new();
    for u in 0..CHATTERS {
        let d = &honest.daemons[2 * u];
        clients
            .push(Slix::login_at(&format!("u{u}@{DOMAIN}"), PASSWORD, d.ports.client, &[]).await);
    }
    let mallory = mallory(&net, honest.daemons[0].ports.overlay).await;
    // The victim is u1's first device: it has a chatting client and is looked up.
    let (victim, victim_id) = (honest.daemons[2].ports.clone(), honest.ids[2]);
    let secs = phase_secs();
    let peak = Arc::new(std::sync::Mutex::new(vec![0u64; honest.daemons.len()]));
    let pids: Vec<u32> = honest.daemons.iter().filter_map(Daemon::pid).collect();
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                for (i, pid) in pids.iter().enumerate() {
                    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("VmRSS:"))
                                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        })
                        .unwrap_or(0);
                    let mut p = peak.lock().unwrap();
                    p[i] = p[i].max(rss);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let phases = [
        "deep stanzas",
        "fragment flood",
        "handshake slots",
        "local port",
        "AppAttach to a third party",
        "enrollment guesses",
    ];
    let mut daemons = honest.daemons;
    for phase in phases {
        let until = Instant::now() + Duration::from_secs(secs);
        let stop = AtomicBool::new(false);
        let lookup_from = &daemons[5];
        let attack = async {
            let what = match phase {
                "deep stanzas" => {
                    format!("{} refused", deep_stanzas(&mallory, victim_id, until).await)
                }
                "fragment flood" => format!(
                    "{} fragments",
                    fragment_flood(&mallory, victim_id, victim.overlay, until).await
                ),
                "handshake slots" => {
                    format!("{} sockets", hold_sockets(victim.overlay, until).await)
                }
                "local port" => format!("{} guesses", local_port(victim.client, until).await),
                "AppAttach to a third party" => {
                    let hits = third_party(&mallory, &honest.ids, until).await;
                    // One dial per victim, then refused for a minute.
                    let allowed = honest.ids.len() * (secs as usize / 60 + 1);
                    assert!(hits <= allowed, "{hits} connections to the third party");
                    format!("{hits} connections reached the third party")
                }
                _ => {
                    let n = enrollment_guesses(&net, until).await;
                    let late = net.enroll("late", &format!("phone{secs}")).await;
                    assert!(late.is_ok(), "the real user enrolls: {late:?}");
                    format!("{n} guesses, the real user enrolled")
                }
            };
            stop.store(true, Ordering::SeqCst);
            what
        };
        let (what, report) =
            tokio::join!(attack, chat_until(&mut clients, lookup_from, phase, &stop));
        println!(
            "soak: {phase} for {secs} s ({what}): {} of {} messages delivered, {} lookups",
            report.delivered, report.sent, report.lookups
        );
        assert!(report.failures.is_empty(), "{phase}: {:?}", report.failures);
        assert!(
            report.sent > 0 && report.lookups > 0,
            "{phase}: nothing was tried"
        );
        for (i, d) in daemons.iter_mut().enumerate() {
            assert!(d.is_running(), "daemon {i} died during {phase}");
        }
    }
    sampling.abort();
    let peak = peak.lock().unwrap().clone();
    let max = peak.iter().copied().max().unwrap_or(0);
    println!(
        "soak: peak resident memory of the honest daemons {} MiB (victim {} MiB), bound {} MiB",
        max / 1024,
        peak[2] / 1024,
        RSS_BOUND_KIB / 1024
    );
    for (i, p) in peak.iter().enumerate() {
        assert!(*p > 0 && *p < RSS_BOUND_KIB, "daemon {i}: {p} KiB");
    }
    for c in clients {
        c.quit().await;
    }
    mallory.overlay.kill();
    for d in daemons {
        d.stop().await;
    }
    net.shutdown();
}
