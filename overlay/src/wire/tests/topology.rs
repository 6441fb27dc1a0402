use bytes::Bytes;

use super::{both_ways, h, id16};
use crate::id::NodeId;
use crate::wire::*;

fn n(b: u8) -> NodeId {
    NodeId::from_bytes(id16(b))
}

fn hex16(b: u8) -> String {
    format!("{b:02x}").repeat(16)
}

#[test]
fn probe_req_rfc6940_6_4_2_5_1() {
    both_ways(
        ProbeReq {
            requested_info: vec![1, 3],
        },
        &h("02 01 03"),
    );
}

#[test]
fn probe_ans_rfc6940_6_4_2_5_2() {
    both_ways(
        ProbeAns {
            probe_info: vec![
                ProbeInformation::ResponsibleSet(500_000_000),
                ProbeInformation::NumResources(7),
                ProbeInformation::Uptime(60),
                ProbeInformation::Unknown {
                    kind: 9,
                    value: Bytes::from_static(b"x"),
                },
            ],
        },
        &h("0015 01 04 1dcd6500 | 02 04 00000007 | 03 04 0000003c | 09 01 78"),
    );
}

#[test]
fn join_rfc6940_6_4_2_1() {
    both_ways(
        JoinReq {
            joining_peer_id: n(0xaa),
            overlay_specific_data: Bytes::new(),
        },
        &h(&format!("{} 0000", hex16(0xaa))),
    );
    both_ways(JoinAns::default(), &h("0000"));
}

#[test]
fn leave_with_chord_leave_data_rfc6940_10_9() {
    // overlay_specific_data<0..2^16-1> = ChordLeaveData { from_succ(1), successors<..> }
    both_ways(
        LeaveReq {
            leaving_peer_id: n(0xaa),
            data: ChordLeaveData::FromSucc(vec![n(0xbb)]),
        },
        &h(&format!("{} 0013 01 0010 {}", hex16(0xaa), hex16(0xbb))),
    );
    both_ways(
        LeaveReq {
            leaving_peer_id: n(0xaa),
            data: ChordLeaveData::FromPred(vec![]),
        },
        &h(&format!("{} 0003 02 0000", hex16(0xaa))),
    );
}

#[test]
fn chord_update_peer_ready_rfc6940_10_7() {
    both_ways(
        ChordUpdate {
            uptime: 10,
            kind: ChordUpdateKind::PeerReady,
        },
        &h("0000000a 01"),
    );
}

#[test]
fn chord_update_neighbors_rfc6940_10_7() {
    both_ways(
        ChordUpdate {
            uptime: 10,
            kind: ChordUpdateKind::Neighbors {
                predecessors: vec![n(0xaa)],
                successors: vec![n(0xbb), n(0xcc)],
            },
        },
        &h(&format!(
            "0000000a 02 0010 {} 0020 {} {}",
            hex16(0xaa),
            hex16(0xbb),
            hex16(0xcc)
        )),
    );
}

#[test]
fn chord_update_full_rfc6940_10_7() {
    both_ways(
        ChordUpdate {
            uptime: 1,
            kind: ChordUpdateKind::Full {
                predecessors: vec![],
                successors: vec![n(0xbb)],
                fingers: vec![n(0xcc)],
            },
        },
        &h(&format!(
            "00000001 03 0000 0010 {} 0010 {}",
            hex16(0xbb),
            hex16(0xcc)
        )),
    );
}

#[test]
fn route_query_rfc6940_6_4_2_4_and_10_8() {
    both_ways(
        RouteQueryReq {
            send_update: true,
            destination: Destination::Node(n(0xaa)),
            overlay_specific_data: Bytes::new(),
        },
        &h(&format!("01 01 10 {} 0000", hex16(0xaa))),
    );
    both_ways(RouteQueryAns { next_peer: n(0xbb) }, &h(&hex16(0xbb)));
}

#[test]
fn ping_rfc6940_6_5_3() {
    both_ways(
        PingReq {
            padding: Bytes::from_static(&[0, 0, 0]),
        },
        &h("0003 000000"),
    );
    both_ways(
        PingAns {
            response_id: 1,
            time: 2,
        },
        &h("0000000000000001 0000000000000002"),
    );
}

#[test]
fn config_update_rfc6940_6_5_4_1() {
    // type config(1), length(4), config_data<0..2^24-1>
    both_ways(
        ConfigUpdateReq::Config(Bytes::from_static(b"<x/>")),
        &h("01 00000007 000004 3c782f3e"),
    );
    // type kind(2), length(4), KindDescription kinds<0..2^24-1>, each <0..2^16-1>
    both_ways(
        ConfigUpdateReq::Kinds(vec![Bytes::from_static(b"<k/>")]),
        &h("02 00000009 000006 0004 3c6b2f3e"),
    );
    both_ways(
        ConfigUpdateReq::Unknown {
            kind: 7,
            data: Bytes::from_static(b"?"),
        },
        &h("07 00000001 3f"),
    );
}
