//! Bytes of a stream: header, features, elements, errors and the close.

use minidom::Element;

use super::{NS_CLIENT, NS_STREAM_ERRORS, NS_STREAMS, StreamError};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The opening `<stream:stream>` with an XML declaration.
pub fn header(from: Option<&str>, to: Option<&str>, id: Option<&str>) -> Vec<u8> {
    let mut s = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' version='1.0'"
    );
    for (name, value) in [("from", from), ("to", to), ("id", id)] {
        if let Some(v) = value {
            s.push_str(&format!(" {name}='{}'", escape(v)));
        }
    }
    s.push('>');
    s.into_bytes()
}

/// `<stream:features>` with `children`.
pub fn features(children: &[Element]) -> Vec<u8> {
    let mut out = format!("<stream:features xmlns:stream='{NS_STREAMS}'>").into_bytes();
    for c in children {
        out.extend(element(c));
    }
    out.extend_from_slice(b"</stream:features>");
    out
}

/// One element (a stanza or nonza).
pub fn element(el: &Element) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = el.write_to(&mut out);
    out
}

/// A stream error followed by the close (RFC 6120 §4.9).
pub fn error(e: &StreamError) -> Vec<u8> {
    format!(
        "<stream:error xmlns:stream='{NS_STREAMS}'><{} xmlns='{NS_STREAM_ERRORS}'/><text xmlns='{NS_STREAM_ERRORS}'>{}</text></stream:error></stream:stream>",
        e.condition.name(),
        escape(&e.text)
    )
    .into_bytes()
}

/// The closing tag.
pub fn close() -> &'static [u8] {
    b"</stream:stream>"
}

#[cfg(test)]
mod tests {
    use super::super::{StreamCondition, StreamEvent, StreamParser};
    use super::*;

    #[test]
    fn what_the_writer_writes_the_parser_reads() {
        let mut bytes = header(Some("a@x.lit/r'1"), Some("b@x.lit"), None);
        bytes.extend(features(&[]));
        let msg = crate::stanza::element("message", NS_CLIENT, &[("to", "b@x.lit")]);
        bytes.extend(element(&msg));
        bytes.extend(error(&StreamError::new(
            StreamCondition::PolicyViolation,
            "too <big>",
        )));
        let mut p = StreamParser::new(10_000);
        p.feed(&bytes).unwrap();
        let ev: Vec<StreamEvent> = std::iter::from_fn(|| p.poll()).collect();
        let StreamEvent::Header(h) = &ev[0] else {
            panic!()
        };
        assert_eq!(h.from.as_deref(), Some("a@x.lit/r'1"));
        assert!(
            matches!(&ev[1], StreamEvent::Element(f) if f.name() == "features" && f.ns() == NS_STREAMS)
        );
        assert!(matches!(&ev[2], StreamEvent::Element(m) if m.attr("to") == Some("b@x.lit")));
        let StreamEvent::Element(err) = &ev[3] else {
            panic!()
        };
        assert!(err.has_child("policy-violation", NS_STREAM_ERRORS));
        assert_eq!(
            StreamError::from_element(err),
            Some(StreamError::new(
                StreamCondition::PolicyViolation,
                "too <big>"
            ))
        );
        assert_eq!(StreamError::from_element(&msg), None);
        assert_eq!(ev[4], StreamEvent::Close);
    }

    #[test]
    fn a_received_condition_outside_the_list_reads_as_undefined_rfc6120_4_9_3_21() {
        let bytes = [
            &header(None, None, None)[..],
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        ]
        .concat();
        let mut p = StreamParser::new(10_000);
        p.feed(&bytes).unwrap();
        let _header = p.poll();
        let Some(StreamEvent::Element(err)) = p.poll() else {
            panic!()
        };
        let e = StreamError::from_element(&err).unwrap();
        assert_eq!(e.condition, StreamCondition::UndefinedCondition);
        assert_eq!(e.text, "");
    }
}
