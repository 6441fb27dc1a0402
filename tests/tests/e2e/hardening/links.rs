//! Overlay links against hostile strangers (defect 4): sockets that never finish a
//! TLS handshake used to take all 64 handshake slots for 10 s each.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_tests::{loopback_config, start};

const OVERLAY: &str = "hardening.example";

/// Keeps `per_address` idle TCP connections open to `target` from each of
/// `sources`, reopening any the node closes (as an attacker would).
fn hold_idle_sockets(
    target: SocketAddr,
    sources: Vec<IpAddr>,
    per_address: usize,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut held: Vec<(IpAddr, TcpStream)> = Vec::new();
        loop {
            // A socket the node closed reads end-of-file; an open one would block.
            held.retain(|(_, s)| {
                let mut b = [0u8; 1];
                matches!(s.try_read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            for ip in &sources {
                while held.iter().filter(|(a, _)| a == ip).count() < per_address {
                    let sock = TcpSocket::new_v4().unwrap();
                    sock.bind(SocketAddr::new(*ip, 0)).unwrap();
                    match sock.connect(target).await {
                        Ok(s) => held.push((*ip, s)),
                        Err(_) => break,
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn join_under(attack: impl FnOnce(SocketAddr) -> JoinHandle<()>, seed: u64) {
    let mut ca = TestCa::new(OVERLAY, seed);
    let first = start(loopback_config(
        &mut ca,
        "a@hardening.example",
        NodeId(1 << 120),
        None,
        seed,
    ))
    .await
    .unwrap();
    assert!(first.joined(Duration::from_secs(5)).await);
    let attacker = attack(first.local_addr());
    tokio::time::sleep(Duration::from_millis(500)).await; // every slot taken
    let cfg = loopback_config(
        &mut ca,
        "b@hardening.example",
        NodeId(9 << 120),
        Some(first.local_addr()),
        seed + 1,
    );
    let second = start(cfg).await.unwrap();
    assert!(
        second.joined(Duration::from_secs(8)).await,
        "a new peer joins while the attack goes on"
    );
    attacker.abort();
    second.kill();
    first.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_idle_sockets_from_one_address_do_not_keep_a_peer_out() {
    let attacker: IpAddr = [127, 0, 0, 2].into();
    join_under(|target| hold_idle_sockets(target, vec![attacker], 64), 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_many_addresses_do_not_keep_a_peer_out() {
    let attackers: Vec<IpAddr> = (10..42).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    join_under(|target| hold_idle_sockets(target, attackers, 2), 42).await;
}
