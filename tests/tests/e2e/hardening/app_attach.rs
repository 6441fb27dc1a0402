//! AppAttach from a hostile enrolled peer (defect 6): naming a third party's address
//! used to make the answerer connect to it once per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_overlay::node::RequestError;
use xor_overlay::node::dials::MAX_CANDIDATES;
use xor_overlay::runtime::Overlay;
use xor_overlay::wire::{AppAttach, AttachReqAns, Body, Destination, ErrorCode, IceCandidate};
use xor_tests::{loopback_config, start, xmpp_config};
use xor_xmpp::XMPP_APPLICATION;
use xor_xmpp::runtime::XmppNode;

const OVERLAY: &str = "hardening.example";

fn app_attach(candidates: Vec<IceCandidate>) -> Body {
    Body::AppAttachReq(AppAttach {
        ufrag: Bytes::from_static(b"0123456789abcdef"),
        password: Bytes::from_static(b"0123456789abcdef0123456789abcdef"),
        application: XMPP_APPLICATION,
        role: Bytes::from_static(b"passive"),
        candidates,
    })
}

async fn ask(
    mallory: &Overlay,
    victim: NodeId,
    candidates: Vec<IceCandidate>,
) -> Result<(), ErrorCode> {
    match mallory
        .request(vec![Destination::Node(victim)], app_attach(candidates))
        .await
    {
        Ok(_) => Ok(()),
        Err(RequestError::Error(e)) => Err(e.code),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_attach_cannot_aim_a_node_at_a_third_party() {
    let mut ca = TestCa::new(OVERLAY, 61);
    let mut cfg = xmpp_config(
        &mut ca,
        "victim@hardening.example",
        "pc",
        NodeId(1 << 120),
        None,
        61,
    );
    cfg.node.may_start_overlay = true;
    let victim = XmppNode::start(cfg).await.unwrap();
    let boot = victim.overlay().local_addr();
    let mallory = start(loopback_config(
        &mut ca,
        "mallory@hardening.example",
        NodeId(8 << 120),
        Some(boot),
        62,
    ))
    .await
    .unwrap();
    assert!(mallory.joined(Duration::from_secs(10)).await);

    // The third party: a plain TCP service counting connections.
    let third = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let third_addr = third.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = third.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });

    // Fifty requests naming it, as fast as they go.
    let victim_id = victim.overlay().node_id();
    let mut answers = Vec::new();
    for _ in 0..50 {
        answers.push(
            ask(
                &mallory,
                victim_id,
                vec![IceCandidate::tls_host(third_addr)],
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one dial, then refused: {answers:?}"
    );
    assert!(answers[1..].iter().all(Result::is_err), "{answers:?}");
    assert!(
        answers.contains(&Err(ErrorCode::Forbidden)),
        "the AppAttach budget ran out: {answers:?}"
    );

    // Hundreds of candidates: refused without dialling any.
    let many: Vec<IceCandidate> = (0..300)
        .map(|i| {
            IceCandidate::tls_host(
                format!("127.0.0.{}:{}", 2 + i % 200, 1000 + i)
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await; // earn back some budget
    assert_eq!(
        ask(&mallory, victim_id, many).await,
        Err(ErrorCode::InvalidMessage),
        "more than {MAX_CANDIDATES} candidates"
    );
    // Unspecified addresses and port 0 are never dialled.
    for bad in ["0.0.0.0:5222", "127.0.0.1:0", "224.0.0.1:5222"] {
        let r = ask(
            &mallory,
            victim_id,
            vec![IceCandidate::tls_host(bad.parse().unwrap())],
        )
        .await;
        assert!(r.is_err(), "{bad}: {r:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Attach (§6.5.1) is held to the same rules: a fresh third-party address is
    // dialled once, then refused; hundreds of candidates are refused unread.
    let third2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = third2.local_addr().unwrap();
    let hits2 = Arc::new(AtomicUsize::new(0));
    let counter2 = hits2.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = third2.accept().await {
            counter2.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let attach = |candidates: Vec<IceCandidate>| {
        Body::AttachReq(AttachReqAns {
            ufrag: Bytes::from_static(b"0123456789abcdef"),
            password: Bytes::from_static(b"0123456789abcdef0123456789abcdef"),
            role: Bytes::from_static(b"passive"),
            candidates,
            send_update: false,
        })
    };
    // Attach is answered by whatever node the overlay routes it to; aim it at the
    // victim's Node-ID and count what reaches the third party.
    for _ in 0..20 {
        let _ = mallory
            .request(
                vec![Destination::Node(victim_id)],
                attach(vec![IceCandidate::tls_host(addr2)]),
            )
            .await;
    }
    let many: Vec<IceCandidate> = (0..300)
        .map(|i| {
            IceCandidate::tls_host(
                format!("127.0.0.{}:{}", 2 + i % 200, 2000 + i)
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    match mallory
        .request(vec![Destination::Node(victim_id)], attach(many))
        .await
    {
        Err(RequestError::Error(e)) => assert_eq!(e.code, ErrorCode::InvalidMessage),
        other => panic!("hundreds of Attach candidates: {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        hits2.load(Ordering::SeqCst) <= 1,
        "{} Attach dials",
        hits2.load(Ordering::SeqCst)
    );
    mallory.kill();
    victim.kill();
}
