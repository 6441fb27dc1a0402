//! The node's configuration file (TOML). Every option, its meaning and its default are
//! in [`EXAMPLE`], which `xor-node config-example` prints; `run` needs only `profile`
//! (what `xor-node enroll` wrote) and, for the local client port, a password.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What is wrong with a configuration, or with a file the node reads or writes.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is there already and is not replaced.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    /// No configuration file where one was expected.
    #[error("{} does not exist: write one (`xor-node config-example --write`) or pass --config", .0.display())]
    Missing(PathBuf),
    /// A secret file that other users may read or write.
    #[error("{} {what} but other users may read it (mode {mode:o}): run `chmod 600 {}`", path.display(), path.display())]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Why it is secret.
        what: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// TOML that does not parse; the message names the line.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A value that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A problem in the named file.
    #[error("{}: {source}", path.display())]
    In {
        /// The file.
        path: PathBuf,
        /// The problem.
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    /// A failed read or write of `path`.
    pub fn file(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
        move |source| ConfigError::File {
            path: path.to_owned(),
            source,
        }
    }

    /// This error, said to be about `path`.
    pub fn in_file(self, path: &Path) -> ConfigError {
        ConfigError::In {
            path: path.to_owned(),
            source: Box::new(self),
        }
    }
}

/// A commented configuration with every option at its default.
pub const EXAMPLE: &str = r#"# xor-node configuration. Every option is shown with its default.

# The directory `xor-node enroll` wrote: key.pem, cert.pem and config.xml (required).
profile = "~/.local/share/xor/profile"
# This device's resource: contacts see you as you@example.org/<resource>.
resource = "desktop"
# This device's route priority (XEP-0415: lower is tried first by others).
priority = 10

[overlay]
# Where this node accepts overlay links (TLS). Peers must be able to reach it.
listen = "0.0.0.0:6084"
# Bootstrap nodes to try besides those of the configuration document.
bootstrap = []
# Start a new overlay when no bootstrap node answers (the first node of a private
# overlay only).
may_start = false
# "peer": take a place on the ring, route and store for others (a desktop that stays
# on). "client": link to the one peer responsible for this node and use the overlay
# through it, storing nothing for others (RFC 6940 §4.2.1) — for short sessions, or a
# machine its ring neighbours cannot reach. A peer that cannot link to its ring
# neighbours (behind NATs) becomes a client by itself.
role = "peer"
# Where direct XMPP streams from other users' devices arrive (0 picks a port).
stream_listen = "0.0.0.0:0"
# How long to wait for the overlay at start-up, in seconds.
join_timeout = 30

[client]
# The local port for your ordinary XMPP client (Gajim, Dino, …). Log in with this
# device's JID and the password below; the certificate is self-signed.
enabled = true
listen = "127.0.0.1:5222"
# The password your XMPP client uses (required when enabled).
password = ""
# The roster file (default: roster.toml in the profile directory).
# roster = "/path/to/roster.toml"

# An ordinary XMPP account used when a recipient cannot be found or reached in the
# overlay (XEP-0415 "Interaction with XMPP Core"). Leave out to disable.
# [fallback]
# jid = "you@example.org"
# password = "secret"
# server = "192.0.2.10:5222"   # default: the JID's domain, port 5222
# ca = "/path/to/ca.pem"       # extra trust anchors (default: the Web PKI)

# NAT traversal for direct XMPP streams (ICE, RFC 6940 §6.5.1.5): with a STUN or
# TURN server here, AppAttach carries this device's UDP candidates — host,
# server-reflexive (STUN) and relayed (TURN) — beside its TCP ones, and the stream
# runs over whichever path connects first. Without one, TCP only.
[nat]
# STUN servers, e.g. ["stun:stun.example.org:3478"].
stun = []
# TURN servers (UDP) with long-term credentials, for NATs nothing else crosses:
# turn = [{ url = "turn:turn.example.org:3478", username = "u", password = "p" }]
turn = []
# Besides these, a device uses the relays the overlay's public peers serve (RFC 6940
# §9): it finds them among the peers it is linked with, e.g. its bootstrap node.
# On a machine with a public address (a bootstrap node), serve STUN and TURN to the
# overlay's members on this UDP address and record it in the overlay; only peers
# linked to this node can allocate, through their link's credential.
# relay = "0.0.0.0:3478"
# relay_public = "203.0.113.5"   # the address peers reach it at (default: the
#                                # listen address, or the first overlay address)

[log]
# error, warn, info, debug or trace (RUST_LOG overrides it).
level = "info"
"#;

fn default_resource() -> String {
    "desktop".into()
}
fn default_priority() -> u8 {
    10
}
fn default_overlay_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 6084))
}
fn default_stream_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
fn default_join_timeout() -> u64 {
    30
}
fn default_client_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5222))
}
fn default_true() -> bool {
    true
}
fn default_level() -> String {
    "info".into()
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Profile directory.
    pub profile: PathBuf,
    /// Resource.
    #[serde(default = "default_resource")]
    pub resource: String,
    /// Route priority.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// `[overlay]`.
    #[serde(default)]
    pub overlay: OverlaySection,
    /// `[client]`.
    #[serde(default)]
    pub client: ClientSection,
    /// `[fallback]`.
    #[serde(default)]
    pub fallback: Option<FallbackSection>,
    /// `[nat]`.
    #[serde(default)]
    pub nat: NatSection,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
}

/// `[nat]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSection {
    /// STUN servers (`stun:host:port`).
    #[serde(default)]
    pub stun: Vec<String>,
    /// TURN servers.
    #[serde(default)]
    pub turn: Vec<TurnSection>,
    /// Serve STUN and TURN to the overlay on this UDP address (RFC 6940 §9).
    #[serde(default)]
    pub relay: Option<SocketAddr>,
    /// Where peers reach that relay, if not at its listen address.
    #[serde(default)]
    pub relay_public: Option<std::net::IpAddr>,
}

/// One TURN server of `[nat]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSection {
    /// `turn:host:port`.
    pub url: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl NatSection {
    /// The overlay runtime's ICE settings; a malformed server URL is an error here,
    /// at start-up, not at the first message.
    pub fn ice(&self) -> Result<xor_overlay::node::config::IceSettings, ConfigError> {
        let check = |url: &str, schemes: &[&str]| {
            let ok = schemes.iter().any(|s| {
                url.strip_prefix(s)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|hostport| hostport.contains(':') || !hostport.is_empty())
            });
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "[nat] {url:?} is not a {} URL",
                    schemes[0]
                )))
            }
        };
        for s in &self.stun {
            check(s, &["stun", "stuns"])?;
        }
        for t in &self.turn {
            check(&t.url, &["turn", "turns"])?;
        }
        Ok(xor_overlay::node::config::IceSettings {
            stun: self.stun.clone(),
            turn: self
                .turn
                .iter()
                .map(|t| xor_overlay::node::config::TurnServer {
                    url: t.url.clone(),
                    username: t.username.clone(),
                    password: t.password.clone(),
                })
                .collect(),
            include_loopback: false,
            serve: self
                .relay
                .map(|listen| xor_overlay::node::config::ServeRelay {
                    listen,
                    public: self.relay_public,
                }),
        })
    }
}

/// How a node takes part in the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// On the ring: routes and stores for others.
    #[default]
    Peer,
    /// Through the peer responsible for it (RFC 6940 §4.2.1).
    Client,
}

/// `[overlay]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySection {
    /// Overlay link listener.
    #[serde(default = "default_overlay_listen")]
    pub listen: SocketAddr,
    /// Extra bootstrap nodes.
    #[serde(default)]
    pub bootstrap: Vec<SocketAddr>,
    /// May start a new overlay.
    #[serde(default)]
    pub may_start: bool,
    /// Peer or client (§4.2.1).
    #[serde(default)]
    pub role: Role,
    /// Direct stream listener.
    #[serde(default = "default_stream_listen")]
    pub stream_listen: SocketAddr,
    /// Seconds to wait for the join.
    #[serde(default = "default_join_timeout")]
    pub join_timeout: u64,
}

impl Default for OverlaySection {
    fn default() -> Self {
        OverlaySection {
            listen: default_overlay_listen(),
            bootstrap: Vec::new(),
            may_start: false,
            role: Role::Peer,
            stream_listen: default_stream_listen(),
            join_timeout: default_join_timeout(),
        }
    }
}

/// `[client]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Whether the local port is on.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where it listens.
    #[serde(default = "default_client_listen")]
    pub listen: SocketAddr,
    /// The client password.
    #[serde(default)]
    pub password: String,
    /// Roster file.
    #[serde(default)]
    pub roster: Option<PathBuf>,
}

impl Default for ClientSection {
    fn default() -> Self {
        ClientSection {
            enabled: true,
            listen: default_client_listen(),
            password: String::new(),
            roster: None,
        }
    }
}

/// `[fallback]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSection {
    /// The account.
    pub jid: String,
    /// Its password.
    pub password: String,
    /// `host:port` of its server (default: the JID's domain, port 5222).
    #[serde(default)]
    pub server: Option<String>,
    /// Extra trust anchors (PEM).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Level.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_level(),
        }
    }
}

/// Refuses a secret file (`what` says why it is secret) that other users may read or
/// write: `chmod 600` is the cure, and the error says so.
pub fn owner_only(path: &Path, what: &'static str) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(ConfigError::file(path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(ConfigError::NotPrivate {
                path: path.to_owned(),
                what,
                mode: mode & 0o777,
            });
        }
    }
    let _ = (path, what);
    Ok(())
}

/// Writes `text` to `path` readable by its owner only, refusing to replace a file.
pub fn write_private(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(ConfigError::file(dir))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ConfigError::Exists(path.to_owned()),
        _ => ConfigError::file(path)(e),
    })?;
    f.write_all(text.as_bytes())
        .map_err(ConfigError::file(path))
}

/// `~/` expanded with `$HOME`.
pub fn expand(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

impl NodeFile {
    /// Parses configuration text; errors name the line and the problem.
    pub fn parse(text: &str) -> Result<NodeFile, ConfigError> {
        let mut f: NodeFile = toml::from_str(text)?;
        f.profile = expand(&f.profile);
        if let Some(r) = &f.client.roster {
            f.client.roster = Some(expand(r));
        }
        if f.client.enabled && f.client.password.is_empty() {
            return Err(ConfigError::Invalid(
                "[client] is enabled but has no password: set `password`, or `enabled = false`"
                    .into(),
            ));
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&f.log.level.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "[log] level {:?} is not one of error, warn, info, debug, trace",
                f.log.level
            )));
        }
        if f.resource.is_empty() || f.resource.len() > 1023 {
            return Err(ConfigError::Invalid(
                "resource must be 1 to 1023 bytes".into(),
            ));
        }
        Ok(f)
    }

    /// Reads and parses a configuration file. A file holding a password must be
    /// readable by its owner only (as ssh insists for private keys).
    pub fn load(path: &Path) -> Result<NodeFile, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(ConfigError::file(path))?;
        let f = NodeFile::parse(&text).map_err(|e| e.in_file(path))?;
        if f.holds_passwords() {
            owner_only(path, "holds passwords")?;
        }
        Ok(f)
    }

    /// Whether the file holds a password (the client port's or the fallback's).
    pub fn holds_passwords(&self) -> bool {
        !self.client.password.is_empty()
            || self
                .fallback
                .as_ref()
                .is_some_and(|f| !f.password.is_empty())
    }

    /// The roster file.
    pub fn roster_path(&self) -> PathBuf {
        self.client
            .roster
            .clone()
            .unwrap_or_else(|| self.profile.join("roster.toml"))
    }

    /// The control socket of the running daemon.
    pub fn control_path(&self) -> PathBuf {
        self.profile.join("control.sock")
    }
}

/// The default configuration file: `$XDG_CONFIG_HOME/xor/node.toml` or
/// `~/.config/xor/node.toml`.
pub fn default_path() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| expand(Path::new("~/.config")))
        .join("xor/node.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_once_a_password_is_set() {
        let err = NodeFile::parse(EXAMPLE).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("no password"), "{err}");
        let text = EXAMPLE.replace("password = \"\"", "password = \"pw\"");
        let f = NodeFile::parse(&text).unwrap();
        assert_eq!(f.resource, "desktop");
        assert_eq!(f.client.listen, default_client_listen());
        assert_eq!(f.overlay.listen.port(), 6084);
        assert!(f.fallback.is_none());
        assert!(!f.profile.starts_with("~"));
        assert_eq!(f.overlay.role, Role::Peer);
    }

    #[test]
    fn nat_servers_are_read_and_a_malformed_url_is_refused_at_start() {
        let f = |nat: &str| {
            NodeFile::parse(&format!(
                "profile = \"/p\"\n[client]\nenabled = false\n[nat]\n{nat}\n"
            ))
        };
        let ok = f("stun = [\"stun:203.0.113.5:3478\"]\nturn = [{ url = \"turn:203.0.113.5:3478\", username = \"u\", password = \"p\" }]")
            .unwrap();
        let ice = ok.nat.ice().unwrap();
        assert!(ice.enabled());
        assert_eq!(ice.stun, vec!["stun:203.0.113.5:3478".to_string()]);
        assert_eq!(ice.turn[0].username, "u");
        // The default: no server, no ICE (TCP only).
        assert!(!f("").unwrap().nat.ice().unwrap().enabled());
        let bad = f("stun = [\"203.0.113.5:3478\"]").unwrap().nat.ice();
        assert!(bad.unwrap_err().to_string().contains("not a stun URL"));
        let bad = f("turn = [{ url = \"stun:x:1\", username = \"u\", password = \"p\" }]")
            .unwrap()
            .nat
            .ice();
        assert!(bad.unwrap_err().to_string().contains("not a turn URL"));
    }

    #[test]
    fn the_role_is_peer_or_client() {
        let f = |role: &str| {
            NodeFile::parse(&format!(
                "profile = \"/p\"\n[overlay]\nrole = \"{role}\"\n[client]\nenabled = false\n"
            ))
        };
        assert_eq!(f("client").unwrap().overlay.role, Role::Client);
        assert_eq!(f("peer").unwrap().overlay.role, Role::Peer);
        assert!(f("server").unwrap_err().to_string().contains("role"));
    }

    #[test]
    fn only_the_profile_is_required_and_typos_are_errors() {
        let f = NodeFile::parse("profile = \"/p\"\n[client]\nenabled = false\n").unwrap();
        assert_eq!(f.roster_path(), PathBuf::from("/p/roster.toml"));
        let err = NodeFile::parse("profile = \"/p\"\nresorce = \"x\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Toml(_)), "{err}");
        let err = err.to_string();
        assert!(err.contains("resorce"), "{err}");
        let err = NodeFile::parse("resource = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("profile"), "{err}");
        let err = NodeFile::parse(
            "profile = \"/p\"\n[overlay]\nlisten = \"nowhere\"\n[client]\nenabled = false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
