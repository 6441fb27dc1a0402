//! A small element tree read with quick-xml, keeping each element's exact byte span
//! (signatures cover the bytes, §11.1). One parser reads both the structure and the
//! spans, so what is verified is what is interpreted.
//!
//! DOCTYPE declarations are refused (no entity expansion at all); only the five
//! predefined entities and character references are resolved. Nesting is limited.

use std::ops::Range;

use quick_xml::NsReader;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::ConfigError;

/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 32;

/// One element.
#[derive(Debug, Clone)]
pub(super) struct Element {
    /// Resolved namespace ("" when unbound).
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes other than namespace declarations: (namespace, local name, value).
    pub attrs: Vec<(String, String, String)>,
    /// Child elements in order.
    pub children: Vec<Element>,
    /// The element's own text (character data and CDATA, concatenated).
    pub text: String,
    /// Bytes from the `<` of the start tag to the `>` of the end tag.
    pub span: Range<usize>,
}

impl Element {
    /// The unprefixed attribute `name`.
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, n, _)| ns.is_empty() && n == name)
            .map(|(_, _, v)| v.as_str())
    }
}

fn xml_err(offset: u64, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Xml {
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
        reason: e.to_string(),
    }
}

fn resolved(ns: ResolveResult<'_>, offset: u64) -> Result<String, ConfigError> {
    match ns {
        ResolveResult::Bound(n) => Ok(n.0.to_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(xml_err(offset, format!("unknown prefix {p}"))),
    }
}

fn start(reader: &NsReader<&[u8]>, e: &BytesStart<'_>, at: usize) -> Result<Element, ConfigError> {
    let pos = reader.buffer_position();
    let (ns, local) = reader.resolver().resolve_element(e.name());
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| xml_err(pos, e))?;
        let key = a.key.0;
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (ans, local) = reader.resolver().resolve_attribute(a.key);
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| xml_err(pos, e))?;
        attrs.push((
            resolved(ans, pos)?,
            local.as_ref().to_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        ns: resolved(ns, pos)?,
        name: local.as_ref().to_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
        span: at..at,
    })
}

fn entity(r: &BytesRef<'_>, offset: u64) -> Result<char, ConfigError> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| xml_err(offset, e))? {
        return Ok(c);
    }
    match r.xml10_content().as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(xml_err(offset, format!("undefined entity &{other};"))),
    }
}

/// Parses `text` into its root element.
pub(super) fn parse(text: &str) -> Result<Element, ConfigError> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position();
        let at = usize::try_from(before).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => return Err(xml_err(reader.error_position(), e)),
        };
        let after = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(xml_err(before, "content after the root element"));
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(xml_err(before, "elements nested too deeply"));
                }
                let el = start(&reader, &e, at)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                let mut el = start(&reader, &e, at)?;
                el.span = at..after;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(xml_err(before, "unbalanced end tag"));
                };
                el.span.end = after;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(xml_err(before, "text outside the root element")),
                }
            }
            Event::CData(c) => {
                let data = c.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&data),
                    None => return Err(xml_err(before, "CDATA outside the root element")),
                }
            }
            Event::GeneralRef(r) => {
                let c = entity(&r, before)?;
                match stack.last_mut() {
                    Some(el) => el.text.push(c),
                    None => return Err(xml_err(before, "reference outside the root element")),
                }
            }
            Event::DocType(_) => return Err(xml_err(before, "DOCTYPE is not allowed")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(xml_err(
            reader.buffer_position(),
            "document ends inside an element",
        ));
    }
    root.ok_or_else(|| xml_err(0, "no root element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels))
    }

    /// The configuration document is read with an explicit stack: nesting up to the
    /// limit is read, one level more is an error, and 100,000 levels cost no
    /// recursion (hardening issue, defect 1).
    #[test]
    fn nesting_is_limited_at_the_limit() {
        let root = parse(&nested(MAX_DEPTH)).expect("at the limit");
        let mut depth = 1;
        let mut el = &root;
        while let Some(c) = el.children.first() {
            depth += 1;
            el = c;
        }
        assert_eq!(depth, MAX_DEPTH);
        let e = parse(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
        assert!(parse(&nested(100_000)).is_err());
    }
}
