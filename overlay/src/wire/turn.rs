//! The TURN Server Usage's stored value (RFC 6940 §9): where a peer serves TURN.
//!
//! ```text
//! struct {
//!   uint8                   iteration;
//!   IpAddressPort           server_address;
//! } TurnServer;
//! ```
//!
//! Stored under Kind TURN-SERVICE (0x2, §14.6) at `H(Node-ID || d)` for every `d`
//! from 1 to `turn-density`: a single value, NODE-MULTIPLE access control (§7.3.4).

use bytes::{BufMut, BytesMut};

use super::codec::{Decode, Encode, EncodeError, Res, u8_};
use super::{IpAddressPort, KindId};

/// Kind-ID of TURN-SERVICE (§9, IANA registry §14.6).
pub const TURN_SERVICE: KindId = 0x2;
/// `max-node-multiple` the RFC gives the Kind: "NODE-MULTIPLE, with a maximum
/// iteration of counter 20" (§9).
pub const MAX_ITERATION: u8 = 20;

/// `TurnServer` (§9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// The `d` of the Resource Name `Node-ID || d`.
    pub iteration: u8,
    /// Where the TURN server can be contacted.
    pub server_address: IpAddressPort,
}

impl Encode for TurnServer {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.iteration);
        self.server_address.encode(out)
    }
}

impl Decode for TurnServer {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (i, iteration) = u8_(i, "iteration")?;
        let (i, server_address) = IpAddressPort::parse(i)?;
        Ok((
            i,
            TurnServer {
                iteration,
                server_address,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn turn_server_bytes_rfc6940_9() {
        let t = TurnServer {
            iteration: 3,
            server_address: IpAddressPort::Addr(SocketAddr::from(([203, 0, 113, 7], 3478))),
        };
        let bytes = t.to_bytes().unwrap();
        // iteration, then IpAddressPort (§6.3.1.1): type ipv4_address(1), length 6,
        // the address, the port.
        assert_eq!(
            bytes.as_ref(),
            [3, 1, 6, 203, 0, 113, 7, 0x0d, 0x96].as_slice()
        );
        assert_eq!(TurnServer::decode(&bytes).unwrap(), t);
        // A truncated address and trailing bytes are refused.
        assert!(TurnServer::decode(&bytes[..8]).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(TurnServer::decode(&long).is_err());
    }
}
