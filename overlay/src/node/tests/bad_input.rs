//! Hostile and malformed messages get the answers the RFC prescribes, and the node
//! keeps running.

use bytes::Bytes;

use super::*;
use crate::node::{LinkId, Node};
use crate::respond::signed_message;
use crate::wire::*;

/// Two nodes a (which starts the overlay) and b, in the core directly (no network):
/// returns a, b's credentials, and the link id on which a sees b.
fn pair() -> (Node, crate::identity::Credentials, LinkId) {
    let mut ca = TestCa::new(OVERLAY, 77);
    let a_creds = ca.node("a@ring.example", NodeId(100));
    let b_creds = ca.node("b@ring.example", NodeId(200));
    let mut cfg = NodeConfig::new(OVERLAY, a_creds, ca.trust_store());
    cfg.may_start_overlay = true;
    cfg.epoch_unix_ms = 1_800_000_000_000;
    let mut a = Node::new(cfg, Instant::ZERO);
    a.join(Instant::ZERO);
    a.handle_link_up(LinkId(1), NodeId(200), None, Instant::ZERO);
    while a.poll_event().is_some() {}
    (a, b_creds, LinkId(1))
}

fn request(
    creds: &crate::identity::Credentials,
    dest: Vec<Destination>,
    via: Vec<Destination>,
    ttl: u8,
    body: Body,
) -> Bytes {
    let header = ForwardingHeader {
        overlay: crate::id::overlay_field(OVERLAY),
        configuration_sequence: 1,
        ttl,
        fragment: Fragment::WHOLE,
        transaction_id: 4242,
        max_response_length: 0,
        via_list: via,
        destination_list: dest,
        options: vec![],
    };
    signed_message(header, body.code(), body.to_bytes().unwrap(), creds)
        .unwrap()
        .encode()
        .unwrap()
}

/// The error code a sent back, if any.
fn answer_code(a: &mut Node) -> Option<ErrorCode> {
    let t = a.poll_transmit()?;
    let m = Message::decode(&t.bytes).unwrap();
    match Body::parse(m.contents.code, &m.contents.body, &|_| None).unwrap() {
        Body::Error(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn a_looping_via_list_is_refused_rfc6940_13_6_5() {
    let (mut a, b, link) = pair();
    // Destined elsewhere (a must forward it), but a is already on the via list.
    let msg = request(
        &b,
        vec![
            Destination::Node(NodeId(999)),
            Destination::Node(NodeId(200)),
        ],
        vec![Destination::Node(NodeId(100))],
        50,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg, Instant::ZERO);
    let _ = a.poll_transmit(); // the request would go back to b, the only peer...
    // ...unless the loop is caught first: check a's answer is an error.
    let (mut a, b, link) = pair();
    let msg = request(
        &b,
        vec![
            Destination::Node(NodeId(200)),
            Destination::Node(NodeId(200)),
        ],
        vec![],
        50,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg, Instant::ZERO);
    assert_eq!(
        answer_code(&mut a),
        Some(ErrorCode::InvalidMessage),
        "duplicate destinations"
    );
}

#[test]
fn a_via_list_containing_the_forwarder_is_refused() {
    let (mut a, b, link) = pair();
    // a is not responsible for 150 (b at 200 is... a alone-with-link: a is responsible
    // for everything) — so route to a Node-ID a must forward: b's own id via a loop.
    let msg = request(
        &b,
        vec![Destination::Node(NodeId(300))],
        vec![Destination::Node(NodeId(100))],
        50,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg, Instant::ZERO);
    // a is responsible for 300 (alone on the ring) and 300 is not connected: dropped
    // silently as §6.1.1 requires.
    assert!(a.poll_transmit().is_none());
}

#[test]
fn ttl_zero_is_not_forwarded_rfc6940_6_3_2() {
    let (mut a, b, link) = pair();
    // Make a forward: destination b itself through a source route [a?]. A Node-ID that
    // is connected (b) gets forwarded to b with TTL 0 → Error_TTL_Exceeded.
    let msg = request(
        &b,
        vec![Destination::Node(NodeId(200))],
        vec![],
        0,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg, Instant::ZERO);
    assert_eq!(answer_code(&mut a), Some(ErrorCode::TtlExceeded));
}

#[test]
fn ttl_above_initial_ttl_is_refused_rfc6940_6_3_2() {
    let (mut a, b, link) = pair();
    let msg = request(
        &b,
        vec![Destination::Node(NodeId(100))],
        vec![],
        101,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg, Instant::ZERO);
    assert_eq!(answer_code(&mut a), Some(ErrorCode::TtlExceeded));
}

#[test]
fn an_unknown_destination_type_is_refused() {
    let (mut a, b, link) = pair();
    let msg = request(
        &b,
        vec![Destination::Unknown {
            kind: 9,
            data: Bytes::from_static(b"?"),
        }],
        vec![],
        50,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg, Instant::ZERO);
    assert_eq!(answer_code(&mut a), Some(ErrorCode::InvalidMessage));
}

#[test]
fn a_forged_join_is_forbidden_rfc6940_6_4_2_1() {
    let (mut a, b, link) = pair();
    // b signs a JoinReq claiming to be node 300.
    let join = Body::JoinReq(JoinReq {
        joining_peer_id: NodeId(300),
        overlay_specific_data: Bytes::new(),
    });
    a.handle_message(
        link,
        request(&b, vec![Destination::Node(NodeId(100))], vec![], 50, join),
        Instant::ZERO,
    );
    assert_eq!(answer_code(&mut a), Some(ErrorCode::Forbidden));
}

#[test]
fn a_forged_leave_is_forbidden_rfc6940_6_4_2_2() {
    let (mut a, b, link) = pair();
    let leave = Body::LeaveReq(LeaveReq {
        leaving_peer_id: NodeId(300),
        data: ChordLeaveData::FromPred(vec![]),
    });
    a.handle_message(
        link,
        request(&b, vec![Destination::Node(NodeId(100))], vec![], 50, leave),
        Instant::ZERO,
    );
    assert_eq!(answer_code(&mut a), Some(ErrorCode::Forbidden));
}

#[test]
fn a_message_with_a_bad_signature_is_dropped_rfc6940_6_3_4() {
    let (mut a, b, link) = pair();
    let mut m = Message::decode(&request(
        &b,
        vec![Destination::Node(NodeId(100))],
        vec![],
        50,
        Body::PingReq(Default::default()),
    ))
    .unwrap();
    m.contents.body = Bytes::from_static(&[0, 1, 9]);
    a.handle_message(link, m.encode().unwrap(), Instant::ZERO);
    assert!(a.poll_transmit().is_none(), "dropped without an answer");
}

#[test]
fn a_response_from_the_wrong_node_is_ignored_rfc6940_6_3_4() {
    let (mut a, b, link) = pair();
    let mut ca = TestCa::new(OVERLAY, 77);
    let _ = ca.node("a@ring.example", NodeId(100));
    let _ = ca.node("b@ring.example", NodeId(200));
    let c = ca.node("c@ring.example", NodeId(300));
    let req = a.ping(Destination::Node(NodeId(200)), Instant::ZERO);
    let sent = Message::decode(&a.poll_transmit().unwrap().bytes).unwrap();
    // c answers in b's place.
    let header = crate::respond::response_header(&sent.header, NodeId(100), 50);
    let body = Body::PingAns(PingAns {
        response_id: 1,
        time: 2,
    });
    let forged = signed_message(header.clone(), body.code(), body.to_bytes().unwrap(), &c).unwrap();
    a.handle_message(link, forged.encode().unwrap(), Instant::ZERO);
    assert!(!std::iter::from_fn(|| a.poll_event()).any(|e| matches!(e, Event::Response { .. })));
    // b's genuine answer is accepted.
    let genuine = signed_message(header, body.code(), body.to_bytes().unwrap(), &b).unwrap();
    a.handle_message(link, genuine.encode().unwrap(), Instant::ZERO);
    assert!(
        std::iter::from_fn(|| a.poll_event())
            .any(|e| matches!(e, Event::Response { request, result: Ok(_) } if request == req))
    );
}

#[test]
fn garbage_and_wrong_overlay_do_not_stop_the_node() {
    let (mut a, b, link) = pair();
    a.handle_message(
        link,
        Bytes::from_static(b"\xd2\x45\x4c\x4f garbage"),
        Instant::ZERO,
    );
    let mut msg = Message::decode(&request(
        &b,
        vec![Destination::Node(NodeId(100))],
        vec![],
        50,
        Body::PingReq(Default::default()),
    ))
    .unwrap();
    msg.header.overlay ^= 1;
    a.handle_message(link, msg.encode().unwrap(), Instant::ZERO);
    assert_eq!(
        answer_code(&mut a),
        Some(ErrorCode::IncompatibleWithOverlay)
    );
    // Still answers a good ping.
    a.handle_message(
        link,
        request(
            &b,
            vec![Destination::Node(NodeId(100))],
            vec![],
            50,
            Body::PingReq(Default::default()),
        ),
        Instant::ZERO,
    );
    let t = a.poll_transmit().unwrap();
    assert_eq!(
        Message::decode(&t.bytes).unwrap().contents.code,
        MessageCode::PING_ANS
    );
}

#[test]
fn config_sequence_mismatches_are_reported_rfc6940_6_3_2_1() {
    let (mut a, b, link) = pair();
    let mut m = Message::decode(&request(
        &b,
        vec![Destination::Node(NodeId(100))],
        vec![],
        50,
        Body::PingReq(Default::default()),
    ))
    .unwrap();
    // Re-sign with a newer configuration sequence.
    m.header.configuration_sequence = 5;
    let body = m.contents.body.clone();
    let newer = signed_message(m.header.clone(), MessageCode::PING_REQ, body.clone(), &b).unwrap();
    a.handle_message(link, newer.encode().unwrap(), Instant::ZERO);
    assert_eq!(answer_code(&mut a), Some(ErrorCode::ConfigTooNew));
    m.header.configuration_sequence = 0;
    m.header.transaction_id += 1;
    let older = signed_message(m.header, MessageCode::PING_REQ, body, &b).unwrap();
    a.handle_message(link, older.encode().unwrap(), Instant::ZERO);
    assert_eq!(answer_code(&mut a), Some(ErrorCode::ConfigTooOld));
}

#[test]
fn a_duplicate_request_gets_the_same_answer_rfc6940_6_2_1() {
    let (mut a, b, link) = pair();
    let msg = request(
        &b,
        vec![Destination::Node(NodeId(100))],
        vec![],
        50,
        Body::PingReq(Default::default()),
    );
    a.handle_message(link, msg.clone(), Instant::ZERO);
    let first = Message::decode(&a.poll_transmit().unwrap().bytes).unwrap();
    a.handle_message(link, msg, Instant::from_secs(5));
    let second = Message::decode(&a.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(first.contents, second.contents, "same response_id and time");
}

/// A StoreReq from b of a value b signed, at b's NODE-MATCH resource.
fn store_from_b(b: &crate::identity::Credentials) -> Bytes {
    let resource = crate::storage::node_resource(NodeId(200));
    let value = StoredDataValue::Array {
        index: 0,
        value: DataValue::new(Bytes::from(b.cert().to_vec())),
    };
    let storage_time = 1_800_000_000_000;
    let signature = b.sign_value(
        resource,
        crate::storage::CERTIFICATE_BY_NODE,
        storage_time,
        &value,
    );
    let req = StoreReq {
        resource,
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: crate::storage::CERTIFICATE_BY_NODE,
            generation_counter: 0,
            values: KindValues::Parsed(vec![StoredData {
                storage_time,
                lifetime: 600,
                value,
                signature,
            }]),
        }],
    };
    request(
        b,
        vec![Destination::Resource(resource)],
        vec![],
        50,
        Body::StoreReq(req),
    )
}

/// Whether a answered with a StoreAns.
fn sent_store_ans(a: &mut Node) -> bool {
    let mut found = false;
    while let Some(t) = a.poll_transmit() {
        let m = Message::decode(&t.bytes).unwrap();
        found |= m.contents.code == MessageCode::STORE_ANS;
    }
    found
}

#[test]
fn a_bad_node_cannot_store_rfc6940_11_1() {
    // The store is accepted from b while it is in good standing...
    let (mut a, b, link) = pair();
    let before = a.storage().values();
    a.handle_message(link, store_from_b(&b), Instant::ZERO);
    assert_eq!(a.storage().values(), before + 1, "b's store is accepted");
    assert!(sent_store_ans(&mut a));
    // ...and refused, storing nothing, once the configuration names b a bad node.
    let (mut a, b, link) = pair();
    a.cfg.trust.set_bad_nodes([NodeId(200)]);
    let before = a.storage().values();
    a.handle_message(link, store_from_b(&b), Instant::ZERO);
    assert_eq!(
        a.storage().values(),
        before,
        "a bad node's store is refused"
    );
    assert!(!sent_store_ans(&mut a));
}

/// Defect 3 of the hardening issue: first fragments with fresh transaction ids, never
/// completed, used to grow reassembly without bound (1 GB in 26 s), each one scanned
/// on every arrival. Now a link holds at most its share, and the table is bounded.
#[test]
fn a_flood_of_first_fragments_holds_bounded_memory_rfc6940_6_7() {
    let (mut a, b, link) = pair();
    let limits = a.config().reassembly;
    let whole = request(
        &b,
        vec![Destination::Node(NodeId(100))],
        vec![],
        50,
        Body::PingReq(Default::default()),
    );
    let raw = RawMessage::decode(&whole).unwrap();
    for tid in 0..20_000u64 {
        let mut first = raw.clone();
        first.header.transaction_id = tid;
        first.header.fragment = Fragment::new(false, 0);
        // Half empty, half one byte of the real message.
        first.payload = if tid % 2 == 0 {
            Bytes::new()
        } else {
            raw.payload.slice(..1)
        };
        a.handle_message(link, first.encode().unwrap(), Instant::ZERO);
        assert!(a.frags.messages() <= limits.per_peer);
        assert!(a.frags.held() <= limits.bytes / 4);
    }
    while a.poll_transmit().is_some() {}
    // The flood expires with the request lifetime; then a real message, fragmented,
    // gets through and is answered.
    let later = Instant::from_secs(16);
    a.handle_timeout(later);
    assert_eq!(a.frags.messages(), 0);
    while a.poll_transmit().is_some() {}
    for f in crate::node::fragments::fragment(&raw, 256) {
        a.handle_message(link, f.encode().unwrap(), later);
    }
    let t = a.poll_transmit().expect("the ping is answered");
    let m = Message::decode(&t.bytes).unwrap();
    assert_eq!(m.contents.code, MessageCode::PING_ANS);
}
