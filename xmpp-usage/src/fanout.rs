//! Who gets a stanza (XEP-0415 "Sending a stanza"; forwards marked with XEP-0280
//! carbons in XEP-0297 wrappers; duplicates suppressed with XEP-0359 ids).
//!
//! - A stanza to a bare JID goes to every connected device of that user; to a full JID,
//!   only to the device with that resource.
//! - The sender's other devices get a `sent` carbon of every message eligible for
//!   carbons (XEP-0280 §6: chat, or normal with a body or IM payload, and no
//!   `<private/>`).
//! - A device that receives an eligible message from another user forwards it to its
//!   user's other devices as a `received` carbon — to a bare JID (which every device
//!   also gets directly) or to this device's full JID (which only it gets). Carbons are
//!   never forwarded again, so there are no loops.
//! - Every message carries an `<origin-id/>`; each device delivers a given
//!   (sender, origin-id) to its application once, whether it came directly or as a
//!   carbon. Only messages are suppressed, and only by origin-id: iq and presence ids
//!   are unique within a session only (RFC 6120 §8.1.3), so an iq or presence reusing
//!   an id from an earlier session is new, and no path delivers them twice.

use std::collections::{HashSet, VecDeque};

use minidom::Element;
use xor_overlay::id::NodeId;

use crate::jid::Jid;
use crate::stanza::{self, Carbon};

/// One device of a user: its node and full JID (known once its stream is open).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Device {
    /// The device's Node-ID.
    pub node: NodeId,
    /// Its full JID.
    pub jid: Jid,
}

/// A stanza handed to the application.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The stanza (unwrapped if it came as a carbon).
    pub stanza: Element,
    /// `Some(Sent)` for a copy of what one of the user's other devices sent,
    /// `Some(Received)` for a message another device received and forwarded.
    pub carbon: Option<Carbon>,
}

/// What to do with a stanza.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Give this to the application.
    pub deliver: Option<Delivery>,
    /// Send these on the streams to these devices.
    pub send: Vec<(NodeId, Element)>,
}

/// How many (sender, id) pairs are remembered for duplicate suppression.
const SEEN: usize = 16_384;

/// The fan-out decisions of one device.
#[derive(Debug)]
pub struct Router {
    me: Jid,
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl Router {
    /// The router of the device `me` (a full JID).
    pub fn new(me: Jid) -> Router {
        Router {
            me,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// This device's full JID.
    pub fn me(&self) -> &Jid {
        &self.me
    }

    /// Whether this message (sender, origin-id) was seen before; remembers it. Other
    /// stanzas are never duplicates (see the module docs).
    fn duplicate(&mut self, sender: &Jid, stanza: &Element) -> bool {
        if stanza.name() != "message" {
            return false;
        }
        let Some(id) = stanza::origin_id(stanza) else {
            return false;
        };
        let key = (sender.bare_str(), id);
        if !self.seen.insert(key.clone()) {
            return true;
        }
        if self.order.len() >= SEEN
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(key);
        false
    }

    /// An application stanza to send. `recipients` are the connected devices of the
    /// addressee, `own` this user's other connected devices. `fresh_id` makes an
    /// origin-id if the stanza has none.
    pub fn outgoing(
        &mut self,
        mut stanza: Element,
        recipients: &[Device],
        own: &[Device],
        fresh_id: impl FnOnce() -> String,
    ) -> Plan {
        stanza::set_attr(&mut stanza, "from", &self.me.to_string());
        let is_message = stanza.name() == "message";
        if is_message {
            stanza::ensure_origin_id(&mut stanza, fresh_id);
        }
        let me = self.me.clone();
        self.duplicate(&me, &stanza); // our own copy: a carbon of it coming back is a duplicate
        let to = stanza::to(&stanza);
        let mut plan = Plan::default();
        for d in recipients {
            let addressed = match &to {
                Some(t) if !t.is_bare() => *t == d.jid,
                _ => true,
            };
            if addressed && d.jid != self.me {
                plan.send.push((d.node, stanza.clone()));
            }
        }
        if is_message && stanza::carbon_eligible(&stanza) {
            for d in own
                .iter()
                .filter(|d| d.jid != self.me && !recipients.contains(d))
            {
                plan.send.push((
                    d.node,
                    stanza::wrap_carbon(Carbon::Sent, stanza.clone(), &self.me, &d.jid),
                ));
            }
        }
        plan
    }

    /// A stanza that arrived on the stream from `from` (already checked to speak for
    /// its `from`). `own` are this user's other connected devices.
    pub fn incoming(&mut self, stanza: Element, from: &Device, own: &[Device]) -> Plan {
        self.incoming_from(stanza, from, own, &[])
    }

    /// [`Router::incoming`], knowing which devices this one has a direct stream to.
    ///
    /// A `received` carbon of a message to this user's bare JID is a second path for
    /// a message the sender also sends to this device directly (XEP-0415: to every
    /// connected device). When the sender's device is `connected`, the direct copy
    /// comes over that ordered stream and the carbon is ignored: under load a carbon
    /// can lag behind by more than the duplicate window and would then arrive again,
    /// out of order (RFC 6120 §10.1). When it is not connected, the carbon is how the
    /// message gets here.
    pub fn incoming_from(
        &mut self,
        stanza: Element,
        from: &Device,
        own: &[Device],
        connected: &[Device],
    ) -> Plan {
        let own_device = from.jid.bare() == self.me.bare();
        if own_device && let Some((kind, inner)) = stanza::unwrap_carbon(&stanza) {
            let sender = stanza::from(&inner).unwrap_or_else(|| from.jid.clone());
            let to_all = stanza::to(&inner).is_none_or(|t| t.is_bare());
            if kind == Carbon::Received && to_all && connected.iter().any(|d| d.jid == sender) {
                return Plan::default();
            }
            if self.duplicate(&sender, &inner) {
                return Plan::default();
            }
            return Plan {
                deliver: Some(Delivery {
                    stanza: inner,
                    carbon: Some(kind),
                }),
                send: vec![],
            };
        }
        if self.duplicate(&from.jid, &stanza) {
            return Plan::default();
        }
        let mut send = Vec::new();
        if !own_device && stanza::carbon_eligible(&stanza) {
            for d in own
                .iter()
                .filter(|d| d.jid != self.me && d.node != from.node)
            {
                send.push((
                    d.node,
                    stanza::wrap_carbon(Carbon::Received, stanza.clone(), &self.me, &d.jid),
                ));
            }
        }
        Plan {
            deliver: Some(Delivery {
                stanza,
                carbon: None,
            }),
            send,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u128, jid: &str) -> Device {
        Device {
            node: NodeId(n),
            jid: Jid::parse(jid).unwrap(),
        }
    }

    #[test]
    fn a_message_to_a_bare_jid_reaches_every_device_and_sent_carbons_go_home() {
        let mut r = Router::new(Jid::parse("romeo@m.lit/phone").unwrap());
        let juliet = [dev(1, "juliet@c.lit/a"), dev(2, "juliet@c.lit/b")];
        let own = [dev(9, "romeo@m.lit/laptop")];
        let plan = r.outgoing(
            stanza::chat(&Jid::parse("juliet@c.lit").unwrap(), "hi"),
            &juliet,
            &own,
            || "o1".into(),
        );
        let nodes: Vec<NodeId> = plan.send.iter().map(|(n, _)| *n).collect();
        assert_eq!(nodes, vec![NodeId(1), NodeId(2), NodeId(9)]);
        assert_eq!(stanza::origin_id(&plan.send[0].1).as_deref(), Some("o1"));
        assert_eq!(plan.send[0].1.attr("from"), Some("romeo@m.lit/phone"));
        assert_eq!(
            stanza::unwrap_carbon(&plan.send[2].1).map(|(k, _)| k),
            Some(Carbon::Sent)
        );
    }

    #[test]
    fn a_full_jid_reaches_only_that_device() {
        let mut r = Router::new(Jid::parse("romeo@m.lit/phone").unwrap());
        let juliet = [dev(1, "juliet@c.lit/a"), dev(2, "juliet@c.lit/b")];
        let plan = r.outgoing(
            stanza::chat(&Jid::parse("juliet@c.lit/b").unwrap(), "hi"),
            &juliet,
            &[],
            || "o".into(),
        );
        assert_eq!(
            plan.send.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![NodeId(2)]
        );
    }

    #[test]
    fn iq_and_presence_ids_from_an_earlier_session_are_not_duplicates() {
        let romeo = dev(7, "romeo@m.lit/phone");
        let mut r = Router::new(Jid::parse("juliet@c.lit/a").unwrap());
        let iq: Element =
            "<iq xmlns='jabber:client' type='get' id='1' from='romeo@m.lit/phone'><ping xmlns='urn:xmpp:ping'/></iq>"
                .parse()
                .unwrap();
        let presence: Element = "<presence xmlns='jabber:client' id='1' from='romeo@m.lit/phone'/>"
            .parse()
            .unwrap();
        for _ in 0..3 {
            assert!(r.incoming(iq.clone(), &romeo, &[]).deliver.is_some());
            assert!(r.incoming(presence.clone(), &romeo, &[]).deliver.is_some());
        }
        // A message without an origin-id reusing an id is new too.
        let mut m = stanza::chat(&Jid::parse("juliet@c.lit").unwrap(), "hi");
        stanza::set_attr(&mut m, "id", "1");
        assert!(r.incoming(m.clone(), &romeo, &[]).deliver.is_some());
        assert!(r.incoming(m, &romeo, &[]).deliver.is_some());
    }

    #[test]
    fn full_jid_messages_are_carbon_copied_and_private_ones_are_not_xep0280() {
        let romeo = dev(7, "romeo@m.lit/phone");
        let other = dev(2, "juliet@c.lit/b");
        let mut a = Router::new(Jid::parse("juliet@c.lit/a").unwrap());
        let mut m = stanza::chat(&Jid::parse("juliet@c.lit/a").unwrap(), "just you");
        stanza::set_attr(&mut m, "from", "romeo@m.lit/phone");
        stanza::ensure_origin_id(&mut m, || "f1".into());
        let plan = a.incoming(m.clone(), &romeo, std::slice::from_ref(&other));
        assert_eq!(plan.send.len(), 1, "a received carbon for juliet/b");
        assert_eq!(
            stanza::unwrap_carbon(&plan.send[0].1).map(|(k, _)| k),
            Some(Carbon::Received)
        );
        let mut p = m.clone();
        p.append_child(stanza::element("private", stanza::NS_CARBONS, &[]));
        stanza::set_attr(&mut p, "id", "p");
        p.remove_child("origin-id", stanza::NS_SID);
        stanza::ensure_origin_id(&mut p, || "f2".into());
        let plan = a.incoming(p.clone(), &romeo, std::slice::from_ref(&other));
        assert!(plan.deliver.is_some());
        assert!(plan.send.is_empty(), "<private/> is not carbon-copied");
        // Nor sent carbons of a private message, nor of a headline.
        let mut r = Router::new(Jid::parse("romeo@m.lit/phone").unwrap());
        let own = [dev(9, "romeo@m.lit/laptop")];
        let juliet = [dev(1, "juliet@c.lit/a")];
        let mut q = stanza::chat(&Jid::parse("juliet@c.lit").unwrap(), "secret");
        q.append_child(stanza::element("private", stanza::NS_CARBONS, &[]));
        assert_eq!(r.outgoing(q, &juliet, &own, || "q".into()).send.len(), 1);
        let mut h = stanza::chat(&Jid::parse("juliet@c.lit").unwrap(), "news");
        stanza::set_attr(&mut h, "type", "headline");
        assert_eq!(r.outgoing(h, &juliet, &own, || "h".into()).send.len(), 1);
    }

    #[test]
    fn a_carbon_of_a_bare_jid_message_is_ignored_when_the_sender_is_connected() {
        let romeo = dev(7, "romeo@m.lit/phone");
        let mut a = Router::new(Jid::parse("juliet@c.lit/a").unwrap());
        let mut b = Router::new(Jid::parse("juliet@c.lit/b").unwrap());
        let (da, db) = (dev(1, "juliet@c.lit/a"), dev(2, "juliet@c.lit/b"));
        let mut m = stanza::chat(&Jid::parse("juliet@c.lit").unwrap(), "hi");
        stanza::set_attr(&mut m, "from", "romeo@m.lit/phone");
        stanza::ensure_origin_id(&mut m, || "x".into());
        let carbon = a
            .incoming(m.clone(), &romeo, std::slice::from_ref(&db))
            .send[0]
            .1
            .clone();
        let both = [da.clone(), romeo.clone()];
        // b has a stream to romeo: the carbon is ignored, the direct copy delivered.
        let p = b.incoming_from(carbon.clone(), &da, std::slice::from_ref(&da), &both);
        assert_eq!(p, Plan::default());
        let p = b.incoming_from(m, &romeo, std::slice::from_ref(&da), &both);
        assert!(p.deliver.is_some(), "the direct copy is not a duplicate");
        // Without a stream to romeo, the carbon is how the message arrives.
        let mut c = Router::new(Jid::parse("juliet@c.lit/c").unwrap());
        let p = c.incoming_from(
            carbon,
            &da,
            std::slice::from_ref(&da),
            std::slice::from_ref(&da),
        );
        assert!(p.deliver.is_some());
    }

    #[test]
    fn received_messages_are_carbon_copied_once_and_never_forwarded_again() {
        let romeo = dev(7, "romeo@m.lit/phone");
        let mut a = Router::new(Jid::parse("juliet@c.lit/a").unwrap());
        let mut b = Router::new(Jid::parse("juliet@c.lit/b").unwrap());
        let (da, db) = (dev(1, "juliet@c.lit/a"), dev(2, "juliet@c.lit/b"));
        let mut m = stanza::chat(&Jid::parse("juliet@c.lit").unwrap(), "hi");
        stanza::set_attr(&mut m, "from", "romeo@m.lit/phone");
        stanza::ensure_origin_id(&mut m, || "x".into());
        // a gets it first and forwards a received carbon to b.
        let pa = a.incoming(m.clone(), &romeo, std::slice::from_ref(&db));
        assert!(pa.deliver.is_some());
        assert_eq!(pa.send.len(), 1);
        // b gets the carbon, then the direct copy: delivered once.
        let pb1 = b.incoming(pa.send[0].1.clone(), &da, std::slice::from_ref(&da));
        assert_eq!(
            pb1.deliver.as_ref().map(|d| d.carbon),
            Some(Some(Carbon::Received))
        );
        assert!(pb1.send.is_empty(), "carbons are not forwarded");
        let pb2 = b.incoming(m, &romeo, std::slice::from_ref(&da));
        assert_eq!(
            pb2,
            Plan::default(),
            "duplicate suppressed, not forwarded again"
        );
    }
}
