//! Stanza helpers on `xmpp-parsers` types: addressing, XEP-0359 origin ids, XEP-0280
//! carbons wrapped in XEP-0297 forwarding, XEP-0203 delay stamps and RFC 6120 stanza
//! errors. Every namespace comes from [`ns`] (`xmpp_parsers::ns`).
//!
//! Stanzas relayed between devices stay `minidom` elements (the tree `xmpp-parsers`
//! is built on), so extensions xor does not model pass through intact; what xor reads
//! or writes itself goes through the typed values (README Decisions, "Typed stanzas").

use minidom::Element;
use rxml::{Namespace, NcName};
use xmpp_parsers::delay::Delay;
pub use xmpp_parsers::ns;
pub use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use xmpp_parsers::stanza_id::OriginId;

use crate::jid::Jid;
use crate::stream::NS_CLIENT;

/// `urn:xmpp:carbons:2` (XEP-0280).
pub const NS_CARBONS: &str = ns::CARBONS;
/// `urn:xmpp:forward:0` (XEP-0297).
pub const NS_FORWARD: &str = ns::FORWARD;
/// `urn:xmpp:sid:0` (XEP-0359).
pub const NS_SID: &str = ns::SID;
/// `urn:ietf:params:xml:ns:xmpp-session`: the session establishment of RFC 3921 §3,
/// which clients still ask for (RFC 6121 made it optional); `xmpp-parsers` has no
/// name for it.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

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

/// `j` as the `jid` crate's JID, the address type of `xmpp-parsers`. xor's JIDs are
/// PRECIS-prepared (RFC 7622); the `jid` crate prepares with stringprep (RFC 6122),
/// which accepts every prepared JID xor makes.
pub fn wire_jid(j: &Jid) -> Option<xmpp_parsers::jid::Jid> {
    xmpp_parsers::jid::Jid::new(&j.to_string()).ok()
}

/// The XEP-0359 `<origin-id/>` of a stanza.
pub fn origin_id(el: &Element) -> Option<String> {
    let child = el.get_child("origin-id", ns::SID)?;
    OriginId::try_from(child.clone()).ok().map(|o| o.id)
}

/// Adds an `<origin-id/>` unless there is one; returns the id in force.
pub fn ensure_origin_id(el: &mut Element, fresh: impl FnOnce() -> String) -> String {
    if let Some(id) = origin_id(el) {
        return id;
    }
    let id = fresh();
    el.append_child(OriginId { id: id.clone() }.into());
    id
}

/// A message kept for later, stamped with when it was kept (XEP-0203: "the entity
/// that delays the delivery … MUST add the delay element"), unless it already was.
/// `stamp` is an RFC 3339 UTC time (XEP-0082).
pub fn delayed(mut el: Element, by: &str, stamp: &str) -> Element {
    if el.has_child("delay", ns::DELAY) {
        return el;
    }
    let text = stamp;
    let Ok(stamp) = stamp.parse() else {
        return el;
    };
    let delay = Delay {
        from: xmpp_parsers::jid::Jid::new(by).ok(),
        stamp,
        data: None,
    };
    let mut d: Element = delay.into();
    // `xmpp-parsers` writes UTC as `+00:00`; XEP-0203's examples and XEP-0082's
    // profile write `Z`, which is what was given.
    set_attr(&mut d, "stamp", text);
    el.append_child(d);
    el
}

/// Whether a message is eligible for carbons (XEP-0280 §6): no `<private/>` child,
/// and of type `chat`, or of type `normal` (or none) with a body, or carrying a chat
/// state (XEP-0085) or a receipt (XEP-0184). Errors, group chat and headlines are not.
pub fn carbon_eligible(el: &Element) -> bool {
    if el.name() != "message" || el.has_child("private", NS_CARBONS) {
        return false;
    }
    let im_payload = el
        .children()
        .any(|c| c.ns() == ns::CHATSTATES || c.ns() == ns::RECEIPTS);
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
/// would) to `to` (the user's other device): `<message><received|sent><forwarded>`
/// (XEP-0280 §6, XEP-0297). A carbon is a relayed stanza: the forwarded message is
/// the original element, untouched (README Decisions, "Typed stanzas").
pub fn wrap_carbon(kind: Carbon, inner: Element, from: &Jid, to: &Jid) -> Element {
    let mut forwarded = Element::bare("forwarded", ns::FORWARD);
    forwarded.append_child(inner);
    let mut wrapper = Element::bare(kind.name(), ns::CARBONS);
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
        .find_map(|k| el.get_child(k.name(), ns::CARBONS).map(|w| (k, w)))?;
    let inner = wrapper
        .get_child("forwarded", ns::FORWARD)?
        .get_child("message", NS_CLIENT)?;
    Some((kind, inner.clone()))
}

/// The RFC 6120 §8.3 error reply to `original`: addresses swapped, the id kept, an
/// `<error/>` of `error_type` with `condition` and `text`.
pub fn stanza_error(
    original: &Element,
    error_type: ErrorType,
    condition: DefinedCondition,
    text: &str,
) -> Element {
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
    reply.append_child(StanzaError::new(error_type, condition, "en", text).into());
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
        let e = stanza_error(
            &m,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "nobody home",
        );
        assert_eq!(e.attr("to"), Some("a@x.lit/r"));
        assert_eq!(e.attr("type"), Some("error"));
        assert!(
            e.get_child("error", NS_CLIENT)
                .unwrap()
                .has_child("service-unavailable", ns::XMPP_STANZAS)
        );
    }

    #[test]
    fn a_delay_stamp_keeps_its_utc_z_xep0203() {
        let m = chat(&Jid::parse("b@x.lit").unwrap(), "x");
        let kept = delayed(m, "x.lit", "2026-11-28T19:51:39Z");
        let d = kept.get_child("delay", ns::DELAY).unwrap();
        assert_eq!(d.attr("stamp"), Some("2026-11-28T19:51:39Z"));
        assert_eq!(d.attr("from"), Some("x.lit"));
        // Stamped once: a second delay does not replace the first.
        let again = delayed(kept.clone(), "y.lit", "2030-01-01T00:00:00Z");
        assert_eq!(again, kept);
    }
}
