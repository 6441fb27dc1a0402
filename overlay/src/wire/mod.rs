//! Every RFC 6940 structure that crosses the wire.
//!
//! One pattern throughout (see [`codec`]): [`Encode`] appends to a `BytesMut`,
//! [`Decode`] is a `nom` parser over a byte slice, every length prefix is checked before
//! slicing, and unknown codes, types and non-critical extensions are kept as bytes so a
//! message can be forwarded unchanged. One file per message family:
//!
//! | file | RFC 6940 |
//! |---|---|
//! | [`header`] | forwarding header, destinations, options (§6.3.2) |
//! | [`contents`] | message contents, extensions, error codes (§6.3.3, §14.9) |
//! | [`security`] | security block, signatures, signer identities (§6.3.4) |
//! | [`attach`] | Attach, AppAttach, ICE candidates (§6.5.1, §6.5.2) |
//! | [`store`] | stored data, data models, Store (§7, §7.4.1) |
//! | [`fetch`] | Fetch, Stat, Find (§7.4.2 – §7.4.4) |
//! | [`turn`] | the TURN Server Usage's `TurnServer` (§9) |
//! | [`topology`] | Probe, Join, Leave, Update, RouteQuery, Ping, ConfigUpdate (§6.4.2, §6.5.3, §6.5.4, §10) |
//! | [`framing`] | the framing header (§6.6.2) |
//! | [`message`] | whole messages (§6.3) |
//! | [`body`] | message bodies by code |

pub mod attach;
pub mod body;
pub mod codec;
pub mod contents;
pub mod fetch;
pub mod framing;
pub mod header;
pub mod message;
pub mod security;
pub mod store;
pub mod topology;
pub mod turn;

#[cfg(test)]
mod tests;

pub use attach::{AppAttach, AttachReqAns, CandType, IceCandidate, IceExtension, IpAddressPort};
pub use body::Body;
pub use codec::{Decode, DecodeError, DecodeErrorKind, Encode, EncodeError};
pub use contents::{ErrorCode, ErrorResponse, MessageCode, MessageContents, MessageExtension};
pub use fetch::{
    ArrayRange, FetchAns, FetchKindResponse, FetchReq, FindAns, FindKindData, FindReq, MetaData,
    MetaDataValue, ModelSpecifier, StatAns, StatKindResponse, StatReq, StoredDataSpecifier,
    StoredMetaData,
};
pub use framing::{FrameDecoder, FrameError, FramedMessage};
pub use header::{Destination, ForwardingHeader, ForwardingOption, Fragment};
pub use message::{Message, RawMessage};
pub use security::{
    GenericCertificate, SecurityBlock, Signature, SignatureAndHashAlgorithm, SignerIdentity,
};
pub use store::{
    DataModel, DataValue, KindId, KindModels, KindValues, StoreAns, StoreKindData,
    StoreKindResponse, StoreReq, StoredData, StoredDataValue, UnknownKinds,
};
pub use topology::{
    ChordLeaveData, ChordUpdate, ChordUpdateKind, ConfigUpdateReq, JoinAns, JoinReq, LeaveReq,
    PingAns, PingReq, ProbeAns, ProbeInformation, ProbeReq, RouteQueryAns, RouteQueryReq,
};
