//! proptest strategies for every wire structure.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::id::{NodeId, ResourceId};
use crate::wire::*;

/// Kind-IDs the strategies use: 0x0a single, 0x0b array, 0x0c dictionary (see
/// `storage::models`), 0xff unknown to the decoder.
const KINDS: [KindId; 4] = [0x0a, 0x0b, 0x0c, 0xff];

pub(crate) fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

pub(crate) fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u128>().prop_map(NodeId)
}

pub(crate) fn resource_id() -> impl Strategy<Value = ResourceId> {
    any::<u128>().prop_map(ResourceId)
}

pub(crate) fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        node_id().prop_map(Destination::Node),
        resource_id().prop_map(Destination::Resource),
        bytes(254).prop_map(Destination::Opaque),
        (0u16..0x8000).prop_map(Destination::Compressed),
        (4u8..128, bytes(40)).prop_map(|(kind, data)| Destination::Unknown { kind, data }),
    ]
}

pub(crate) fn header(whole: bool) -> impl Strategy<Value = ForwardingHeader> {
    (
        (
            any::<u32>(),
            any::<u16>(),
            any::<u8>(),
            any::<bool>(),
            0u32..0x0100_0000,
        ),
        (any::<u64>(), any::<u32>()),
        vec(destination(), 0..4),
        vec(destination(), 0..4),
        vec((1u8..=255, any::<u8>(), bytes(20)), 0..3),
    )
        .prop_map(
            move |((overlay, seq, ttl, last, offset), (tid, maxr), via, dest, opts)| {
                ForwardingHeader {
                    overlay,
                    configuration_sequence: seq,
                    ttl,
                    fragment: if whole {
                        Fragment::WHOLE
                    } else {
                        Fragment::new(last, offset)
                    },
                    transaction_id: tid,
                    max_response_length: maxr,
                    via_list: via,
                    destination_list: dest,
                    options: opts
                        .into_iter()
                        .map(|(kind, flags, value)| ForwardingOption { kind, flags, value })
                        .collect(),
                }
            },
        )
}

pub(crate) fn contents() -> impl Strategy<Value = MessageContents> {
    (
        1u16..=0xffff,
        bytes(200),
        vec((1u16..=0xffff, any::<bool>(), bytes(20)), 0..3),
    )
        .prop_map(|(code, body, ext)| MessageContents {
            code: MessageCode(code),
            body,
            extensions: ext
                .into_iter()
                .map(|(kind, critical, contents)| MessageExtension {
                    kind,
                    critical,
                    contents,
                })
                .collect(),
        })
}

pub(crate) fn signer_identity() -> impl Strategy<Value = SignerIdentity> {
    prop_oneof![
        (any::<u8>(), bytes(64))
            .prop_map(|(hash_alg, hash)| SignerIdentity::CertHash { hash_alg, hash }),
        (any::<u8>(), bytes(64))
            .prop_map(|(hash_alg, hash)| SignerIdentity::CertHashNodeId { hash_alg, hash }),
        Just(SignerIdentity::None),
        (4u8..=255, bytes(20)).prop_map(|(kind, value)| SignerIdentity::Unknown { kind, value }),
    ]
}

pub(crate) fn signature() -> impl Strategy<Value = Signature> {
    (any::<u8>(), any::<u8>(), signer_identity(), bytes(80)).prop_map(
        |(hash, sig, identity, value)| Signature {
            algorithm: SignatureAndHashAlgorithm {
                hash,
                signature: sig,
            },
            identity,
            value,
        },
    )
}

pub(crate) fn security() -> impl Strategy<Value = SecurityBlock> {
    (vec((any::<u8>(), bytes(100)), 0..3), signature()).prop_map(|(certs, signature)| {
        SecurityBlock {
            certificates: certs
                .into_iter()
                .map(|(kind, certificate)| GenericCertificate { kind, certificate })
                .collect(),
            signature,
        }
    })
}

pub(crate) fn message() -> impl Strategy<Value = Message> {
    (header(true), contents(), security()).prop_map(|(header, contents, security)| Message {
        header,
        contents,
        security,
    })
}

fn ip_address_port() -> impl Strategy<Value = IpAddressPort> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| IpAddressPort::Addr(
            SocketAddr::V4(SocketAddrV4::new(ip.into(), port))
        )),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| IpAddressPort::Addr(
            SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))
        )),
        (3u8..=255, bytes(20)).prop_map(|(kind, data)| IpAddressPort::Unknown { kind, data }),
    ]
}

fn candidate() -> impl Strategy<Value = IceCandidate> {
    let cand_type = prop_oneof![
        Just(CandType::Host),
        ip_address_port().prop_map(CandType::Srflx),
        ip_address_port().prop_map(CandType::Relay),
    ];
    (
        ip_address_port(),
        1u8..=255,
        bytes(32),
        any::<u32>(),
        cand_type,
        vec((bytes(8), bytes(8)), 0..2),
    )
        .prop_map(
            |(addr_port, overlay_link, foundation, priority, cand_type, ext)| IceCandidate {
                addr_port,
                overlay_link,
                foundation,
                priority,
                cand_type,
                extensions: ext
                    .into_iter()
                    .map(|(name, value)| IceExtension { name, value })
                    .collect(),
            },
        )
}

fn attach() -> impl Strategy<Value = AttachReqAns> {
    (
        bytes(16),
        bytes(16),
        bytes(8),
        vec(candidate(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(ufrag, password, role, candidates, send_update)| AttachReqAns {
                ufrag,
                password,
                role,
                candidates,
                send_update,
            },
        )
}

fn app_attach() -> impl Strategy<Value = AppAttach> {
    (
        bytes(16),
        bytes(16),
        any::<u16>(),
        bytes(8),
        vec(candidate(), 0..3),
    )
        .prop_map(
            |(ufrag, password, application, role, candidates)| AppAttach {
                ufrag,
                password,
                application,
                role,
                candidates,
            },
        )
}

fn data_value() -> impl Strategy<Value = DataValue> {
    (any::<bool>(), bytes(64)).prop_map(|(exists, value)| DataValue { exists, value })
}

fn stored_value(model: DataModel) -> BoxedStrategy<StoredDataValue> {
    match model {
        DataModel::Single => data_value().prop_map(StoredDataValue::Single).boxed(),
        DataModel::Array => (any::<u32>(), data_value())
            .prop_map(|(index, value)| StoredDataValue::Array { index, value })
            .boxed(),
        DataModel::Dictionary => (bytes(16), data_value())
            .prop_map(|(key, value)| StoredDataValue::Dictionary { key, value })
            .boxed(),
    }
}

fn model_of(kind: KindId) -> Option<DataModel> {
    super::storage::models().get(&kind).copied()
}

fn stored_data(model: DataModel) -> impl Strategy<Value = StoredData> {
    (any::<u64>(), any::<u32>(), stored_value(model), signature()).prop_map(
        |(storage_time, lifetime, value, signature)| StoredData {
            storage_time,
            lifetime,
            value,
            signature,
        },
    )
}

fn kind_values<T: std::fmt::Debug + Clone + 'static>(
    kind: KindId,
    element: impl Fn(DataModel) -> BoxedStrategy<T>,
) -> BoxedStrategy<KindValues<T>> {
    match model_of(kind) {
        Some(model) => vec(element(model), 0..3)
            .prop_map(KindValues::Parsed)
            .boxed(),
        None => bytes(60).prop_map(KindValues::Unparsed).boxed(),
    }
}

fn kind() -> impl Strategy<Value = KindId> {
    prop::sample::select(KINDS.to_vec())
}

fn store_req() -> impl Strategy<Value = StoreReq> {
    let kind_data = (kind(), any::<u64>()).prop_flat_map(|(kind, generation_counter)| {
        kind_values(kind, |m| stored_data(m).boxed()).prop_map(move |values| StoreKindData {
            kind,
            generation_counter,
            values,
        })
    });
    (resource_id(), any::<u8>(), vec(kind_data, 0..3)).prop_map(
        |(resource, replica_number, kind_data)| StoreReq {
            resource,
            replica_number,
            kind_data,
        },
    )
}

fn fetch_req() -> impl Strategy<Value = FetchReq> {
    let spec = (kind(), any::<u64>()).prop_flat_map(|(kind, generation)| {
        let model_specifier = match model_of(kind) {
            Some(DataModel::Single) => Just(ModelSpecifier::Single).boxed(),
            Some(DataModel::Array) => vec((any::<u32>(), any::<u32>()), 0..3)
                .prop_map(|r| {
                    ModelSpecifier::Array(
                        r.into_iter()
                            .map(|(first, last)| ArrayRange { first, last })
                            .collect(),
                    )
                })
                .boxed(),
            Some(DataModel::Dictionary) => vec(bytes(8), 0..3)
                .prop_map(ModelSpecifier::Dictionary)
                .boxed(),
            None => bytes(20).prop_map(ModelSpecifier::Unparsed).boxed(),
        };
        model_specifier.prop_map(move |model_specifier| StoredDataSpecifier {
            kind,
            generation,
            model_specifier,
        })
    });
    (resource_id(), vec(spec, 0..4)).prop_map(|(resource, specifiers)| FetchReq {
        resource,
        specifiers,
    })
}

fn fetch_ans() -> impl Strategy<Value = FetchAns> {
    let resp = (kind(), any::<u64>()).prop_flat_map(|(kind, generation)| {
        kind_values(kind, |m| stored_data(m).boxed()).prop_map(move |values| FetchKindResponse {
            kind,
            generation,
            values,
        })
    });
    vec(resp, 0..3).prop_map(|kind_responses| FetchAns { kind_responses })
}

fn meta(model: DataModel) -> BoxedStrategy<StoredMetaData> {
    let md = (any::<bool>(), any::<u32>(), any::<u8>(), bytes(32)).prop_map(
        |(exists, value_length, hash_algorithm, hash_value)| MetaData {
            exists,
            value_length,
            hash_algorithm,
            hash_value,
        },
    );
    let value = match model {
        DataModel::Single => md.prop_map(MetaDataValue::Single).boxed(),
        DataModel::Array => (any::<u32>(), md)
            .prop_map(|(index, meta)| MetaDataValue::Array { index, meta })
            .boxed(),
        DataModel::Dictionary => (bytes(8), md)
            .prop_map(|(key, meta)| MetaDataValue::Dictionary { key, meta })
            .boxed(),
    };
    (any::<u32>(), any::<u64>(), any::<u32>(), value)
        .prop_map(
            |(value_length, storage_time, lifetime, metadata)| StoredMetaData {
                value_length,
                storage_time,
                lifetime,
                metadata,
            },
        )
        .boxed()
}

fn stat_ans() -> impl Strategy<Value = StatAns> {
    let resp = (kind(), any::<u64>()).prop_flat_map(|(kind, generation)| {
        kind_values(kind, meta).prop_map(move |values| StatKindResponse {
            kind,
            generation,
            values,
        })
    });
    vec(resp, 0..3).prop_map(|kind_responses| StatAns { kind_responses })
}

fn ids(max: usize) -> impl Strategy<Value = Vec<NodeId>> {
    vec(node_id(), 0..max)
}

fn chord_update() -> impl Strategy<Value = ChordUpdate> {
    let kind = prop_oneof![
        Just(ChordUpdateKind::PeerReady),
        (ids(4), ids(4)).prop_map(|(predecessors, successors)| ChordUpdateKind::Neighbors {
            predecessors,
            successors
        }),
        (ids(4), ids(4), ids(6)).prop_map(|(predecessors, successors, fingers)| {
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            }
        }),
    ];
    (any::<u32>(), kind).prop_map(|(uptime, kind)| ChordUpdate { uptime, kind })
}

fn probe_info() -> impl Strategy<Value = ProbeInformation> {
    prop_oneof![
        any::<u32>().prop_map(ProbeInformation::ResponsibleSet),
        any::<u32>().prop_map(ProbeInformation::NumResources),
        any::<u32>().prop_map(ProbeInformation::Uptime),
        (4u8..=255, bytes(8)).prop_map(|(kind, value)| ProbeInformation::Unknown { kind, value }),
    ]
}

fn config_update() -> impl Strategy<Value = ConfigUpdateReq> {
    prop_oneof![
        bytes(100).prop_map(ConfigUpdateReq::Config),
        vec(bytes(30), 0..3).prop_map(ConfigUpdateReq::Kinds),
        (3u8..=255, bytes(20)).prop_map(|(kind, data)| ConfigUpdateReq::Unknown { kind, data }),
    ]
}

/// Every body type, with codes for `Other` outside the assigned ones.
pub(crate) fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        vec(1u8..=255, 0..5).prop_map(|requested_info| Body::ProbeReq(ProbeReq { requested_info })),
        vec(probe_info(), 0..4).prop_map(|probe_info| Body::ProbeAns(ProbeAns { probe_info })),
        attach().prop_map(Body::AttachReq),
        attach().prop_map(Body::AttachAns),
        store_req().prop_map(Body::StoreReq),
        vec((any::<u32>(), any::<u64>(), ids(3)), 0..3).prop_map(|r| Body::StoreAns(StoreAns {
            kind_responses: r
                .into_iter()
                .map(|(kind, generation_counter, replicas)| StoreKindResponse {
                    kind,
                    generation_counter,
                    replicas
                })
                .collect()
        })),
        fetch_req().prop_map(Body::FetchReq),
        fetch_ans().prop_map(Body::FetchAns),
        fetch_req().prop_map(Body::StatReq),
        stat_ans().prop_map(Body::StatAns),
        (resource_id(), vec(any::<u32>(), 0..5))
            .prop_map(|(resource, kinds)| Body::FindReq(FindReq { resource, kinds })),
        vec((any::<u32>(), resource_id()), 0..3).prop_map(|r| Body::FindAns(FindAns {
            results: r
                .into_iter()
                .map(|(kind, closest)| FindKindData { kind, closest })
                .collect()
        })),
        (node_id(), bytes(20)).prop_map(|(joining_peer_id, overlay_specific_data)| Body::JoinReq(
            JoinReq {
                joining_peer_id,
                overlay_specific_data
            }
        )),
        bytes(20).prop_map(|overlay_specific_data| Body::JoinAns(JoinAns {
            overlay_specific_data
        })),
        (node_id(), any::<bool>(), ids(4)).prop_map(
            |(leaving_peer_id, succ, list)| Body::LeaveReq(LeaveReq {
                leaving_peer_id,
                data: if succ {
                    ChordLeaveData::FromSucc(list)
                } else {
                    ChordLeaveData::FromPred(list)
                }
            })
        ),
        Just(Body::LeaveAns),
        chord_update().prop_map(Body::UpdateReq),
        Just(Body::UpdateAns),
        (any::<bool>(), destination(), bytes(10)).prop_map(
            |(send_update, destination, overlay_specific_data)| {
                Body::RouteQueryReq(RouteQueryReq {
                    send_update,
                    destination,
                    overlay_specific_data,
                })
            }
        ),
        node_id().prop_map(|next_peer| Body::RouteQueryAns(RouteQueryAns { next_peer })),
        bytes(100).prop_map(|padding| Body::PingReq(PingReq { padding })),
        (any::<u64>(), any::<u64>())
            .prop_map(|(response_id, time)| Body::PingAns(PingAns { response_id, time })),
        app_attach().prop_map(Body::AppAttachReq),
        app_attach().prop_map(Body::AppAttachAns),
        config_update().prop_map(Body::ConfigUpdateReq),
        Just(Body::ConfigUpdateAns),
        (1u16..=0xffff, bytes(40)).prop_map(|(code, info)| Body::Error(ErrorResponse {
            code: ErrorCode::from_u16(code),
            info
        })),
        (0x23u16..=0x7fff, bytes(40)).prop_map(|(code, body)| Body::Other {
            code: MessageCode(code),
            body
        }),
    ]
}
