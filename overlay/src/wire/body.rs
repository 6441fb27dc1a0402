//! Typed message bodies, selected by the message code (§6.3.3).

use bytes::{Bytes, BytesMut};

use super::codec::{Decode, DecodeError, Encode, EncodeError, decode_all};
use super::{
    AppAttach, AttachReqAns, ChordUpdate, ConfigUpdateReq, ErrorResponse, FetchAns, FetchReq,
    FindAns, FindReq, JoinAns, JoinReq, KindModels, LeaveReq, MessageCode, PingAns, PingReq,
    ProbeAns, ProbeReq, RouteQueryAns, RouteQueryReq, StatAns, StatReq, StoreAns, StoreReq,
};

/// A decoded message body. CHORD-RELOAD is the topology plug-in, so Update and
/// RouteQuery answers carry its structures (§10.7, §10.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `probe_req`.
    ProbeReq(ProbeReq),
    /// `probe_ans`.
    ProbeAns(ProbeAns),
    /// `attach_req`.
    AttachReq(AttachReqAns),
    /// `attach_ans`.
    AttachAns(AttachReqAns),
    /// `store_req`.
    StoreReq(StoreReq),
    /// `store_ans`.
    StoreAns(StoreAns),
    /// `fetch_req`.
    FetchReq(FetchReq),
    /// `fetch_ans`.
    FetchAns(FetchAns),
    /// `find_req`.
    FindReq(FindReq),
    /// `find_ans`.
    FindAns(FindAns),
    /// `join_req`.
    JoinReq(JoinReq),
    /// `join_ans`.
    JoinAns(JoinAns),
    /// `leave_req`.
    LeaveReq(LeaveReq),
    /// `leave_ans`: empty.
    LeaveAns,
    /// `update_req` with a `ChordUpdate`.
    UpdateReq(ChordUpdate),
    /// `update_ans`: empty.
    UpdateAns,
    /// `route_query_req`.
    RouteQueryReq(RouteQueryReq),
    /// `route_query_ans` with a `ChordRouteQueryAns`.
    RouteQueryAns(RouteQueryAns),
    /// `ping_req`.
    PingReq(PingReq),
    /// `ping_ans`.
    PingAns(PingAns),
    /// `stat_req`.
    StatReq(StatReq),
    /// `stat_ans`.
    StatAns(StatAns),
    /// `app_attach_req`.
    AppAttachReq(AppAttach),
    /// `app_attach_ans`.
    AppAttachAns(AppAttach),
    /// `config_update_req`.
    ConfigUpdateReq(ConfigUpdateReq),
    /// `config_update_ans`: empty.
    ConfigUpdateAns,
    /// `error` (0xffff).
    Error(ErrorResponse),
    /// Any other code (experimental or unassigned), body kept as bytes.
    Other {
        /// The message code.
        code: MessageCode,
        /// The body bytes.
        body: Bytes,
    },
}

impl Body {
    /// The message code for this body.
    pub fn code(&self) -> MessageCode {
        use MessageCode as C;
        match self {
            Body::ProbeReq(_) => C::PROBE_REQ,
            Body::ProbeAns(_) => C::PROBE_ANS,
            Body::AttachReq(_) => C::ATTACH_REQ,
            Body::AttachAns(_) => C::ATTACH_ANS,
            Body::StoreReq(_) => C::STORE_REQ,
            Body::StoreAns(_) => C::STORE_ANS,
            Body::FetchReq(_) => C::FETCH_REQ,
            Body::FetchAns(_) => C::FETCH_ANS,
            Body::FindReq(_) => C::FIND_REQ,
            Body::FindAns(_) => C::FIND_ANS,
            Body::JoinReq(_) => C::JOIN_REQ,
            Body::JoinAns(_) => C::JOIN_ANS,
            Body::LeaveReq(_) => C::LEAVE_REQ,
            Body::LeaveAns => C::LEAVE_ANS,
            Body::UpdateReq(_) => C::UPDATE_REQ,
            Body::UpdateAns => C::UPDATE_ANS,
            Body::RouteQueryReq(_) => C::ROUTE_QUERY_REQ,
            Body::RouteQueryAns(_) => C::ROUTE_QUERY_ANS,
            Body::PingReq(_) => C::PING_REQ,
            Body::PingAns(_) => C::PING_ANS,
            Body::StatReq(_) => C::STAT_REQ,
            Body::StatAns(_) => C::STAT_ANS,
            Body::AppAttachReq(_) => C::APP_ATTACH_REQ,
            Body::AppAttachAns(_) => C::APP_ATTACH_ANS,
            Body::ConfigUpdateReq(_) => C::CONFIG_UPDATE_REQ,
            Body::ConfigUpdateAns => C::CONFIG_UPDATE_ANS,
            Body::Error(_) => C::ERROR,
            Body::Other { code, .. } => *code,
        }
    }

    /// Interprets `body` according to `code`. Store, Fetch and Stat bodies need the data
    /// models of the Kinds they carry.
    pub fn parse(
        code: MessageCode,
        body: &[u8],
        models: &dyn KindModels,
    ) -> Result<Body, DecodeError> {
        use MessageCode as C;
        let empty = |b: Body| decode_all(body, |i| Ok((i, b)));
        match code {
            C::PROBE_REQ => ProbeReq::decode(body).map(Body::ProbeReq),
            C::PROBE_ANS => ProbeAns::decode(body).map(Body::ProbeAns),
            C::ATTACH_REQ => AttachReqAns::decode(body).map(Body::AttachReq),
            C::ATTACH_ANS => AttachReqAns::decode(body).map(Body::AttachAns),
            C::STORE_REQ => {
                decode_all(body, |i| StoreReq::parse_with(i, models)).map(Body::StoreReq)
            }
            C::STORE_ANS => StoreAns::decode(body).map(Body::StoreAns),
            C::FETCH_REQ => {
                decode_all(body, |i| FetchReq::parse_with(i, models)).map(Body::FetchReq)
            }
            C::FETCH_ANS => {
                decode_all(body, |i| FetchAns::parse_with(i, models)).map(Body::FetchAns)
            }
            C::FIND_REQ => FindReq::decode(body).map(Body::FindReq),
            C::FIND_ANS => FindAns::decode(body).map(Body::FindAns),
            C::JOIN_REQ => JoinReq::decode(body).map(Body::JoinReq),
            C::JOIN_ANS => JoinAns::decode(body).map(Body::JoinAns),
            C::LEAVE_REQ => LeaveReq::decode(body).map(Body::LeaveReq),
            C::LEAVE_ANS => empty(Body::LeaveAns),
            C::UPDATE_REQ => ChordUpdate::decode(body).map(Body::UpdateReq),
            C::UPDATE_ANS => empty(Body::UpdateAns),
            C::ROUTE_QUERY_REQ => RouteQueryReq::decode(body).map(Body::RouteQueryReq),
            C::ROUTE_QUERY_ANS => RouteQueryAns::decode(body).map(Body::RouteQueryAns),
            C::PING_REQ => PingReq::decode(body).map(Body::PingReq),
            C::PING_ANS => PingAns::decode(body).map(Body::PingAns),
            C::STAT_REQ => decode_all(body, |i| FetchReq::parse_with(i, models)).map(Body::StatReq),
            C::STAT_ANS => decode_all(body, |i| StatAns::parse_with(i, models)).map(Body::StatAns),
            C::APP_ATTACH_REQ => AppAttach::decode(body).map(Body::AppAttachReq),
            C::APP_ATTACH_ANS => AppAttach::decode(body).map(Body::AppAttachAns),
            C::CONFIG_UPDATE_REQ => ConfigUpdateReq::decode(body).map(Body::ConfigUpdateReq),
            C::CONFIG_UPDATE_ANS => empty(Body::ConfigUpdateAns),
            C::ERROR => ErrorResponse::decode(body).map(Body::Error),
            code => Ok(Body::Other {
                code,
                body: Bytes::copy_from_slice(body),
            }),
        }
    }
}

impl Encode for Body {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Body::ProbeReq(b) => b.encode(out),
            Body::ProbeAns(b) => b.encode(out),
            Body::AttachReq(b) | Body::AttachAns(b) => b.encode(out),
            Body::StoreReq(b) => b.encode(out),
            Body::StoreAns(b) => b.encode(out),
            Body::FetchReq(b) | Body::StatReq(b) => b.encode(out),
            Body::FetchAns(b) => b.encode(out),
            Body::FindReq(b) => b.encode(out),
            Body::FindAns(b) => b.encode(out),
            Body::JoinReq(b) => b.encode(out),
            Body::JoinAns(b) => b.encode(out),
            Body::LeaveReq(b) => b.encode(out),
            Body::UpdateReq(b) => b.encode(out),
            Body::RouteQueryReq(b) => b.encode(out),
            Body::RouteQueryAns(b) => b.encode(out),
            Body::PingReq(b) => b.encode(out),
            Body::PingAns(b) => b.encode(out),
            Body::StatAns(b) => b.encode(out),
            Body::AppAttachReq(b) | Body::AppAttachAns(b) => b.encode(out),
            Body::ConfigUpdateReq(b) => b.encode(out),
            Body::Error(b) => b.encode(out),
            Body::LeaveAns | Body::UpdateAns | Body::ConfigUpdateAns => Ok(()),
            Body::Other { body, .. } => {
                out.extend_from_slice(body);
                Ok(())
            }
        }
    }
}
