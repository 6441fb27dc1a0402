//! Rosters agree across a user's devices. Each device is its user's "server" for the
//! clients logged in to it, so a subscription approved on the laptop would be unknown
//! to the phone, which would then never show itself to that contact. Every change the
//! user makes to the roster goes to the user's other devices as a `<sync/>` in a
//! headline message to the user's own bare JID (never carbon-copied, ordered with the
//! user's other stanzas to themselves); a device applies what its own user's other
//! devices send, pushes it to its clients, and shows or hides its presence to the
//! contact when the contact's right to see it changed.
//!
//! Only a stanza from this user's own bare JID is applied: direct streams are
//! mutually authenticated and a stanza must speak for its stream's peer, so no other
//! user can write into this roster.

use std::sync::Arc;

use minidom::Element;
use xor_xmpp::stream::NS_CLIENT;
use xor_xmpp::{Jid, stanza};

use super::{Account, lock};
use crate::roster::{Item, Subscription};

/// `urn:xor:roster-sync:0`.
pub const NS_ROSTER_SYNC: &str = "urn:xor:roster-sync:0";

fn flag(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// The `<sync/>` of an item (or of its removal).
fn sync_element(jid: &str, item: Option<&Item>) -> Element {
    let Some(i) = item else {
        return stanza::element("sync", NS_ROSTER_SYNC, &[("jid", jid), ("remove", "true")]);
    };
    let mut attrs = vec![
        ("jid", i.jid.as_str()),
        ("subscription", i.subscription.as_str()),
        ("ask", flag(i.ask)),
        ("pending-in", flag(i.pending_in)),
    ];
    if let Some(n) = &i.name {
        attrs.push(("name", n.as_str()));
    }
    let mut el = stanza::element("sync", NS_ROSTER_SYNC, &attrs);
    for g in i.groups.iter().take(64) {
        let mut group = stanza::element("group", NS_ROSTER_SYNC, &[]);
        group.append_text_node(g.clone());
        el.append_child(group);
    }
    el
}

impl Account {
    /// Tells this user's other devices about a roster change made here (`item`
    /// `None`: the contact was removed).
    pub(super) fn sync_roster(&self, jid: &Jid, item: Option<&Item>) {
        let mut m = stanza::element(
            "message",
            NS_CLIENT,
            &[("to", &self.jid.bare_str()), ("type", "headline")],
        );
        m.append_child(sync_element(&jid.bare_str(), item));
        self.send_out(m);
    }

    /// A roster change from another device of this user; whether `el` was one (it is
    /// then consumed, never shown to a client).
    pub(super) fn apply_sync(self: &Arc<Self>, el: &Element) -> bool {
        let Some(sync) = el.get_child("sync", NS_ROSTER_SYNC) else {
            return false;
        };
        if el.name() != "message" || stanza::from(el).map(|f| f.bare()) != Some(self.jid.bare()) {
            return true; // not ours to apply, and not for a client either
        }
        let Some(jid) = sync.attr("jid").and_then(|j| Jid::parse(j).ok()) else {
            return true;
        };
        let jid = jid.bare();
        let before = lock(&self.roster)
            .get(&jid)
            .is_some_and(|i| i.subscription.they_see_us());
        let pushed = if sync.attr("remove") == Some("true") {
            lock(&self.roster).remove(&jid);
            crate::roster::removal(&jid)
        } else {
            lock(&self.roster)
                .update(&jid, |i| {
                    i.subscription =
                        Subscription::from_attr(sync.attr("subscription").unwrap_or(""));
                    i.ask = sync.attr("ask") == Some("true");
                    i.pending_in = sync.attr("pending-in") == Some("true");
                    i.name = sync.attr("name").map(str::to_owned);
                    i.groups = sync
                        .children()
                        .filter(|c| c.name() == "group")
                        .take(64)
                        .map(Element::text)
                        .collect();
                })
                .and_then(|i| i.wire())
        };
        self.roster_push(pushed);
        let after = lock(&self.roster)
            .get(&jid)
            .is_some_and(|i| i.subscription.they_see_us());
        // The contact may now see this device, or no longer: tell it (RFC 6121 §3.1.5,
        // §3.3.4), as the device that made the change told it of itself.
        let current = lock(&self.state).presence.clone();
        if let Some(cur) = current
            && before != after
        {
            let mut p = if after {
                cur
            } else {
                stanza::element("presence", NS_CLIENT, &[("type", "unavailable")])
            };
            stanza::set_attr(&mut p, "to", &jid.bare_str());
            self.send_out(p);
        }
        true
    }
}
