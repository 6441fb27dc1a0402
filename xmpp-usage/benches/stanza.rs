//! What typing a relayed stanza would cost: a chat message as it arrives from a
//! client (body, origin-id, a chat state and a receipt request) read into
//! `xmpp_parsers::message::Message` and written back, against what the relay does
//! today (clone the element) and what the stream parser already spent making it.
//! README Decisions, "Typed stanzas", quotes the numbers.
//!
//! Run: `cargo bench -p xor-xmpp --bench stanza`.

#![allow(clippy::unwrap_used)] // a benchmark aborts on any failure
#![allow(clippy::print_stderr)] // and prints what it found

use criterion::{Criterion, criterion_group, criterion_main};
use minidom::Element;
use xmpp_parsers::message::Message;
use xor_xmpp::stream::{StreamEvent, StreamParser, writer};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const CHAT: &[u8] = b"<message to='bob@example.org' type='chat' id='m1' xml:lang='en'>\
<body>Are we still on for the raid at nine?</body>\
<origin-id xmlns='urn:xmpp:sid:0' id='a7f3c2d1e5b94f60'/>\
<active xmlns='http://jabber.org/protocol/chatstates'/>\
<request xmlns='urn:xmpp:receipts'/></message>";

fn parsed() -> Element {
    let mut p = StreamParser::new(1 << 16);
    p.feed(HEADER).unwrap();
    p.feed(CHAT).unwrap();
    let _header = p.poll();
    match p.poll() {
        Some(StreamEvent::Element(e)) => e,
        other => panic!("{other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let el = parsed();
    let mut g = c.benchmark_group("relayed_chat_message");
    g.bench_function("parse_bytes_to_element", |b| {
        b.iter(|| {
            let mut p = StreamParser::new(1 << 16);
            p.feed(HEADER).unwrap();
            p.feed(CHAT).unwrap();
            let _ = p.poll();
            p.poll()
        })
    });
    g.bench_function("clone_element", |b| b.iter(|| el.clone()));
    g.bench_function("element_to_message_and_back", |b| {
        b.iter(|| Element::from(Message::try_from(el.clone()).unwrap()))
    });
    g.bench_function("write_element", |b| b.iter(|| writer::element(&el)));
    g.finish();
    // What typing loses: the message's xml:lang is not a field of Message.
    let back = Element::from(Message::try_from(el.clone()).unwrap());
    eprintln!(
        "xml:lang kept through Message: {}",
        back.attrs().iter().any(|((_, n), _)| n.as_str() == "lang")
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
