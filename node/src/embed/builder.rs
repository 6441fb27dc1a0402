//! The one way to start an embedded device.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use xor_enrollment::client::{ClientSettings, Profile, check_document, enroll, fetch_config};
use xor_enrollment::files::{parse_certs, parse_key};
use xor_xmpp::runtime::XmppEvent;

use super::savedata::{self, Savedata};
use super::{Chat, ChatError, ChatEvent, EventQueue, Inner, Show};
use crate::daemon::{node_config, start_node};
use crate::local::Account;
use crate::roster::Roster;

/// Events kept for a game that does not take them (the oldest go first beyond it).
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;
/// Answers to other users' iq requests waiting to be sent; beyond it they are
/// dropped (a peer flooding requests gets no more answers, nothing else slows).
const ANSWER_QUEUE: usize = 64;

#[derive(Debug, Clone)]
enum ConfigSource {
    /// DNS discovery of the overlay's configuration server (RFC 6940 §11.2).
    Discover,
    Url(String),
    Document(Bytes),
}

#[derive(Debug, Clone)]
enum CredentialSource {
    None,
    Enroll { user: String, password: String },
    Pem { key: Vec<u8>, chain: Vec<u8> },
    Saved(Vec<u8>),
}

/// How to start an embedded device. Only the overlay name and one source of
/// credentials are required; everything else has the default a game wants.
#[derive(Debug, Clone)]
pub struct Builder {
    overlay: String,
    config: ConfigSource,
    credentials: CredentialSource,
    http_roots: Vec<Vec<u8>>,
    http_roots_error: Option<String>,
    resource: String,
    priority: u8,
    listen: SocketAddr,
    bootstrap: Vec<SocketAddr>,
    may_start: bool,
    client: Option<bool>,
    storage_limit: Option<usize>,
    event_capacity: usize,
    join_timeout: Duration,
    presence: Option<Show>,
    nat: crate::config::NatSection,
}

impl Builder {
    /// A device of the overlay `overlay` (its instance name, e.g. `chat.example.org`).
    pub fn new(overlay: impl Into<String>) -> Builder {
        Builder {
            overlay: overlay.into(),
            config: ConfigSource::Discover,
            credentials: CredentialSource::None,
            http_roots: Vec::new(),
            http_roots_error: None,
            resource: "game".into(),
            priority: 10,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            bootstrap: Vec::new(),
            may_start: false,
            client: None,
            storage_limit: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            join_timeout: Duration::from_secs(30),
            presence: Some(Show::Online),
            nat: Default::default(),
        }
    }

    /// Fetch the overlay's configuration document from `url` (HTTPS) instead of
    /// discovering it in DNS.
    pub fn config_url(mut self, url: impl Into<String>) -> Builder {
        self.config = ConfigSource::Url(url.into());
        self
    }

    /// Use this signed configuration document (verified before use).
    pub fn config_document(mut self, document: impl Into<Bytes>) -> Builder {
        self.config = ConfigSource::Document(document.into());
        self
    }

    /// Trust these PEM certificates for the HTTPS configuration and enrollment
    /// servers (instead of the Web PKI).
    pub fn http_roots_pem(mut self, pem: &[u8]) -> Builder {
        match parse_certs(pem) {
            Ok(certs) => self.http_roots.extend(certs),
            Err(e) => self.http_roots_error = Some(format!("HTTPS roots: {e}")),
        }
        self
    }

    /// Enroll a new device of `user` (`name@domain`) over HTTPS with its password
    /// (RFC 6940 §11.3): a fresh key and certificate, held in memory.
    pub fn enroll(mut self, user: impl Into<String>, password: impl Into<String>) -> Builder {
        self.credentials = CredentialSource::Enroll {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Use a key (PKCS#8 PEM) and its certificate chain (PEM, leaf first) issued for
    /// this overlay.
    pub fn credentials_pem(mut self, key: &[u8], chain: &[u8]) -> Builder {
        self.credentials = CredentialSource::Pem {
            key: key.to_vec(),
            chain: chain.to_vec(),
        };
        self
    }

    /// Start from what [`Chat::savedata`] exported (key, chain, configuration,
    /// roster); no configuration source is needed then.
    pub fn savedata(mut self, bytes: &[u8]) -> Builder {
        self.credentials = CredentialSource::Saved(bytes.to_vec());
        self
    }

    /// This device's resource (default `game`).
    pub fn resource(mut self, resource: impl Into<String>) -> Builder {
        self.resource = resource.into();
        self
    }

    /// Route priority, lower first (default 10).
    pub fn priority(mut self, priority: u8) -> Builder {
        self.priority = priority;
        self
    }

    /// Where the overlay listener binds (default `0.0.0.0:0`: every interface, a
    /// port the system picks); direct streams bind the same address, any port.
    pub fn listen(mut self, addr: SocketAddr) -> Builder {
        self.listen = addr;
        self
    }

    /// A bootstrap node besides those of the configuration document.
    pub fn bootstrap(mut self, addr: SocketAddr) -> Builder {
        self.bootstrap.push(addr);
        self
    }

    /// Start a new overlay when no bootstrap node answers (the overlay's first node).
    pub fn start_overlay(mut self, yes: bool) -> Builder {
        self.may_start = yes;
        self
    }

    /// Take part as a client (RFC 6940 §4.2.1: through the peer responsible for this
    /// device, storing and routing nothing for others) or as a peer on the ring.
    /// Default: a client — a game comes and goes with its matches, and a ring peer
    /// that leaves often costs the overlay repairs and data hand-overs — except for
    /// the node that starts the overlay, which must be a peer.
    pub fn client(mut self, yes: bool) -> Builder {
        self.client = Some(yes);
        self
    }

    /// Most bytes of other users' data this device stores for the overlay.
    pub fn storage_limit(mut self, bytes: usize) -> Builder {
        self.storage_limit = Some(bytes);
        self
    }

    /// Events kept for the game before the oldest are dropped (default
    /// [`DEFAULT_EVENT_CAPACITY`]).
    pub fn event_capacity(mut self, events: usize) -> Builder {
        self.event_capacity = events;
        self
    }

    /// How long to try to join the overlay (default 30 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Builder {
        self.join_timeout = timeout;
        self
    }

    /// The presence sent once joined (default online); `None` stays invisible until
    /// [`Chat::set_presence`].
    pub fn initial_presence(mut self, show: Option<Show>) -> Builder {
        self.presence = show;
        self
    }

    fn http(&self, discover: bool) -> ClientSettings {
        ClientSettings {
            http_roots: self.http_roots.clone(),
            discover,
            ..ClientSettings::default()
        }
    }

    async fn document(&self) -> Result<Bytes, ChatError> {
        let fetched = match &self.config {
            ConfigSource::Document(d) => return Ok(d.clone()),
            ConfigSource::Url(url) => {
                fetch_config(&self.overlay, Some(url), None, &self.http(false)).await
            }
            ConfigSource::Discover => {
                fetch_config(&self.overlay, None, None, &self.http(true)).await
            }
        };
        fetched
            .map(|f| f.document)
            .map_err(|e| ChatError::Enroll(e.to_string()))
    }

    /// The profile and roster to start with.
    async fn profile(&self) -> Result<(Profile, String), ChatError> {
        let bad = |e: String| ChatError::Config(e);
        match &self.credentials {
            CredentialSource::None => Err(ChatError::Config(
                "no credentials: call enroll, credentials_pem or savedata".into(),
            )),
            CredentialSource::Saved(bytes) => {
                let saved = Savedata::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
                if saved.overlay != self.overlay {
                    return Err(ChatError::Config(format!(
                        "the savedata is for overlay {}, not {}",
                        saved.overlay, self.overlay
                    )));
                }
                Ok((saved.profile, saved.roster))
            }
            CredentialSource::Pem { key, chain } => {
                let key = parse_key(key).map_err(bad)?;
                let creds = savedata::credentials(key, chain, &self.overlay)
                    .map_err(|e| bad(e.to_string()))?;
                let doc = self.document().await?;
                let profile =
                    savedata::profile(&self.overlay, doc, creds).map_err(|e| bad(e.to_string()))?;
                Ok((profile, String::new()))
            }
            CredentialSource::Enroll { user, password } => {
                let doc = self.document().await?;
                let fetched = check_document(&self.overlay, doc, None)
                    .map_err(|e| ChatError::Config(e.to_string()))?;
                let config = fetched.verified.config;
                let enrolled = enroll(&config, user, password, 1, &self.http(false))
                    .await
                    .map_err(|e| ChatError::Enroll(e.to_string()))?;
                let credentials = enrolled
                    .credentials(&self.overlay)
                    .map_err(|e| ChatError::Enroll(e.to_string()))?;
                let profile = Profile {
                    credentials,
                    document: fetched.document,
                    config,
                };
                Ok((profile, String::new()))
            }
        }
    }

    /// A STUN server (`stun:host:port`): direct streams to other players then run ICE
    /// with this device's server-reflexive address, which joins most home and
    /// carrier NATs (README, ICE for direct streams).
    pub fn stun_server(mut self, url: impl Into<String>) -> Builder {
        self.nat.stun.push(url.into());
        self
    }

    /// A TURN server (`turn:host:port`, long-term credentials): relayed candidates
    /// for players whose NATs ICE cannot join directly (symmetric against
    /// port-restricted or symmetric).
    pub fn turn_server(
        mut self,
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Builder {
        self.nat.turn.push(crate::config::TurnSection {
            url: url.into(),
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Enrolls or loads the credentials, joins the overlay, registers the device and
    /// sends the initial presence.
    pub async fn start(self) -> Result<Chat, ChatError> {
        if let Some(e) = &self.http_roots_error {
            return Err(ChatError::Config(e.clone()));
        }
        let ice = self
            .nat
            .ice()
            .map_err(|e| ChatError::Config(e.to_string()))?;
        let (profile, roster) = self.profile().await?;
        let roster = Roster::from_toml(&roster).map_err(|e| ChatError::Config(e.to_string()))?;
        let mut cfg = node_config(&profile, &self.overlay, &self.resource, "the embedding")?;
        cfg.node.listen_addr = Some(self.listen);
        cfg.node.bootstrap.extend(self.bootstrap.iter().copied());
        cfg.node.may_start_overlay = self.may_start;
        cfg.node.ice = ice;
        cfg.node.client = self.client.unwrap_or(!self.may_start);
        cfg.node.client_fallback = true;
        if cfg.node.client && self.may_start {
            return Err(ChatError::Config(
                "the node that starts the overlay must be a peer, not a client".into(),
            ));
        }
        if let Some(limit) = self.storage_limit {
            cfg.node.storage_limits.max_bytes = limit;
        }
        cfg.priority = self.priority;
        cfg.stream_listen = SocketAddr::new(self.listen.ip(), 0);
        cfg.join_timeout = self.join_timeout;
        let node = start_node(cfg).await?;
        let account = Account::new(node.clone(), roster, None);
        let (session, mut stanzas) = account.attach();
        let events = Arc::new(EventQueue::new(self.event_capacity));
        let (answers_tx, mut answers_rx) = mpsc::channel(ANSWER_QUEUE);
        let mut tasks = Vec::new();
        // The session's stanzas become events at once: this task never waits for
        // the game, so the account never finds the session stuck.
        let queue = events.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(el) = stanzas.recv().await {
                let (event, answer) = ChatEvent::from_stanza(&el);
                if let Some(e) = event {
                    queue.push(e);
                }
                if let Some(a) = answer {
                    let _ = answers_tx.try_send(a);
                }
            }
        }));
        let a = account.clone();
        let me = node.jid().to_string();
        tasks.push(tokio::spawn(async move {
            while let Some(mut answer) = answers_rx.recv().await {
                xor_xmpp::stanza::set_attr(&mut answer, "from", &me);
                a.from_client(session, answer).await;
            }
        }));
        if let Some(mut overlay_events) = node.events().await {
            let a = account.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = overlay_events.recv().await {
                    if let XmppEvent::Stanza(d) = ev {
                        a.from_overlay(d).await;
                    }
                }
            }));
        }
        let chat = Chat {
            inner: Arc::new(Inner {
                node,
                account,
                session,
                events,
                overlay: self.overlay.clone(),
                profile,
                closed: std::sync::atomic::AtomicBool::new(false),
                tasks: std::sync::Mutex::new(tasks),
                next_id: std::sync::atomic::AtomicU64::new(1),
            }),
        };
        if let Some(show) = self.presence {
            chat.set_presence(show, None).await?;
        }
        Ok(chat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(b: Builder) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(b.start()) {
            Err(ChatError::Config(why)) => why,
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("started"),
        }
    }

    #[test]
    fn a_malformed_stun_or_turn_url_is_refused_at_start() {
        let why = refused(Builder::new("chat.example.org").stun_server("203.0.113.5:3478"));
        assert!(
            why.contains("203.0.113.5:3478") && why.contains("stun"),
            "{why}"
        );
        let why = refused(Builder::new("chat.example.org").turn_server(
            "stun:203.0.113.5:3478",
            "u",
            "p",
        ));
        assert!(why.contains("is not a turn URL"), "{why}");
    }
}
