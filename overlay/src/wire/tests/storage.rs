use std::collections::HashMap;
use std::fmt::Debug;

use bytes::Bytes;

use super::{both_ways, h, id16};
use crate::id::{NodeId, ResourceId};
use crate::wire::codec::{Encode, Res, decode_all};
use crate::wire::store::DataModel;
use crate::wire::*;

const R: &str = "cccccccccccccccccccccccccccccccc";

/// Kind 0x0a is single-valued, 0x0b an array, 0x0c a dictionary.
pub(crate) fn models() -> HashMap<KindId, DataModel> {
    HashMap::from([
        (0x0a, DataModel::Single),
        (0x0b, DataModel::Array),
        (0x0c, DataModel::Dictionary),
    ])
}

fn both_ways_with<T: Encode + PartialEq + Debug>(
    value: T,
    bytes: &[u8],
    parse: impl for<'a> FnOnce(&'a [u8]) -> Res<'a, T>,
) {
    assert_eq!(
        hex::encode(value.to_bytes().unwrap()),
        hex::encode(bytes),
        "encoding"
    );
    assert_eq!(decode_all(bytes, parse).unwrap(), value, "decoding");
}

fn single(v: &'static [u8]) -> StoredData {
    StoredData {
        storage_time: 0x0102_0304_0506_0708,
        lifetime: 86400,
        value: StoredDataValue::Single(DataValue::new(Bytes::from_static(v))),
        signature: Signature::anonymous(),
    }
}

// length(4) = 27: storage_time(8) lifetime(4) DataValue(1+4+3) Signature(2+3+2)
const SINGLE_ABC: &str =
    "0000001b 0102030405060708 00015180 | 01 00000003 616263 | 00 00 03 0000 0000";

#[test]
fn data_value_rfc6940_7_2() {
    both_ways(
        DataValue::new(Bytes::from_static(b"abc")),
        &h("01 00000003 616263"),
    );
    both_ways(DataValue::absent(), &h("00 00000000"));
}

#[test]
fn stored_data_single_value_rfc6940_7() {
    both_ways_with(single(b"abc"), &h(SINGLE_ABC), |i| {
        StoredData::parse_model(i, DataModel::Single)
    });
}

#[test]
fn stored_data_value_array_entry_rfc6940_7_2_2() {
    let v = StoredDataValue::Array {
        index: 2,
        value: DataValue::new(Bytes::from_static(b"X")),
    };
    both_ways_with(v, &h("00000002 01 00000001 58"), |i| {
        StoredDataValue::parse_model(i, DataModel::Array)
    });
}

#[test]
fn stored_data_value_dictionary_entry_rfc6940_7_2_3() {
    let v = StoredDataValue::Dictionary {
        key: Bytes::from_static(b"k"),
        value: DataValue::absent(),
    };
    both_ways_with(v, &h("0001 6b 00 00000000"), |i| {
        StoredDataValue::parse_model(i, DataModel::Dictionary)
    });
}

fn store_req() -> StoreReq {
    StoreReq {
        resource: ResourceId::from_bytes(id16(0xcc)),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: 0x0a,
            generation_counter: 99,
            values: KindValues::Parsed(vec![single(b"abc")]),
        }],
    }
}

#[test]
fn store_req_rfc6940_7_4_1_1() {
    // StoreKindData = kind(4) generation(8) values<0..2^32-1>(4 + 31) = 47 = 0x2f
    let bytes = h(&format!(
        "10 {R} | 00 | 0000002f | 0000000a 0000000000000063 0000001f {SINGLE_ABC}"
    ));
    let m = models();
    both_ways_with(store_req(), &bytes, |i| StoreReq::parse_with(i, &m));
}

#[test]
fn store_req_of_an_unknown_kind_keeps_the_values_rfc6940_7_4_1_2() {
    let bytes = h(&format!(
        "10 {R} | 00 | 0000002f | 000000ff 0000000000000063 0000001f {SINGLE_ABC}"
    ));
    let m = models();
    let req = decode_all(&bytes, |i| StoreReq::parse_with(i, &m)).unwrap();
    assert_eq!(req.kind_data[0].kind, 0xff);
    assert!(matches!(req.kind_data[0].values, KindValues::Unparsed(ref b) if b.len() == 31));
    assert_eq!(req.to_bytes().unwrap().as_ref(), &bytes[..]);
}

#[test]
fn store_ans_rfc6940_7_4_1_2() {
    // StoreKindResponse = kind(4) generation_counter(8) replicas<0..2^16-1>(2 + 32) = 46
    both_ways(
        StoreAns {
            kind_responses: vec![StoreKindResponse {
                kind: 0x0a,
                generation_counter: 100,
                replicas: vec![
                    NodeId::from_bytes(id16(0xaa)),
                    NodeId::from_bytes(id16(0xbb)),
                ],
            }],
        },
        &h(&format!(
            "002e 0000000a 0000000000000064 0020 {} {}",
            "aa".repeat(16),
            "bb".repeat(16)
        )),
    );
}

#[test]
fn unknown_kinds_error_info_rfc6940_7_4_1_2() {
    // KindId unknown_kinds<0..2^8-1>
    both_ways(UnknownKinds(vec![0x10, 0x20]), &h("08 00000010 00000020"));
}

fn spec(kind: KindId, model_specifier: ModelSpecifier) -> StoredDataSpecifier {
    StoredDataSpecifier {
        kind,
        generation: 0,
        model_specifier,
    }
}

#[test]
fn stored_data_specifiers_rfc6940_7_4_2_1() {
    let m = models();
    let req = FetchReq {
        resource: ResourceId::from_bytes(id16(0xcc)),
        specifiers: vec![
            spec(0x0a, ModelSpecifier::Single),
            spec(
                0x0b,
                ModelSpecifier::Array(vec![ArrayRange {
                    first: 0,
                    last: 0xffff_ffff,
                }]),
            ),
            spec(
                0x0c,
                ModelSpecifier::Dictionary(vec![Bytes::from_static(b"k1")]),
            ),
            spec(0x0c, ModelSpecifier::Dictionary(vec![])),
        ],
    };
    // single: length 0; array: indices<..>(2 + 8); dictionary: keys<..>(2 + 2 + 2);
    // wildcard dictionary: keys<..> empty (2).
    let specs = "0000000a 0000000000000000 0000 \
                 0000000b 0000000000000000 000a 0008 00000000 ffffffff \
                 0000000c 0000000000000000 0006 0004 0002 6b31 \
                 0000000c 0000000000000000 0002 0000";
    let bytes = h(&format!("10 {R} | 004a | {specs}"));
    both_ways_with(req, &bytes, |i| FetchReq::parse_with(i, &m));
}

#[test]
fn fetch_ans_rfc6940_7_4_2_2() {
    let m = models();
    let ans = FetchAns {
        kind_responses: vec![FetchKindResponse {
            kind: 0x0a,
            generation: 7,
            values: KindValues::Parsed(vec![single(b"abc")]),
        }],
    };
    let bytes = h(&format!(
        "0000002f | 0000000a 0000000000000007 0000001f {SINGLE_ABC}"
    ));
    both_ways_with(ans, &bytes, |i| FetchAns::parse_with(i, &m));
}

#[test]
fn stat_ans_rfc6940_7_4_3_2() {
    let m = models();
    let meta = MetaData {
        exists: true,
        value_length: 3,
        hash_algorithm: 4,
        hash_value: Bytes::from_static(&[0xaa]),
    };
    let ans = StatAns {
        kind_responses: vec![StatKindResponse {
            kind: 0x0b,
            generation: 1,
            values: KindValues::Parsed(vec![StoredMetaData {
                value_length: 3,
                storage_time: 2,
                lifetime: 60,
                metadata: MetaDataValue::Array { index: 5, meta },
            }]),
        }],
    };
    // StoredMetaData = value_length(4) storage_time(8) lifetime(4) index(4) MetaData(8) = 28
    let bytes = h(
        "0000002c | 0000000b 0000000000000001 0000001c | 00000003 0000000000000002 \
                   0000003c 00000005 | 01 00000003 04 01 aa",
    );
    both_ways_with(ans, &bytes, |i| StatAns::parse_with(i, &m));
}

#[test]
fn find_req_rfc6940_7_4_4_1() {
    both_ways(
        FindReq {
            resource: ResourceId::from_bytes(id16(0xcc)),
            kinds: vec![0x0a, 0x10],
        },
        &h(&format!("10 {R} | 08 0000000a 00000010")),
    );
}

#[test]
fn find_ans_rfc6940_7_4_4_2() {
    both_ways(
        FindAns {
            results: vec![FindKindData {
                kind: 0x0a,
                closest: ResourceId::from_bytes(id16(0xcc)),
            }],
        },
        &h(&format!("0015 0000000a 10 {R}")),
    );
}
