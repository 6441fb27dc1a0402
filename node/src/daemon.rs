//! One device, running: the overlay node from an enrolled profile, the local client
//! port, the C2S fallback, ConfigUpdates saved back to the profile, and the status the
//! `status` command shows. `xor-node run` and the demo both start devices this way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xor_enrollment::authority::{KindResolver, configure_node};
use xor_enrollment::client::{Profile, load_profile, save_profile_document};
use xor_enrollment::config::{Document, KindSpec};
use xor_overlay::node::JoinFailure;
use xor_xmpp::Jid;
use xor_xmpp::fanout::Delivery;
use xor_xmpp::kind::{XMPP_LOCATION, xmpp_location_kind};
use xor_xmpp::runtime::{XmppConfig, XmppError, XmppEvent, XmppNode};

use crate::c2s_client::ClientOptions;
use crate::fallback::Fallback;
use crate::local::{Account, LocalServer, LocalSettings, local_port_tls};
use crate::roster::Roster;

/// The local client port of a device.
#[derive(Debug, Clone)]
pub struct ClientPort {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The password clients log in with.
    pub password: String,
    /// The roster file (`None`: kept in memory only).
    pub roster: Option<PathBuf>,
}

/// How to start a device.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// The enrolled profile directory (key.pem, cert.pem, config.xml).
    pub profile: PathBuf,
    /// This device's resource.
    pub resource: String,
    /// Route priority (lower is tried first).
    pub priority: u8,
    /// Overlay link listener.
    pub overlay_listen: SocketAddr,
    /// Bootstrap nodes besides those of the configuration document.
    pub bootstrap: Vec<SocketAddr>,
    /// Start a new overlay when no bootstrap node answers.
    pub may_start: bool,
    /// Take part as an RFC 6940 §4.2.1 client instead of a peer.
    pub overlay_client: bool,
    /// Direct stream listener.
    pub stream_listen: SocketAddr,
    /// STUN and TURN servers for ICE on direct streams (none: TCP only).
    pub ice: xor_overlay::node::config::IceSettings,
    /// How long to wait for the join.
    pub join_timeout: Duration,
    /// The local client port, if on.
    pub client: Option<ClientPort>,
    /// The C2S fallback account, if any.
    pub fallback: Option<ClientOptions>,
}

impl DeviceOptions {
    /// Defaults for the profile in `dir`: loopback ports picked by the OS, no client
    /// port, no fallback.
    pub fn new(profile: &Path, resource: &str) -> DeviceOptions {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        DeviceOptions {
            profile: profile.to_owned(),
            resource: resource.to_owned(),
            priority: 10,
            overlay_listen: any,
            bootstrap: Vec::new(),
            may_start: false,
            overlay_client: false,
            stream_listen: any,
            ice: Default::default(),
            join_timeout: Duration::from_secs(30),
            client: None,
            fallback: None,
        }
    }
}

/// Why a device did not start; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The profile is missing or unreadable.
    #[error("cannot load the profile in {dir}: {why} (run `xor-node enroll` first?)")]
    Profile {
        /// The directory.
        dir: String,
        /// What is wrong.
        why: String,
    },
    /// The certificate is outside its validity period.
    #[error("the certificate in {dir} {when}: run `xor-node enroll` again")]
    Certificate {
        /// The profile directory.
        dir: String,
        /// "expired on …" or "is not valid before …".
        when: String,
    },
    /// The configuration document cannot be used.
    #[error("the overlay configuration in {dir} cannot be used: {why}")]
    Config {
        /// The profile directory.
        dir: String,
        /// What is wrong.
        why: String,
    },
    /// A port is taken (or not ours to bind).
    #[error(
        "cannot listen for {what} on {addr}: {why} (is another xor-node running? change the port in the configuration)"
    )]
    PortTaken {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        why: String,
    },
    /// No bootstrap node answered.
    #[error(
        "no bootstrap node of the overlay answered within {0:?}: check the network, or the bootstrap list (set overlay.may_start on the overlay's first node)"
    )]
    NoBootstrap(Duration),
    /// Bootstrap nodes answered, but the node could not take its place on the ring.
    #[error("could not join the overlay (tried for up to {timeout:?}): {why}")]
    NotJoined {
        /// How long it tried.
        timeout: Duration,
        /// Why the last attempt failed (which peer could not be linked, and how).
        why: String,
    },
    /// Anything else the XMPP node reported.
    #[error("{0}")]
    Node(XmppError),
}

/// A running device.
pub struct Device {
    node: XmppNode,
    account: Arc<Account>,
    local: Option<LocalServer>,
    profile: PathBuf,
    overlay: String,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("jid", self.jid()).finish()
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The date of a Unix time, for messages (`YYYY-MM-DD`).
fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The kinds of XEP-0415 this node defines itself (XMPP-LOCATION's access control).
pub fn usage_kinds() -> KindResolver {
    Arc::new(|spec: &KindSpec| {
        let id = spec.kind_id()?;
        (id == XMPP_LOCATION || spec.label() == "XMPP-LOCATION")
            .then(|| xmpp_location_kind(id, spec.max_count, spec.max_size))
    })
}

/// The overlay a profile belongs to: the first configuration of its document.
pub fn profile_overlay(dir: &Path) -> Result<String, StartupError> {
    let path = dir.join("config.xml");
    let bad = |why: String| StartupError::Profile {
        dir: dir.display().to_string(),
        why,
    };
    let bytes = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let doc = Document::parse(&bytes).map_err(|e| bad(e.to_string()))?;
    doc.configurations
        .first()
        .map(|c| c.config.instance_name.clone())
        .ok_or_else(|| bad("config.xml holds no configuration".into()))
}

fn listen_error(what: &'static str, addr: impl ToString, why: impl ToString) -> StartupError {
    StartupError::PortTaken {
        what,
        addr: addr.to_string(),
        why: why.to_string(),
    }
}

/// The XMPP node's configuration from an enrolled profile (`source` names where the
/// profile came from, for messages): the certificate must be valid now and carry an
/// XMPP address, and the overlay's configuration document must be usable.
pub fn node_config(
    profile: &Profile,
    overlay: &str,
    resource: &str,
    source: &str,
) -> Result<XmppConfig, StartupError> {
    let identity = profile.credentials.identity().clone();
    let now = now_unix();
    if now > identity.not_after {
        return Err(StartupError::Certificate {
            dir: source.to_owned(),
            when: format!("expired on {}", date(identity.not_after)),
        });
    }
    if now < identity.not_before {
        return Err(StartupError::Certificate {
            dir: source.to_owned(),
            when: format!("is not valid before {}", date(identity.not_before)),
        });
    }
    let jid = identity
        .xmpp_addrs
        .iter()
        .find_map(|a| Jid::parse(a).ok())
        .ok_or_else(|| StartupError::Profile {
            dir: source.to_owned(),
            why: "the certificate carries no XMPP address (id-on-xmppAddr)".into(),
        })?;
    let config_error = |e: xor_enrollment::config::ConfigError| StartupError::Config {
        dir: source.to_owned(),
        why: e.to_string(),
    };
    let trust = xor_enrollment::config::sign::trust_of(&profile.config).map_err(config_error)?;
    let mut cfg = XmppConfig::new(overlay, profile.credentials.clone(), trust, jid, resource);
    let usage = usage_kinds();
    configure_node(
        &profile.config,
        profile.document.clone(),
        &mut cfg.node,
        Some(&usage),
    )
    .map_err(config_error)?;
    Ok(cfg)
}

/// Starts the XMPP node, saying in the user's terms why it did not.
pub async fn start_node(cfg: XmppConfig) -> Result<XmppNode, StartupError> {
    XmppNode::start(cfg).await.map_err(|e| match e {
        XmppError::Start(xor_overlay::runtime::StartError::Listen { addr, source }) => {
            listen_error("overlay links", addr, source)
        }
        XmppError::Listen { addr, source } => listen_error("direct XMPP streams", addr, source),
        XmppError::NotJoined { timeout, why } => match why {
            None | Some(JoinFailure::NoBootstrap(_)) => StartupError::NoBootstrap(timeout),
            Some(why) => StartupError::NotJoined {
                timeout,
                why: why.to_string(),
            },
        },
        other => StartupError::Node(other),
    })
}

impl Device {
    /// Loads the profile, joins the overlay, registers the device and opens the local
    /// client port.
    pub async fn start(opts: DeviceOptions) -> Result<Device, StartupError> {
        let dir = opts.profile.display().to_string();
        let key = opts.profile.join("key.pem");
        if key.exists() {
            crate::config::owner_only(&key, "is this device's private key").map_err(|why| {
                StartupError::Profile {
                    dir: dir.clone(),
                    why: why.to_string(),
                }
            })?;
        }
        let overlay = profile_overlay(&opts.profile)?;
        let profile = load_profile(&opts.profile, &overlay).map_err(|e| StartupError::Profile {
            dir: dir.clone(),
            why: e.to_string(),
        })?;
        let mut cfg = node_config(&profile, &overlay, &opts.resource, &dir)?;
        cfg.node.listen_addr = Some(opts.overlay_listen);
        cfg.node.bootstrap.extend(opts.bootstrap.iter().copied());
        cfg.node.may_start_overlay = opts.may_start;
        cfg.node.client = opts.overlay_client;
        // A peer that cannot link to its ring neighbours takes part as a client.
        cfg.node.client_fallback = true;
        cfg.node.ice = opts.ice.clone();
        cfg.priority = opts.priority;
        cfg.stream_listen = opts.stream_listen;
        cfg.join_timeout = opts.join_timeout;
        if let Some(c) = &opts.client {
            // Fail on a taken client port before joining the overlay.
            std::net::TcpListener::bind(c.listen)
                .map_err(|e| listen_error("your XMPP client", c.listen, e))?;
        }
        let node = start_node(cfg).await?;
        Self::assemble(node, opts, overlay).await
    }

    async fn assemble(
        node: XmppNode,
        opts: DeviceOptions,
        overlay: String,
    ) -> Result<Device, StartupError> {
        let mut tasks = Vec::new();
        let (inbound_tx, mut inbound_rx) = mpsc::channel(1024);
        let fallback = opts
            .fallback
            .clone()
            .map(|o| Fallback::start(o, inbound_tx));
        let roster = match opts.client.as_ref().and_then(|c| c.roster.as_deref()) {
            Some(path) => Roster::load(path).map_err(|why| StartupError::Profile {
                dir: opts.profile.display().to_string(),
                why: why.to_string(),
            }),
            None => Ok(Roster::in_memory()),
        };
        let roster = match roster {
            Ok(r) => r,
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        };
        let account = Account::new(node.clone(), roster, fallback);
        if opts.client.is_some() {
            // Messages waiting for the user's client survive a restart.
            account.keep_offline_in(opts.profile.join("offline.toml"));
        }
        let local = match &opts.client {
            Some(c) => {
                let tls =
                    local_port_tls(Some(&opts.profile), node.jid().domain()).map_err(|why| {
                        StartupError::Config {
                            dir: opts.profile.display().to_string(),
                            why: why.to_string(),
                        }
                    })?;
                let settings = LocalSettings::new(c.listen, c.password.clone(), tls);
                match LocalServer::start(settings, account.clone()).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        node.shutdown().await;
                        return Err(listen_error("your XMPP client", c.listen, e));
                    }
                }
            }
            None => None,
        };
        if let Some(mut events) = node.events().await {
            let a = account.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    match ev {
                        XmppEvent::Stanza(d) => a.from_overlay(d).await,
                        XmppEvent::DeviceConnected(d) => {
                            tracing::info!(device = %d.jid, "stream to device up");
                        }
                        XmppEvent::DeviceDisconnected(d) => {
                            tracing::info!(device = %d.jid, "stream to device closed");
                        }
                    }
                }
            }));
        }
        let a = account.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(stanza) = inbound_rx.recv().await {
                a.from_overlay(Delivery {
                    stanza,
                    carbon: None,
                })
                .await;
            }
        }));
        tasks.push(tokio::spawn(save_config_updates(
            node.clone(),
            opts.profile.clone(),
        )));
        Ok(Device {
            node,
            account,
            local,
            profile: opts.profile,
            overlay,
            tasks,
        })
    }

    /// The device's full JID.
    pub fn jid(&self) -> &Jid {
        self.node.jid()
    }

    /// The XMPP node.
    pub fn node(&self) -> &XmppNode {
        &self.node
    }

    /// The local account.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// The local client port's address.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.local.as_ref().map(LocalServer::local_addr)
    }

    /// The profile directory.
    pub fn profile(&self) -> &Path {
        &self.profile
    }

    /// The overlay name.
    pub fn overlay(&self) -> &str {
        &self.overlay
    }

    /// What `status` and `resolve` ask.
    pub fn reporter(&self) -> crate::status::Reporter {
        crate::status::Reporter {
            node: self.node.clone(),
            account: self.account.clone(),
            client_addr: self.client_addr(),
            overlay: self.overlay.clone(),
        }
    }

    /// Removes the location record, closes streams and leaves the overlay.
    pub async fn shutdown(mut self) {
        self.local = None;
        self.node.shutdown().await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Writes every newer configuration document the overlay accepts (ConfigUpdate,
/// §6.5.4) into the profile, so the next start uses it.
async fn save_config_updates(node: XmppNode, profile: PathBuf) {
    let mut watch = node.overlay().configuration();
    let mut current = watch.borrow().0;
    while watch.changed().await.is_ok() {
        let (seq, doc) = watch.borrow().clone();
        if seq == current {
            continue;
        }
        current = seq;
        if let Some(doc) = doc {
            match save_profile_document(&profile, &doc) {
                Ok(()) => tracing::info!(sequence = seq, "saved the new overlay configuration"),
                Err(e) => tracing::warn!(error = %e, "cannot save the new overlay configuration"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_795_392_000), "2026-11-23");
    }
}
