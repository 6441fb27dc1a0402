//! What an embedding hears: typed events made from the stanzas the account hands its
//! one session, kept in a bounded queue that never blocks the node.
//!
//! Overflow policy: **drop the oldest**. A game that stops draining (a loading
//! screen, a paused main loop) must not stall the streams every other device shares
//! with this one, so the queue never pushes back: when it is full the oldest event is
//! discarded and counted ([`EventQueue::dropped`]). What stays is always the newest
//! `capacity` events, in arrival order.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use minidom::Element;
use tokio::sync::Notify;
use xor_xmpp::{Jid, stanza};

use xmpp_parsers::iq::Iq;
use xmpp_parsers::roster as wire;
use xor_xmpp::stanza::{DefinedCondition, ErrorType, StanzaError};

/// Something that happened for the embedding's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A message with a body.
    Message {
        /// The sender's device (full JID).
        from: Jid,
        /// The message's `id`, if it had one.
        id: Option<String>,
        /// The text.
        body: String,
    },
    /// A message this user sent could not be delivered.
    MessageFailed {
        /// The recipient it was for.
        to: Option<Jid>,
        /// The `id` it was sent with ([`super::Chat::send_message`] returns it).
        id: Option<String>,
        /// The error condition and text.
        error: String,
    },
    /// A contact's device came online, changed status, or went offline.
    Presence {
        /// The device (full JID).
        from: Jid,
        /// Online or not.
        available: bool,
        /// `away`, `chat`, `dnd`, `xa`, or none (plain online).
        show: Option<String>,
        /// Free text.
        status: Option<String>,
    },
    /// Someone asks to see this user's presence: answer with
    /// [`super::Chat::approve`] or [`super::Chat::deny`].
    SubscriptionRequest {
        /// Who asks (bare JID).
        from: Jid,
    },
    /// A contact approved this user's request: their presence follows.
    SubscriptionApproved {
        /// The contact (bare JID).
        from: Jid,
    },
    /// A contact refused or revoked this user's subscription, or stopped watching.
    SubscriptionRevoked {
        /// The contact (bare JID).
        from: Jid,
    },
    /// A contact's entry changed (the roster push of RFC 6121 §2.1.6).
    ContactChanged(super::Contact),
}

impl ChatEvent {
    /// The event a stanza for the session stands for, if any, and the answer the
    /// session owes for it (an iq the embedding cannot serve).
    pub(crate) fn from_stanza(el: &Element) -> (Option<ChatEvent>, Option<Element>) {
        match el.name() {
            "message" => (message(el), None),
            "presence" => (presence(el), None),
            "iq" => iq(el),
            _ => (None, None),
        }
    }
}

fn child_text(el: &Element, name: &str) -> Option<String> {
    el.children()
        .find(|c| c.name() == name)
        .map(Element::text)
        .filter(|t| !t.is_empty())
}

/// `condition: text` of a stanza's RFC 6120 §8.3 error.
fn error_text(el: &Element) -> String {
    let Some(error) = el
        .children()
        .find(|c| c.name() == "error")
        .and_then(|e| StanzaError::try_from(e.clone()).ok())
    else {
        return "undelivered".into();
    };
    let condition = Element::from(error.defined_condition).name().to_owned();
    match error.texts.into_values().next() {
        Some(t) => format!("{condition}: {t}"),
        None => condition,
    }
}

fn message(el: &Element) -> Option<ChatEvent> {
    let id = el.attr("id").map(str::to_owned);
    if el.attr("type") == Some("error") {
        return Some(ChatEvent::MessageFailed {
            to: stanza::from(el),
            id,
            error: error_text(el),
        });
    }
    Some(ChatEvent::Message {
        from: stanza::from(el)?,
        id,
        body: stanza::body(el)?,
    })
}

fn presence(el: &Element) -> Option<ChatEvent> {
    let from = stanza::from(el)?;
    let bare = from.bare();
    match el.attr("type") {
        None => Some(ChatEvent::Presence {
            from,
            available: true,
            show: child_text(el, "show"),
            status: child_text(el, "status"),
        }),
        Some("unavailable") => Some(ChatEvent::Presence {
            from,
            available: false,
            show: None,
            status: child_text(el, "status"),
        }),
        Some("subscribe") => Some(ChatEvent::SubscriptionRequest { from: bare }),
        Some("subscribed") => Some(ChatEvent::SubscriptionApproved { from: bare }),
        Some("unsubscribed" | "unsubscribe") => Some(ChatEvent::SubscriptionRevoked { from: bare }),
        _ => None,
    }
}

fn iq(el: &Element) -> (Option<ChatEvent>, Option<Element>) {
    let payload = match Iq::try_from(el.clone()) {
        Ok(Iq::Get { payload, .. } | Iq::Set { payload, .. }) => payload,
        _ => return (None, None),
    };
    // A roster push from the account (RFC 6121 §2.1.6: no `from`, or our own).
    if el.attr("from").is_none()
        && let Ok(roster) = wire::Roster::try_from(payload)
    {
        let contact = roster.items.first().and_then(super::Contact::from_item);
        return (contact.map(ChatEvent::ContactChanged), None);
    }
    // Someone else's request: the embedding serves none (RFC 6120 §8.4).
    let answer = stanza::stanza_error(
        el,
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "not served by this client",
    );
    (None, Some(answer))
}

/// A bounded queue of events; see the module docs for the overflow policy.
#[derive(Debug)]
pub struct EventQueue {
    events: Mutex<VecDeque<ChatEvent>>,
    capacity: usize,
    dropped: AtomicU64,
    closed: AtomicBool,
    ready: Notify,
}

impl EventQueue {
    /// A queue holding at most `capacity` (at least 1) events.
    pub fn new(capacity: usize) -> EventQueue {
        EventQueue {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<ChatEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event, discarding the oldest when full. Never waits.
    pub fn push(&self, event: ChatEvent) {
        {
            let mut q = self.lock();
            if q.len() >= self.capacity {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(event);
        }
        self.ready.notify_waiters();
    }

    /// The oldest event, if there is one.
    pub fn try_pop(&self) -> Option<ChatEvent> {
        self.lock().pop_front()
    }

    /// The oldest event, waiting for one; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<ChatEvent> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(e) = self.try_pop() {
                return Some(e);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            ready.await;
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Events discarded because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// No more events will come; waiters return once the queue is drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> ChatEvent {
        ChatEvent::Message {
            from: Jid::parse("a@x.test/r").unwrap(),
            id: None,
            body: n.to_string(),
        }
    }

    #[test]
    fn a_full_queue_keeps_the_newest_events_in_order_and_counts_the_rest() {
        let q = EventQueue::new(3);
        for n in 0..10 {
            q.push(msg(n));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 7);
        let kept: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(kept, vec![msg(7), msg(8), msg(9)]);
    }

    #[tokio::test]
    async fn a_waiter_wakes_for_a_new_event_and_for_close() {
        let q = std::sync::Arc::new(EventQueue::new(4));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { (q.pop().await, q.pop().await) }
        });
        tokio::task::yield_now().await;
        q.push(msg(1));
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.unwrap(), (Some(msg(1)), None));
    }

    #[test]
    fn stanzas_become_events() {
        let parse = |s: &str| s.parse::<Element>().unwrap();
        let m = parse(
            "<message xmlns='jabber:client' from='b@x.test/p' id='7'><body>hi</body></message>",
        );
        assert_eq!(
            ChatEvent::from_stanza(&m).0,
            Some(ChatEvent::Message {
                from: Jid::parse("b@x.test/p").unwrap(),
                id: Some("7".into()),
                body: "hi".into()
            })
        );
        let e = parse(
            "<message xmlns='jabber:client' type='error' from='b@x.test' id='9'><error type='wait'>\
             <recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text></error></message>",
        );
        assert_eq!(
            ChatEvent::from_stanza(&e).0,
            Some(ChatEvent::MessageFailed {
                to: Some(Jid::parse("b@x.test").unwrap()),
                id: Some("9".into()),
                error: "recipient-unavailable: gone".into()
            })
        );
        let p = parse(
            "<presence xmlns='jabber:client' from='b@x.test/p'><show>away</show><status>brb</status></presence>",
        );
        assert!(matches!(
            ChatEvent::from_stanza(&p).0,
            Some(ChatEvent::Presence { available: true, show: Some(s), status: Some(t), .. }) if s == "away" && t == "brb"
        ));
        let s = parse("<presence xmlns='jabber:client' from='b@x.test/p' type='subscribe'/>");
        assert_eq!(
            ChatEvent::from_stanza(&s).0,
            Some(ChatEvent::SubscriptionRequest {
                from: Jid::parse("b@x.test").unwrap()
            })
        );
        // A stranger's iq is answered, not surfaced.
        let iq = parse(
            "<iq xmlns='jabber:client' type='get' id='v' from='b@x.test/p' to='a@x.test/g'>\
             <query xmlns='jabber:iq:version'/></iq>",
        );
        let (event, answer) = ChatEvent::from_stanza(&iq);
        assert!(event.is_none());
        let answer = answer.unwrap();
        assert_eq!(answer.attr("type"), Some("error"));
        assert_eq!(answer.attr("to"), Some("b@x.test/p"));
        // Chat states without a body are not messages for the game.
        let cs = parse(
            "<message xmlns='jabber:client' from='b@x.test/p'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert_eq!(ChatEvent::from_stanza(&cs).0, None);
    }
}
