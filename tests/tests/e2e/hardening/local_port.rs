//! The local client port against a hostile local process (defect 5): idle sockets,
//! password guessing, memory before login.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xor_node::c2s_client::{C2sClient, ClientError};
use xor_node::devnet::DevNet;
use xor_node::local::PRE_AUTH_MAX_ELEMENT;
use xor_node::local::admission::AuthThrottle;
use xor_tests::clients::{login, options, ping};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>";

async fn read_until_closed(io: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Forty sockets that never speak used to take all sixteen slots for thirty seconds
/// each; now each new connection pushes out the oldest one still logging in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_do_not_lock_the_user_out() {
    let mut net = DevNet::start(&["alice"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let addr = alice.client_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    let mut c = login("alice@example.org", &alice).await;
    assert!(ping(&mut c, "past-the-idle-sockets").await);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "logged in while 40 idle sockets were open"
    );
    // The oldest idle sockets were closed to make room.
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 1];
        if matches!(
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        ) {
            closed += 1;
        }
    }
    assert!(closed >= 24, "only {closed} idle sockets were closed");
    c.close().await;
    alice.shutdown().await;
    net.shutdown();
}

/// Guessing used to run at thousands of passwords a second. Attempts from one
/// address now take turns, each failure doubling the wait; the right password still
/// gets in afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_guessing_is_slowed_per_source_address() {
    let mut net = DevNet::start(&["alice"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let guesses = 5;
    let started = Instant::now();
    let attempts: Vec<_> = (0..guesses)
        .map(|i| {
            let o = options("alice@example.org", &format!("guess {i}"), &alice);
            tokio::spawn(async move { C2sClient::connect(&o).await })
        })
        .collect();
    for a in attempts {
        let r = a.await.unwrap();
        assert!(matches!(r, Err(ClientError::Auth(_))), "{r:?}");
    }
    let took = started.elapsed();
    // Five attempts in turn: 0 + 0.25 + 0.5 + 1 + 2 seconds at least.
    let floor: Duration = (0..guesses).map(AuthThrottle::delay).sum();
    assert!(
        took >= floor,
        "{guesses} guesses took {took:?}, the throttle allows no less than {floor:?}"
    );
    let mut c = login("alice@example.org", &alice).await;
    assert!(ping(&mut c, "the-user-gets-in").await);
    c.close().await;
    alice.shutdown().await;
    net.shutdown();
}

/// A stranger's connection holds at most a few KiB of parsed XML: an element of
/// open tags before login used to cost ~16 MB per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_before_login_is_bounded() {
    let mut net = DevNet::start(&["alice"]).await.unwrap();
    let alice = net.device("alice", "laptop").await.unwrap();
    let addr = alice.client_addr().unwrap();
    for bad in [
        // 64 KiB of open tags: too deep long before it is too big.
        b"<a>".repeat(64 * 1024 / 3),
        // 64 KiB of empty siblings: 16,384 parsed elements, too costly long before
        // the end.
        [b"<a>".to_vec(), b"<b/>".repeat(16 * 1024)].concat(),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(HEADER).await.unwrap();
        let _ = s.write_all(&bad).await; // the port may close before it is all written
        let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(got.contains("policy-violation"), "{got}");
    }
    // Below the limit an element is read (and refused only for what it is).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(HEADER).await.unwrap();
    let pad = "x".repeat(PRE_AUTH_MAX_ELEMENT / 2);
    s.write_all(format!("<message><body>{pad}</body></message>").as_bytes())
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(got.contains("STARTTLS is required"), "{got}");
    let mut c = login("alice@example.org", &alice).await;
    assert!(ping(&mut c, "still-serving").await);
    c.close().await;
    alice.shutdown().await;
    net.shutdown();
}
