//! An XML stream from a stranger: any bytes, in any chunking. The parser never
//! panics, never yields an element deeper than its limit or costlier than its budget,
//! and what it yields survives being written and read again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::{Element, Node};
use xor_xmpp::stream::{MAX_DEPTH, StreamEvent, StreamParser, writer};

const MAX: usize = 16 * 1024;

/// Depth of an element, walked with an explicit stack.
fn depth(el: &Element) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(el, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        for n in e.nodes() {
            if let Node::Element(c) = n {
                stack.push((c, d + 1));
            }
        }
    }
    deepest
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut p = StreamParser::new(MAX);
    let mut elements = Vec::new();
    for piece in rest.chunks(chunk) {
        if p.feed(piece).is_err() {
            break;
        }
        while let Some(ev) = p.poll() {
            if let StreamEvent::Element(el) = ev {
                assert!(depth(&el) <= MAX_DEPTH, "too deep");
                elements.push(el);
            }
        }
    }
    // What was read is written and read back the same.
    for el in elements {
        let mut bytes = writer::header(None, None, None);
        bytes.extend(writer::element(&el));
        let mut again = StreamParser::new(usize::MAX);
        again.feed(&bytes).expect("what the writer writes, the parser reads");
        let _header = again.poll();
        match again.poll() {
            Some(StreamEvent::Element(e)) => assert_eq!(e, el),
            other => panic!("expected the element back, got {other:?}"),
        }
    }
});
