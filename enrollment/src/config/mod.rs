//! The overlay configuration document (RFC 6940 §11.1, `application/p2p-overlay+xml`).
//!
//! [`Configuration`] is one `<configuration>` element with every parameter the RFC
//! defines; [`write_configuration`] serialises it, [`Document::parse`] reads a whole
//! document back (keeping the exact bytes of each configuration and kind element, which
//! is what signatures cover), and [`sign`] signs and verifies those bytes with a RELOAD `SecurityBlock`.
//!
//! Decisions where §11.1 is loose:
//! - Node-IDs in `kind-signer`, `configuration-signer` and `bad-node` are exactly
//!   `node-id-length` bytes of hex (the RFC's 8-byte example values are refused).
//! - Elements of the base or chord namespace that §11.1 does not define are errors;
//!   elements of other namespaces are ignored unless their namespace is listed as a
//!   `mandatory-extension` that this implementation does not support, which refuses the
//!   whole configuration.
//! - xor's own extension namespace [`XOR_NS`] carries `xor:revoked-ca` (the SHA-256 of a
//!   revoked intermediate CA certificate, XEP-0415 "Certificate Authority").

mod parse;
pub mod sign;
mod write;
mod xml;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use xor_overlay::id::NodeId;
use xor_overlay::wire::KindId;

pub use parse::{Document, SignedConfiguration, parse_kind_blocks};
pub use write::{write_configuration, write_document, write_kind};

/// `urn:ietf:params:xml:ns:p2p:config-base`.
pub const BASE_NS: &str = "urn:ietf:params:xml:ns:p2p:config-base";
/// `urn:ietf:params:xml:ns:p2p:config-chord`.
pub const CHORD_NS: &str = "urn:ietf:params:xml:ns:p2p:config-chord";
/// xor's extension namespace (`xor:revoked-ca`).
pub const XOR_NS: &str = "urn:xor:params:xml:ns:p2p:config-xor";
/// The MIME type of the document (§11.1).
pub const CONTENT_TYPE: &str = "application/p2p-overlay+xml";
/// Largest document this implementation reads.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// What can be wrong with a configuration document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not well-formed XML, or not UTF-8.
    #[error("malformed XML at byte {offset}: {reason}")]
    Xml {
        /// Byte offset of the problem.
        offset: usize,
        /// What the XML parser said.
        reason: String,
    },
    /// The document is larger than [`MAX_DOCUMENT`].
    #[error("the document is {0} bytes, more than the {MAX_DOCUMENT} allowed")]
    TooLarge(usize),
    /// A structural rule of §11.1 is broken.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// An element's value is not acceptable.
    #[error("bad <{element}> value {value:?}: {reason}")]
    BadValue {
        /// The element or attribute.
        element: String,
        /// Its text.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A `mandatory-extension` this node does not implement (§11.1: the node must not
    /// join).
    #[error("unsupported mandatory extension {0}")]
    UnsupportedExtension(String),
    /// The document has no configuration for the overlay asked for.
    #[error("the document has no configuration for overlay {0}")]
    NoSuchOverlay(String),
    /// A signature is missing or does not verify.
    #[error("signature refused: {0}")]
    Signature(String),
    /// The document is not newer than the one in use.
    #[error("configuration sequence {offered} is not newer than {current}")]
    NotNewer {
        /// The offered sequence.
        offered: u16,
        /// The sequence in use.
        current: u16,
    },
    /// The configuration has expired.
    #[error("the configuration expired at {0} (Unix seconds)")]
    Expired(i64),
}

/// `self-signed-permitted` (§11.1, §11.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The element's boolean.
    pub permitted: bool,
    /// `digest`: `sha1` or `sha256`.
    pub digest: String,
}

/// `bootstrap-node` (§11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapNode {
    /// IPv4 or IPv6 address.
    pub address: IpAddr,
    /// Port (default 6084).
    pub port: u16,
}

/// How a `kind` element names its Kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindName {
    /// `name`: a registered Kind name.
    Name(String),
    /// `id`: a Kind-ID from private space.
    Id(KindId),
}

/// A `kind` element (§11.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSpec {
    /// Name or id.
    pub name: KindName,
    /// `data-model`: SINGLE, ARRAY, DICTIONARY or an extension.
    pub data_model: String,
    /// `access-control`: USER-MATCH, NODE-MATCH, USER-NODE-MATCH, NODE-MULTIPLE or an
    /// extension.
    pub access_control: String,
    /// `max-count`.
    pub max_count: u32,
    /// `max-size`.
    pub max_size: u32,
    /// `max-node-multiple` (required for NODE-MULTIPLE).
    pub max_node_multiple: Option<u32>,
}

impl KindSpec {
    /// A DICTIONARY Kind with USER-NODE-MATCH access control (§7.3.3), like
    /// XMPP-LOCATION: one entry per device, keyed by its Node-ID.
    pub fn user_node_dictionary(name: KindName, max_count: u32, max_size: u32) -> KindSpec {
        KindSpec {
            name,
            data_model: "DICTIONARY".into(),
            access_control: "USER-NODE-MATCH".into(),
            max_count,
            max_size,
            max_node_multiple: None,
        }
    }

    /// TURN-SERVICE (RFC 6940 §9): a single `TurnServer` value per Resource-ID,
    /// NODE-MULTIPLE "with a maximum iteration of counter 20". A `TurnServer` is at
    /// most 20 bytes (iteration, an IPv6 `IpAddressPort`).
    pub fn turn_service() -> KindSpec {
        KindSpec {
            name: KindName::Name("TURN-SERVICE".into()),
            data_model: "SINGLE".into(),
            access_control: "NODE-MULTIPLE".into(),
            max_count: 1,
            max_size: 32,
            max_node_multiple: Some(20),
        }
    }

    /// The Kind-ID: the `id` attribute, or the IANA registration of the name (§14.6,
    /// XEP-0415 for XMPP-LOCATION).
    pub fn kind_id(&self) -> Option<KindId> {
        match &self.name {
            KindName::Id(id) => Some(*id),
            KindName::Name(n) => registered_kind(n),
        }
    }

    /// The name, or the id as text.
    pub fn label(&self) -> String {
        match &self.name {
            KindName::Name(n) => n.clone(),
            KindName::Id(id) => id.to_string(),
        }
    }
}

/// Kind-IDs of the registered Kind names this implementation knows.
pub fn registered_kind(name: &str) -> Option<KindId> {
    Some(match name {
        "SIP-REGISTRATION" => 0x1,
        "TURN-SERVICE" => 0x2,
        "CERTIFICATE_BY_NODE" => 0x3,
        "XMPP-LOCATION" => 0x5,
        "CERTIFICATE_BY_USER" => 0x10,
        _ => return None,
    })
}

/// A `kind-block`: the Kind and the signature over the exact bytes of its `kind`
/// element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindBlock {
    /// What the kind element says.
    pub kind: KindSpec,
    /// The exact bytes of `<kind …>…</kind>`, what `kind-signature` covers.
    pub raw: String,
    /// The decoded `kind-signature` (a `SecurityBlock`), if present.
    pub signature: Option<Vec<u8>>,
}

impl KindBlock {
    /// A block for a document about to be signed: `raw` and the kind signature are
    /// filled in when the document is written and signed.
    pub fn unsigned(kind: KindSpec) -> KindBlock {
        KindBlock {
            kind,
            raw: String::new(),
            signature: None,
        }
    }
}

/// One `<configuration>` element: every parameter of §11.1, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// `instance-name`: the overlay name.
    pub instance_name: String,
    /// `sequence` (0 when absent).
    pub sequence: u16,
    /// `expiration`, seconds since the Unix epoch.
    pub expiration: Option<i64>,
    /// `topology-plugin` (default CHORD-RELOAD).
    pub topology_plugin: String,
    /// `node-id-length` in bytes (16..=20; default 16).
    pub node_id_length: u8,
    /// `root-cert`: DER trust anchors.
    pub root_certs: Vec<Vec<u8>>,
    /// `enrollment-server` URLs (https).
    pub enrollment_servers: Vec<String>,
    /// `self-signed-permitted`.
    pub self_signed: Option<SelfSigned>,
    /// `bootstrap-node`s.
    pub bootstrap_nodes: Vec<BootstrapNode>,
    /// `turn-density` (default 1).
    pub turn_density: u8,
    /// `clients-permitted` (default true).
    pub clients_permitted: bool,
    /// `no-ice` (default false).
    pub no_ice: bool,
    /// `chord:chord-update-interval` in seconds.
    pub chord_update_interval: Option<u32>,
    /// `chord:chord-ping-interval` in seconds.
    pub chord_ping_interval: Option<u32>,
    /// `chord:chord-reactive` (default true).
    pub chord_reactive: bool,
    /// `shared-secret`.
    pub shared_secret: Option<String>,
    /// `max-message-size` (default 5000).
    pub max_message_size: u32,
    /// `initial-ttl` (default 100).
    pub initial_ttl: u8,
    /// `overlay-reliability-timer` in milliseconds (default 3000, at least 200).
    pub overlay_reliability_timer: u32,
    /// `overlay-link-protocol`s (none means "TLS").
    pub overlay_link_protocols: Vec<String>,
    /// `kind-signer`s.
    pub kind_signers: Vec<NodeId>,
    /// `configuration-signer`s.
    pub configuration_signers: Vec<NodeId>,
    /// `bad-node`s.
    pub bad_nodes: Vec<NodeId>,
    /// `mandatory-extension` namespaces.
    pub mandatory_extensions: Vec<String>,
    /// `required-kinds`.
    pub required_kinds: Vec<KindBlock>,
    /// `xor:revoked-ca`: SHA-256 fingerprints of revoked CA certificates.
    pub revoked_cas: Vec<[u8; 32]>,
}

impl Configuration {
    /// A configuration for `instance_name` with every default of §11.1.
    pub fn new(instance_name: impl Into<String>) -> Configuration {
        Configuration {
            instance_name: instance_name.into(),
            sequence: 0,
            expiration: None,
            topology_plugin: "CHORD-RELOAD".into(),
            node_id_length: 16,
            root_certs: Vec::new(),
            enrollment_servers: Vec::new(),
            self_signed: None,
            bootstrap_nodes: Vec::new(),
            turn_density: 1,
            clients_permitted: true,
            no_ice: false,
            chord_update_interval: None,
            chord_ping_interval: None,
            chord_reactive: true,
            shared_secret: None,
            max_message_size: 5000,
            initial_ttl: 100,
            overlay_reliability_timer: 3000,
            overlay_link_protocols: Vec::new(),
            kind_signers: Vec::new(),
            configuration_signers: Vec::new(),
            bad_nodes: Vec::new(),
            mandatory_extensions: Vec::new(),
            required_kinds: Vec::new(),
            revoked_cas: Vec::new(),
        }
    }

    /// Whether self-signed certificates are permitted (§11.3.1).
    pub fn self_signed_permitted(&self) -> bool {
        self.self_signed.as_ref().is_some_and(|s| s.permitted)
    }

    /// The semantic checks of §11.1 that do not depend on the XML form.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |element: &str, value: String, reason: &str| ConfigError::BadValue {
            element: element.into(),
            value,
            reason: reason.into(),
        };
        if self.instance_name.is_empty() {
            return Err(ConfigError::Invalid("instance-name is empty".into()));
        }
        if self.sequence == u16::MAX {
            return Err(bad(
                "sequence",
                self.sequence.to_string(),
                "65535 is reserved (§6.3.2.1)",
            ));
        }
        if !(16..=20).contains(&self.node_id_length) {
            return Err(bad(
                "node-id-length",
                self.node_id_length.to_string(),
                "must be between 16 and 20",
            ));
        }
        if self.node_id_length != 16 {
            return Err(bad(
                "node-id-length",
                self.node_id_length.to_string(),
                "this implementation uses 128-bit Node-IDs",
            ));
        }
        if self.topology_plugin != "CHORD-RELOAD" {
            return Err(bad(
                "topology-plugin",
                self.topology_plugin.clone(),
                "only CHORD-RELOAD is implemented",
            ));
        }
        if self.overlay_reliability_timer < 200 {
            return Err(bad(
                "overlay-reliability-timer",
                self.overlay_reliability_timer.to_string(),
                "must be at least 200 ms",
            ));
        }
        if self.initial_ttl == 0 {
            return Err(bad("initial-ttl", "0".into(), "must be positive"));
        }
        for url in &self.enrollment_servers {
            if !url.starts_with("https://") {
                return Err(bad(
                    "enrollment-server",
                    url.clone(),
                    "must be an https: URL",
                ));
            }
        }
        if let Some(s) = &self.self_signed
            && s.digest != "sha1"
            && s.digest != "sha256"
        {
            return Err(bad(
                "self-signed-permitted",
                s.digest.clone(),
                "digest must be sha1 or sha256",
            ));
        }
        if self.root_certs.is_empty() && !self.self_signed_permitted() {
            return Err(ConfigError::Invalid(
                "no root-cert and self-signed certificates are not permitted".into(),
            ));
        }
        for ext in &self.mandatory_extensions {
            if !SUPPORTED_EXTENSIONS.contains(&ext.as_str()) {
                return Err(ConfigError::UnsupportedExtension(ext.clone()));
            }
        }
        for block in &self.required_kinds {
            let k = &block.kind;
            if k.access_control == "NODE-MULTIPLE" && k.max_node_multiple.unwrap_or(0) == 0 {
                return Err(bad(
                    "max-node-multiple",
                    format!("{:?}", k.max_node_multiple),
                    "NODE-MULTIPLE needs max-node-multiple > 0",
                ));
            }
        }
        Ok(())
    }
}

/// Namespaces whose `mandatory-extension` this implementation satisfies.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[BASE_NS, CHORD_NS, XOR_NS];
