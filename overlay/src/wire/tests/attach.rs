use std::net::SocketAddr;

use bytes::Bytes;

use super::{both_ways, h};
use crate::wire::attach::link_type;
use crate::wire::{AppAttach, AttachReqAns, CandType, IceCandidate, IceExtension, IpAddressPort};

fn addr(s: &str) -> IpAddressPort {
    IpAddressPort::Addr(s.parse::<SocketAddr>().unwrap())
}

#[test]
fn ip_address_port_v4_is_the_rfc_example_rfc6940_6_3_1_1() {
    // The RFC's own example: 192.0.2.1 port 6084.
    both_ways(addr("192.0.2.1:6084"), &h("01 06 c0000201 17c4"));
}

#[test]
fn ip_address_port_v6_rfc6940_6_3_1_1() {
    both_ways(
        addr("[2001:db8::1]:5222"),
        &h("02 12 20010db8000000000000000000000001 1466"),
    );
}

#[test]
fn ip_address_port_unknown_type_is_kept_rfc6940_6_3_1_1() {
    both_ways(
        IpAddressPort::Unknown {
            kind: 9,
            data: Bytes::from_static(&[1, 2]),
        },
        &h("09 02 0102"),
    );
}

pub(crate) fn host_candidate() -> IceCandidate {
    IceCandidate {
        addr_port: addr("127.0.0.1:4000"),
        overlay_link: link_type::TLS_TCP_FH_NO_ICE,
        foundation: Bytes::from_static(b"1"),
        priority: 0x7e00_00ff,
        cand_type: CandType::Host,
        extensions: vec![],
    }
}

const HOST_CANDIDATE: &str = "01 06 7f000001 0fa0 | 04 | 01 31 | 7e0000ff | 01 | 0000";

#[test]
fn ice_candidate_host_rfc6940_6_5_1_1() {
    // addr_port, overlay_link TLS-TCP-FH-NO-ICE(4), foundation<0..255>, priority, host(1),
    // extensions<0..2^16-1>
    both_ways(host_candidate(), &h(HOST_CANDIDATE));
}

#[test]
fn ice_candidate_srflx_with_rel_addr_and_extension_rfc6940_6_5_1_1() {
    let cand = IceCandidate {
        cand_type: CandType::Srflx(addr("10.0.0.1:1")),
        extensions: vec![IceExtension {
            name: Bytes::from_static(b"n"),
            value: Bytes::from_static(b"v"),
        }],
        ..host_candidate()
    };
    both_ways(
        cand,
        &h(
            "01 06 7f000001 0fa0 | 04 | 01 31 | 7e0000ff | 02 01 06 0a000001 0001 | 0006 0001 6e 0001 76",
        ),
    );
}

#[test]
fn ice_candidate_relay_rfc6940_6_5_1_1() {
    let cand = IceCandidate {
        cand_type: CandType::Relay(addr("10.0.0.2:2")),
        ..host_candidate()
    };
    both_ways(
        cand,
        &h("01 06 7f000001 0fa0 | 04 | 01 31 | 7e0000ff | 04 01 06 0a000002 0002 | 0000"),
    );
}

#[test]
fn attach_req_ans_rfc6940_6_5_1_1() {
    // ufrag "u", password "p", role "passive", candidates (18 bytes), send_update true
    both_ways(
        AttachReqAns {
            ufrag: Bytes::from_static(b"u"),
            password: Bytes::from_static(b"p"),
            role: Bytes::from_static(b"passive"),
            candidates: vec![host_candidate()],
            send_update: true,
        },
        &h(&format!(
            "01 75 | 01 70 | 07 70617373697665 | 0012 {HOST_CANDIDATE} | 01"
        )),
    );
}

#[test]
fn app_attach_rfc6940_6_5_2_1() {
    // ufrag, password, application 5222, role "active", no candidates
    both_ways(
        AppAttach {
            ufrag: Bytes::from_static(b"u"),
            password: Bytes::from_static(b"p"),
            application: 5222,
            role: Bytes::from_static(b"active"),
            candidates: vec![],
        },
        &h("01 75 | 01 70 | 1466 | 06 616374697665 | 0000"),
    );
}
