//! xor inside a game: one builder, one handle, typed events — no local client port,
//! no roster file, no file at all unless the game writes the [`Savedata`] it exports.
//!
//! ```no_run
//! # async fn game() -> Result<(), xor_node::embed::ChatError> {
//! use xor_node::embed::{Builder, ChatEvent};
//!
//! let chat = Builder::new("chat.example.org")
//!     .config_url("https://chat.example.org/.well-known/reload-config")
//!     .enroll("player1@example.org", "secret")
//!     .start()
//!     .await?;
//! chat.send_message("player2@example.org", "gg").await?;
//! while let Some(event) = chat.next_event().await {
//!     if let ChatEvent::Message { from, body, .. } = event {
//!         println!("{from}: {body}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Inside, the handle is the same [`Account`] the local client port serves, with one
//! session that never disconnects: subscriptions, presence broadcast and probes,
//! carbons and the per-recipient order of the device core behave exactly as for a desktop
//! client. The session's stanzas are turned into [`ChatEvent`]s in an
//! [`EventQueue`] that drops the oldest event when the game stops draining, so the
//! node never waits for the game. The C ABI (`node/ffi`) is a thin layer over this
//! module.

mod builder;
mod events;
mod savedata;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use minidom::Element;
use tokio::task::JoinHandle;
use xor_xmpp::runtime::{ConnectError, XmppNode};
use xor_xmpp::stream::NS_CLIENT;
use xor_xmpp::{Jid, stanza};

pub use builder::{Builder, DEFAULT_EVENT_CAPACITY};
pub use events::{ChatEvent, EventQueue};
pub use savedata::{FORMAT as SAVEDATA_FORMAT, MAX_SAVEDATA, Savedata};

use crate::daemon::StartupError;
use crate::local::Account;
use crate::roster::Subscription;

/// Longest message body accepted from the game (a stanza must fit the streams'
/// 256 KiB limit with room for its envelope).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest presence status text.
pub const MAX_STATUS: usize = 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The builder lacks something or holds something unusable.
    #[error("{0}")]
    Config(String),
    /// Fetching the overlay's configuration or enrolling failed.
    #[error("enrollment: {0}")]
    Enroll(String),
    /// The device did not start.
    #[error(transparent)]
    Start(#[from] StartupError),
    /// A JID argument is not a JID.
    #[error("not a JID: {0}")]
    Jid(String),
    /// An argument is out of its bounds.
    #[error("{0}")]
    Invalid(String),
    /// The handle was shut down.
    #[error("the chat has been shut down")]
    Closed,
}

/// A contact on the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact's bare JID.
    pub jid: Jid,
    /// Who sees whose presence.
    pub subscription: Subscription,
    /// This user asked to see the contact's presence and waits for an answer.
    pub asked: bool,
    /// The contact asked to see this user's and waits for an answer.
    pub pending_in: bool,
}

impl Contact {
    fn from_roster(i: &crate::roster::Item) -> Option<Contact> {
        Some(Contact {
            jid: Jid::parse(&i.jid).ok()?,
            subscription: i.subscription,
            asked: i.ask,
            pending_in: i.pending_in,
        })
    }

    /// A contact from a roster push's `<item/>`.
    pub(crate) fn from_item(item: &xmpp_parsers::roster::Item) -> Option<Contact> {
        use xmpp_parsers::roster::{Ask, Subscription as Wire};
        let subscription = match item.subscription {
            // A removed contact is one with no subscription left.
            Wire::None | Wire::Remove => Subscription::None,
            Wire::To => Subscription::To,
            Wire::From => Subscription::From,
            Wire::Both => Subscription::Both,
        };
        Some(Contact {
            jid: Jid::parse(item.jid.as_str()).ok()?,
            subscription,
            asked: item.ask == Ask::Subscribe,
            pending_in: false,
        })
    }
}

/// One device of a contact, and whether a direct stream to it could be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactDevice {
    /// Its Node-ID (hex).
    pub node_id: String,
    /// Its full JID, once a stream told it.
    pub jid: Option<Jid>,
    /// Route priority (lower first).
    pub priority: u8,
    /// `Ok` when a direct stream is open; otherwise why not.
    pub reachable: Result<(), ConnectError>,
}

/// How this user shows to contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Online.
    Online,
    /// Away for a short while.
    Away,
    /// Free to chat.
    Chat,
    /// Do not disturb.
    Dnd,
    /// Away for long.
    Xa,
}

impl Show {
    /// The `<show/>` value (none for plain online).
    pub fn as_xmpp(self) -> Option<&'static str> {
        match self {
            Show::Online => None,
            Show::Away => Some("away"),
            Show::Chat => Some("chat"),
            Show::Dnd => Some("dnd"),
            Show::Xa => Some("xa"),
        }
    }
}

/// A running embedded device. Cheap to clone; every clone is the same device.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    node: XmppNode,
    account: Arc<Account>,
    session: u64,
    events: Arc<EventQueue>,
    overlay: String,
    profile: xor_enrollment::client::Profile,
    closed: std::sync::atomic::AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("jid", self.jid())
            .field("events", &self.inner.events.len())
            .finish()
    }
}

fn jid(s: &str) -> Result<Jid, ChatError> {
    Jid::parse(s).map_err(|e| ChatError::Jid(format!("{s:?}: {e}")))
}

impl Chat {
    /// This device's full JID.
    pub fn jid(&self) -> &Jid {
        self.inner.node.jid()
    }

    /// Where the overlay listener is bound (another device can bootstrap from it).
    pub fn overlay_address(&self) -> SocketAddr {
        self.inner.node.overlay().local_addr()
    }

    /// The XMPP node underneath (routes, streams, the overlay).
    pub fn node(&self) -> &XmppNode {
        &self.inner.node
    }

    fn open(&self) -> Result<(), ChatError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ChatError::Closed);
        }
        Ok(())
    }

    /// Hands a stanza to the account as the session's client would.
    async fn submit(&self, mut el: Element) -> Result<(), ChatError> {
        self.open()?;
        stanza::set_attr(&mut el, "from", &self.jid().to_string());
        for reply in self.inner.account.from_client(self.inner.session, el).await {
            push_stanza(&self.inner.events, &reply);
        }
        Ok(())
    }

    /// Sends a chat message to a bare JID (every device of the user) or a full JID
    /// (one device), in order with earlier messages to the same user. Returns the
    /// message's `id`; a failed delivery comes back as [`ChatEvent::MessageFailed`]
    /// with it.
    pub async fn send_message(&self, to: &str, body: &str) -> Result<String, ChatError> {
        let to = jid(to)?;
        if body.len() > MAX_BODY {
            return Err(ChatError::Invalid(format!(
                "a message body holds at most {MAX_BODY} bytes"
            )));
        }
        let n = self
            .inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{n}", self.inner.node.overlay().node_id());
        let mut m = stanza::chat(&to, body);
        stanza::set_attr(&mut m, "id", &id);
        self.submit(m).await?;
        Ok(id)
    }

    /// Sets this user's presence for every contact allowed to see it (the first call
    /// also asks the contacts' devices for theirs).
    pub async fn set_presence(&self, show: Show, status: Option<&str>) -> Result<(), ChatError> {
        if status.is_some_and(|s| s.len() > MAX_STATUS) {
            return Err(ChatError::Invalid(format!(
                "a status holds at most {MAX_STATUS} bytes"
            )));
        }
        let mut p = stanza::element("presence", NS_CLIENT, &[]);
        if let Some(s) = show.as_xmpp() {
            let mut el = stanza::element("show", NS_CLIENT, &[]);
            el.append_text(s);
            p.append_child(el);
        }
        if let Some(s) = status {
            let mut el = stanza::element("status", NS_CLIENT, &[]);
            el.append_text(s);
            p.append_child(el);
        }
        self.submit(p).await
    }

    /// Shows this user offline to every contact.
    pub async fn set_unavailable(&self) -> Result<(), ChatError> {
        self.submit(stanza::element(
            "presence",
            NS_CLIENT,
            &[("type", "unavailable")],
        ))
        .await
    }

    async fn subscription(&self, to: &str, kind: &str) -> Result<(), ChatError> {
        let to = jid(to)?.bare().to_string();
        self.submit(stanza::element(
            "presence",
            NS_CLIENT,
            &[("to", &to), ("type", kind)],
        ))
        .await
    }

    /// Asks to see a contact's presence (RFC 6121 §3.1).
    pub async fn subscribe(&self, contact: &str) -> Result<(), ChatError> {
        self.subscription(contact, "subscribe").await
    }

    /// Lets a contact see this user's presence (answers a
    /// [`ChatEvent::SubscriptionRequest`], or pre-approves).
    pub async fn approve(&self, contact: &str) -> Result<(), ChatError> {
        self.subscription(contact, "subscribed").await
    }

    /// Refuses or revokes a contact's view of this user's presence.
    pub async fn deny(&self, contact: &str) -> Result<(), ChatError> {
        self.subscription(contact, "unsubscribed").await
    }

    /// Stops seeing a contact's presence.
    pub async fn unsubscribe(&self, contact: &str) -> Result<(), ChatError> {
        self.subscription(contact, "unsubscribe").await
    }

    /// The roster.
    pub fn contacts(&self) -> Vec<Contact> {
        self.inner
            .account
            .roster_items()
            .iter()
            .filter_map(Contact::from_roster)
            .collect()
    }

    /// The devices `contact` has registered, each tried for a direct stream now
    /// (attempts run in parallel, XEP-0415).
    pub async fn devices_of(&self, contact: &str) -> Result<Vec<ContactDevice>, ChatError> {
        self.open()?;
        let contact = jid(contact)?.bare();
        let routes = self
            .inner
            .node
            .resolve(&contact)
            .await
            .map_err(|e| ChatError::Invalid(e.to_string()))?;
        let tries = routes.into_iter().map(|route| {
            let node = self.inner.node.clone();
            async move {
                let node_id = route.node.to_string();
                let priority = route.priority;
                match node.connect(route).await {
                    Ok(d) => ContactDevice {
                        node_id,
                        jid: Some(d.jid),
                        priority,
                        reachable: Ok(()),
                    },
                    Err(why) => ContactDevice {
                        node_id,
                        jid: None,
                        priority,
                        reachable: Err(why),
                    },
                }
            }
        });
        Ok(futures::future::join_all(tries).await)
    }

    /// The next event, waiting for one; `None` once the chat is shut down and every
    /// event has been taken.
    pub async fn next_event(&self) -> Option<ChatEvent> {
        self.inner.events.pop().await
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&self) -> Option<ChatEvent> {
        self.inner.events.try_pop()
    }

    /// Events discarded because the game did not take them in time.
    pub fn dropped_events(&self) -> u64 {
        self.inner.events.dropped()
    }

    /// Everything needed to start this device again ([`Builder::savedata`]),
    /// including the newest configuration the overlay sent and the roster.
    pub fn savedata(&self) -> Savedata {
        let mut profile = self.inner.profile.clone();
        let newest = self.inner.node.overlay().configuration().borrow().1.clone();
        if let Some(doc) = newest
            && let Ok(p) = savedata::profile(&self.inner.overlay, doc, profile.credentials.clone())
        {
            profile = p;
        }
        Savedata {
            overlay: self.inner.overlay.clone(),
            profile,
            roster: self.inner.account.roster_toml().unwrap_or_default(),
        }
    }

    /// Goes offline for contacts, removes this device's location record, closes the
    /// streams and leaves the overlay. Later calls return [`ChatError::Closed`];
    /// waiting [`Chat::next_event`] calls return the events left, then `None`.
    pub async fn shutdown(&self) -> Result<(), ChatError> {
        if self
            .inner
            .closed
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Err(ChatError::Closed);
        }
        self.inner.account.detach(self.inner.session).await;
        self.inner.node.shutdown().await;
        for t in crate::local::lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        self.inner.events.close();
        Ok(())
    }
}

/// Turns a stanza for the session into an event, or answers it.
fn push_stanza(events: &EventQueue, el: &Element) {
    if let (Some(event), _) = ChatEvent::from_stanza(el) {
        events.push(event);
    }
}
