//! Topology and maintenance bodies: Probe, Join, Leave, Update, RouteQuery (§6.4.2) with
//! their CHORD-RELOAD contents (§10.7 – §10.9), Ping (§6.5.3) and ConfigUpdate (§6.5.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, Encode, EncodeError, Res, Width, boolean, elements, exact, invalid, list, opaque,
    opaque_bytes, put_list, put_opaque, put_prefixed, u8_, u32_, u64_,
};
use super::header::Destination;
use crate::id::NodeId;

/// `ProbeInformationType` values (§6.4.2.5.1).
pub mod probe_type {
    /// Fraction of the overlay the peer is responsible for, in parts per billion.
    pub const RESPONSIBLE_SET: u8 = 1;
    /// Number of resources stored.
    pub const NUM_RESOURCES: u8 = 2;
    /// Seconds the peer has been up.
    pub const UPTIME: u8 = 3;
}

/// `ProbeReq` (§6.4.2.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReq {
    /// The [`probe_type`] values wanted, in order.
    pub requested_info: Vec<u8>,
}

impl Encode for ProbeReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_opaque(out, Width::U8, "requested_info", &self.requested_info)
    }
}

impl Decode for ProbeReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, info) = opaque(i, Width::U8, "requested_info")?;
        if let Some(at) = info.iter().position(|t| *t == 0) {
            return invalid(
                &info[at..],
                "requested_info",
                "invalidProbeInformationType(0)",
            );
        }
        Ok((
            rest,
            ProbeReq {
                requested_info: info.to_vec(),
            },
        ))
    }
}

/// `ProbeInformation` (§6.4.2.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeInformation {
    /// `responsible_ppb`.
    ResponsibleSet(u32),
    /// `num_resources`.
    NumResources(u32),
    /// `uptime` in seconds.
    Uptime(u32),
    /// A type this implementation does not know.
    Unknown {
        /// `ProbeInformationType`.
        kind: u8,
        /// The value bytes.
        value: Bytes,
    },
}

impl Encode for ProbeInformation {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let (kind, v) = match self {
            ProbeInformation::ResponsibleSet(v) => (probe_type::RESPONSIBLE_SET, *v),
            ProbeInformation::NumResources(v) => (probe_type::NUM_RESOURCES, *v),
            ProbeInformation::Uptime(v) => (probe_type::UPTIME, *v),
            ProbeInformation::Unknown { kind, value } => {
                out.put_u8(*kind);
                return put_opaque(out, Width::U8, "value", value);
            }
        };
        out.put_u8(kind);
        out.put_u8(4);
        out.put_u32(v);
        Ok(())
    }
}

impl Decode for ProbeInformation {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (after_type, kind) = u8_(i, "type")?;
        let (rest, value) = opaque(after_type, Width::U8, "value")?;
        let u32_value = |v| exact(v, "value", |b| u32_(b, "value"));
        let info = match kind {
            0 => return invalid(i, "type", "invalidProbeInformationType(0)"),
            probe_type::RESPONSIBLE_SET => ProbeInformation::ResponsibleSet(u32_value(value)?),
            probe_type::NUM_RESOURCES => ProbeInformation::NumResources(u32_value(value)?),
            probe_type::UPTIME => ProbeInformation::Uptime(u32_value(value)?),
            _ => ProbeInformation::Unknown {
                kind,
                value: Bytes::copy_from_slice(value),
            },
        };
        Ok((rest, info))
    }
}

/// `ProbeAns` (§6.4.2.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAns {
    /// The requested information, in the requested order.
    pub probe_info: Vec<ProbeInformation>,
}

impl Encode for ProbeAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_list(out, Width::U16, "probe_info", &self.probe_info)
    }
}

impl Decode for ProbeAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, probe_info) = list(i, Width::U16, "probe_info", ProbeInformation::parse)?;
        Ok((rest, ProbeAns { probe_info }))
    }
}

/// `JoinReq` (§6.4.2.1). CHORD-RELOAD adds no overlay-specific data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReq {
    /// The Node-ID the joining peer takes.
    pub joining_peer_id: NodeId,
    /// `overlay_specific_data<0..2^16-1>`.
    pub overlay_specific_data: Bytes,
}

impl Encode for JoinReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.joining_peer_id.encode(out)?;
        put_opaque(
            out,
            Width::U16,
            "overlay_specific_data",
            &self.overlay_specific_data,
        )
    }
}

impl Decode for JoinReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, joining_peer_id) = NodeId::parse(i)?;
        let (rest, overlay_specific_data) =
            opaque_bytes(rest, Width::U16, "overlay_specific_data")?;
        Ok((
            rest,
            JoinReq {
                joining_peer_id,
                overlay_specific_data,
            },
        ))
    }
}

/// `JoinAns` (§6.4.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinAns {
    /// `overlay_specific_data<0..2^16-1>`.
    pub overlay_specific_data: Bytes,
}

impl Encode for JoinAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_opaque(
            out,
            Width::U16,
            "overlay_specific_data",
            &self.overlay_specific_data,
        )
    }
}

impl Decode for JoinAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, overlay_specific_data) = opaque_bytes(i, Width::U16, "overlay_specific_data")?;
        Ok((
            rest,
            JoinAns {
                overlay_specific_data,
            },
        ))
    }
}

/// `ChordLeaveData` (§10.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordLeaveData {
    /// `from_succ(1)`: sent by a successor, with its successor list.
    FromSucc(Vec<NodeId>),
    /// `from_pred(2)`: sent by a predecessor, with its predecessor list.
    FromPred(Vec<NodeId>),
}

impl Encode for ChordLeaveData {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            ChordLeaveData::FromSucc(s) => {
                out.put_u8(1);
                put_list(out, Width::U16, "successors", s)
            }
            ChordLeaveData::FromPred(p) => {
                out.put_u8(2);
                put_list(out, Width::U16, "predecessors", p)
            }
        }
    }
}

impl Decode for ChordLeaveData {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u8_(i, "type")?;
        match kind {
            1 => list(rest, Width::U16, "successors", NodeId::parse)
                .map(|(r, v)| (r, ChordLeaveData::FromSucc(v))),
            2 => list(rest, Width::U16, "predecessors", NodeId::parse)
                .map(|(r, v)| (r, ChordLeaveData::FromPred(v))),
            _ => invalid(
                i,
                "type",
                "ChordLeaveType must be from_succ(1) or from_pred(2)",
            ),
        }
    }
}

/// `LeaveReq` (§6.4.2.2) whose overlay-specific data is a [`ChordLeaveData`] (§10.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveReq {
    /// The leaving peer.
    pub leaving_peer_id: NodeId,
    /// Its neighbours, for the recipient to repair its table.
    pub data: ChordLeaveData,
}

impl Encode for LeaveReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.leaving_peer_id.encode(out)?;
        put_prefixed(out, Width::U16, "overlay_specific_data", |out| {
            self.data.encode(out)
        })
    }
}

impl Decode for LeaveReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, leaving_peer_id) = NodeId::parse(i)?;
        let (rest, body) = opaque(rest, Width::U16, "overlay_specific_data")?;
        let data = exact(body, "overlay_specific_data", ChordLeaveData::parse)?;
        Ok((
            rest,
            LeaveReq {
                leaving_peer_id,
                data,
            },
        ))
    }
}

/// The contents of a `ChordUpdate` by type (§10.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordUpdateKind {
    /// `peer_ready(1)`: the sender can be routed through.
    PeerReady,
    /// `neighbors(2)`: the sender's neighbour table.
    Neighbors {
        /// Predecessors, nearest first.
        predecessors: Vec<NodeId>,
        /// Successors, nearest first.
        successors: Vec<NodeId>,
    },
    /// `full(3)`: neighbours and fingers (answering a RouteQuery with send_update).
    Full {
        /// Predecessors, nearest first.
        predecessors: Vec<NodeId>,
        /// Successors, nearest first.
        successors: Vec<NodeId>,
        /// The finger table in ascending order.
        fingers: Vec<NodeId>,
    },
}

/// `ChordUpdate` (§10.7): the UpdateReq body of CHORD-RELOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChordUpdate {
    /// Seconds the sender has been up.
    pub uptime: u32,
    /// What the update carries.
    pub kind: ChordUpdateKind,
}

impl Encode for ChordUpdate {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.uptime);
        match &self.kind {
            ChordUpdateKind::PeerReady => out.put_u8(1),
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            } => {
                out.put_u8(2);
                put_list(out, Width::U16, "predecessors", predecessors)?;
                put_list(out, Width::U16, "successors", successors)?;
            }
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            } => {
                out.put_u8(3);
                put_list(out, Width::U16, "predecessors", predecessors)?;
                put_list(out, Width::U16, "successors", successors)?;
                put_list(out, Width::U16, "fingers", fingers)?;
            }
        }
        Ok(())
    }
}

impl Decode for ChordUpdate {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, uptime) = u32_(i, "uptime")?;
        let (after_type, kind) = u8_(rest, "type")?;
        let ids = |b, f| list(b, Width::U16, f, NodeId::parse);
        let (rest, kind) = match kind {
            1 => (after_type, ChordUpdateKind::PeerReady),
            2 => {
                let (r, predecessors) = ids(after_type, "predecessors")?;
                let (r, successors) = ids(r, "successors")?;
                (
                    r,
                    ChordUpdateKind::Neighbors {
                        predecessors,
                        successors,
                    },
                )
            }
            3 => {
                let (r, predecessors) = ids(after_type, "predecessors")?;
                let (r, successors) = ids(r, "successors")?;
                let (r, fingers) = ids(r, "fingers")?;
                (
                    r,
                    ChordUpdateKind::Full {
                        predecessors,
                        successors,
                        fingers,
                    },
                )
            }
            _ => {
                return invalid(
                    rest,
                    "type",
                    "ChordUpdateType must be peer_ready, neighbors or full",
                );
            }
        };
        Ok((rest, ChordUpdate { uptime, kind }))
    }
}

/// `RouteQueryReq` (§6.4.2.4.1). CHORD-RELOAD adds no overlay-specific data (§10.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueryReq {
    /// Ask the responder to send an Update right away.
    pub send_update: bool,
    /// Where the requester wants to route.
    pub destination: Destination,
    /// `overlay_specific_data<0..2^16-1>`.
    pub overlay_specific_data: Bytes,
}

impl Encode for RouteQueryReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.send_update as u8);
        self.destination.encode(out)?;
        put_opaque(
            out,
            Width::U16,
            "overlay_specific_data",
            &self.overlay_specific_data,
        )
    }
}

impl Decode for RouteQueryReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, send_update) = boolean(i, "send_update")?;
        let (rest, destination) = Destination::parse(rest)?;
        let (rest, overlay_specific_data) =
            opaque_bytes(rest, Width::U16, "overlay_specific_data")?;
        Ok((
            rest,
            RouteQueryReq {
                send_update,
                destination,
                overlay_specific_data,
            },
        ))
    }
}

/// `ChordRouteQueryAns` (§10.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueryAns {
    /// The peer the responder would route to next.
    pub next_peer: NodeId,
}

impl Encode for RouteQueryAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.next_peer.encode(out)
    }
}

impl Decode for RouteQueryAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, next_peer) = NodeId::parse(i)?;
        Ok((rest, RouteQueryAns { next_peer }))
    }
}

/// `PingReq` (§6.5.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReq {
    /// Up to 65535 bytes of padding, for path-MTU discovery.
    pub padding: Bytes,
}

impl Encode for PingReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_opaque(out, Width::U16, "padding", &self.padding)
    }
}

impl Decode for PingReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, padding) = opaque_bytes(i, Width::U16, "padding")?;
        Ok((rest, PingReq { padding }))
    }
}

/// `PingAns` (§6.5.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingAns {
    /// A random id distinguishing responses.
    pub response_id: u64,
    /// When the answer was made, in milliseconds since the Unix epoch.
    pub time: u64,
}

impl Encode for PingAns {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u64(self.response_id);
        out.put_u64(self.time);
        Ok(())
    }
}

impl Decode for PingAns {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, response_id) = u64_(i, "response_id")?;
        let (rest, time) = u64_(rest, "time")?;
        Ok((rest, PingAns { response_id, time }))
    }
}

/// `ConfigUpdateReq` (§6.5.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUpdateReq {
    /// `config(1)`: a whole configuration document.
    Config(Bytes),
    /// `kind(2)`: kind-block XML productions.
    Kinds(Vec<Bytes>),
    /// An update type this implementation does not know.
    Unknown {
        /// `ConfigUpdateType`.
        kind: u8,
        /// The bytes after the length.
        data: Bytes,
    },
}

impl Encode for ConfigUpdateReq {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            ConfigUpdateReq::Config(doc) => {
                out.put_u8(1);
                put_prefixed(out, Width::U32, "length", |out| {
                    put_opaque(out, Width::U24, "config_data", doc)
                })
            }
            ConfigUpdateReq::Kinds(kinds) => {
                out.put_u8(2);
                put_prefixed(out, Width::U32, "length", |out| {
                    put_prefixed(out, Width::U24, "kinds", |out| {
                        kinds
                            .iter()
                            .try_for_each(|k| put_opaque(out, Width::U16, "kind", k))
                    })
                })
            }
            ConfigUpdateReq::Unknown { kind, data } => {
                out.put_u8(*kind);
                put_opaque(out, Width::U32, "length", data)
            }
        }
    }
}

impl Decode for ConfigUpdateReq {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (after_type, kind) = u8_(i, "type")?;
        let (rest, body) = opaque(after_type, Width::U32, "length")?;
        let update = match kind {
            0 => return invalid(i, "type", "invalidConfigUpdateType(0)"),
            1 => ConfigUpdateReq::Config(exact(body, "config_data", |b| {
                opaque_bytes(b, Width::U24, "config_data")
            })?),
            2 => ConfigUpdateReq::Kinds(exact(body, "kinds", |b| {
                let (r, region) = opaque(b, Width::U24, "kinds")?;
                let kinds = elements(region, "kinds", |k| opaque_bytes(k, Width::U16, "kind"))?;
                Ok((r, kinds))
            })?),
            _ => ConfigUpdateReq::Unknown {
                kind,
                data: Bytes::copy_from_slice(body),
            },
        };
        Ok((rest, update))
    }
}
