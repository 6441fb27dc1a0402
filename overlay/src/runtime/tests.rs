//! Link tests over real TLS on loopback (TLS-TCP-FH-NO-ICE, §6.6.5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::id::NodeId;
use crate::identity::issue::Validity;
use crate::identity::testca::TestCa;
use crate::identity::{Credentials, IdentityError};
use crate::link::LinkConfig;
use crate::respond::error_response;
use crate::wire::{Body, ErrorCode, ErrorResponse, ForwardingHeader, Fragment, Message};

const OVERLAY: &str = "links.example";
const LOOPBACK: &str = "127.0.0.1:0";

struct Pair {
    ca: TestCa,
    server_ctx: TlsContext,
    listener: Listener,
}

async fn listening(seed: u64) -> Pair {
    let mut ca = TestCa::new(OVERLAY, seed);
    let server = ca.node("server@links.example", NodeId(0x5e));
    let server_ctx = TlsContext::new(server, ca.trust_store()).unwrap();
    let listener = Listener::bind(LOOPBACK.parse().unwrap(), server_ctx.clone())
        .await
        .unwrap();
    Pair {
        ca,
        server_ctx,
        listener,
    }
}

fn client_ctx(ca: &TestCa, creds: Credentials) -> TlsContext {
    TlsContext::new(creds, ca.trust_store()).unwrap()
}

fn addr(p: &Pair) -> SocketAddr {
    p.listener.local_addr()
}

async fn accept(p: &mut Pair) -> Result<Accepted, ConnectError> {
    tokio::time::timeout(Duration::from_secs(10), p.listener.accept())
        .await
        .unwrap()
        .unwrap()
}

fn spawn(
    id: u64,
    accepted: (impl super::AsyncStream + 'static, PeerInfo),
    options: LinkOptions,
) -> (Link, mpsc::Receiver<(LinkId, LinkEvent)>) {
    let (tx, rx) = mpsc::channel(16);
    (
        Link::spawn(
            LinkId(id),
            Box::new(accepted.0),
            accepted.1,
            options,
            tx,
            Clock::start(),
        ),
        rx,
    )
}

/// The next event other than a round-trip time.
async fn next(rx: &mut mpsc::Receiver<(LinkId, LinkEvent)>) -> LinkEvent {
    loop {
        match next_event(rx).await {
            LinkEvent::Rtt(_) => continue,
            e => return e,
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<(LinkId, LinkEvent)>) -> LinkEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .1
}

#[tokio::test]
async fn a_good_pair_connects_and_exchanges_framed_messages() {
    let mut p = listening(1).await;
    let client = p.ca.node("client@links.example", NodeId(0xc1));
    let ctx = client_ctx(&p.ca, client);
    let (conn, accepted) = tokio::join!(
        ctx.connect(addr(&p), Expect::Node(NodeId(0x5e))),
        accept(&mut p)
    );
    let conn = conn.unwrap();
    let accepted = accepted.unwrap();
    assert_eq!(
        conn.1.node_id(),
        NodeId(0x5e),
        "client sees the server's Node-ID"
    );
    assert_eq!(
        accepted.peer.node_id(),
        NodeId(0xc1),
        "server sees the client's Node-ID"
    );
    assert_eq!(
        accepted.peer.identity.xmpp_addrs,
        vec!["client@links.example".to_owned()]
    );

    let (c, mut c_rx) = spawn(1, conn, LinkOptions::default());
    let (s, mut s_rx) = spawn(2, (accepted.stream, accepted.peer), LinkOptions::default());
    for i in 0..50u8 {
        c.send(Bytes::from(vec![i; 100 + i as usize]))
            .await
            .unwrap();
    }
    for i in 0..50u8 {
        assert_eq!(
            next(&mut s_rx).await,
            LinkEvent::Message(Bytes::from(vec![i; 100 + i as usize]))
        );
    }
    s.send(Bytes::from_static(b"reply")).await.unwrap();
    // The client's frames were acknowledged: it reports the round-trip time first.
    assert!(matches!(next_event(&mut c_rx).await, LinkEvent::Rtt(_)));
    assert_eq!(
        next(&mut c_rx).await,
        LinkEvent::Message(Bytes::from_static(b"reply"))
    );
    c.close();
    assert_eq!(next(&mut c_rx).await, LinkEvent::Closed(None));
    assert!(
        matches!(next(&mut s_rx).await, LinkEvent::Closed(Some(_))),
        "server notices the close"
    );
}

#[tokio::test]
async fn a_peer_with_an_unexpected_node_id_is_refused_rfc6940_6_5_1_13() {
    let mut p = listening(2).await;
    let client = p.ca.node("client@links.example", NodeId(0xc1));
    let ctx = client_ctx(&p.ca, client);
    let (conn, refused) = tokio::join!(
        ctx.connect(addr(&p), Expect::Node(NodeId(0xbad))),
        accept(&mut p)
    );
    match conn {
        Err(ConnectError::Identity(IdentityError::WrongNodeId { expected, found })) => {
            assert_eq!(expected, NodeId(0xbad));
            assert_eq!(found, vec![NodeId(0x5e)]);
        }
        other => panic!("expected WrongNodeId, got {other:?}"),
    }
    assert!(refused.is_err(), "the server sees the aborted handshake");
    listener_still_serves(&mut p).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let mut p = listening(3).await;
    let mut other = TestCa::new(OVERLAY, 333);
    let eve = other.node("eve@evil.example", NodeId(0xe7e));
    // Eve trusts our root (so she completes her side) but holds a foreign certificate.
    let ctx = TlsContext::new(eve, p.ca.trust_store()).unwrap();
    let (conn, refused) = tokio::join!(ctx.connect(addr(&p), Expect::AnyNode), accept(&mut p));
    match refused {
        Err(ConnectError::Identity(IdentityError::UnknownIssuer)) => {}
        other => panic!("expected UnknownIssuer at the server, got {other:?}"),
    }
    if let Ok((stream, _)) = conn {
        // In TLS 1.3 the client may finish first; the server's alert then ends the stream.
        use tokio::io::AsyncReadExt;
        let mut stream = stream;
        let mut buf = [0u8; 1];
        assert!(!matches!(stream.read(&mut buf).await, Ok(1)));
    }
    // And a client refuses a server from another CA.
    let honest = p.ca.node("honest@links.example", NodeId(0x40));
    let mut evil_server = TestCa::new(OVERLAY, 334);
    let evil_creds = evil_server.node("evil@evil.example", NodeId(0x5e));
    let evil_ctx = TlsContext::new(evil_creds, evil_server.trust_store()).unwrap();
    let mut evil = Listener::bind(LOOPBACK.parse().unwrap(), evil_ctx)
        .await
        .unwrap();
    let ctx = client_ctx(&p.ca, honest);
    let (conn, _) = tokio::join!(
        ctx.connect(evil.local_addr(), Expect::Node(NodeId(0x5e))),
        evil.accept()
    );
    assert!(
        matches!(
            conn,
            Err(ConnectError::Identity(IdentityError::UnknownIssuer))
        ),
        "{conn:?}"
    );
    listener_still_serves(&mut p).await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let mut p = listening(4).await;
    let old = p.ca.node_with(
        "old@links.example",
        NodeId(0x01d),
        Validity {
            not_before: 946_684_800,
            not_after: 978_307_200,
        },
    );
    let ctx = client_ctx(&p.ca, old);
    let (_, refused) = tokio::join!(ctx.connect(addr(&p), Expect::AnyNode), accept(&mut p));
    assert!(
        matches!(refused, Err(ConnectError::Identity(IdentityError::Expired))),
        "{refused:?}"
    );
    listener_still_serves(&mut p).await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let mut p = listening(5).await;
    // A plain TLS client that offers no certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            p.ca.root.der.clone(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr(&p)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("reload.invalid").unwrap();
    let (_, refused) = tokio::join!(connector.connect(name, tcp), accept(&mut p));
    match refused {
        Err(ConnectError::Tls(msg)) => assert!(msg.to_lowercase().contains("certificate"), "{msg}"),
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
    listener_still_serves(&mut p).await;
}

#[tokio::test]
async fn an_oversize_message_gets_error_message_too_large_and_the_link_closes_rfc6940_6_6() {
    let mut p = listening(6).await;
    let client_creds = p.ca.node("client@links.example", NodeId(0xc1));
    let ctx = client_ctx(&p.ca, client_creds.clone());
    let (conn, accepted) = tokio::join!(ctx.connect(addr(&p), Expect::AnyNode), accept(&mut p));
    let accepted = accepted.unwrap();

    let server_creds = p.server_ctx.credentials().clone();
    let responder: OversizeResponder = Arc::new(move |header: &ForwardingHeader, peer: NodeId| {
        let error = ErrorResponse::new(ErrorCode::MessageTooLarge, "max-message-size is 2000");
        error_response(header, peer, &error, &server_creds, 100).ok()
    });
    let options = LinkOptions {
        config: LinkConfig {
            max_message_size: 2000,
            ..LinkConfig::default()
        },
        on_oversize: Some(responder),
    };
    let (_s, mut s_rx) = spawn(2, (accepted.stream, accepted.peer), options);
    let (c, mut c_rx) = spawn(1, conn.unwrap(), LinkOptions::default());

    let header = ForwardingHeader {
        overlay: crate::id::overlay_field(OVERLAY),
        configuration_sequence: 0,
        ttl: 100,
        fragment: Fragment::WHOLE,
        transaction_id: 0xfeed,
        max_response_length: 0,
        via_list: vec![],
        destination_list: vec![crate::wire::Destination::Node(NodeId(0x5e))],
        options: vec![],
    };
    let big = crate::respond::signed_message(
        header,
        crate::wire::MessageCode::PING_REQ,
        Bytes::from(vec![0u8; 5000]),
        &client_creds,
    )
    .unwrap()
    .encode()
    .unwrap();
    c.send(big).await.unwrap();

    let LinkEvent::Message(answer) = next(&mut c_rx).await else {
        panic!("expected the error answer")
    };
    let answer = Message::decode(&answer).unwrap();
    assert_eq!(answer.header.transaction_id, 0xfeed);
    assert_eq!(
        answer.header.destination_list,
        vec![crate::wire::Destination::Node(NodeId(0xc1))]
    );
    let models = |_| None;
    match Body::parse(answer.contents.code, &answer.contents.body, &models).unwrap() {
        Body::Error(e) => assert_eq!(e.code, ErrorCode::MessageTooLarge),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        matches!(next(&mut c_rx).await, LinkEvent::Closed(Some(_))),
        "the server closed the link"
    );
    assert!(
        matches!(next(&mut s_rx).await, LinkEvent::Closed(Some(reason)) if reason.contains("max-message-size"))
    );
}

async fn listener_still_serves(p: &mut Pair) {
    let good = p.ca.node("later@links.example", NodeId(0x1a7e));
    let ctx = client_ctx(&p.ca, good);
    let (conn, accepted) =
        tokio::join!(ctx.connect(addr(p), Expect::Node(NodeId(0x5e))), accept(p));
    conn.expect("a good client still connects");
    assert_eq!(
        accepted.expect("and is accepted").peer.node_id(),
        NodeId(0x1a7e)
    );
}
