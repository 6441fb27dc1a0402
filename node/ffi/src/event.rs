//! Events as the C side sees them: a plain struct whose strings point into a buffer
//! the library owns.

use xor_node::embed::{ChatEvent, Show};

/// What happened.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XorEventKind {
    /// A message: `from` the sender's device, `text` the body, `id` its id.
    Message = 1,
    /// A message this user sent failed: `from` the recipient, `text` the error, `id`
    /// the id `xor_send` returned.
    MessageFailed = 2,
    /// A contact's device: `from` it, `available` 1 or 0, `id` the show value
    /// (`away`, `chat`, `dnd`, `xa`, or empty), `text` the status.
    Presence = 3,
    /// `from` (bare JID) asks to see this user's presence: `xor_approve` or
    /// `xor_deny`.
    SubscriptionRequest = 4,
    /// `from` approved this user's subscription.
    SubscriptionApproved = 5,
    /// `from` refused or ended a subscription.
    SubscriptionRevoked = 6,
    /// A roster entry changed: `from` the contact, `id` the subscription (`none`,
    /// `to`, `from`, `both`), `available` 1 if a request of ours is pending.
    ContactChanged = 7,
}

/// How the user shows to contacts (`xor_set_presence`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XorShow {
    /// Online.
    Online = 0,
    /// Away.
    Away = 1,
    /// Free to chat.
    Chat = 2,
    /// Do not disturb.
    Dnd = 3,
    /// Away for long.
    Xa = 4,
}

impl XorShow {
    pub(crate) fn from_raw(v: i32) -> Option<Show> {
        Some(match v {
            0 => Show::Online,
            1 => Show::Away,
            2 => Show::Chat,
            3 => Show::Dnd,
            4 => Show::Xa,
            _ => return None,
        })
    }
}

/// One event. The strings are UTF-8, NUL-terminated, with their lengths; they stay
/// valid until the next `xor_poll` on the same chat or its `xor_close` (for a
/// callback: until the callback returns). A string that does not apply is empty,
/// never NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XorEvent {
    /// What happened.
    pub kind: XorEventKind,
    /// Who (see [`XorEventKind`]).
    pub from: *const u8,
    /// Length of `from`.
    pub from_len: usize,
    /// Body, error or status.
    pub text: *const u8,
    /// Length of `text`.
    pub text_len: usize,
    /// Message id, show value or subscription.
    pub id: *const u8,
    /// Length of `id`.
    pub id_len: usize,
    /// Presence: 1 online, 0 offline; ContactChanged: 1 if our request is pending.
    pub available: i32,
}

/// The strings of the last event handed out, kept alive for the caller.
#[derive(Debug, Default)]
pub(crate) struct EventBuf {
    from: Vec<u8>,
    text: Vec<u8>,
    id: Vec<u8>,
}

fn nul(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl EventBuf {
    /// Fills the buffer from `event` and returns the C view of it.
    pub(crate) fn fill(&mut self, event: &ChatEvent) -> XorEvent {
        let (kind, from, text, id, available) = match event {
            ChatEvent::Message { from, id, body } => (
                XorEventKind::Message,
                from.to_string(),
                body.clone(),
                id.clone().unwrap_or_default(),
                0,
            ),
            ChatEvent::MessageFailed { to, id, error } => (
                XorEventKind::MessageFailed,
                to.as_ref().map(ToString::to_string).unwrap_or_default(),
                error.clone(),
                id.clone().unwrap_or_default(),
                0,
            ),
            ChatEvent::Presence {
                from,
                available,
                show,
                status,
            } => (
                XorEventKind::Presence,
                from.to_string(),
                status.clone().unwrap_or_default(),
                show.clone().unwrap_or_default(),
                i32::from(*available),
            ),
            ChatEvent::SubscriptionRequest { from } => (
                XorEventKind::SubscriptionRequest,
                from.to_string(),
                String::new(),
                String::new(),
                0,
            ),
            ChatEvent::SubscriptionApproved { from } => (
                XorEventKind::SubscriptionApproved,
                from.to_string(),
                String::new(),
                String::new(),
                0,
            ),
            ChatEvent::SubscriptionRevoked { from } => (
                XorEventKind::SubscriptionRevoked,
                from.to_string(),
                String::new(),
                String::new(),
                0,
            ),
            ChatEvent::ContactChanged(c) => (
                XorEventKind::ContactChanged,
                c.jid.to_string(),
                String::new(),
                c.subscription.as_str().to_owned(),
                i32::from(c.asked),
            ),
        };
        self.from = nul(&from);
        self.text = nul(&text);
        self.id = nul(&id);
        XorEvent {
            kind,
            from: self.from.as_ptr(),
            from_len: from.len(),
            text: self.text.as_ptr(),
            text_len: text.len(),
            id: self.id.as_ptr(),
            id_len: id.len(),
            available,
        }
    }
}
