//! Codec tests. Byte vectors are computed by hand from the RFC 6940 struct definitions
//! (the section is cited on each test) and checked in both directions; `roundtrip`
//! holds the generated (proptest) round trips and `bad_input` the malformed cases.

use std::fmt::Debug;

use super::codec::{Decode, Encode};

mod attach;
mod bad_input;
mod framing;
mod header;
mod message;
mod roundtrip;
mod security;
mod storage;
pub(crate) mod strategies;
mod topology;

/// Bytes from hex with whitespace and `|` separators allowed.
pub(crate) fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).expect("test vector is hex")
}

/// 16 bytes of `b`.
pub(crate) fn id16(b: u8) -> [u8; 16] {
    [b; 16]
}

/// Asserts `value` encodes to exactly `bytes` and `bytes` decodes to exactly `value`.
pub(crate) fn both_ways<T: Encode + Decode + PartialEq + Debug>(value: T, bytes: &[u8]) {
    assert_eq!(
        hex::encode(value.to_bytes().unwrap()),
        hex::encode(bytes),
        "encoding"
    );
    assert_eq!(T::decode(bytes).unwrap(), value, "decoding");
}
