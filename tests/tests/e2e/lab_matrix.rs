//! The NAT matrix (network lab): users behind every pair of the lab's UDP-passing NAT
//! kinds chat directly where ICE can join the pair and through relayed candidates
//! where it cannot ([`needs_relay`]) — once with coturn as the only STUN and TURN
//! server, once with no server but the relay the public bootstrap node serves to
//! the overlay (RFC 6940 §9).
//! The same lab measures, as a benchmark, how long the first message to a user never
//! contacted takes per pair (`BENCHMARKS.md`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use xor_tests::coturn::{Coturn, PublicSegment, have_coturn};
use xor_tests::daemon::Daemon;
use xor_tests::external::{Slix, have_slixmpp};
use xor_tests::labnet::{DOMAIN, Operator, login, overlay_addr, run_device};
use xor_tests::netlab::{Host, Lab, NatKind};

use super::lab_ice::{WAIT, natted, needs_relay, stun_and_turn};

/// Where the relays are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// coturn on the public segment, configured in every device's `[nat]`.
    Coturn,
    /// The bootstrap node serves STUN and TURN (`[nat] relay`); the devices have no
    /// `[nat]` server and find it in the overlay.
    Bootstrap,
}

/// Two users behind each UDP-passing NAT kind ("<kind>a", "<kind>b"), each with one
/// device (a client of the overlay, §4.2.1) and a slixmpp client logged in, a public
/// bootstrap node and the relay. Fields drop in order: clients and daemons before
/// the lab's namespaces.
struct Matrix {
    clients: BTreeMap<String, Slix>,
    devices: BTreeMap<String, Daemon>,
    hosts: BTreeMap<String, Host>,
    boot: Daemon,
    /// The relay's address, what `status` shows for a relayed stream.
    relay_ip: IpAddr,
    _coturn: Option<Coturn>,
    kinds: Vec<NatKind>,
    _op: Operator,
    _routers: Vec<Host>,
    _lab: Lab,
}

impl Matrix {
    async fn start(relay: Relay) -> Option<Matrix> {
        let mut lab = Lab::new()?;
        if !have_slixmpp() || (relay == Relay::Coturn && !have_coturn()) {
            return None;
        }
        let kinds: Vec<NatKind> = NatKind::ALL
            .into_iter()
            .filter(|k| *k != NatKind::NoUdp)
            .collect();
        let mut seg = match relay {
            Relay::Coturn => PublicSegment::start(&mut lab).await.unwrap(),
            Relay::Bootstrap => PublicSegment::without_coturn(&mut lab).unwrap(),
        };
        let boot = overlay_addr(&seg.boot);
        let (relay_ip, nat) = match &seg.coturn {
            Some(c) => (c.addr.ip(), stun_and_turn(c)),
            None => (boot.ip(), String::new()),
        };
        let serve = format!("[nat]\nrelay = \"{}:3478\"\n", boot.ip());
        let names: Vec<String> = kinds
            .iter()
            .flat_map(|k| [format!("{}a", k.name()), format!("{}b", k.name())])
            .collect();
        let mut users: Vec<&str> = vec!["boot"];
        users.extend(names.iter().map(String::as_str));
        let op = Operator::start(&seg.op, &users, &[boot]).await.unwrap();
        let b = op
            .device_with(&seg.boot, "boot", "server", true, |text| match relay {
                Relay::Coturn => text,
                Relay::Bootstrap => text.replace("[nat]\n", &serve),
            })
            .await
            .unwrap();
        let mut m = Matrix {
            clients: BTreeMap::new(),
            devices: BTreeMap::new(),
            hosts: BTreeMap::new(),
            boot: b,
            relay_ip,
            _coturn: seg.coturn,
            kinds,
            _op: op,
            _routers: Vec::new(),
            _lab: lab,
        };
        for (i, name) in names.iter().enumerate() {
            let kind = m.kinds[i / 2];
            let (router, host) = m
                ._lab
                .behind_nat(name, kind, &mut seg.switch, 50 + i as u8)
                .unwrap();
            let d = m
                ._op
                .device_edited(&host, name, "laptop", natted(nat.clone()))
                .await
                .unwrap();
            m.clients.insert(name.clone(), login(name, &host).await);
            m.devices.insert(name.clone(), d);
            m.hosts.insert(name.clone(), host);
            m._routers.push(router);
        }
        Some(m)
    }

    /// Every pair of kinds, the same kind included, as (kind, kind, "<x>a", "<y>b").
    fn pairs(&self) -> Vec<(NatKind, NatKind, String, String)> {
        let mut out = Vec::new();
        for (i, x) in self.kinds.iter().enumerate() {
            for y in &self.kinds[i..] {
                out.push((*x, *y, format!("{}a", x.name()), format!("{}b", y.name())));
            }
        }
        out
    }

    /// `from`'s client sends `body` to `to`; whether `to`'s client got it in time.
    async fn send(&mut self, from: &str, to: &str, body: &str) -> bool {
        let c = self.clients.get_mut(from).expect("a user of the matrix");
        c.message(&format!("{to}@{DOMAIN}"), body).await;
        let c = self.clients.get_mut(to).expect("a user of the matrix");
        c.got(body, WAIT).await.is_some()
    }

    /// The `status` line of `from`'s stream to `to`'s device (empty if none).
    async fn stream_line(&self, from: &str, to: &str) -> String {
        let (ok, status) = self.devices[from].cli(&["status"]).await;
        assert!(ok, "{status}");
        status
            .lines()
            .find(|s| s.contains(&format!("{to}@{DOMAIN}/laptop")) && s.contains(" at "))
            .unwrap_or_default()
            .to_owned()
    }

    fn relayed(&self, line: &str) -> bool {
        line.contains(&format!(" at {}:", self.relay_ip))
    }

    /// Restarts `user`'s device and client: a fresh process that has contacted
    /// nobody, its location registered again.
    async fn restart(&mut self, user: &str) {
        if let Some(c) = self.clients.remove(user) {
            c.quit().await;
        }
        let d = self.devices.remove(user).expect("a user of the matrix");
        let config = d.config.clone();
        d.stop().await;
        let host = &self.hosts[user];
        let d = run_device(host, &config).await.unwrap();
        self.devices.insert(user.to_owned(), d);
        let c = login(user, host).await;
        self.clients.insert(user.to_owned(), c);
    }

    /// Waits until `from` resolves `to` to one device (its record is back).
    async fn resolvable(&self, from: &str, to: &str) {
        let jid = format!("{to}@{DOMAIN}");
        for _ in 0..100 {
            let (ok, out) = self.devices[from].cli(&["resolve", &jid]).await;
            if ok && out.contains("has 1 device(s)") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{from} does not resolve {jid}");
    }

    async fn stop(self) {
        for (_, c) in self.clients {
            c.quit().await;
        }
        for (_, d) in self.devices {
            d.stop().await;
        }
        self.boot.stop().await;
    }
}

/// Users behind every pair of NAT kinds (the same kind on both sides included) chat
/// both ways, and `xor-node status` shows the stream direct where [`needs_relay`]
/// says ICE can join them and relayed through coturn where it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pair_of_nat_kinds_chats_directly_where_ice_can_and_through_turn_elsewhere() {
    chat_across_the_matrix(Relay::Coturn).await;
}

/// The same matrix in an overlay whose only public machine is its bootstrap node:
/// no STUN or TURN server is configured anywhere. The bootstrap node serves both
/// (`[nat] relay`) and records itself under TURN-SERVICE; each device finds it there,
/// learns its server-reflexive address from it, and allocates a relayed candidate
/// on it with the credential of its link (RFC 6940 §9).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pair_of_nat_kinds_chats_with_only_the_bootstrap_node_relaying_rfc6940_9() {
    chat_across_the_matrix(Relay::Bootstrap).await;
}

async fn chat_across_the_matrix(relay: Relay) {
    let Some(mut m) = Matrix::start(relay).await else {
        return;
    };
    let mut wrong = Vec::new();
    for (x, y, l, r) in m.pairs() {
        for (from, to) in [(&l, &r), (&r, &l)] {
            if !m.send(from, to, &format!("{from} to {to}")).await {
                wrong.push(format!("{x:?}/{y:?}: {from} to {to} was not delivered"));
            }
        }
        let line = m.stream_line(&l, &r).await;
        if line.is_empty() {
            wrong.push(format!("{x:?}/{y:?}: no stream from {l} to {r}"));
        } else if m.relayed(&line) != needs_relay(x, y) {
            let want = if needs_relay(x, y) {
                "relayed"
            } else {
                "direct"
            };
            wrong.push(format!(
                "{x:?}/{y:?}: expected {want}, the stream is {line:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    if relay == Relay::Bootstrap {
        // `status` says who serves the relay and who uses it.
        let (ok, status) = m.boot.cli(&["status"]).await;
        let serving = format!("relay       serving STUN and TURN at {}:3478", m.relay_ip);
        assert!(ok && status.contains(&serving), "{status}");
        for device in m.devices.values() {
            let (ok, status) = device.cli(&["status"]).await;
            let using = format!("relay       using {}:3478", m.relay_ip);
            assert!(ok && status.contains(&using), "{status}");
        }
    }
    m.stop().await;
}

/// Benchmark, not run by the test command: per pair of NAT kinds, the time from a
/// client's first message to a user its device never contacted (both devices just
/// restarted, the recipient's record registered) to its delivery — resolution,
/// AppAttach with ICE gathering and checks, TLS and the stream's negotiation included
/// — ten times, and whether the stream was direct or relayed. Run with
/// `cargo test --release -p xor-tests --test e2e -- --ignored --nocapture
/// bench_nat_first_message` (as root, for the lab; `XOR_BENCH_RELAY=bootstrap` for
/// the bootstrap node's relay instead of coturn); the table is in `BENCHMARKS.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
#[allow(clippy::print_stdout)] // the benchmark's report
async fn bench_nat_first_message() {
    // `XOR_BENCH_RELAY=bootstrap`: the bootstrap node's relay instead of coturn.
    let relay = match std::env::var("XOR_BENCH_RELAY").as_deref() {
        Ok("bootstrap") => Relay::Bootstrap,
        _ => Relay::Coturn,
    };
    let Some(mut m) = Matrix::start(relay).await else {
        return;
    };
    let mut rows = Vec::new();
    for (x, y, l, r) in m.pairs() {
        let mut times = Vec::new();
        let mut path = String::new();
        for k in 0..10 {
            m.restart(&l).await;
            m.restart(&r).await;
            m.resolvable(&l, &r).await;
            let started = Instant::now();
            assert!(m.send(&l, &r, &format!("first {k}")).await, "{x:?}/{y:?}");
            times.push(started.elapsed());
            let line = m.stream_line(&l, &r).await;
            path = if m.relayed(&line) {
                "relayed"
            } else {
                "direct"
            }
            .into();
        }
        times.sort();
        let ms = |d: Duration| d.as_millis();
        rows.push(format!(
            "| {x:?} | {y:?} | {path} | {} | {} | {} |",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        ));
    }
    println!("| sender behind | recipient behind | stream | median ms | min ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    m.stop().await;
}
