//! Attach and AppAttach (§6.5.1, §6.5.2): ICE candidates and connection parameters.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, Encode, EncodeError, Res, Width, array, boolean, exact, invalid, list, opaque,
    opaque_bytes, put_list, put_opaque, u8_, u16_, u32_,
};

/// `IpAddressPort` (§6.3.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IpAddressPort {
    /// `ipv4_address(1)` or `ipv6_address(2)`.
    Addr(SocketAddr),
    /// An address type this implementation does not know, kept raw.
    Unknown {
        /// `AddressType`.
        kind: u8,
        /// The bytes after the length.
        data: Bytes,
    },
}

impl Encode for IpAddressPort {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            IpAddressPort::Addr(SocketAddr::V4(a)) => {
                out.put_u8(1);
                out.put_u8(6);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
            IpAddressPort::Addr(SocketAddr::V6(a)) => {
                out.put_u8(2);
                out.put_u8(18);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
            IpAddressPort::Unknown { kind, data } => {
                out.put_u8(*kind);
                put_opaque(out, Width::U8, "addr_port", data)?;
            }
        }
        Ok(())
    }
}

impl Decode for IpAddressPort {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (after_type, kind) = u8_(i, "address_type")?;
        let (rest, data) = opaque(after_type, Width::U8, "addr_port")?;
        let addr = match kind {
            0 => return invalid(i, "address_type", "invalidAddressType(0)"),
            1 => exact(data, "v4addr_port", |d| {
                let (d, ip) = array::<4>(d, "addr")?;
                let (d, port) = u16_(d, "port")?;
                Ok((
                    d,
                    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)),
                ))
            })?,
            2 => exact(data, "v6addr_port", |d| {
                let (d, ip) = array::<16>(d, "addr")?;
                let (d, port) = u16_(d, "port")?;
                Ok((
                    d,
                    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)),
                ))
            })?,
            _ => {
                return Ok((
                    rest,
                    IpAddressPort::Unknown {
                        kind,
                        data: Bytes::copy_from_slice(data),
                    },
                ));
            }
        };
        Ok((rest, IpAddressPort::Addr(addr)))
    }
}

/// `OverlayLinkType` values (§6.5.1.1, registry §14.10).
pub mod link_type {
    /// DTLS over UDP with Simple Reliability, with ICE.
    pub const DTLS_UDP_SR: u8 = 1;
    /// DTLS over UDP with Simple Reliability, no ICE.
    pub const DTLS_UDP_SR_NO_ICE: u8 = 3;
    /// TLS over TCP with the framing header, no ICE: what this implementation speaks.
    pub const TLS_TCP_FH_NO_ICE: u8 = 4;
}

/// `CandType` and the related address that comes with it (§6.5.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CandType {
    /// `host(1)`.
    Host,
    /// `srflx(2)` with its `rel_addr_port`.
    Srflx(IpAddressPort),
    /// `relay(4)` with its `rel_addr_port`.
    Relay(IpAddressPort),
}

/// `IceExtension` (§6.5.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IceExtension {
    /// Extension name.
    pub name: Bytes,
    /// Extension value.
    pub value: Bytes,
}

impl Encode for IceExtension {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_opaque(out, Width::U16, "name", &self.name)?;
        put_opaque(out, Width::U16, "value", &self.value)
    }
}

impl Decode for IceExtension {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, name) = opaque_bytes(i, Width::U16, "name")?;
        let (rest, value) = opaque_bytes(rest, Width::U16, "value")?;
        Ok((rest, IceExtension { name, value }))
    }
}

/// `IceCandidate` (§6.5.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IceCandidate {
    /// Where the candidate listens.
    pub addr_port: IpAddressPort,
    /// The overlay link protocol ([`link_type`]).
    pub overlay_link: u8,
    /// ICE foundation.
    pub foundation: Bytes,
    /// ICE priority.
    pub priority: u32,
    /// Candidate type and, for srflx/relay, the related address.
    pub cand_type: CandType,
    /// ICE extensions.
    pub extensions: Vec<IceExtension>,
}

impl IceCandidate {
    /// A no-ICE host candidate for a TLS/TCP listener (§6.6.5: "a passive candidate
    /// MUST be provided").
    pub fn tls_host(addr: SocketAddr) -> IceCandidate {
        IceCandidate {
            addr_port: IpAddressPort::Addr(addr),
            overlay_link: link_type::TLS_TCP_FH_NO_ICE,
            foundation: Bytes::from_static(b"1"),
            priority: 0x7e00_00ff,
            cand_type: CandType::Host,
            extensions: Vec::new(),
        }
    }

    /// The socket address, if the address type is known.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.addr_port {
            IpAddressPort::Addr(a) => Some(a),
            IpAddressPort::Unknown { .. } => None,
        }
    }
}

impl Encode for IceCandidate {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.addr_port.encode(out)?;
        out.put_u8(self.overlay_link);
        put_opaque(out, Width::U8, "foundation", &self.foundation)?;
        out.put_u32(self.priority);
        match &self.cand_type {
            CandType::Host => out.put_u8(1),
            CandType::Srflx(rel) => {
                out.put_u8(2);
                rel.encode(out)?;
            }
            CandType::Relay(rel) => {
                out.put_u8(4);
                rel.encode(out)?;
            }
        }
        put_list(out, Width::U16, "extensions", &self.extensions)
    }
}

impl Decode for IceCandidate {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, addr_port) = IpAddressPort::parse(i)?;
        let (after_link, overlay_link) = u8_(rest, "overlay_link")?;
        if overlay_link == 0 {
            return invalid(rest, "overlay_link", "invalidOverlayLinkType(0)");
        }
        let (rest, foundation) = opaque_bytes(after_link, Width::U8, "foundation")?;
        let (rest, priority) = u32_(rest, "priority")?;
        let (after_type, kind) = u8_(rest, "cand_type")?;
        let (rest, cand_type) = match kind {
            1 => (after_type, CandType::Host),
            2 => IpAddressPort::parse(after_type).map(|(r, a)| (r, CandType::Srflx(a)))?,
            4 => IpAddressPort::parse(after_type).map(|(r, a)| (r, CandType::Relay(a)))?,
            _ => {
                return invalid(
                    rest,
                    "cand_type",
                    "CandType must be host(1), srflx(2) or relay(4)",
                );
            }
        };
        let (rest, extensions) = list(rest, Width::U16, "extensions", IceExtension::parse)?;
        Ok((
            rest,
            IceCandidate {
                addr_port,
                overlay_link,
                foundation,
                priority,
                cand_type,
                extensions,
            },
        ))
    }
}

/// `AttachReqAns` (§6.5.1.1): the body of both Attach requests and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachReqAns {
    /// ICE username fragment.
    pub ufrag: Bytes,
    /// ICE password.
    pub password: Bytes,
    /// "passive" for the offerer, "active" for the answerer (RFC 4145).
    pub role: Bytes,
    /// ICE candidates.
    pub candidates: Vec<IceCandidate>,
    /// Ask the other side to send an Update after connecting.
    pub send_update: bool,
}

impl Encode for AttachReqAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_opaque(out, Width::U8, "ufrag", &self.ufrag)?;
        put_opaque(out, Width::U8, "password", &self.password)?;
        put_opaque(out, Width::U8, "role", &self.role)?;
        put_list(out, Width::U16, "candidates", &self.candidates)?;
        out.put_u8(self.send_update as u8);
        Ok(())
    }
}

impl Decode for AttachReqAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, ufrag) = opaque_bytes(i, Width::U8, "ufrag")?;
        let (rest, password) = opaque_bytes(rest, Width::U8, "password")?;
        let (rest, role) = opaque_bytes(rest, Width::U8, "role")?;
        let (rest, candidates) = list(rest, Width::U16, "candidates", IceCandidate::parse)?;
        let (rest, send_update) = boolean(rest, "send_update")?;
        Ok((
            rest,
            AttachReqAns {
                ufrag,
                password,
                role,
                candidates,
                send_update,
            },
        ))
    }
}

/// `AppAttachReq` / `AppAttachAns` (§6.5.2): identical structures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAttach {
    /// ICE username fragment.
    pub ufrag: Bytes,
    /// ICE password.
    pub password: Bytes,
    /// The Application-ID (§14.5), e.g. 5222 for XMPP.
    pub application: u16,
    /// RFC 4145 role.
    pub role: Bytes,
    /// ICE candidates.
    pub candidates: Vec<IceCandidate>,
}

impl Encode for AppAttach {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_opaque(out, Width::U8, "ufrag", &self.ufrag)?;
        put_opaque(out, Width::U8, "password", &self.password)?;
        out.put_u16(self.application);
        put_opaque(out, Width::U8, "role", &self.role)?;
        put_list(out, Width::U16, "candidates", &self.candidates)
    }
}

impl Decode for AppAttach {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, ufrag) = opaque_bytes(i, Width::U8, "ufrag")?;
        let (rest, password) = opaque_bytes(rest, Width::U8, "password")?;
        let (rest, application) = u16_(rest, "application")?;
        let (rest, role) = opaque_bytes(rest, Width::U8, "role")?;
        let (rest, candidates) = list(rest, Width::U16, "candidates", IceCandidate::parse)?;
        Ok((
            rest,
            AppAttach {
                ufrag,
                password,
                application,
                role,
                candidates,
            },
        ))
    }
}
