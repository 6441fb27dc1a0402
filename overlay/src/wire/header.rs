//! The forwarding header (§6.3.2): destinations, via lists, forwarding options.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, DecodeErrorKind, Encode, EncodeError, Res, Width, elements, exact, fail, invalid,
    opaque, opaque_bytes, put_opaque, put_prefixed, take, u8_, u16_, u32_, u64_,
};
use crate::id::{ID_LEN, NodeId, ResourceId};

/// `relo_token`: "RELO" with the high bit of the first byte set (§6.3.2).
pub const RELO_TOKEN: u32 = 0xd245_4c4f;
/// `version`: RELOAD 1.0 times ten (§6.3.2).
pub const VERSION: u8 = 0x0a;
/// Size of the fixed part of the forwarding header, before the three lists.
pub const FIXED_HEADER_LEN: usize = 38;

/// One entry of a destination or via list (§6.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `node(1)`: a Node-ID.
    Node(NodeId),
    /// `resource(2)`: a Resource-ID; only ever the last entry of a destination list.
    Resource(ResourceId),
    /// `opaque_id_type(3)`: an id meaningful only to the peer that made it.
    Opaque(Bytes),
    /// The 2-byte compressed form of an opaque id (top bit set on the wire); holds the
    /// low 15 bits.
    Compressed(u16),
    /// A destination type this implementation does not know, kept so it can be forwarded.
    Unknown {
        /// The `DestinationType` (4..=127).
        kind: u8,
        /// The `destination_data` bytes.
        data: Bytes,
    },
}

impl Destination {
    /// The Node-ID, if this is a node destination.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Destination::Node(n) => Some(*n),
            _ => None,
        }
    }
}

impl Encode for Destination {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Destination::Compressed(v) => {
                out.put_u16(0x8000 | (v & 0x7fff));
                Ok(())
            }
            Destination::Node(id) => {
                out.put_u8(1);
                out.put_u8(ID_LEN as u8);
                id.encode(out)
            }
            Destination::Resource(id) => {
                out.put_u8(2);
                put_prefixed(out, Width::U8, "destination_data", |out| id.encode(out))
            }
            Destination::Opaque(data) => {
                out.put_u8(3);
                put_prefixed(out, Width::U8, "destination_data", |out| {
                    put_opaque(out, Width::U8, "opaque_id", data)
                })
            }
            Destination::Unknown { kind, data } => {
                out.put_u8(*kind);
                put_opaque(out, Width::U8, "destination_data", data)
            }
        }
    }
}

impl Decode for Destination {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (_, first) = u8_(i, "destination_type")?;
        if first & 0x80 != 0 {
            let (rest, v) = u16_(i, "opaque_id")?;
            return Ok((rest, Destination::Compressed(v & 0x7fff)));
        }
        let (after_type, kind) = u8_(i, "destination_type")?;
        let (rest, data) = opaque(after_type, Width::U8, "destination_data")?;
        let dest = match kind {
            0 => return invalid(i, "destination_type", "invalidDestinationType(0)"),
            1 => {
                if data.len() != ID_LEN {
                    return invalid(
                        after_type,
                        "destination_data",
                        "a node destination is 16 bytes",
                    );
                }
                Destination::Node(exact(data, "node_id", NodeId::parse)?)
            }
            2 => Destination::Resource(exact(data, "resource_id", ResourceId::parse)?),
            3 => Destination::Opaque(exact(data, "opaque_id", |d| {
                opaque_bytes(d, Width::U8, "opaque_id")
            })?),
            _ => Destination::Unknown {
                kind,
                data: Bytes::copy_from_slice(data),
            },
        };
        Ok((rest, dest))
    }
}

/// The forwarding option flags (§6.3.2.3).
pub mod option_flags {
    /// A forwarding peer that does not understand the option must reject the request.
    pub const FORWARD_CRITICAL: u8 = 0x01;
    /// The responding node must understand the option.
    pub const DESTINATION_CRITICAL: u8 = 0x02;
    /// The responder copies the option into the response.
    pub const RESPONSE_COPY: u8 = 0x04;
}

/// A forwarding option (§6.3.2.3). No option types are defined by RFC 6940 besides the
/// experimental one, so the value is always kept raw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardingOption {
    /// `ForwardingOptionType`.
    pub kind: u8,
    /// See [`option_flags`].
    pub flags: u8,
    /// The option value.
    pub value: Bytes,
}

impl Encode for ForwardingOption {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.kind);
        out.put_u8(self.flags);
        put_opaque(out, Width::U16, "option", &self.value)
    }
}

impl Decode for ForwardingOption {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u8_(i, "option_type")?;
        if kind == 0 {
            return invalid(i, "option_type", "invalidForwardingOptionType(0)");
        }
        let (rest, flags) = u8_(rest, "flags")?;
        let (rest, value) = opaque_bytes(rest, Width::U16, "option")?;
        Ok((rest, ForwardingOption { kind, flags, value }))
    }
}

/// The `fragment` field (§6.3.2, §6.7): high bit always set, then the last-fragment bit,
/// six reserved bits and a 24-bit offset. Kept as the raw 32-bit value so reserved bits
/// survive forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment(u32);

impl Fragment {
    /// An unfragmented message: last fragment, offset 0 (`0xC0000000`).
    pub const WHOLE: Fragment = Fragment(0xC000_0000);

    /// A fragment at `offset` (bytes after the forwarding header), `last` if final.
    pub fn new(last: bool, offset: u32) -> Fragment {
        Fragment(0x8000_0000 | if last { 0x4000_0000 } else { 0 } | (offset & 0x00ff_ffff))
    }

    /// Whether this is the last (or only) fragment.
    pub fn is_last(self) -> bool {
        self.0 & 0x4000_0000 != 0
    }

    /// The offset of this fragment's data from the end of the forwarding header.
    pub fn offset(self) -> u32 {
        self.0 & 0x00ff_ffff
    }

    /// Whether this fragment is a complete message by itself.
    pub fn is_whole(self) -> bool {
        self.is_last() && self.offset() == 0
    }

    /// The raw field.
    pub fn bits(self) -> u32 {
        self.0
    }
}

/// The forwarding header (§6.3.2). The `length` field is not stored: it is computed from
/// the message when encoding and checked against it when decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingHeader {
    /// Lower 32 bits of SHA-1 of the overlay name ([`crate::id::overlay_field`]).
    pub overlay: u32,
    /// The sender's configuration document sequence number (§6.3.2.1).
    pub configuration_sequence: u16,
    /// Hops left before the message is discarded.
    pub ttl: u8,
    /// Fragmentation state (§6.7).
    pub fragment: Fragment,
    /// Random transaction id; responses reuse the request's (§6.3.2).
    pub transaction_id: u64,
    /// Largest response the requester accepts, 0 for no limit.
    pub max_response_length: u32,
    /// Peers the message has passed through.
    pub via_list: Vec<Destination>,
    /// Where the message goes; the first entry is the next target.
    pub destination_list: Vec<Destination>,
    /// Forwarding options.
    pub options: Vec<ForwardingOption>,
}

impl ForwardingHeader {
    /// Encodes the header for a message whose bytes after the header are `payload_len`
    /// long.
    pub fn encode_with_payload_len(
        &self,
        out: &mut BytesMut,
        payload_len: usize,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u32(RELO_TOKEN);
        out.put_u32(self.overlay);
        out.put_u16(self.configuration_sequence);
        out.put_u8(VERSION);
        out.put_u8(self.ttl);
        out.put_u32(self.fragment.0);
        let length_at = out.len();
        out.put_u32(0);
        out.put_u64(self.transaction_id);
        out.put_u32(self.max_response_length);
        let lengths_at = out.len();
        out.put_bytes(0, 6);
        let mut lens = [0u16; 3];
        for (n, (field, items)) in [
            ("via_list", encode_all(&self.via_list)?),
            ("destination_list", encode_all(&self.destination_list)?),
            ("options", encode_all(&self.options)?),
        ]
        .into_iter()
        .enumerate()
        {
            lens[n] = u16::try_from(items.len()).map_err(|_| EncodeError {
                field,
                len: items.len(),
                max: 0xffff,
            })?;
            out.put_slice(&items);
        }
        for (n, len) in lens.iter().enumerate() {
            out[lengths_at + 2 * n..lengths_at + 2 * n + 2].copy_from_slice(&len.to_be_bytes());
        }
        let total = out.len() - start + payload_len;
        let total = u32::try_from(total).map_err(|_| EncodeError {
            field: "length",
            len: total,
            max: u32::MAX as usize,
        })?;
        out[length_at..length_at + 4].copy_from_slice(&total.to_be_bytes());
        Ok(())
    }

    /// The encoded size of this header.
    pub fn encoded_len(&self) -> usize {
        fn sum<T: Encode>(items: &[T]) -> usize {
            encode_all(items).map(|b| b.len()).unwrap_or(0)
        }
        FIXED_HEADER_LEN + sum(&self.via_list) + sum(&self.destination_list) + sum(&self.options)
    }

    /// Parses a header, returning it with the declared total `length` of the message.
    pub fn parse_with_length(i: &[u8]) -> Res<'_, (ForwardingHeader, u32)> {
        let (rest, token) = u32_(i, "relo_token")?;
        if token != RELO_TOKEN {
            return invalid(
                i,
                "relo_token",
                "not a RELOAD message: relo_token must be 0xd2454c4f",
            );
        }
        let (rest, overlay) = u32_(rest, "overlay")?;
        let (rest, configuration_sequence) = u16_(rest, "configuration_sequence")?;
        let (after_version, version) = u8_(rest, "version")?;
        if version != VERSION {
            return invalid(
                rest,
                "version",
                "unsupported RELOAD version: only 1.0 (0x0a) is accepted",
            );
        }
        let (rest, ttl) = u8_(after_version, "ttl")?;
        let (after_fragment, fragment) = u32_(rest, "fragment")?;
        if fragment & 0x8000_0000 == 0 {
            return invalid(
                rest,
                "fragment",
                "the high bit of fragment must be set (§6.7)",
            );
        }
        let (rest, length) = u32_(after_fragment, "length")?;
        let (rest, transaction_id) = u64_(rest, "transaction_id")?;
        let (rest, max_response_length) = u32_(rest, "max_response_length")?;
        let (rest, via_len) = u16_(rest, "via_list_length")?;
        let (rest, dest_len) = u16_(rest, "destination_list_length")?;
        let (rest, opt_len) = u16_(rest, "options_length")?;
        let (rest, via_list) = sized_list(rest, via_len, "via_list", Destination::parse)?;
        let (rest, destination_list) =
            sized_list(rest, dest_len, "destination_list", Destination::parse)?;
        let (rest, options) = sized_list(rest, opt_len, "options", ForwardingOption::parse)?;
        let header = ForwardingHeader {
            overlay,
            configuration_sequence,
            ttl,
            fragment: Fragment(fragment),
            transaction_id,
            max_response_length,
            via_list,
            destination_list,
            options,
        };
        Ok((rest, (header, length)))
    }
}

fn encode_all<T: Encode>(items: &[T]) -> Result<BytesMut, EncodeError> {
    let mut buf = BytesMut::new();
    for item in items {
        item.encode(&mut buf)?;
    }
    Ok(buf)
}

/// A list whose byte length was given earlier in the header (§6.3.2's `via_list_length`
/// and friends).
fn sized_list<'a, T>(
    i: &'a [u8],
    len: u16,
    field: &'static str,
    element: impl FnMut(&'a [u8]) -> Res<'a, T>,
) -> Res<'a, Vec<T>> {
    let len = len as usize;
    if len > i.len() {
        return fail(
            i,
            field,
            DecodeErrorKind::LengthOverrun {
                declared: len,
                available: i.len(),
            },
        );
    }
    let (rest, region) = take(i, len, field)?;
    Ok((rest, elements(region, field, element)?))
}

/// A destination list encoded without any length prefix, as in the RELOAD URI
/// (§14.15).
pub fn encode_destination_list(list: &[Destination]) -> Result<Bytes, EncodeError> {
    encode_all(list).map(BytesMut::freeze)
}

/// Parses a whole byte string as a destination list without a prefix (§14.15).
pub fn decode_destination_list(bytes: &[u8]) -> Result<Vec<Destination>, super::DecodeError> {
    super::codec::decode_all(bytes, |i| {
        Ok((
            &i[i.len()..],
            elements(i, "destination_list", Destination::parse)?,
        ))
    })
}
