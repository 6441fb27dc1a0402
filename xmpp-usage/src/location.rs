//! The `XmppLocation` record (XEP-0415, "XmppLocation Resource Record").
//!
//! ```text
//! struct { XmppLocationType type; uint16 length; XmppLocationData data; } XmppLocation;
//! xmpp_location_address(1): opaque address;                 (a prepared bare JID)
//! xmpp_location_route(2):   uint8 priority; Destination destination_list;
//! ```
//!
//! The XEP gives `address` and `destination_list` no length prefix of their own: each
//! fills the rest of `length`, and the destination list is a sequence of `Destination`
//! values as in the RELOAD URI (RFC 6940 §14.15). Types this implementation does not
//! know are kept as bytes ("This type can be extended").

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
                    out.put_slice(jid.as_bytes());
                    Ok(())
                })
            }
            XmppLocation::Route {
                priority,
                destinations,
            } => {
                out.put_u8(TYPE_ROUTE);
                put_prefixed(out, Width::U16, "length", |out| {
                    out.put_u8(*priority);
                    destinations.iter().try_for_each(|d| d.encode(out))
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
            TYPE_ADDRESS => match std::str::from_utf8(data) {
                Ok(s) if !s.is_empty() => XmppLocation::Address(s.to_owned()),
                _ => return invalid(data, "address", "an address is a non-empty UTF-8 bare JID"),
            },
            TYPE_ROUTE => {
                let (list, priority) = u8_(data, "priority")?;
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
        // type route(2), length 19, priority 7, Destination node(1) length 16 + id
        let loc = XmppLocation::device(NodeId(0x0102), 7);
        let bytes = h("02 0013 07 01 10 00000000000000000000000000000102");
        assert_eq!(loc.to_bytes().unwrap().as_ref(), &bytes[..]);
        assert_eq!(XmppLocation::decode(&bytes).unwrap(), loc);
        assert_eq!(loc.node(), Some(NodeId(0x0102)));
    }

    #[test]
    fn address_bytes_xep0415() {
        let loc = XmppLocation::Address("romeo@montague.lit".into());
        let mut bytes = h("01 0012");
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
    fn malformed_locations_are_errors() {
        assert_eq!(
            XmppLocation::decode(&h("02 0004 07 01 10 00"))
                .unwrap_err()
                .field,
            "destination_data"
        );
        assert_eq!(
            XmppLocation::decode(&h("02 0001 07")).unwrap_err().field,
            "destination_list"
        );
        assert_eq!(
            XmppLocation::decode(&h("01 0000")).unwrap_err().field,
            "address"
        );
        assert_eq!(
            XmppLocation::decode(&h("02 00ff 07")).unwrap_err().field,
            "length"
        );
    }
}
