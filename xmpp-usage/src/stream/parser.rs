//! Incremental stream parsing: bytes in, stream events out.

use std::collections::VecDeque;

use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::error::EndOrError;
use rxml::{Options, Parse, RawEvent, RawParser, WithOptions};

use super::error::{StreamCondition, StreamError};
use super::{NS_CLIENT, NS_STREAMS};

/// The peer's stream header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    /// `from`.
    pub from: Option<String>,
    /// `to`.
    pub to: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `version`.
    pub version: Option<String>,
}

/// What the peer sent.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The opening `<stream:stream>`.
    Header(StreamHeader),
    /// A complete top-level element: a stanza or a nonza such as `<stream:features/>`.
    Element(Element),
    /// The closing `</stream:stream>`.
    Close,
}

/// Deepest nesting of elements inside a stanza (the stanza itself is level 1). Real
/// stanzas stay far below it: a carbon of a forwarded message with an XHTML-IM body
/// is about ten levels. The limit also bounds every recursive walk over a parsed
/// stanza (`minidom`'s clone, drop and serialisation recurse over children).
pub const MAX_DEPTH: usize = 32;

/// What an element costs against the size limit beyond its bytes: the memory a parsed
/// element holds (an `Element` with its name, namespace, maps and child vector;
/// measured in `the_cost_of_a_parsed_element_covers_its_memory`), so that a stanza of
/// many tiny elements cannot hold many times its byte size in memory.
pub const ELEMENT_COST: usize = 320;
/// What an attribute costs beyond its bytes (a map entry with two strings).
pub const ATTRIBUTE_COST: usize = 96;

/// Parses one direction of an XML stream.
pub struct StreamParser {
    raw: RawParser,
    tree: TreeBuilder,
    events: VecDeque<StreamEvent>,
    /// Cost of the top-level element being read: its bytes plus [`ELEMENT_COST`] per
    /// element and [`ATTRIBUTE_COST`] per attribute.
    element_bytes: usize,
    max_element: usize,
    max_depth: usize,
    open: bool,
    closed: bool,
    failed: Option<StreamError>,
}

impl std::fmt::Debug for StreamParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamParser")
            .field("open", &self.open)
            .field("closed", &self.closed)
            .finish()
    }
}

impl StreamParser {
    /// A parser refusing top-level elements that cost more than `max_element` (bytes
    /// plus the per-element and per-attribute costs) or nest deeper than
    /// [`MAX_DEPTH`].
    pub fn new(max_element: usize) -> StreamParser {
        StreamParser::with_depth(max_element, MAX_DEPTH)
    }

    /// Like [`StreamParser::new`] with another nesting limit.
    pub fn with_depth(max_element: usize, max_depth: usize) -> StreamParser {
        let options = Options {
            max_token_length: 16 * 1024,
            ..Options::default()
        };
        StreamParser {
            raw: RawParser::with_options(options),
            tree: TreeBuilder::new(),
            events: VecDeque::new(),
            element_bytes: 0,
            max_element,
            max_depth,
            open: false,
            closed: false,
            failed: None,
        }
    }

    /// Starts over for a stream restart (after STARTTLS or SASL, RFC 6120 §4.3.3).
    pub fn reset(&mut self) {
        *self = StreamParser::with_depth(self.max_element, self.max_depth);
    }

    /// Feeds received bytes; events are queued for [`StreamParser::poll`]. After an
    /// error the stream must be closed with that error.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // Parse until the parser needs more data: it may still emit events (such as
        // the end of a self-closing element) after the last byte was consumed.
        while !self.closed {
            match self.raw.parse(&mut bytes, false) {
                Ok(Some(ev)) => {
                    if let Err(e) = self.event(ev) {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
                Ok(None) | Err(EndOrError::NeedMoreData) => break,
                Err(EndOrError::Error(e)) => {
                    let e = StreamError::new(StreamCondition::NotWellFormed, e.to_string());
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn event(&mut self, ev: RawEvent) -> Result<(), StreamError> {
        let depth = self.tree.depth();
        let len = ev.metrics().len();
        if depth >= 1 {
            self.element_bytes += len
                + match ev {
                    RawEvent::ElementHeadOpen(..) => ELEMENT_COST,
                    RawEvent::Attribute(..) => ATTRIBUTE_COST,
                    _ => 0,
                };
            if self.element_bytes > self.max_element {
                return Err(StreamError::new(
                    StreamCondition::PolicyViolation,
                    format!("element larger than {} bytes", self.max_element),
                ));
            }
            // The stream root is depth 1, a stanza depth 2.
            if matches!(ev, RawEvent::ElementHeadOpen(..)) && depth > self.max_depth {
                return Err(StreamError::new(
                    StreamCondition::PolicyViolation,
                    format!("elements nested deeper than {} levels", self.max_depth),
                ));
            }
        }
        let closes_root = matches!(ev, RawEvent::ElementFoot(_)) && depth == 1;
        let head_close = matches!(ev, RawEvent::ElementHeadClose(_));
        let foot = matches!(ev, RawEvent::ElementFoot(_));
        if matches!(ev, RawEvent::Text(..)) && depth <= 1 {
            // Whitespace keep-alives between stanzas (RFC 6120 §4.6.1).
            self.element_bytes = 0;
            return Ok(());
        }
        if closes_root {
            self.closed = true;
            self.events.push_back(StreamEvent::Close);
            return Ok(());
        }
        self.tree
            .process_event(ev)
            .map_err(|e| StreamError::new(StreamCondition::NotWellFormed, e.to_string()))?;
        if head_close && depth == 0 && self.tree.depth() == 1 {
            self.open_stream()?;
        } else if foot && depth == 2 && self.tree.depth() == 1 {
            self.element_bytes = 0;
            if let Some(el) = self.tree.unshift_child() {
                self.events.push_back(StreamEvent::Element(el));
            }
        } else if foot && depth == 1 {
            return Err(StreamError::new(
                StreamCondition::NotWellFormed,
                "stream ended early",
            ));
        }
        Ok(())
    }

    fn open_stream(&mut self) -> Result<(), StreamError> {
        let Some(root) = self.tree.top() else {
            return Ok(());
        };
        if root.name() != "stream" || root.ns() != NS_STREAMS {
            return Err(StreamError::new(
                StreamCondition::InvalidNamespace,
                "the root must be <stream:stream> in http://etherx.jabber.org/streams",
            ));
        }
        let default_ns = root.prefixes.get(&None).map(|s| s.to_string());
        if default_ns.as_deref() != Some(NS_CLIENT) {
            return Err(StreamError::new(
                StreamCondition::InvalidNamespace,
                format!("content namespace must be {NS_CLIENT}"),
            ));
        }
        let attr = |n: &str| root.attr(n).map(str::to_owned);
        let header = StreamHeader {
            from: attr("from"),
            to: attr("to"),
            id: attr("id"),
            version: attr("version"),
        };
        if header
            .version
            .as_deref()
            .is_some_and(|v| !v.starts_with("1."))
        {
            return Err(StreamError::new(
                StreamCondition::UnsupportedVersion,
                "only XMPP 1.x",
            ));
        }
        self.open = true;
        self.events.push_back(StreamEvent::Header(header));
        Ok(())
    }

    /// The next event.
    pub fn poll(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='a@x.lit/r' to='b@x.lit' version='1.0'>";

    fn events(p: &mut StreamParser) -> Vec<StreamEvent> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    #[test]
    fn header_stanzas_keepalives_and_close_in_any_chunking() {
        let doc = format!(
            "{HEADER} <message to='b@x.lit' id='1'><body>hi &amp; bye</body></message>\n <presence/></stream:stream>"
        );
        for chunk in [1usize, 3, 7, 1000] {
            let mut p = StreamParser::new(4096);
            for c in doc.as_bytes().chunks(chunk) {
                p.feed(c).unwrap();
            }
            let ev = events(&mut p);
            assert_eq!(ev.len(), 4, "chunk {chunk}: {ev:?}");
            let StreamEvent::Header(h) = &ev[0] else {
                panic!()
            };
            assert_eq!(h.from.as_deref(), Some("a@x.lit/r"));
            let StreamEvent::Element(m) = &ev[1] else {
                panic!()
            };
            assert!(m.is("message", NS_CLIENT));
            assert_eq!(m.get_child("body", NS_CLIENT).unwrap().text(), "hi & bye");
            assert!(matches!(&ev[2], StreamEvent::Element(p) if p.name() == "presence"));
            assert_eq!(ev[3], StreamEvent::Close);
        }
    }

    #[test]
    fn malformed_xml_is_not_well_formed_rfc6120_4_9_3_13() {
        let mut p = StreamParser::new(4096);
        p.feed(HEADER.as_bytes()).unwrap();
        let e = p.feed(b"<message><body></message>").unwrap_err();
        assert_eq!(e.condition, StreamCondition::NotWellFormed);
    }

    #[test]
    fn oversize_stanzas_are_a_policy_violation_rfc6120_4_9_3_14() {
        let mut p = StreamParser::new(1024);
        p.feed(HEADER.as_bytes()).unwrap();
        p.feed(b"<message><body>").unwrap();
        let big = vec![b'x'; 40 * 1024];
        let e = p.feed(&big).unwrap_err();
        assert_eq!(e.condition, StreamCondition::PolicyViolation);
    }

    #[test]
    fn wrong_namespace_is_invalid_namespace_rfc6120_4_9_3_10() {
        let mut p = StreamParser::new(1024);
        let e = p.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>").unwrap_err();
        assert_eq!(e.condition, StreamCondition::InvalidNamespace);
        let mut p = StreamParser::new(1024);
        assert_eq!(
            p.feed(b"<foo xmlns='jabber:client'>")
                .unwrap_err()
                .condition,
            StreamCondition::InvalidNamespace
        );
    }

    #[test]
    fn stanza_namespaces_are_resolved() {
        let mut p = StreamParser::new(4096);
        p.feed(HEADER.as_bytes()).unwrap();
        p.feed(b"<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'/></forwarded></received></message>").unwrap();
        let ev = events(&mut p);
        let StreamEvent::Element(m) = &ev[1] else {
            panic!()
        };
        assert!(
            m.get_child("received", "urn:xmpp:carbons:2")
                .unwrap()
                .has_child("forwarded", "urn:xmpp:forward:0")
        );
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    const OPEN: &[u8] =
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    fn nested(levels: usize) -> Vec<u8> {
        let mut s = b"<message>".to_vec();
        s.extend(b"<a>".repeat(levels - 1));
        s.extend(b"</a>".repeat(levels - 1));
        s.extend(b"</message>");
        s
    }

    #[test]
    fn a_stanza_nested_to_the_limit_is_read_and_one_level_more_is_a_policy_violation() {
        let mut p = StreamParser::new(1 << 20);
        p.feed(OPEN).unwrap();
        p.feed(&nested(MAX_DEPTH)).unwrap();
        let ev: Vec<StreamEvent> = std::iter::from_fn(|| p.poll()).collect();
        assert!(matches!(&ev[1], StreamEvent::Element(m) if m.name() == "message"));
        let e = p.feed(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(e.condition, StreamCondition::PolicyViolation);
    }

    /// The remote crash of the hardening issue: 5,000 levels used to be parsed into a
    /// tree whose recursive clone overflowed the stack.
    #[test]
    fn five_thousand_levels_are_refused_while_parsing() {
        let mut p = StreamParser::new(1 << 20);
        p.feed(OPEN).unwrap();
        let e = p.feed(&b"<message>".repeat(5000)).unwrap_err();
        assert_eq!(e.condition, StreamCondition::PolicyViolation);
        assert!(e.text.contains("nested"), "{e}");
    }

    #[test]
    fn tiny_elements_count_their_memory_against_the_limit() {
        // 1,000 empty children are 4 KB of bytes but far more in memory.
        let mut s = b"<message>".to_vec();
        s.extend(b"<a/>".repeat(1000));
        s.extend(b"</message>");
        let mut p = StreamParser::new(64 * 1024);
        p.feed(OPEN).unwrap();
        assert_eq!(
            p.feed(&s).unwrap_err().condition,
            StreamCondition::PolicyViolation
        );
        let mut p = StreamParser::new(1000 * (4 + ELEMENT_COST) + 1024);
        p.feed(OPEN).unwrap();
        p.feed(&s).unwrap();
    }

    #[test]
    fn the_cost_of_a_parsed_element_covers_its_memory() {
        // A child is a `Node` in its parent's vector; its name, and the namespace
        // when it differs from the parent's, are heap strings of a few dozen bytes.
        let node = std::mem::size_of::<minidom::Node>();
        assert!(
            node + 2 * 48 <= ELEMENT_COST,
            "a parsed element holds {node} bytes plus its strings"
        );
        // An attribute is a B-tree entry: two strings and its share of a node.
        let entry = 2 * std::mem::size_of::<String>() + 24;
        assert!(entry + 24 <= ATTRIBUTE_COST, "{entry}");
    }

    #[test]
    fn self_closing_top_level_elements_are_emitted() {
        let mut p = StreamParser::new(4096);
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").unwrap();
        p.feed(b"<foo xmlns='urn:example:unknown'/>").unwrap();
        let ev: Vec<StreamEvent> = std::iter::from_fn(|| p.poll()).collect();
        assert_eq!(ev.len(), 2, "{ev:?}");
    }
}
