//! The `XmppLocation` record (XEP-0415, "XmppLocation Resource Record").
//!
//! ```text
//! struct { XmppLocationType type; uint16 length; XmppLocationData data; } XmppLocation;
//! xmpp_location_address(1): opaque address<0..2^16-1>;     (a prepared bare JID)
//! xmpp_location_route(2):   uint8 priority; Destination destination_list<0..2^16-1>;
//! ```
//!
//! In the presentation language of RFC 6940 §6.3.1, which the XEP uses, `<0..2^16-1>`
//! is a variable-length vector: `address` and `destination_list` each carry their own
//! 2-byte length inside `length`, and the destination list is a sequence of
//! `Destination` values (§6.3.2.2). Bytes after the vector inside `length` are an
//! error. Types this implementation does not know are kept as bytes ("This type can
//! be extended").
//!
//! Earlier versions of xor omitted the two inner prefixes. No migration reads that
//! form: a record lives at most its lifetime (an hour by default) and every device
//! stores its own again at start and every 48 minutes, so an old record is skipped
//! by resolution as malformed until its device runs this version.

use bytes::{BufMut, Bytes, BytesMut};
use xor_overlay::id::NodeId;
use xor_overlay::wire::Destination;
use xor_overlay::wire::codec::{
    Decode, Encode, EncodeError, Res, Width, elements, invalid, opaque, put_prefixed, u8_,
};

/// `xmpp_location_address(1)`.
pub const TYPE_ADDRESS: u8 = 1;
/// `xmpp_location_route(2)`.
pub const TYPE_ROUTE: u8 = 2;

/// Where a user (or one of its devices) can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XmppLocation {
    /// "In order to contact me, dereference this XMPP address": a forward to another
    /// bare JID (prepared).
    Address(String),
    /// "In order to contact me, form a connection with this Peer".
    Route {
        /// Lower is tried first; connections to the higher values may be closed as
        /// redundant.
        priority: u8,
        /// The route to the device; the last entry is its Node-ID.
        destinations: Vec<Destination>,
    },
    /// A location type this implementation does not know.
    Unknown {
        /// `XmppLocationType`.
        kind: u8,
        /// The data bytes.
        data: Bytes,
    },
}

impl XmppLocation {
    /// A route to a single device.
    pub fn device(node: NodeId, priority: u8) -> XmppLocation {
        XmppLocation::Route {
            priority,
            destinations: vec![Destination::Node(node)],
        }
    }

    /// The device a route leads to (the terminal Node-ID).
    pub fn node(&self) -> Option<NodeId> {
        match self {
            XmppLocation::Route { destinations, .. } => {
                destinations.last().and_then(Destination::node)
            }
            _ => None,
        }
    }
}

impl Encode for XmppLocation {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            XmppLocation::Address(jid) => {
                out.put_u8(TYPE_ADDRESS);
                put_prefixed(out, Width::U16, "length", |out| {
                    put_prefixed(out, Width::U16, "address", |out| {
                        out.put_slice(jid.as_bytes());
                        Ok(())
                    })
                })
            }
            XmppLocation::Route {
                priority,
                destinations,
            } => {
                out.put_u8(TYPE_ROUTE);
                put_prefixed(out, Width::U16, "length", |out| {
                    out.put_u8(*priority);
                    put_prefixed(out, Width::U16, "destination_list", |out| {
                        destinations.iter().try_for_each(|d| d.encode(out))
                    })
                })
            }
            XmppLocation::Unknown { kind, data } => {
                out.put_u8(*kind);
                put_prefixed(out, Width::U16, "length", |out| {
                    out.put_slice(data);
                    Ok(())
                })
            }
        }
    }
}

impl Decode for XmppLocation {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (after_type, kind) = u8_(i, "type")?;
        let (rest, data) = opaque(after_type, Width::U16, "length")?;
        let loc = match kind {
            0 => return invalid(i, "type", "XmppLocationType 0 is not defined"),
            TYPE_ADDRESS => {
                let (after, address) = opaque(data, Width::U16, "address")?;
                if !after.is_empty() {
                    return invalid(after, "length", "bytes after the address");
                }
                match std::str::from_utf8(address) {
                    Ok(s) if !s.is_empty() => XmppLocation::Address(s.to_owned()),
                    _ => {
                        return invalid(
                            address,
                            "address",
                            "an address is a non-empty UTF-8 bare JID",
                        );
                    }
                }
            }
            TYPE_ROUTE => {
                let (after_priority, priority) = u8_(data, "priority")?;
                let (after, list) = opaque(after_priority, Width::U16, "destination_list")?;
                if !after.is_empty() {
                    return invalid(after, "length", "bytes after the destination list");
                }
                let destinations = elements(list, "destination_list", Destination::parse)?;
                if !matches!(destinations.last(), Some(Destination::Node(_))) {
                    return invalid(
                        list,
                        "destination_list",
                        "a route ends with the device's Node-ID",
                    );
                }
                XmppLocation::Route {
                    priority,
                    destinations,
                }
            }
            _ => XmppLocation::Unknown {
                kind,
                data: Bytes::copy_from_slice(data),
            },
        };
        Ok((rest, loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn route_bytes_xep0415() {
        // type route(2), length 21, priority 7, destination_list length 18:
        // Destination node(1) length 16 + id
        let loc = XmppLocation::device(NodeId(0x0102), 7);
        let bytes = h("02 0015 07 0012 01 10 00000000000000000000000000000102");
        assert_eq!(loc.to_bytes().unwrap().as_ref(), &bytes[..]);
        assert_eq!(XmppLocation::decode(&bytes).unwrap(), loc);
        assert_eq!(loc.node(), Some(NodeId(0x0102)));
    }

    #[test]
    fn address_bytes_xep0415() {
        // type address(1), length 20, address length 18
        let loc = XmppLocation::Address("romeo@montague.lit".into());
        let mut bytes = h("01 0014 0012");
        bytes.extend_from_slice(b"romeo@montague.lit");
        assert_eq!(loc.to_bytes().unwrap().as_ref(), &bytes[..]);
        assert_eq!(XmppLocation::decode(&bytes).unwrap(), loc);
    }

    #[test]
    fn unknown_types_are_kept() {
        let bytes = h("09 0002 abcd");
        let loc = XmppLocation::decode(&bytes).unwrap();
        assert_eq!(
            loc,
            XmppLocation::Unknown {
                kind: 9,
                data: Bytes::from_static(&[0xab, 0xcd])
            }
        );
        assert_eq!(loc.to_bytes().unwrap().as_ref(), &bytes[..]);
    }

    #[test]
    fn a_route_through_a_peer_lists_every_hop() {
        // A client's route (RFC 6940 §4.2.1): its admitting peer, then the client.
        let loc = XmppLocation::Route {
            priority: 3,
            destinations: vec![
                Destination::Node(NodeId(0xaa)),
                Destination::Node(NodeId(0xbb)),
            ],
        };
        let bytes = h(
            "02 0027 03 0024 01 10 000000000000000000000000000000aa 01 10 000000000000000000000000000000bb",
        );
        assert_eq!(loc.to_bytes().unwrap().as_ref(), &bytes[..]);
        assert_eq!(XmppLocation::decode(&bytes).unwrap(), loc);
        assert_eq!(loc.node(), Some(NodeId(0xbb)));
    }

    #[test]
    fn malformed_locations_are_errors() {
        let field = |s: &str| XmppLocation::decode(&h(s)).unwrap_err().field;
        // A destination cut short inside its list.
        assert_eq!(field("02 0006 07 0003 01 10 00"), "destination_data");
        // An empty destination list: a route needs the device.
        assert_eq!(field("02 0003 07 0000"), "destination_list");
        // The list's length runs past `length`.
        assert_eq!(field("02 0003 07 0012"), "destination_list");
        // The earlier form without the inner prefix.
        assert_eq!(
            field("02 0013 07 01 10 00000000000000000000000000000102"),
            "destination_list"
        );
        // Bytes after the vector inside `length`.
        assert_eq!(
            field("02 0016 07 0012 01 10 00000000000000000000000000000102 ff"),
            "length"
        );
        assert_eq!(field("01 0002 0000"), "address");
        assert_eq!(field("01 0004 0001 41 42"), "length");
        assert_eq!(field("02 00ff 07"), "length");
    }
}
