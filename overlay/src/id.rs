//! Node-IDs, Resource-IDs and the overlay hash.
//!
//! CHORD-RELOAD uses 128-bit identifiers (§10.2): a `NodeId` is 16 bytes on the wire
//! (`NodeIdLength` = 16, §6.3.1.1) and a `ResourceId` is an `opaque<0..2^8-1>` that
//! this overlay requires to be 16 bytes long. Both live on the same ring of size
//! 2^128, where all arithmetic wraps.

use std::fmt;

use bytes::{BufMut, BytesMut};
use sha1::{Digest, Sha1};

use crate::wire::codec::{Decode, Encode, EncodeError, Res, Width, array, invalid, opaque};

/// Length of a Node-ID (and of a Chord Resource-ID) in bytes.
pub const ID_LEN: usize = 16;

macro_rules! ring_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub u128);

        impl $name {
            /// The identifier from its 16 big-endian bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(u128::from_be_bytes(bytes))
            }

            /// The 16 big-endian bytes of the identifier.
            pub const fn to_be_bytes(self) -> [u8; ID_LEN] {
                self.0.to_be_bytes()
            }

            /// `self + n` on the ring (mod 2^128).
            pub const fn wrapping_add(self, n: u128) -> Self {
                Self(self.0.wrapping_add(n))
            }

            /// Parses 32 hexadecimal digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut bytes = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut bytes).ok()?;
                Some(Self::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:032x})", stringify!($name), self.0)
            }
        }
    };
}

ring_id! {
    /// A peer's position on the ring (§6.3.1.1).
    NodeId
}

ring_id! {
    /// A resource's position on the ring: the overlay hash of its Resource Name (§5.2).
    ResourceId
}

impl NodeId {
    /// The wildcard Node-ID: all ones (§6.1.1 — "the wildcard Node-ID").
    pub const WILDCARD: NodeId = NodeId(u128::MAX);

    /// The Resource-ID at the same position, e.g. for routing to `n + 1` (§10.5).
    pub const fn as_resource(self) -> ResourceId {
        ResourceId(self.0)
    }
}

impl ResourceId {
    /// The overlay hash of a Resource Name (§10.2).
    pub fn of_name(name: &[u8]) -> Self {
        overlay_hash(name)
    }

    /// The Node-ID at the same position.
    pub const fn as_node(self) -> NodeId {
        NodeId(self.0)
    }
}

/// The CHORD-RELOAD hash: SHA-1 truncated to its most significant 128 bits (§10.2).
pub fn overlay_hash(data: &[u8]) -> ResourceId {
    let digest = Sha1::digest(data);
    let mut top = [0u8; ID_LEN];
    top.copy_from_slice(&digest[..ID_LEN]);
    ResourceId::from_bytes(top)
}

/// The forwarding header's `overlay` field: the lower 32 bits of SHA-1 of the overlay
/// name (§6.3.2).
pub fn overlay_field(overlay_name: &str) -> u32 {
    let digest = Sha1::digest(overlay_name.as_bytes());
    u32::from_be_bytes([digest[16], digest[17], digest[18], digest[19]])
}

/// Clockwise distance from `from` to `to` on the ring.
pub const fn distance(from: u128, to: u128) -> u128 {
    to.wrapping_sub(from)
}

/// Whether `x` lies in the half-open ring interval `(a, b]`. When `a == b` the interval
/// is the whole ring (a single peer is responsible for everything).
pub const fn in_interval_open_closed(x: u128, a: u128, b: u128) -> bool {
    if a == b {
        true
    } else {
        distance(a, x) != 0 && distance(a, x) <= distance(a, b)
    }
}

/// Whether `x` lies in the open ring interval `(a, b)`. When `a == b` this is the whole
/// ring except `a`.
pub const fn in_interval_open(x: u128, a: u128, b: u128) -> bool {
    if a == b {
        x != a
    } else {
        distance(a, x) != 0 && distance(a, x) < distance(a, b)
    }
}

impl Encode for NodeId {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_slice(&self.to_be_bytes());
        Ok(())
    }
}

impl Decode for NodeId {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, b) = array::<ID_LEN>(i, "node_id")?;
        Ok((rest, NodeId::from_bytes(b)))
    }
}

/// `ResourceId resource_id<0..2^8-1>` restricted to the 16 bytes CHORD-RELOAD uses.
impl Encode for ResourceId {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(ID_LEN as u8);
        out.put_slice(&self.to_be_bytes());
        Ok(())
    }
}

impl Decode for ResourceId {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, b) = opaque(i, Width::U8, "resource_id")?;
        let Ok(bytes) = <[u8; ID_LEN]>::try_from(b) else {
            return invalid(
                i,
                "resource_id",
                "CHORD-RELOAD Resource-IDs are 16 bytes (§10.2)",
            );
        };
        Ok((rest, ResourceId::from_bytes(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_hash_is_sha1_top_128_bits_rfc6940_10_2() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d (RFC 3174 test 1).
        assert_eq!(
            overlay_hash(b"abc").to_be_bytes(),
            hex_literal("a9993e364706816aba3e25717850c26c")
        );
    }

    #[test]
    fn overlay_field_is_sha1_low_32_bits_rfc6940_6_3_2() {
        assert_eq!(overlay_field("abc"), 0x9cd0_d89d);
    }

    #[test]
    fn intervals_wrap_around_the_ring() {
        assert!(in_interval_open_closed(5, 1, 5));
        assert!(!in_interval_open_closed(1, 1, 5));
        assert!(in_interval_open_closed(0, u128::MAX - 1, 3));
        assert!(in_interval_open_closed(42, 7, 7));
        assert!(in_interval_open(2, 1, 5));
        assert!(!in_interval_open(5, 1, 5));
        assert!(!in_interval_open(7, 7, 7));
        assert!(in_interval_open(8, 7, 7));
    }

    #[test]
    fn resource_id_of_other_length_is_rejected() {
        let err = ResourceId::decode(&[3, b'F', b'O', b'O']).unwrap_err();
        assert_eq!(err.field, "resource_id");
        assert_eq!(err.offset, 0);
    }

    fn hex_literal(s: &str) -> [u8; 16] {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).unwrap();
        b
    }
}
