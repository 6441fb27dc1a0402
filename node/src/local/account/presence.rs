//! Presence and the roster (RFC 6121): the user's own presence, subscription requests
//! and answers in both directions, roster sets and pushes.

use std::sync::Arc;

use minidom::Element;
use xor_xmpp::stream::NS_CLIENT;
use xor_xmpp::{Jid, stanza};

use super::{Account, iq_result, lock};
use crate::roster::NS_ROSTER;

impl Account {
    /// Sends our presence to every contact allowed to see it, and to our own other
    /// sessions and devices.
    pub(super) fn broadcast_presence(self: &Arc<Self>, presence: Element) {
        let contacts: Vec<String> = lock(&self.roster)
            .items()
            .filter(|i| i.subscription.they_see_us())
            .map(|i| i.jid.clone())
            .collect();
        for c in contacts {
            let mut p = presence.clone();
            stanza::set_attr(&mut p, "to", &c);
            self.send_out(p);
        }
    }

    pub(super) fn roster_set(self: &Arc<Self>, iq: &Element, query: &Element) -> Vec<Element> {
        let items: Vec<&Element> = query.children().filter(|c| c.name() == "item").collect();
        let [item] = items.as_slice() else {
            return vec![stanza::stanza_error(
                iq,
                "modify",
                "bad-request",
                "a roster set holds one item",
            )];
        };
        let Some(jid) = item.attr("jid").and_then(|j| Jid::parse(j).ok()) else {
            return vec![stanza::stanza_error(
                iq,
                "modify",
                "bad-request",
                "the item has no valid jid",
            )];
        };
        let pushed = if item.attr("subscription") == Some("remove") {
            let was = lock(&self.roster).get(&jid).cloned();
            lock(&self.roster).remove(&jid);
            if let Some(was) = was {
                for (cond, kind) in [
                    (was.subscription.we_see_them(), "unsubscribe"),
                    (was.subscription.they_see_us(), "unsubscribed"),
                ] {
                    if cond {
                        self.send_out(stanza::element(
                            "presence",
                            NS_CLIENT,
                            &[("to", &jid.bare_str()), ("type", kind)],
                        ));
                    }
                }
            }
            let mut gone = stanza::element(
                "item",
                NS_ROSTER,
                &[("jid", &jid.bare_str()), ("subscription", "remove")],
            );
            gone.append_text_node(String::new());
            self.sync_roster(&jid, None);
            gone
        } else {
            let name = item.attr("name").map(str::to_owned);
            let groups: Vec<String> = item
                .children()
                .filter(|c| c.name() == "group")
                .map(Element::text)
                .collect();
            match lock(&self.roster).update(&jid, |i| {
                i.name = name;
                i.groups = groups;
            }) {
                Some(i) => {
                    self.sync_roster(&jid, Some(&i));
                    i.element()
                }
                None => {
                    return vec![stanza::stanza_error(
                        iq,
                        "cancel",
                        "resource-constraint",
                        "the roster is full",
                    )];
                }
            }
        };
        self.roster_push(pushed);
        vec![iq_result(iq, None)]
    }

    pub(super) fn roster_push(&self, item: Element) {
        let mut push = stanza::element("iq", NS_CLIENT, &[("type", "set"), ("id", "push")]);
        stanza::set_attr(&mut push, "to", &self.jid.to_string());
        let mut q = stanza::element("query", NS_ROSTER, &[]);
        q.append_child(item);
        push.append_child(q);
        self.deliver(push);
    }

    /// The client's own (undirected) presence: remembered, broadcast; the first one
    /// also probes the contacts we may see.
    pub(super) fn own_presence(self: &Arc<Self>, _id: u64, p: Element) {
        let initial = {
            let mut st = lock(&self.state);
            let initial = st.presence.is_none() && p.attr("type").is_none();
            st.presence = (p.attr("type") != Some("unavailable")).then(|| p.clone());
            initial
        };
        self.broadcast_presence(p.clone());
        if initial {
            let watched: Vec<String> = lock(&self.roster)
                .items()
                .filter(|i| i.subscription.we_see_them())
                .map(|i| i.jid.clone())
                .collect();
            for c in watched {
                self.send_out(stanza::element(
                    "presence",
                    NS_CLIENT,
                    &[("to", &c), ("type", "probe")],
                ));
            }
        }
    }

    /// Directed presence from the client, including subscription management (RFC
    /// 6121 §3).
    pub(super) fn subscription_out(self: &Arc<Self>, p: &Element) {
        let Some(to) = stanza::to(p) else { return };
        let kind = p.attr("type").unwrap_or("available");
        let bare = to.bare();
        let mut out = p.clone();
        if matches!(
            kind,
            "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"
        ) {
            stanza::set_attr(&mut out, "to", &bare.to_string());
        }
        let item = match kind {
            "subscribe" => lock(&self.roster).update(&bare, |i| i.ask = true),
            "subscribed" => lock(&self.roster).update(&bare, |i| {
                i.subscription = i.subscription.set_from(true);
                i.pending_in = false;
            }),
            "unsubscribe" => lock(&self.roster).update(&bare, |i| {
                i.subscription = i.subscription.set_to(false);
                i.ask = false;
            }),
            "unsubscribed" => lock(&self.roster).update(&bare, |i| {
                i.subscription = i.subscription.set_from(false);
                i.pending_in = false;
            }),
            _ => None,
        };
        if let Some(i) = &item {
            self.roster_push(i.element());
            self.sync_roster(&bare, Some(i));
        }
        self.send_out(out);
        if kind == "subscribed" {
            // The new subscriber gets our current presence (RFC 6121 §3.1.5).
            let current = lock(&self.state).presence.clone();
            if let Some(mut cur) = current {
                stanza::set_attr(&mut cur, "to", &bare.to_string());
                self.send_out(cur);
            }
        }
    }

    /// Presence from a contact (RFC 6121 §3, §4).
    pub(super) fn subscription_in(self: &Arc<Self>, p: Element) {
        let Some(from) = stanza::from(&p) else { return };
        let bare = from.bare();
        let kind = p.attr("type").unwrap_or("available");
        let known = lock(&self.roster).get(&bare).cloned();
        match kind {
            "probe" => {
                if known.is_some_and(|i| i.subscription.they_see_us()) {
                    let current = lock(&self.state).presence.clone();
                    let mut answer = current.unwrap_or_else(|| {
                        stanza::element("presence", NS_CLIENT, &[("type", "unavailable")])
                    });
                    stanza::set_attr(&mut answer, "to", &bare.to_string());
                    self.send_out(answer);
                }
            }
            "subscribe" => {
                if known.as_ref().is_some_and(|i| i.subscription.they_see_us()) {
                    self.send_out(stanza::element(
                        "presence",
                        NS_CLIENT,
                        &[("to", &bare.to_string()), ("type", "subscribed")],
                    ));
                } else {
                    lock(&self.roster).update(&bare, |i| i.pending_in = true);
                    self.deliver(p);
                }
            }
            "subscribed" => {
                if let Some(i) = lock(&self.roster).update(&bare, |i| {
                    i.subscription = i.subscription.set_to(true);
                    i.ask = false;
                }) {
                    self.roster_push(i.element());
                }
                self.deliver(p);
            }
            "unsubscribed" | "unsubscribe" => {
                if let Some(i) = lock(&self.roster).update(&bare, |i| {
                    if kind == "unsubscribed" {
                        i.subscription = i.subscription.set_to(false);
                        i.ask = false;
                    } else {
                        i.subscription = i.subscription.set_from(false);
                    }
                }) {
                    self.roster_push(i.element());
                }
                self.deliver(p);
            }
            _ => self.deliver(p),
        }
    }
}
