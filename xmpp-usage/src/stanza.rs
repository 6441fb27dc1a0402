//! Stanza helpers: addressing, XEP-0359 origin ids, XEP-0280 carbons wrapped in
//! XEP-0297 forwarding, and RFC 6120 stanza errors.

use minidom::Element;
use rxml::{Namespace, NcName};

use crate::jid::Jid;
use crate::stream::{NS_CLIENT, NS_STANZA_ERRORS};

/// `urn:xmpp:carbons:2` (XEP-0280).
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// `urn:xmpp:forward:0` (XEP-0297).
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// `urn:xmpp:sid:0` (XEP-0359).
pub const NS_SID: &str = "urn:xmpp:sid:0";

fn ncname(name: &str) -> NcName {
    NcName::try_from(name).expect("attribute names used here are valid NCNames")
}

/// Sets (or replaces) an attribute.
pub fn set_attr(el: &mut Element, name: &str, value: &str) {
    let n = ncname(name);
    el.attrs_mut().remove(&Namespace::NONE, &n);
    el.set_attr(Namespace::NONE, n, value.to_owned());
}

/// Removes an attribute.
pub fn remove_attr(el: &mut Element, name: &str) {
    el.attrs_mut().remove(&Namespace::NONE, &ncname(name));
}

/// A new element with attributes.
pub fn element(name: &str, ns: &str, attrs: &[(&str, &str)]) -> Element {
    let mut el = Element::bare(name, ns);
    for (k, v) in attrs {
        set_attr(&mut el, k, v);
    }
    el
}

/// Whether `el` is a message, presence or iq stanza.
pub fn is_stanza(el: &Element) -> bool {
    el.ns() == NS_CLIENT && matches!(el.name(), "message" | "presence" | "iq")
}

/// The stanza's `to` as a JID, if present and valid.
pub fn to(el: &Element) -> Option<Jid> {
    el.attr("to").and_then(|t| Jid::parse(t).ok())
}

/// The stanza's `from` as a JID, if present and valid.
pub fn from(el: &Element) -> Option<Jid> {
    el.attr("from").and_then(|t| Jid::parse(t).ok())
}

/// The XEP-0359 `<origin-id/>` of a stanza.
pub fn origin_id(el: &Element) -> Option<String> {
    el.get_child("origin-id", NS_SID)
        .and_then(|o| o.attr("id"))
        .map(str::to_owned)
}

/// Adds an `<origin-id/>` unless there is one; returns the id in force.
pub fn ensure_origin_id(el: &mut Element, fresh: impl FnOnce() -> String) -> String {
    if let Some(id) = origin_id(el) {
        return id;
    }
    let id = fresh();
    el.append_child(element("origin-id", NS_SID, &[("id", &id)]));
    id
}

/// Whether a message is eligible for carbons (XEP-0280 §6): no `<private/>` child,
/// and of type `chat`, or of type `normal` (or none) with a body, or carrying a chat
/// state (XEP-0085) or a receipt (XEP-0184). Errors, group chat and headlines are not.
pub fn carbon_eligible(el: &Element) -> bool {
    if el.name() != "message" || el.has_child("private", NS_CARBONS) {
        return false;
    }
    let im_payload = el.children().any(|c| {
        c.ns() == "http://jabber.org/protocol/chatstates" || c.ns() == "urn:xmpp:receipts"
    });
    match el.attr("type").unwrap_or("normal") {
        "chat" => true,
        "normal" => el.has_child("body", NS_CLIENT) || im_payload,
        _ => false,
    }
}

/// Which carbon (XEP-0280 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carbon {
    /// A message one of the user's other devices received.
    Received,
    /// A message one of the user's other devices sent.
    Sent,
}

impl Carbon {
    fn name(self) -> &'static str {
        match self {
            Carbon::Received => "received",
            Carbon::Sent => "sent",
        }
    }
}

/// Wraps `inner` in a carbon addressed from `from` (the user's bare JID, as a server
/// would) to `to` (the user's other device).
pub fn wrap_carbon(kind: Carbon, inner: Element, from: &Jid, to: &Jid) -> Element {
    let mut forwarded = Element::bare("forwarded", NS_FORWARD);
    forwarded.append_child(inner);
    let mut wrapper = Element::bare(kind.name(), NS_CARBONS);
    wrapper.append_child(forwarded);
    let mut msg = element(
        "message",
        NS_CLIENT,
        &[("from", &from.bare_str()), ("to", &to.to_string())],
    );
    msg.append_child(wrapper);
    msg
}

/// The carbon kind and the forwarded message, if `el` is a carbon.
pub fn unwrap_carbon(el: &Element) -> Option<(Carbon, Element)> {
    if !el.is("message", NS_CLIENT) {
        return None;
    }
    let (kind, wrapper) = [Carbon::Received, Carbon::Sent]
        .into_iter()
        .find_map(|k| el.get_child(k.name(), NS_CARBONS).map(|w| (k, w)))?;
    let inner = wrapper
        .get_child("forwarded", NS_FORWARD)?
        .get_child("message", NS_CLIENT)?;
    Some((kind, inner.clone()))
}

/// The RFC 6120 §8.3 error reply to `original`.
pub fn stanza_error(original: &Element, error_type: &str, condition: &str, text: &str) -> Element {
    let mut reply = element(original.name(), NS_CLIENT, &[("type", "error")]);
    if let Some(id) = original.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    if let Some(f) = original.attr("from") {
        set_attr(&mut reply, "to", f);
    }
    if let Some(t) = original.attr("to") {
        set_attr(&mut reply, "from", t);
    }
    let mut error = element("error", NS_CLIENT, &[("type", error_type)]);
    error.append_child(Element::bare(condition, NS_STANZA_ERRORS));
    let mut t = Element::bare("text", NS_STANZA_ERRORS);
    t.append_text(text);
    error.append_child(t);
    reply.append_child(error);
    reply
}

/// A chat message with a body (for tests, examples and the demo).
pub fn chat(to: &Jid, body: &str) -> Element {
    let mut m = element(
        "message",
        NS_CLIENT,
        &[("to", &to.to_string()), ("type", "chat")],
    );
    let mut b = Element::bare("body", NS_CLIENT);
    b.append_text(body);
    m.append_child(b);
    m
}

/// A message's body text.
pub fn body(el: &Element) -> Option<String> {
    el.get_child("body", NS_CLIENT).map(Element::text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carbons_round_trip_xep0280() {
        let romeo = Jid::parse("romeo@montague.lit/phone").unwrap();
        let mut inner = chat(&Jid::parse("juliet@capulet.lit").unwrap(), "wherefore");
        let id = ensure_origin_id(&mut inner, || "abc".into());
        assert_eq!(id, "abc");
        assert_eq!(ensure_origin_id(&mut inner, || "other".into()), "abc");
        let wrapped = wrap_carbon(
            Carbon::Sent,
            inner.clone(),
            &romeo,
            &romeo.with_resource("laptop"),
        );
        assert_eq!(wrapped.attr("from"), Some("romeo@montague.lit"));
        let (kind, back) = unwrap_carbon(&wrapped).unwrap();
        assert_eq!(kind, Carbon::Sent);
        assert_eq!(back, inner);
        assert_eq!(unwrap_carbon(&inner), None);
    }

    #[test]
    fn stanza_errors_swap_addresses_rfc6120_8_3() {
        let mut m = chat(&Jid::parse("b@x.lit").unwrap(), "x");
        set_attr(&mut m, "from", "a@x.lit/r");
        set_attr(&mut m, "id", "7");
        let e = stanza_error(&m, "cancel", "service-unavailable", "nobody home");
        assert_eq!(e.attr("to"), Some("a@x.lit/r"));
        assert_eq!(e.attr("type"), Some("error"));
        assert!(
            e.get_child("error", NS_CLIENT)
                .unwrap()
                .has_child("service-unavailable", NS_STANZA_ERRORS)
        );
    }
}
