//! Node configuration: the overlay's parameters (§11.1) and this node's own settings.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::identity::{Credentials, TrustStore};
use crate::storage::{KindTable, StorageLimits};

/// §10.7.4.1: "The default time is about every ten minutes".
pub const DEFAULT_CHORD_UPDATE_INTERVAL: Duration = Duration::from_secs(600);

/// Everything a [`super::Node`] needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The overlay name (`instance-name`).
    pub overlay: String,
    /// This node's key and certificate.
    pub credentials: Credentials,
    /// Roots, self-signed mode and bad nodes.
    pub trust: TrustStore,
    /// The configuration document's `sequence` (§6.3.2.1).
    pub configuration_sequence: u16,
    /// The signed configuration document, sent in ConfigUpdate to peers with an older
    /// one (§6.5.4).
    pub config_document: Option<Bytes>,
    /// Verifies ConfigUpdates (§6.5.4); without one they are refused.
    pub config_authority: Option<std::sync::Arc<dyn super::ConfigAuthority>>,
    /// `initial-ttl` (default 100).
    pub initial_ttl: u8,
    /// `max-message-size`.
    pub max_message_size: usize,
    /// `overlay-reliability-timer` (default 3 s, §6.2.1).
    pub reliability_timer: Duration,
    /// Retransmissions after the first transmission (the RFC allows up to 4).
    pub max_retransmits: u32,
    /// Maximum request lifetime: duplicate detection and fragment reassembly (15 s).
    pub request_lifetime: Duration,
    /// `chord-update-interval` (§10.7.4.1; the RFC suggests ten minutes).
    pub chord_update_interval: Duration,
    /// `chord-ping-interval` (§10.7.4.2; default one hour).
    pub chord_ping_interval: Duration,
    /// How often a joined node checks through a bootstrap node that the overlay is
    /// not split (§10.7.4.4); it also checks a few seconds after losing a neighbour.
    pub partition_check_interval: Duration,
    /// `chord-reactive` (§10.7.1): send Updates as soon as the neighbour table changes.
    pub chord_reactive: bool,
    /// Proximity neighbour selection (`node::proximity`): keep the nearest peer of
    /// each finger interval, and attach to candidates now and then to find it.
    pub proximity: bool,
    /// Predecessors and successors to keep (at least 3, §10.7).
    pub neighbors: usize,
    /// Where this node accepts links (the bound address).
    pub listen_addr: Option<SocketAddr>,
    /// The addresses peers can reach the listener at, offered as host candidates in
    /// Attach (§6.5.1.1); the runtime fills them from the machine's interfaces when
    /// `listen_addr` is a wildcard. Empty: `listen_addr` itself.
    pub advertise: Vec<SocketAddr>,
    /// Bootstrap nodes (§11.4).
    pub bootstrap: Vec<SocketAddr>,
    /// Whether this node may start the overlay if no bootstrap node answers (§6.4.2.1:
    /// "a configuration flag or setting").
    pub may_start_overlay: bool,
    /// How long to wait between attempts to reach a bootstrap node.
    pub bootstrap_retry: Duration,
    /// Take part as a client (§4.2.1) rather than a peer: link to the peer responsible
    /// for this Node-ID, route everything through it, store nothing for others, never
    /// enter anyone's routing table. For nodes that come and go quickly or cannot be
    /// reached by ring neighbours.
    pub client: bool,
    /// How often a client asks which peer is responsible for its Node-ID, and moves
    /// to it when that changed (§4.2.1: "the client would then need to form a
    /// connection to the appropriate peer").
    pub client_check_interval: Duration,
    /// A peer that cannot link to the neighbours of its place on the ring (behind a
    /// NAT, say) takes part as a client instead (§4.2.1) rather than failing to join.
    pub client_fallback: bool,
    /// Fragment messages larger than this on the way out (§6.7); `None` for stream
    /// links, which carry whole messages.
    pub fragment_mtu: Option<usize>,
    /// Most links this node keeps.
    pub max_connections: usize,
    /// What fragment reassembly may hold (§6.7).
    pub reassembly: super::fragments::ReassemblyLimits,
    /// Seed of the node's RNG (transaction ids, finger choices, jitter).
    pub seed: u64,
    /// Wall-clock milliseconds since the Unix epoch at `Instant::ZERO`.
    pub epoch_unix_ms: u64,
    /// The Kinds this overlay stores, with their limits (§7.4.5, §11.1).
    pub kinds: KindTable,
    /// Applications this node accepts in AppAttach (§6.5.2) and where each listens,
    /// e.g. (5222, the XMPP stream listener).
    pub applications: Vec<(u16, SocketAddr)>,
    /// How much this node stores for others at most.
    pub storage_limits: StorageLimits,
    /// Where the runtime learns ICE candidates for application streams (§6.5.1.5);
    /// the core only carries the candidates it is given.
    pub ice: IceSettings,
    /// `turn-density` (§9, §11.1): how many TURN-SERVICE records a relay stores.
    pub turn_density: u8,
}

/// A TURN server and the credentials for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// `turn:host:port` (UDP).
    pub url: String,
    /// The long-term credential's user name.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// Where ICE learns server-reflexive and relayed candidates (RFC 6940 §6.5.1.5: "an
/// ICE agent is configured with, or somehow knows of, TURN and STUN servers").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceSettings {
    /// STUN servers, `stun:host:port`.
    pub stun: Vec<String>,
    /// TURN servers.
    pub turn: Vec<TurnServer>,
    /// Gather loopback host candidates (a development overlay on one host); relays
    /// found in the overlay may then be on private or loopback addresses, and a
    /// relay this node serves relays to them.
    pub include_loopback: bool,
    /// Serve STUN and TURN to the overlay and record it under TURN-SERVICE (§9).
    pub serve: Option<ServeRelay>,
}

/// A relay this node serves to the overlay (RFC 6940 §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeRelay {
    /// The UDP address to listen on (STUN and TURN on one port, 3478 by custom).
    pub listen: SocketAddr,
    /// The address peers reach it at and relayed ports are given on: the listen
    /// address, or for a wildcard one the first address the overlay advertises.
    pub public: Option<std::net::IpAddr>,
}

impl IceSettings {
    /// ICE runs when there is a server to learn candidates from: without one, the
    /// host candidates it would gather are those the TCP candidates already carry.
    pub fn enabled(&self) -> bool {
        !self.stun.is_empty() || !self.turn.is_empty()
    }
}

impl NodeConfig {
    /// Defaults for everything but identity and overlay name.
    pub fn new(
        overlay: impl Into<String>,
        credentials: Credentials,
        trust: TrustStore,
    ) -> NodeConfig {
        NodeConfig {
            overlay: overlay.into(),
            credentials,
            trust,
            configuration_sequence: 1,
            config_document: None,
            config_authority: None,
            initial_ttl: 100,
            max_message_size: 64 * 1024,
            reliability_timer: Duration::from_secs(3),
            max_retransmits: 4,
            request_lifetime: Duration::from_secs(15),
            chord_update_interval: DEFAULT_CHORD_UPDATE_INTERVAL,
            chord_ping_interval: Duration::from_secs(3600),
            partition_check_interval: Duration::from_secs(600),
            chord_reactive: true,
            proximity: true,
            neighbors: 3,
            listen_addr: None,
            advertise: Vec::new(),
            bootstrap: Vec::new(),
            may_start_overlay: false,
            bootstrap_retry: Duration::from_secs(5),
            client: false,
            client_check_interval: Duration::from_secs(120),
            client_fallback: false,
            fragment_mtu: None,
            max_connections: 512,
            reassembly: Default::default(),
            seed: 0,
            epoch_unix_ms: 0,
            kinds: KindTable::default(),
            applications: Vec::new(),
            storage_limits: StorageLimits::default(),
            ice: IceSettings::default(),
            turn_density: 1,
        }
    }
}
