use bytes::{Bytes, BytesMut};

use super::{both_ways, h, id16};
use crate::id::{NodeId, ResourceId};
use crate::wire::header::{decode_destination_list, encode_destination_list};
use crate::wire::{Destination, ForwardingHeader, ForwardingOption, Fragment, RawMessage};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn destination_node_rfc6940_6_3_2_2() {
    // type = node(1), length = 16, NodeId[16]
    both_ways(
        Destination::Node(NodeId::from_bytes(id16(0xaa))),
        &h(&format!("01 10 {A}")),
    );
}

#[test]
fn destination_resource_rfc6940_6_3_2_2() {
    // type = resource(2), length = 17, ResourceId = opaque<0..2^8-1> (16 + its length byte)
    both_ways(
        Destination::Resource(ResourceId::from_bytes(id16(0xbb))),
        &h(&format!("02 11 10 {B}")),
    );
}

#[test]
fn destination_opaque_rfc6940_6_3_2_2() {
    // type = opaque_id_type(3), length = 3, opaque_id<0..2^8-1> = 02 "ab"
    both_ways(
        Destination::Opaque(Bytes::from_static(b"ab")),
        &h("03 03 02 61 62"),
    );
}

#[test]
fn destination_compressed_16_bit_form_rfc6940_6_3_2_2() {
    // "If the destination structure is a 16-bit integer, then the first bit MUST be set"
    both_ways(Destination::Compressed(0x1234), &h("92 34"));
}

#[test]
fn destination_of_unknown_type_is_kept_rfc6940_6_3_2_2() {
    // The TLV form lets an implementation skip types it does not understand.
    both_ways(
        Destination::Unknown {
            kind: 7,
            data: Bytes::from_static(b"x"),
        },
        &h("07 01 78"),
    );
}

#[test]
fn destination_list_without_prefix_rfc6940_14_15() {
    let list = vec![
        Destination::Node(NodeId::from_bytes(id16(0xaa))),
        Destination::Compressed(1),
    ];
    let bytes = h(&format!("01 10 {A} 80 01"));
    assert_eq!(encode_destination_list(&list).unwrap().as_ref(), &bytes[..]);
    assert_eq!(decode_destination_list(&bytes).unwrap(), list);
}

#[test]
fn forwarding_option_rfc6940_6_3_2_3() {
    // type(1) flags(1) length(2) option
    both_ways(
        ForwardingOption {
            kind: 1,
            flags: 0x05,
            value: Bytes::from_static(b"hi"),
        },
        &h("01 05 0002 6869"),
    );
}

#[test]
fn fragment_field_rfc6940_6_7() {
    assert_eq!(Fragment::WHOLE.bits(), 0xC000_0000);
    assert!(Fragment::WHOLE.is_whole());
    let f = Fragment::new(false, 1200);
    assert_eq!(f.bits(), 0x8000_04b0);
    assert!(!f.is_last());
    assert_eq!(f.offset(), 1200);
    assert_eq!(Fragment::new(true, 1200).bits(), 0xc000_04b0);
}

pub(crate) fn sample_header() -> ForwardingHeader {
    ForwardingHeader {
        overlay: 0x0102_0304,
        configuration_sequence: 5,
        ttl: 100,
        fragment: Fragment::WHOLE,
        transaction_id: 0x1122_3344_5566_7788,
        max_response_length: 0,
        via_list: vec![Destination::Node(NodeId::from_bytes(id16(0xaa)))],
        destination_list: vec![Destination::Resource(ResourceId::from_bytes(id16(0xbb)))],
        options: vec![],
    }
}

#[test]
fn forwarding_header_rfc6940_6_3_2() {
    // 38 fixed bytes + via list (18) + destination list (19) = 75 = 0x4b, no payload.
    let bytes = h(&format!(
        "d2454c4f 01020304 0005 0a 64 c0000000 0000004b 1122334455667788 00000000
         0012 0013 0000 | 01 10 {A} | 02 11 10 {B}"
    ));
    let raw = RawMessage {
        header: sample_header(),
        payload: Bytes::new(),
    };
    assert_eq!(hex::encode(raw.encode().unwrap()), hex::encode(&bytes));
    assert_eq!(RawMessage::decode(&bytes).unwrap(), raw);
    assert_eq!(sample_header().encoded_len(), 75);
}

#[test]
fn header_length_counts_the_payload_rfc6940_6_3_2() {
    let mut out = BytesMut::new();
    sample_header()
        .encode_with_payload_len(&mut out, 25)
        .unwrap();
    assert_eq!(&out[16..20], &[0, 0, 0, 75 + 25]);
}
