//! The device core driven by hand: outputs are checked one by one, time is injected.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use minidom::Element;
use xor_overlay::id::NodeId;
use xor_overlay::time::Instant;
use xor_overlay::wire::{DataValue, Encode, Signature, StoredData, StoredDataValue};

use super::*;
use crate::fanout::Device as Peer;
use crate::location::XmppLocation;
use crate::stanza;

const ME: u128 = 100;

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn config() -> DeviceConfig {
    DeviceConfig {
        upkeep: None,
        me: jid("romeo@m.lit/phone"),
        node: NodeId(ME),
        max_forwards: 4,
        resolve_cache: Duration::from_secs(30),
        max_streams: 2,
        seed: 1,
    }
}

fn device() -> Device {
    Device::new(config())
}

/// A device keeping its own place: a 100 s record, own devices looked up every 600 s.
fn with_upkeep() -> Device {
    Device::new(DeviceConfig {
        upkeep: Some(UpkeepConfig {
            registration_lifetime: Duration::from_secs(100),
            own_devices_refresh: Duration::from_secs(600),
        }),
        ..config()
    })
}

fn located(nodes: &[u128]) -> Vec<StoredData> {
    nodes
        .iter()
        .map(|n| StoredData {
            storage_time: 1,
            lifetime: 60,
            value: StoredDataValue::Dictionary {
                key: Bytes::copy_from_slice(&NodeId(*n).to_be_bytes()),
                value: DataValue::new(XmppLocation::device(NodeId(*n), 10).to_bytes().unwrap()),
            },
            signature: Signature::anonymous(),
        })
        .collect()
}

fn outputs(d: &mut Device) -> Vec<Output> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

fn fetch_ids(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Fetch { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn attaches(out: &[Output]) -> Vec<NodeId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Attach { node, .. } => Some(*node),
            _ => None,
        })
        .collect()
}

/// The writes of one dispatch: (token, [(device node, body)]).
type Dispatched = (u64, Vec<(u128, Option<String>)>);

/// The writes of each dispatch.
fn dispatched(out: &[Output]) -> Vec<Dispatched> {
    out.iter()
        .filter_map(|o| match o {
            Output::Dispatch { token, writes, .. } => Some((
                *token,
                writes
                    .iter()
                    .map(|w| (w.device.node.0, stanza::body(&w.stanza)))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn addr() -> SocketAddr {
    "192.0.2.1:5222".parse().unwrap()
}

/// Brings up a stream of ours to `node`, a device of `user`.
fn connect(d: &mut Device, node: u128, user: &str, now: Instant) -> u64 {
    let (id, role) = d.accept_stream(NodeId(node), true).expect("expected");
    assert_eq!(
        role,
        StreamRole::Initiator {
            expect: jid(user).bare()
        }
    );
    let peer = Peer {
        node: NodeId(node),
        jid: jid(user),
    };
    d.stream_up(id, peer, addr(), now);
    id
}

/// Sends `stanza` at time 0 and answers its lookups: romeo's own devices (none) and
/// juliet's (`nodes`); what the device asks for next.
fn first_send(d: &mut Device, token: u64, stanza: Element, nodes: &[u128]) -> Vec<Output> {
    d.send(token, stanza, t(0));
    let out = outputs(d);
    resolve_juliet(d, &out, nodes, t(0));
    outputs(d)
}

/// Looks up romeo's own devices (none) and juliet's (`nodes`), answering both fetches.
fn resolve_juliet(d: &mut Device, out: &[Output], nodes: &[u128], now: Instant) {
    let ids = fetch_ids(out);
    assert_eq!(ids.len(), 2, "own devices and the recipient's: {out:?}");
    d.fetched(ids[0], Ok(vec![]), now);
    d.fetched(ids[1], Ok(located(nodes)), now);
}

#[test]
fn a_first_message_is_looked_up_connected_and_written_and_later_ones_keep_their_order() {
    let mut d = device();
    let juliet = jid("juliet@c.lit");
    d.send(1, stanza::chat(&juliet, "one"), t(0));
    d.send(2, stanza::chat(&juliet, "two"), t(0));
    let out = outputs(&mut d);
    resolve_juliet(&mut d, &out, &[7], t(0));
    let out = outputs(&mut d);
    assert_eq!(attaches(&out), vec![NodeId(7)]);
    assert!(
        dispatched(&out).is_empty(),
        "nothing before the stream is up"
    );
    // A third message while the first two wait joins the queue behind them.
    d.send(3, stanza::chat(&juliet, "three"), t(1));
    assert!(dispatched(&outputs(&mut d)).is_empty());
    connect(&mut d, 7, "juliet@c.lit/balcony", t(1));
    let out = outputs(&mut d);
    let order = dispatched(&out);
    assert_eq!(
        order,
        vec![
            (1, vec![(7, Some("one".into()))]),
            (2, vec![(7, Some("two".into()))]),
            (3, vec![(7, Some("three".into()))]),
        ]
    );
    assert!(
        out.contains(&Output::Event(XmppEvent::DeviceConnected(Peer {
            node: NodeId(7),
            jid: jid("juliet@c.lit/balcony"),
        })))
    );
    // Remembered: the next one is written at once, without a lookup.
    d.send(4, stanza::chat(&juliet, "four"), t(2));
    let out = outputs(&mut d);
    assert!(fetch_ids(&out).is_empty());
    assert_eq!(dispatched(&out), vec![(4, vec![(7, Some("four".into()))])]);
}

#[test]
fn a_dead_device_does_not_delay_the_others_and_is_then_held_back() {
    let mut d = device();
    let juliet = jid("juliet@c.lit");
    let after = first_send(&mut d, 1, stanza::chat(&juliet, "hi"), &[7, 8]);
    assert_eq!(attaches(&after), vec![NodeId(7), NodeId(8)]);
    connect(&mut d, 7, "juliet@c.lit/a", t(1));
    assert_eq!(
        dispatched(&outputs(&mut d)),
        vec![(1, vec![(7, Some("hi".into()))])],
        "to the bare JID it goes once one device is up; 8 gets it if it comes"
    );
    // The attempt on 8 runs out; a later send does not wait for it at all.
    assert_eq!(d.poll_timeout(), Some(t(0) + CONNECT_TIMEOUT));
    d.handle_timeout(t(0) + CONNECT_TIMEOUT);
    let later = t(0) + CONNECT_TIMEOUT + Duration::from_secs(1);
    d.send(2, stanza::chat(&juliet, "again"), later);
    let out = outputs(&mut d);
    assert!(
        fetch_ids(&out).is_empty(),
        "juliet's devices are remembered"
    );
    assert!(attaches(&out).is_empty(), "8 is held back: {out:?}");
    assert_eq!(dispatched(&out), vec![(2, vec![(7, Some("again".into()))])]);
}

#[test]
fn when_every_remembered_device_fails_the_recipient_is_looked_up_again_once() {
    let mut d = device();
    let juliet = jid("juliet@c.lit");
    first_send(&mut d, 1, stanza::chat(&juliet, "hi"), &[7]);
    let id = connect(&mut d, 7, "juliet@c.lit/a", t(0));
    assert_eq!(dispatched(&outputs(&mut d)).len(), 1);
    // 7 goes away and re-registers as 9; the remembered route fails at once.
    d.stream_down(id, t(1));
    outputs(&mut d);
    d.send(2, stanza::chat(&juliet, "where are you"), t(2));
    let out = outputs(&mut d);
    assert_eq!(attaches(&out), vec![NodeId(7)]);
    d.attach_failed(NodeId(7), "no answer".into(), t(3));
    let out = outputs(&mut d);
    let ids = fetch_ids(&out);
    assert_eq!(ids.len(), 1, "juliet looked up again: {out:?}");
    d.fetched(ids[0], Ok(located(&[9])), t(3));
    assert_eq!(attaches(&outputs(&mut d)), vec![NodeId(9)]);
    connect(&mut d, 9, "juliet@c.lit/b", t(3));
    assert_eq!(
        dispatched(&outputs(&mut d)),
        vec![(2, vec![(9, Some("where are you".into()))])]
    );
    // A fresh lookup whose devices all fail is not repeated: the send fails.
    d.send(3, stanza::chat(&jid("nurse@c.lit"), "hello"), t(4));
    let out = outputs(&mut d);
    let ids = fetch_ids(&out);
    d.fetched(ids[0], Ok(located(&[11])), t(4));
    d.attach_failed(NodeId(11), "refused".into(), t(4));
    let out = outputs(&mut d);
    match out.last() {
        Some(Output::Failed { token: 3, failure }) => {
            assert!(
                matches!(&failure.error, SendError::Unreachable { why, .. } if why == &[ConnectError::Attach("refused".into())]),
                "{failure:?}"
            );
            assert_eq!(stanza::body(&failure.stanza).as_deref(), Some("hello"));
        }
        other => panic!("expected the send to fail, got {other:?}"),
    }
}

#[test]
fn an_unregistered_recipient_and_a_missing_to_fail_with_the_stanza_back() {
    let mut d = device();
    let nobody = jid("nobody@c.lit");
    let mut iq = stanza::chat(&nobody, "x");
    stanza::remove_attr(&mut iq, "to");
    d.send(1, iq, t(0));
    assert!(matches!(
        outputs(&mut d).as_slice(),
        [Output::Failed { token: 1, failure }] if failure.error == SendError::NoRecipient
    ));
    let after = first_send(&mut d, 2, stanza::chat(&nobody, "x"), &[]);
    assert!(matches!(
        after.as_slice(),
        [Output::Failed { token: 2, failure }] if matches!(failure.error, SendError::Resolve(ResolveError::NotFound(_)))
    ));
    assert_eq!(d.queued(), 0);
}

#[test]
fn streams_to_other_users_are_bounded_and_the_least_preferred_is_closed() {
    let mut d = device();
    let mut ids = Vec::new();
    for (n, user) in [(1, "a@x.lit/r"), (2, "b@x.lit/r"), (3, "c@x.lit/r")] {
        let (id, role) = d.accept_stream(NodeId(n), false).unwrap();
        assert_eq!(role, StreamRole::Responder);
        let peer = Peer {
            node: NodeId(n),
            jid: jid(user),
        };
        d.stream_up(id, peer, addr(), t(n as u64));
        ids.push(id);
    }
    let out = outputs(&mut d);
    assert!(
        out.contains(&Output::Close { stream: ids[0] }),
        "the least recently used: {out:?}"
    );
    assert_eq!(d.devices().len(), 2);
    // An own device does not count and is never closed.
    let (id, _) = d.accept_stream(NodeId(4), false).unwrap();
    let own = Peer {
        node: NodeId(4),
        jid: jid("romeo@m.lit/laptop"),
    };
    d.stream_up(id, own.clone(), addr(), t(5));
    assert!(
        !outputs(&mut d)
            .iter()
            .any(|o| matches!(o, Output::Close { .. }))
    );
    d.stream_down(id, t(6));
    let out = outputs(&mut d);
    assert!(out.contains(&Output::Event(XmppEvent::DeviceDisconnected(own))));
    // A connection nobody asked for (requested, but no attempt) is refused.
    assert_eq!(d.accept_stream(NodeId(99), true), None);
}

#[test]
fn received_messages_are_delivered_once_and_carbon_copied_to_own_devices() {
    let mut d = device();
    let (own, _) = d.accept_stream(NodeId(4), false).unwrap();
    d.stream_up(
        own,
        Peer {
            node: NodeId(4),
            jid: jid("romeo@m.lit/laptop"),
        },
        addr(),
        t(0),
    );
    let (theirs, _) = d.accept_stream(NodeId(7), false).unwrap();
    d.stream_up(
        theirs,
        Peer {
            node: NodeId(7),
            jid: jid("juliet@c.lit/a"),
        },
        addr(),
        t(0),
    );
    outputs(&mut d);
    let mut m = stanza::chat(&jid("romeo@m.lit/phone"), "hi");
    stanza::set_attr(&mut m, "from", "juliet@c.lit/a");
    stanza::ensure_origin_id(&mut m, || "o1".into());
    d.stream_stanza(theirs, m.clone(), t(1));
    let out = outputs(&mut d);
    assert!(
        matches!(&out[..], [Output::Write(w), Output::Event(XmppEvent::Stanza(_))] if w.stream == own && w.carbon)
    );
    d.stream_stanza(theirs, m, t(2));
    assert!(
        outputs(&mut d).is_empty(),
        "the same origin-id again is a duplicate"
    );
}

#[test]
fn shutdown_closes_every_stream_and_fails_what_waits() {
    let mut d = device();
    let (id, _) = d.accept_stream(NodeId(7), false).unwrap();
    d.stream_up(
        id,
        Peer {
            node: NodeId(7),
            jid: jid("juliet@c.lit/a"),
        },
        addr(),
        t(0),
    );
    d.send(1, stanza::chat(&jid("nurse@c.lit"), "x"), t(0));
    outputs(&mut d);
    d.shutdown();
    let out = outputs(&mut d);
    assert!(out.contains(&Output::Close { stream: id }));
    assert!(out.iter().any(
        |o| matches!(o, Output::Failed { token: 1, failure } if failure.error == SendError::Stopped)
    ));
    assert!(d.devices().is_empty());
}

#[test]
fn a_device_that_connects_late_still_gets_the_message_first() {
    let mut d = device();
    let juliet = jid("juliet@c.lit");
    first_send(&mut d, 1, stanza::chat(&juliet, "early"), &[7, 8]);
    connect(&mut d, 7, "juliet@c.lit/a", t(1));
    assert_eq!(
        dispatched(&outputs(&mut d)),
        vec![(1, vec![(7, Some("early".into()))])]
    );
    // 8 comes up late: the message it missed is written before anything newer.
    let id = connect(&mut d, 8, "juliet@c.lit/b", t(7));
    let out = outputs(&mut d);
    let late: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Write(w) => Some((w.stream, w.carbon, stanza::body(&w.stanza))),
            _ => None,
        })
        .collect();
    assert_eq!(late, vec![(id, false, Some("early".into()))]);
}

#[test]
fn with_no_device_up_a_send_waits_first_contact_at_most() {
    let mut d = device();
    first_send(
        &mut d,
        1,
        stanza::chat(&jid("juliet@c.lit"), "anyone?"),
        &[7],
    );
    assert_eq!(d.poll_timeout(), Some(t(0) + FIRST_CONTACT));
    d.handle_timeout(t(0) + FIRST_CONTACT);
    match outputs(&mut d).as_slice() {
        [Output::Failed { token: 1, failure }] => assert!(
            matches!(&failure.error, SendError::Unreachable { why, .. }
                if matches!(why.as_slice(), [ConnectError::NoAnswerYet { node, .. }] if *node == NodeId(7))),
            "{failure:?}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn copies_kept_for_a_connecting_device_are_bounded_and_then_the_sender_waits() {
    let mut d = device();
    let juliet = jid("juliet@c.lit");
    first_send(&mut d, 0, stanza::chat(&juliet, "0"), &[7, 8]);
    connect(&mut d, 7, "juliet@c.lit/a", t(1));
    for n in 1..=LATE_MAX as u64 {
        d.send(n, stanza::chat(&juliet, &n.to_string()), t(1));
    }
    let out = outputs(&mut d);
    assert_eq!(
        dispatched(&out).len(),
        LATE_MAX,
        "8 keeps {LATE_MAX} copies"
    );
    assert_eq!(d.queued(), 1, "the next one waits for 8");
    let id = connect(&mut d, 8, "juliet@c.lit/b", t(2));
    let out = outputs(&mut d);
    let late = out
        .iter()
        .filter(|o| matches!(o, Output::Write(w) if w.stream == id))
        .count();
    assert_eq!(late, LATE_MAX);
    let last = dispatched(&out);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1.len(), 2, "now written to both: {last:?}");
    assert_eq!(d.queued(), 0);
}

#[test]
fn a_message_to_a_full_jid_goes_once_that_device_is_connected() {
    let mut d = device();
    let after = first_send(
        &mut d,
        1,
        stanza::chat(&jid("juliet@c.lit/a"), "just a"),
        &[7, 8],
    );
    assert_eq!(attaches(&after), vec![NodeId(7), NodeId(8)]);
    // b (8) is still connecting: it is not addressed, so nothing waits for it.
    connect(&mut d, 7, "juliet@c.lit/a", t(1));
    assert_eq!(
        dispatched(&outputs(&mut d)),
        vec![(1, vec![(7, Some("just a".into()))])]
    );
}

/// Answers the one lookup in `out` (the user's own JID) with devices `nodes`.
fn answer_own(d: &mut Device, out: &[Output], nodes: &[u128], now: Instant) -> Vec<Output> {
    let ids = fetch_ids(out);
    assert_eq!(ids.len(), 1, "{out:?}");
    d.fetched(ids[0], Ok(located(nodes)), now);
    outputs(d)
}

#[test]
fn the_core_keeps_its_place_record_refreshed_and_own_devices_connected() {
    let mut d = with_upkeep();
    // Start: the user's devices are looked up and the other one (not this one) is
    // connected to.
    d.start(t(0));
    let out = outputs(&mut d);
    let out = answer_own(&mut d, &out, &[ME, 4], t(0));
    assert_eq!(attaches(&out), vec![NodeId(4)]);
    let laptop = connect(&mut d, 4, "romeo@m.lit/laptop", t(1));
    // The start-up lookups at 5 s and 30 s find it connected: nothing to attach.
    for at in START_LOOKUPS {
        let due = t(0) + at;
        assert_eq!(d.poll_timeout(), Some(due));
        d.handle_timeout(due);
        let out = outputs(&mut d);
        let out = answer_own(&mut d, &out, &[ME, 4], due);
        assert!(attaches(&out).is_empty(), "{out:?}");
    }
    // The record at 80 % of its lifetime; a failed store is tried again 30 s later.
    assert_eq!(d.poll_timeout(), Some(t(80)));
    d.handle_timeout(t(80));
    assert!(outputs(&mut d).contains(&Output::Register));
    assert_eq!(d.poll_timeout(), Some(t(30) + Duration::from_secs(600)));
    d.registered(false, t(81));
    assert_eq!(d.poll_timeout(), Some(t(81) + REGISTRATION_RETRY));
    d.handle_timeout(t(111));
    assert!(outputs(&mut d).contains(&Output::Register));
    d.registered(true, t(112));
    assert_eq!(d.poll_timeout(), Some(t(192)));
    // The laptop goes away: looked for again after LOST_RETRY, not at the period.
    d.stream_down(laptop, t(120));
    let _ = outputs(&mut d);
    let due = t(120) + LOST_RETRY;
    assert_eq!(d.poll_timeout(), Some(due));
    d.handle_timeout(due);
    let out = outputs(&mut d);
    let out = answer_own(&mut d, &out, &[ME, 4], due);
    assert_eq!(attaches(&out), vec![NodeId(4)]);
    // It does not answer: the attempt times out and the next look backs off (4 s).
    let deadline = d.poll_timeout().unwrap();
    d.handle_timeout(deadline);
    let _ = outputs(&mut d);
    assert_eq!(d.poll_timeout(), Some(deadline + LOST_RETRY * 2));
}

#[test]
fn without_upkeep_the_core_never_registers_or_looks_by_itself() {
    let mut d = device();
    d.start(t(0));
    assert!(outputs(&mut d).is_empty());
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn a_send_looks_for_own_devices_afresh_after_the_start_up_look() {
    // The start-up look can run before the user's other devices, starting at the same
    // moment, are registered: a send right after must not take its answer for the
    // whole cache time, or those devices miss their carbons.
    let mut d = with_upkeep();
    d.start(t(0));
    let out = outputs(&mut d);
    let out = answer_own(&mut d, &out, &[ME], t(0));
    assert!(attaches(&out).is_empty());
    d.send(1, stanza::chat(&jid("juliet@c.lit"), "hi"), t(1));
    let out = outputs(&mut d);
    assert_eq!(
        fetch_ids(&out).len(),
        2,
        "own devices and juliet's: {out:?}"
    );
}
