//! AppAttach with ICE (§6.5.2, §6.5.1.5 – §6.5.1.9): the answer waits for the
//! answerer's gathering and carries its candidates and credentials; a request whose
//! ICE part is unusable is answered at once, TCP only; answers waiting for gathering
//! are bounded.

use bytes::Bytes;

use super::*;
use crate::node::{AnswerToken, IceOffer, RemoteIce};
use crate::wire::attach::link_type;
use crate::wire::{AppAttach, Body, CandType, Destination, IceCandidate, IpAddressPort};

const XMPP: u16 = 5222;

fn udp(addr: &str, cand_type: CandType) -> IceCandidate {
    IceCandidate {
        addr_port: IpAddressPort::Addr(addr.parse().unwrap()),
        overlay_link: link_type::DTLS_UDP_SR,
        foundation: Bytes::from_static(b"1"),
        priority: 100,
        cand_type,
        extensions: Vec::new(),
    }
}

fn offer(ufrag: &str) -> IceOffer {
    IceOffer {
        ufrag: ufrag.into(),
        password: "abcdefghijklmnopqrstuvwxyz".into(),
        candidates: vec![
            udp("10.0.0.1:4000", CandType::Host),
            udp(
                "198.51.100.1:4000",
                CandType::Srflx(IpAddressPort::Addr("10.0.0.1:4000".parse().unwrap())),
            ),
        ],
    }
}

/// A two-peer ring whose nodes accept XMPP AppAttach, and the two Node-IDs.
fn ring() -> (Ring, NodeId, NodeId) {
    let mut r = Ring::new(61);
    let a = NodeId(1 << 120);
    let b = NodeId(9 << 120);
    for (i, id) in [(0, a), (1, b)] {
        let mut cfg = r.config_at(i, id);
        cfg.applications = vec![(XMPP, VirtualNet::address_of(i))];
        let id = r.net.add(cfg);
        r.ids.push(id);
        r.net.join(id);
        r.settle(secs(60));
    }
    r.net.record_events(true);
    (r, a, b)
}

fn send(r: &mut Ring, from: NodeId, to: NodeId, body: AppAttach) -> crate::node::RequestId {
    r.net
        .request(from, vec![Destination::Node(to)], Body::AppAttachReq(body))
        .unwrap()
}

fn request_body(ice: &IceOffer) -> AppAttach {
    let mut candidates = vec![IceCandidate::tls_host("192.0.2.1:5000".parse().unwrap())];
    candidates.extend(ice.candidates.clone());
    AppAttach {
        ufrag: Bytes::from(ice.ufrag.clone()),
        password: Bytes::from(ice.password.clone()),
        application: XMPP,
        role: Bytes::from_static(b"passive"),
        candidates,
    }
}

fn answer_of(r: &Ring, node: NodeId, req: crate::node::RequestId) -> Option<AppAttach> {
    r.net.events.iter().find_map(|(_, n, e)| match e {
        Event::Response {
            request,
            result: Ok(a),
        } if *request == req && *n == node => match &a.body {
            Body::AppAttachAns(ans) => Some(ans.clone()),
            _ => None,
        },
        _ => None,
    })
}

fn ice_event(r: &Ring, node: NodeId) -> Option<(AnswerToken, RemoteIce)> {
    r.net.events.iter().find_map(|(_, n, e)| match e {
        Event::AppAttach { ice, .. } if *n == node => ice.clone(),
        _ => None,
    })
}

#[test]
fn an_ice_answer_waits_for_gathering_and_carries_the_answerers_candidates() {
    let (mut r, a, b) = ring();
    let mine = offer("reqA");
    let req = send(&mut r, a, b, request_body(&mine));
    r.net.run_for(secs(2));
    // B was told to gather, with A's ICE parameters; nothing is answered yet.
    let (token, remote) = ice_event(&r, b).expect("the answerer is asked to gather");
    assert_eq!(remote.ufrag, "reqA");
    assert_eq!(remote.candidates, mine.candidates);
    assert!(answer_of(&r, a, req).is_none(), "the answer waits for ICE");
    // B's runtime gathered: the answer goes out with B's credentials and candidates
    // beside its TLS-TCP candidate.
    let theirs = offer("ansB");
    r.net.with(b, |n| {
        let now = n.started;
        n.answer_app_attach(token, Some(theirs.clone()), now + secs(3));
    });
    r.net.run_for(secs(2));
    let ans = answer_of(&r, a, req).expect("answered once gathered");
    assert_eq!(&ans.ufrag[..], b"ansB");
    assert_eq!(ans.role, Bytes::from_static(b"active"));
    assert!(
        ans.candidates
            .iter()
            .any(|c| c.overlay_link == link_type::TLS_TCP_FH_NO_ICE)
    );
    let node_a = r.net.node(a).unwrap();
    let got = node_a.app_answer_ice(&ans).expect("A reads B's ICE part");
    assert_eq!(got.candidates, theirs.candidates);
    assert_eq!(got.password, theirs.password);
}

#[test]
fn unusable_ice_parameters_get_a_tcp_answer_at_once() {
    let (mut r, a, b) = ring();
    // A ufrag shorter than RFC 8445 allows, and a password with a space.
    let mut bad = offer("ab");
    bad.password = "has a space in it, 22+ chars".into();
    let req = send(&mut r, a, b, request_body(&bad));
    r.net.run_for(secs(2));
    assert!(ice_event(&r, b).is_none(), "no gathering for unusable ICE");
    let ans = answer_of(&r, a, req).expect("answered at once");
    assert!(
        ans.candidates
            .iter()
            .all(|c| c.overlay_link == link_type::TLS_TCP_FH_NO_ICE),
        "TCP only: {ans:?}"
    );
    assert!(r.net.node(a).unwrap().app_answer_ice(&ans).is_none());
}

#[test]
fn ice_candidates_beyond_the_limit_and_loopback_ones_are_not_read() {
    let mut many = offer("reqA");
    many.candidates = (0..40)
        .map(|i| udp(&format!("198.51.100.{}:4000", i + 1), CandType::Host))
        .collect();
    many.candidates
        .insert(0, udp("127.0.0.1:4000", CandType::Host));
    let remote = RemoteIce::from_app_attach(&request_body(&many), false).unwrap();
    assert_eq!(remote.candidates.len(), crate::node::MAX_ICE_CANDIDATES);
    assert!(
        remote
            .candidates
            .iter()
            .all(|c| !c.socket_addr().unwrap().ip().is_loopback())
    );
}

/// At most [`crate::node::MAX_DEFERRED_ANSWERS`] answers wait for gathering at once:
/// nine peers sending their whole AppAttach budget each (72 requests) get 64 deferred
/// answers and 8 immediate TCP-only ones; once the runtime answers one, the next
/// request may wait for gathering again.
#[test]
fn deferred_answers_are_bounded_and_the_rest_are_answered_at_once_tcp_only() {
    use crate::node::MAX_DEFERRED_ANSWERS;
    use crate::node::dials::APP_ATTACH_BURST;
    let mut r = Ring::new(62);
    let mut ids = Vec::new();
    for i in 0..10u32 {
        let id = NodeId(u128::from(i + 1) << 120);
        let mut cfg = r.config_at(i, id);
        cfg.applications = vec![(XMPP, VirtualNet::address_of(i))];
        let id = r.net.add(cfg);
        r.ids.push(id);
        r.net.join(id);
        r.settle(secs(60));
        ids.push(id);
    }
    r.net.record_events(true);
    let b = ids[0];
    let mut reqs = Vec::new();
    for (k, from) in ids[1..].iter().enumerate() {
        for n in 0..APP_ATTACH_BURST {
            let body = request_body(&offer(&format!("r{k}x{n}")));
            reqs.push((*from, send(&mut r, *from, b, body)));
        }
    }
    assert_eq!(reqs.len(), 72);
    r.net.run_for(secs(2));
    let deferred: Vec<(AnswerToken, RemoteIce)> = r
        .net
        .events
        .iter()
        .filter_map(|(_, n, e)| match e {
            Event::AppAttach { ice: Some(x), .. } if *n == b => Some(x.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deferred.len(), MAX_DEFERRED_ANSWERS);
    let at_once: Vec<AppAttach> = reqs
        .iter()
        .filter_map(|(from, req)| answer_of(&r, *from, *req))
        .collect();
    assert_eq!(at_once.len(), 72 - MAX_DEFERRED_ANSWERS);
    for ans in &at_once {
        assert!(
            ans.candidates
                .iter()
                .all(|c| c.overlay_link == link_type::TLS_TCP_FH_NO_ICE),
            "TCP only: {ans:?}"
        );
    }
    // One answer goes out: a slot is free, and the next ICE request waits again
    // (sent by a node whose budget has refilled).
    let (token, _) = deferred[0].clone();
    let now = r.net.now();
    r.net
        .with(b, |n| n.answer_app_attach(token, Some(offer("ansB")), now));
    r.net.run_for(secs(10));
    let before = r.net.events.len();
    let req = send(&mut r, ids[1], b, request_body(&offer("again")));
    r.net.run_for(secs(2));
    assert!(
        r.net.events[before..].iter().any(|(_, n, e)| *n == b
            && matches!(e, Event::AppAttach { ice: Some((_, x)), .. } if x.ufrag == "again")),
        "the freed slot takes the next request"
    );
    assert!(
        answer_of(&r, ids[1], req).is_none(),
        "it waits for gathering"
    );
}
