use bytes::Bytes;

use super::header::sample_header;
use super::{h, id16};
use crate::wire::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn ping() -> Message {
    Message {
        header: sample_header(),
        contents: MessageContents {
            code: MessageCode::PING_REQ,
            body: Bytes::from_static(&[0, 0]),
            extensions: vec![],
        },
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::anonymous(),
        },
    }
}

#[test]
fn whole_message_rfc6940_6_3() {
    // header (75) + contents: code(2) body<0..2^32-1>(4+2) extensions(4) = 12
    // + security block: certificates(2) signature(7) = 9 → 96 = 0x60
    let bytes = h(&format!(
        "d2454c4f 01020304 0005 0a 64 c0000000 00000060 1122334455667788 00000000
         0012 0013 0000 01 10 {A} 02 11 10 {B}
         | 0017 00000002 0000 00000000
         | 0000 00 00 03 0000 0000"
    ));
    assert_eq!(hex::encode(ping().encode().unwrap()), hex::encode(&bytes));
    assert_eq!(Message::decode(&bytes).unwrap(), ping());
}

#[test]
fn message_contents_with_extension_rfc6940_6_3_3() {
    // extension: type(2) critical(1) extension_contents<0..2^32-1>(4+1) = 8 bytes
    let contents = MessageContents {
        code: MessageCode::PING_ANS,
        body: Bytes::new(),
        extensions: vec![MessageExtension {
            kind: 1,
            critical: false,
            contents: Bytes::from_static(b"z"),
        }],
    };
    super::both_ways(contents, &h("0018 00000000 00000008 0001 00 00000001 7a"));
}

#[test]
fn error_response_rfc6940_6_3_3_1() {
    super::both_ways(
        ErrorResponse::new(ErrorCode::Forbidden, "no"),
        &h("0002 0002 6e6f"),
    );
}

#[test]
fn every_error_code_has_its_registry_value_rfc6940_14_9() {
    use ErrorCode::*;
    let table = [
        (Forbidden, 0x02),
        (NotFound, 0x03),
        (RequestTimeout, 0x04),
        (GenerationCounterTooLow, 0x05),
        (IncompatibleWithOverlay, 0x06),
        (UnsupportedForwardingOption, 0x07),
        (DataTooLarge, 0x08),
        (DataTooOld, 0x09),
        (TtlExceeded, 0x0a),
        (MessageTooLarge, 0x0b),
        (UnknownKind, 0x0c),
        (UnknownExtension, 0x0d),
        (ResponseTooLarge, 0x0e),
        (ConfigTooOld, 0x0f),
        (ConfigTooNew, 0x10),
        (InProgress, 0x11),
        (ExpA, 0x12),
        (ExpB, 0x13),
        (InvalidMessage, 0x14),
    ];
    for (code, value) in table {
        assert_eq!(code.to_u16(), value, "{code}");
        assert_eq!(ErrorCode::from_u16(value), code);
    }
    assert_eq!(ErrorCode::from_u16(0x8001), ErrorCode::Other(0x8001));
}

#[test]
fn message_codes_pair_requests_and_answers_rfc6940_14_8() {
    assert_eq!(MessageCode::PROBE_REQ.0, 1);
    assert_eq!(MessageCode::APP_ATTACH_REQ.0, 0x1d);
    assert_eq!(MessageCode::CONFIG_UPDATE_ANS.0, 0x22);
    assert_eq!(MessageCode::STORE_REQ.answer(), MessageCode::STORE_ANS);
    assert!(MessageCode::FETCH_REQ.is_request());
    assert!(MessageCode::FETCH_ANS.is_response());
    assert!(MessageCode::ERROR.is_response());
}

#[test]
fn unknown_code_and_noncritical_extension_survive_forwarding_rfc6940_6_3_3() {
    let mut m = ping();
    m.contents.code = MessageCode(0x0101);
    m.contents.body = Bytes::from_static(b"opaque to us");
    m.contents.extensions = vec![MessageExtension {
        kind: 0x7777,
        critical: false,
        contents: Bytes::from_static(b"future"),
    }];
    let bytes = m.encode().unwrap();
    let raw = RawMessage::decode(&bytes).unwrap();
    assert_eq!(
        raw.encode().unwrap(),
        bytes,
        "forwarding layer re-encodes byte for byte"
    );
    let back = Message::decode(&bytes).unwrap();
    assert_eq!(back, m);
    let models = |_| None;
    assert_eq!(
        Body::parse(back.contents.code, &back.contents.body, &models).unwrap(),
        Body::Other {
            code: MessageCode(0x0101),
            body: Bytes::from_static(b"opaque to us")
        }
    );
}

#[test]
fn body_dispatches_on_the_code() {
    let models = |_| None;
    let body = Body::PingAns(PingAns {
        response_id: 9,
        time: 10,
    });
    let bytes = body.to_bytes().unwrap();
    assert_eq!(Body::parse(body.code(), &bytes, &models).unwrap(), body);
    assert_eq!(
        Body::parse(MessageCode::LEAVE_ANS, &[], &models).unwrap(),
        Body::LeaveAns
    );
    let id = crate::id::NodeId::from_bytes(id16(1));
    let join = Body::JoinReq(JoinReq {
        joining_peer_id: id,
        overlay_specific_data: Bytes::new(),
    });
    assert_eq!(
        Body::parse(MessageCode::JOIN_REQ, &join.to_bytes().unwrap(), &models).unwrap(),
        join
    );
}
