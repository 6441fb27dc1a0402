//! Malformed input: every case yields a typed `DecodeError` naming the field and offset.

use super::h;
use crate::wire::codec::decode_all;
use crate::wire::*;

fn valid_message() -> Vec<u8> {
    let header = super::header::sample_header();
    Message {
        header,
        contents: MessageContents {
            code: MessageCode::PING_REQ,
            body: bytes::Bytes::from_static(&[0, 0]),
            extensions: vec![],
        },
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::anonymous(),
        },
    }
    .encode()
    .unwrap()
    .to_vec()
}

fn err(bytes: &[u8]) -> DecodeError {
    Message::decode(bytes).unwrap_err()
}

#[test]
fn truncated_message_names_the_missing_field() {
    let e = err(&valid_message()[..10]);
    assert_eq!(
        (e.field, e.offset, e.kind),
        ("version", 10, DecodeErrorKind::Truncated)
    );
}

#[test]
fn every_prefix_of_a_message_is_an_error_not_a_panic() {
    let m = valid_message();
    for n in 0..m.len() {
        assert!(Message::decode(&m[..n]).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn wrong_relo_token_is_not_reload_rfc6940_6_3_2() {
    let mut m = valid_message();
    m[0] = 0x52; // "RELO" without the high bit
    let e = err(&m);
    assert_eq!((e.field, e.offset), ("relo_token", 0));
    assert!(matches!(e.kind, DecodeErrorKind::Invalid(_)));
}

#[test]
fn wrong_version_is_rejected_rfc6940_6_3_2() {
    // "Nodes MUST reject messages with other versions." (0.1 was used before the RFC)
    let mut m = valid_message();
    m[10] = 0x01;
    let e = err(&m);
    assert_eq!((e.field, e.offset), ("version", 10));
}

#[test]
fn fragment_without_high_bit_is_discarded_rfc6940_6_7() {
    let mut m = valid_message();
    m[12] = 0x40;
    assert_eq!((err(&m).field, err(&m).offset), ("fragment", 12));
}

#[test]
fn over_long_message_disagrees_with_length_rfc6940_6_3_2() {
    let mut m = valid_message();
    m.push(0);
    let e = err(&m);
    assert_eq!((e.field, e.offset), ("length", 16));
    assert_eq!(
        e.kind,
        DecodeErrorKind::LengthOverrun {
            declared: m.len() - 1,
            available: m.len()
        }
    );
}

#[test]
fn via_list_length_overrunning_the_message_rfc6940_6_3_2() {
    let mut m = valid_message();
    m[32..34].copy_from_slice(&0x0fffu16.to_be_bytes());
    let e = err(&m);
    assert_eq!((e.field, e.offset), ("via_list", 38));
    assert!(matches!(
        e.kind,
        DecodeErrorKind::LengthOverrun {
            declared: 0x0fff,
            ..
        }
    ));
}

#[test]
fn destination_length_overrun_inside_the_list_rfc6940_6_3_2_2() {
    // A resource destination claiming 0x30 bytes of data where 17 follow.
    let mut m = valid_message();
    let dest_at = 38 + 18;
    m[dest_at + 1] = 0x30;
    let e = err(&m);
    assert_eq!((e.field, e.offset), ("destination_data", dest_at + 1));
}

#[test]
fn body_length_overrun_rfc6940_6_5_3_1() {
    let e = PingReq::decode(&h("0005 00")).unwrap_err();
    assert_eq!((e.field, e.offset), ("padding", 0));
    assert_eq!(
        e.kind,
        DecodeErrorKind::LengthOverrun {
            declared: 5,
            available: 1
        }
    );
}

#[test]
fn boolean_other_than_0_or_1_rfc6940_6_3_1_1() {
    let e = RouteQueryReq::decode(&h("02 80 01 0000")).unwrap_err();
    assert_eq!((e.field, e.offset), ("send_update", 0));
}

#[test]
fn trailing_bytes_after_a_body() {
    let e = PingAns::decode(&[0; 17]).unwrap_err();
    assert_eq!((e.offset, e.kind), (16, DecodeErrorKind::TrailingBytes(1)));
}

#[test]
fn nested_errors_report_offsets_from_the_start_of_the_input() {
    // StoreReq → StoreKindData → StoredData → DataValue.exists = 7
    let bytes = h(&format!(
        "10 {} 00 0000002f 0000000a 0000000000000063 0000001f \
         0000001b 0102030405060708 00015180 07 00000003 616263 00 00 03 0000 0000",
        "cc".repeat(16)
    ));
    let models = super::storage::models();
    let e = decode_all(&bytes, |i| StoreReq::parse_with(i, &models)).unwrap_err();
    assert_eq!(e.field, "exists");
    assert_eq!(e.offset, 17 + 1 + 4 + 4 + 8 + 4 + 4 + 8 + 4);
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // kind_responses<0..2^32-1> claiming 4 GiB in a 4-byte input.
    let models = super::storage::models();
    let e = decode_all(&h("ffffffff"), |i| FetchAns::parse_with(i, &models)).unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::LengthOverrun {
            declared: 0xffff_ffff,
            available: 0
        }
    );
}

#[test]
fn zero_codes_are_invalid() {
    assert_eq!(
        MessageContents::decode(&h("0000 00000000 00000000"))
            .unwrap_err()
            .field,
        "message_code"
    );
    assert_eq!(
        ErrorResponse::decode(&h("0000 0000")).unwrap_err().field,
        "error_code"
    );
    assert_eq!(
        Destination::decode(&h("00 00")).unwrap_err().field,
        "destination_type"
    );
}

#[test]
fn unknown_cand_type_cannot_be_skipped_rfc6940_6_5_1_1() {
    // prflx(3) is RESERVED: its rel_addr_port presence is unknown, so the candidate is
    // a parse error.
    let e = IceCandidate::decode(&h("01 06 7f000001 0fa0 04 01 31 7e0000ff 03 0000")).unwrap_err();
    assert_eq!((e.field, e.offset), ("cand_type", 15));
}

#[test]
fn encoding_refuses_values_too_long_for_their_prefix() {
    let too_long = bytes::Bytes::from(vec![0u8; 256]);
    let e = AttachReqAns {
        ufrag: too_long,
        password: Default::default(),
        role: Default::default(),
        candidates: vec![],
        send_update: false,
    }
    .to_bytes()
    .unwrap_err();
    assert_eq!((e.field, e.len, e.max), ("ufrag", 256, 255));
}
