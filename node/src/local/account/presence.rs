//! Presence and the roster (RFC 6121): the user's own presence, subscription requests
//! and answers in both directions, roster sets and pushes.

use std::sync::Arc;

use minidom::Element;
use xor_xmpp::stream::NS_CLIENT;
use xor_xmpp::{Jid, stanza};

use xmpp_parsers::iq::Iq;
use xmpp_parsers::roster as wire;
use xor_xmpp::stanza::{DefinedCondition, ErrorType};

use super::{Account, iq_result, lock};

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
        let bad = |text| {
            vec![stanza::stanza_error(
                iq,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                text,
            )]
        };
        let Ok(query) = wire::Roster::try_from(query.clone()) else {
            return bad("not a roster query (RFC 6121 §2.1.5)");
        };
        let [item] = query.items.as_slice() else {
            return bad("a roster set holds one item");
        };
        let Ok(jid) = Jid::parse(item.jid.as_str()) else {
            return bad("the item has no valid jid");
        };
        let pushed = if item.subscription == wire::Subscription::Remove {
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
            self.sync_roster(&jid, None);
            crate::roster::removal(&jid)
        } else {
            let name = item.name.clone();
            let groups: Vec<String> = item.groups.iter().map(|g| g.0.clone()).collect();
            match lock(&self.roster).update(&jid, |i| {
                i.name = name;
                i.groups = groups;
            }) {
                Some(i) => {
                    self.sync_roster(&jid, Some(&i));
                    i.wire()
                }
                None => {
                    return vec![stanza::stanza_error(
                        iq,
                        ErrorType::Cancel,
                        DefinedCondition::ResourceConstraint,
                        "the roster is full",
                    )];
                }
            }
        };
        self.roster_push(pushed);
        vec![iq_result(iq, None)]
    }

    /// A roster push (RFC 6121 §2.1.6) of `item` to the client sessions.
    pub(super) fn roster_push(&self, item: Option<wire::Item>) {
        let Some(item) = item else { return };
        let push = Iq::Set {
            from: None,
            to: stanza::wire_jid(&self.jid),
            id: "push".into(),
            payload: wire::Roster {
                ver: None,
                items: vec![item],
            }
            .into(),
        };
        self.deliver(push.into());
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
            self.roster_push(i.wire());
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
                    self.roster_push(i.wire());
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
                    self.roster_push(i.wire());
                }
                self.deliver(p);
            }
            _ => self.deliver(p),
        }
    }
}
