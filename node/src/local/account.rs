//! The account behind the local client port: one user, this device's JID. It answers
//! what a server answers (roster, disco, ping, carbons), keeps subscriptions and the
//! last presence, routes the client's stanzas into the overlay (or the C2S fallback)
//! and hands stanzas from the overlay to the client's sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use minidom::Element;
use tokio::sync::{Semaphore, mpsc};
use xmpp_parsers::carbons;
use xmpp_parsers::disco::{
    DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity,
};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid as WireJid;
use xmpp_parsers::ping::Ping;
use xmpp_parsers::version::{VersionQuery, VersionResult};
use xor_xmpp::Jid;
use xor_xmpp::fanout::Delivery;
use xor_xmpp::runtime::{XmppError, XmppNode};
use xor_xmpp::stanza::{self, Carbon, DefinedCondition, ErrorType, ns};
use xor_xmpp::stream::NS_CLIENT;

mod offline;
mod presence;
mod sync;

pub use sync::NS_ROSTER_SYNC;

use super::lock;
use crate::fallback::Fallback;
use crate::roster::Roster;

/// What the local port supports (disco#info).
pub const FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::ROSTER,
    ns::PING,
    ns::VERSION,
    ns::CARBONS,
    ns::SID,
    stanza::NS_SESSION,
];

pub use offline::{OFFLINE_BYTES, OFFLINE_LIMIT};
/// Stanzas queued for one session before it counts as stuck.
pub const SESSION_QUEUE: usize = 8192;

struct Session {
    tx: mpsc::Sender<Element>,
    carbons: bool,
}

#[derive(Default)]
struct State {
    sessions: HashMap<u64, Session>,
    next: u64,
    presence: Option<Element>,
    offline: offline::OfflineQueue,
}

/// The local account.
pub struct Account {
    jid: Jid,
    node: XmppNode,
    roster: Mutex<Roster>,
    state: Mutex<State>,
    fallback: Option<Fallback>,
    /// Stanzas for the overlay, handed to the device core by the next flush.
    staged: Mutex<Vec<Element>>,
    /// Sends waiting for a lookup or a connection (each has a task that reports a
    /// failure); a client session waits for a permit before adding one.
    deferred: Arc<Semaphore>,
}

/// Client stanzas that may wait for a lookup or a connection at once; beyond it the
/// session stops reading from its client until some are settled.
pub const DEFERRED_MAX: usize = 1024;

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("jid", &self.jid).finish()
    }
}

/// A message kept for later, stamped now (XEP-0203).
fn delayed(el: Element, domain: &str) -> Element {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    stanza::delayed(el, domain, &stamp)
}

/// The `<iq type='result'/>` answering `iq` (from whom it was addressed to), with
/// `payload`.
fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    Iq::Result {
        from: iq.attr("to").and_then(|t| WireJid::new(t).ok()),
        to: None,
        id: iq.attr("id").unwrap_or_default().to_owned(),
        payload,
    }
    .into()
}

impl Account {
    /// The account of `node`'s user, with its roster and optional fallback.
    pub fn new(node: XmppNode, roster: Roster, fallback: Option<Fallback>) -> Arc<Account> {
        Arc::new(Account {
            jid: node.jid().clone(),
            node,
            roster: Mutex::new(roster),
            state: Mutex::new(State::default()),
            fallback,
            staged: Mutex::new(Vec::new()),
            deferred: Arc::new(Semaphore::new(DEFERRED_MAX)),
        })
    }

    /// The full JID every session is bound to.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The node underneath.
    pub fn node(&self) -> &XmppNode {
        &self.node
    }

    /// Connected client sessions.
    pub fn sessions(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    /// The roster's contacts (bare JID, subscription).
    pub fn contacts(&self) -> Vec<(String, &'static str)> {
        lock(&self.roster)
            .items()
            .map(|i| (i.jid.clone(), i.subscription.as_str()))
            .collect()
    }

    /// The roster's contacts, whole.
    pub fn roster_items(&self) -> Vec<crate::roster::Item> {
        lock(&self.roster).items().cloned().collect()
    }

    /// Keeps the messages waiting for a client in `path` (see
    /// [`offline`](self::offline)), starting with what it already holds.
    pub fn keep_offline_in(&self, path: std::path::PathBuf) {
        lock(&self.state).offline = offline::OfflineQueue::load(path);
    }

    /// The roster as TOML text (see [`Roster::to_toml`]).
    pub fn roster_toml(&self) -> Result<String, toml::ser::Error> {
        lock(&self.roster).to_toml()
    }

    /// A new client session: its id and the stanzas for it (messages that arrived
    /// while no client was connected come first).
    pub fn attach(&self) -> (u64, mpsc::Receiver<Element>) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let mut st = lock(&self.state);
        let (kept, dropped) = st.offline.drain();
        for m in kept {
            let _ = tx.try_send(m);
        }
        if dropped > 0 {
            tracing::warn!(dropped, "offline messages were dropped (queue full)");
        }
        st.next += 1;
        let id = st.next;
        st.sessions.insert(id, Session { tx, carbons: false });
        (id, rx)
    }

    /// A session ended. The last one going offline makes the user unavailable.
    pub async fn detach(self: &Arc<Self>, id: u64) {
        let last_presence = {
            let mut st = lock(&self.state);
            st.sessions.remove(&id);
            if st.sessions.is_empty() {
                st.presence.take()
            } else {
                None
            }
        };
        if last_presence.is_some() {
            let unavailable = stanza::element("presence", NS_CLIENT, &[("type", "unavailable")]);
            self.broadcast_presence(unavailable);
            self.flush(false).await;
        }
    }

    /// Gives `el` to every session (or keeps a message for later when none is there).
    fn deliver(&self, el: Element) {
        let mut st = lock(&self.state);
        if st.sessions.is_empty() {
            if el.name() == "message" {
                st.offline.push(&delayed(el, self.jid.domain()));
            }
            return;
        }
        let mut stuck = Vec::new();
        for (id, s) in &st.sessions {
            if s.tx.try_send(el.clone()).is_err() {
                stuck.push(*id);
            }
        }
        for id in stuck {
            tracing::warn!(session = id, "client session is not reading; dropping it");
            st.sessions.remove(&id);
        }
    }

    /// Queues a stanza for the overlay (handed to the device core, in order, by the
    /// next flush).
    fn send_out(&self, el: Element) {
        lock(&self.staged).push(el);
    }

    /// Hands the staged stanzas to the device core, which keeps them in order per
    /// recipient. One whose recipient's devices are connected is written at once (a
    /// client's stanza then waits while the stream is full); one that waits for a
    /// lookup or a connection is followed by a task that reports a failure. What
    /// arrives from the overlay is answered without waiting (`from_client` false).
    async fn flush(self: &Arc<Self>, from_client: bool) {
        let items = std::mem::take(&mut *lock(&self.staged));
        for el in items {
            let mut sub = self.node.submit(el.clone());
            if sub.decided() {
                let result = if from_client {
                    sub.outcome().await
                } else {
                    sub.outcome_without_waiting().await
                };
                if let Err(e) = result {
                    tokio::spawn(self.clone().undelivered(el, e));
                }
                continue;
            }
            let permit = if from_client {
                self.deferred.clone().acquire_owned().await.ok()
            } else {
                self.deferred.clone().try_acquire_owned().ok()
            };
            let me = self.clone();
            tokio::spawn(async move {
                let result = sub.outcome_without_waiting().await;
                drop(permit);
                if let Err(e) = result {
                    me.undelivered(el, e).await;
                }
            });
        }
    }

    /// A stanza the overlay could not deliver: through the fallback server, or back
    /// to the client as a stanza error.
    async fn undelivered(self: Arc<Self>, el: Element, e: XmppError) {
        let unreachable = matches!(e, XmppError::Resolve(_) | XmppError::Unreachable { .. });
        if unreachable && let Some(fb) = &self.fallback {
            match fb.send(el.clone()).await {
                Ok(()) => {
                    tracing::info!(to = ?el.attr("to"), "sent through the fallback server");
                    return;
                }
                Err(why) => tracing::warn!(%why, "fallback failed too"),
            }
        }
        // Errors are not answered with errors (RFC 6120 §8.3.1).
        if el.attr("type") == Some("error") || el.name() == "presence" {
            tracing::debug!(error = %e, "stanza not delivered");
            return;
        }
        let mut bounce = stanza::stanza_error(
            &el,
            ErrorType::Wait,
            DefinedCondition::RecipientUnavailable,
            &e.to_string(),
        );
        if let Some(to) = el.attr("to") {
            stanza::set_attr(&mut bounce, "from", to);
        }
        stanza::set_attr(&mut bounce, "to", &self.jid.to_string());
        self.deliver(bounce);
    }

    /// A stanza from client session `id` (its `from` already set to the bound JID).
    /// Returns what to answer on that session directly.
    /// What it sends on is in the device core's queues before this returns (see
    /// `Account::flush`: it waits while a stream it wrote to is full, or while
    /// [`DEFERRED_MAX`] stanzas wait for lookups or connections).
    pub async fn from_client(self: &Arc<Self>, id: u64, el: Element) -> Vec<Element> {
        let replies = self.client_stanza(id, el);
        self.flush(true).await;
        replies
    }

    fn client_stanza(self: &Arc<Self>, id: u64, el: Element) -> Vec<Element> {
        let to = stanza::to(&el);
        if to.is_none() && el.attr("to").is_some() {
            // RFC 6120 §8.3.3.8: an address that is not a JID is the sender's error;
            // it must not fall through to "no 'to'" (the user's own account).
            if el.attr("type") == Some("error") {
                return Vec::new();
            }
            let mut e = stanza::stanza_error(
                &el,
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                "the 'to' address is not a valid JID",
            );
            // From the "server" (this node), not the malformed address.
            stanza::set_attr(&mut e, "from", self.jid.domain());
            return vec![e];
        }
        let for_server = match &to {
            None => true,
            Some(t) => {
                t.to_string() == self.jid.domain() || (*t == self.jid.bare() && el.name() == "iq")
            }
        };
        match el.name() {
            "iq" if for_server => self.server_iq(id, &el),
            "presence" if to.is_none() => {
                self.own_presence(id, el);
                Vec::new()
            }
            "presence" => {
                self.subscription_out(&el);
                Vec::new()
            }
            "message" if to.is_none() => {
                let mut m = el;
                stanza::set_attr(&mut m, "to", &self.jid.bare_str());
                self.send_out(m);
                Vec::new()
            }
            _ => {
                self.send_out(el);
                Vec::new()
            }
        }
    }

    /// An iq to the "server" (this node, or the user's bare JID): roster, disco,
    /// ping, version, carbons, session; anything else is `service-unavailable`
    /// (RFC 6120 §8.4).
    fn server_iq(self: &Arc<Self>, id: u64, el: &Element) -> Vec<Element> {
        if matches!(el.attr("type"), Some("result" | "error")) {
            return Vec::new();
        }
        let error =
            |condition, text| vec![stanza::stanza_error(el, ErrorType::Modify, condition, text)];
        let (get, payload) = match Iq::try_from(el.clone()) {
            Ok(Iq::Get { payload, .. }) => (true, payload),
            Ok(Iq::Set { payload, .. }) => (false, payload),
            Ok(_) => return Vec::new(),
            Err(_) => {
                return error(
                    DefinedCondition::BadRequest,
                    "an iq get or set needs an id and exactly one child (RFC 6120 §8.2.3)",
                );
            }
        };
        let result = |p: Option<Element>| vec![iq_result(el, p)];
        if get {
            if payload.is("query", ns::ROSTER) {
                return result(Some(lock(&self.roster).query().into()));
            }
            if DiscoInfoQuery::try_from(payload.clone()).is_ok() {
                return result(Some(disco_info().into()));
            }
            if DiscoItemsQuery::try_from(payload.clone()).is_ok() {
                let items = DiscoItemsResult {
                    node: None,
                    items: Vec::new(),
                    rsm: None,
                };
                return result(Some(items.into()));
            }
            if Ping::try_from(payload.clone()).is_ok() {
                return result(None);
            }
            if VersionQuery::try_from(payload.clone()).is_ok() {
                let version = VersionResult {
                    name: "xor".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    os: None,
                };
                return result(Some(version.into()));
            }
        } else {
            if payload.is("query", ns::ROSTER) {
                return self.roster_set(el, &payload);
            }
            let carbons = if carbons::Enable::try_from(payload.clone()).is_ok() {
                Some(true)
            } else if carbons::Disable::try_from(payload.clone()).is_ok() {
                Some(false)
            } else {
                None
            };
            if let Some(on) = carbons {
                if let Some(s) = lock(&self.state).sessions.get_mut(&id) {
                    s.carbons = on;
                }
                return result(None);
            }
            if payload.is("session", stanza::NS_SESSION) {
                return result(None);
            }
        }
        vec![stanza::stanza_error(
            el,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "not supported by this node",
        )]
    }

    /// A stanza from the overlay (or the fallback server) for this user.
    pub async fn from_overlay(self: &Arc<Self>, d: Delivery) {
        self.overlay_stanza(d);
        self.flush(false).await;
    }

    fn overlay_stanza(self: &Arc<Self>, d: Delivery) {
        let el = d.stanza;
        // XEP-0280: what another device of this user sent, and what another device
        // alone received (a message to its full JID), go to carbon-enabled sessions
        // only, wrapped. A received carbon of a message to the bare JID is the
        // message itself: this device is one of its recipients.
        let for_another_device = || stanza::to(&el).is_some_and(|t| !t.is_bare() && t != self.jid);
        let wrap = match d.carbon {
            Some(Carbon::Sent) => Some(Carbon::Sent),
            Some(Carbon::Received) if for_another_device() => Some(Carbon::Received),
            Some(Carbon::Received) | None => None,
        };
        if let Some(kind) = wrap {
            let st = lock(&self.state);
            for s in st.sessions.values().filter(|s| s.carbons) {
                let wrapped = stanza::wrap_carbon(kind, el.clone(), &self.jid.bare(), &self.jid);
                let _ = s.tx.try_send(wrapped);
            }
            return;
        }
        if el.name() == "presence" {
            self.subscription_in(el);
            return;
        }
        if self.apply_sync(&el) {
            return;
        }
        self.deliver(el);
    }
}

/// What the local port says it is (XEP-0030): a server of type `im` named xor, with
/// [`FEATURES`].
fn disco_info() -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("server", "im", "en", "xor")],
        features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        extensions: Vec::new(),
    }
}
