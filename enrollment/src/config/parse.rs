//! Reading a configuration document (§11.1) into [`Configuration`]s, keeping the exact
//! bytes that signatures cover.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use xor_overlay::id::NodeId;

use super::xml::{self, Element};
use super::{
    BASE_NS, BootstrapNode, CHORD_NS, ConfigError, Configuration, KindBlock, KindName, KindSpec,
    MAX_DOCUMENT, SelfSigned, XOR_NS,
};

/// A parsed configuration document.
#[derive(Debug, Clone)]
pub struct Document {
    text: String,
    /// Its configurations, each with the signatures that follow it.
    pub configurations: Vec<SignedConfiguration>,
}

/// One configuration and the `signature` elements after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedConfiguration {
    /// What it says.
    pub config: Configuration,
    /// The exact bytes from `<configuration` to `</configuration>`.
    pub raw: String,
    /// The decoded `signature` elements (each a `SecurityBlock`).
    pub signatures: Vec<Vec<u8>>,
}

impl Document {
    /// Parses and validates a document. Every configuration in it must be valid.
    pub fn parse(bytes: &[u8]) -> Result<Document, ConfigError> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(ConfigError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Xml {
            offset: e.valid_up_to(),
            reason: "the document is not UTF-8".into(),
        })?;
        let root = xml::parse(text)?;
        if root.ns != BASE_NS || root.name != "overlay" {
            return Err(ConfigError::Invalid(format!(
                "the root element is {{{}}}{}, not {{{BASE_NS}}}overlay",
                root.ns, root.name
            )));
        }
        let mut configurations: Vec<SignedConfiguration> = Vec::new();
        for child in &root.children {
            if child.ns != BASE_NS {
                continue;
            }
            match child.name.as_str() {
                "configuration" => configurations.push(SignedConfiguration {
                    config: configuration(child, text)?,
                    raw: text[child.span.clone()].to_owned(),
                    signatures: Vec::new(),
                }),
                "signature" => {
                    let last = configurations.last_mut().ok_or_else(|| {
                        ConfigError::Invalid("a signature precedes every configuration".into())
                    })?;
                    last.signatures.push(base64(child)?);
                }
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "unknown element <{other}> in <overlay>"
                    )));
                }
            }
        }
        if configurations.is_empty() {
            return Err(ConfigError::Invalid(
                "the document has no configuration".into(),
            ));
        }
        Ok(Document {
            text: text.to_owned(),
            configurations,
        })
    }

    /// The document's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The configuration for `overlay` (instance names compare case-insensitively, as
    /// domain names do).
    pub fn configuration(&self, overlay: &str) -> Result<&SignedConfiguration, ConfigError> {
        self.configurations
            .iter()
            .find(|c| c.config.instance_name.eq_ignore_ascii_case(overlay))
            .ok_or_else(|| ConfigError::NoSuchOverlay(overlay.to_owned()))
    }
}

/// Parses `kind-block` elements sent on their own (ConfigUpdate of type kind, §6.5.4.1:
/// "assume a default namespace of urn:ietf:params:xml:ns:p2p:config-base").
pub fn parse_kind_blocks(bytes: &[u8]) -> Result<Vec<KindBlock>, ConfigError> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(ConfigError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Xml {
        offset: e.valid_up_to(),
        reason: "the kinds are not UTF-8".into(),
    })?;
    let wrapped = format!(
        "<required-kinds xmlns=\"{BASE_NS}\" xmlns:chord=\"{CHORD_NS}\" xmlns:xor=\"{XOR_NS}\">{text}</required-kinds>"
    );
    let root = xml::parse(&wrapped)?;
    required_kinds(&root, &wrapped)
}

fn bad(el: &Element, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        element: el.name.clone(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn text(el: &Element) -> &str {
    el.text.trim()
}

fn number<T: FromStr>(el: &Element) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    text(el)
        .parse()
        .map_err(|e: T::Err| bad(el, text(el), e.to_string()))
}

/// xsd:boolean: "true", "false", "1", "0".
fn boolean(el: &Element, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(bad(el, other, "not a boolean")),
    }
}

fn base64(el: &Element) -> Result<Vec<u8>, ConfigError> {
    let compact: String = el.text.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| bad(el, text(el), format!("not base64: {e}")))
}

fn node_id(el: &Element, length: u8) -> Result<NodeId, ConfigError> {
    let t = text(el);
    let raw = hex::decode(t).map_err(|e| bad(el, t, format!("not hex: {e}")))?;
    if raw.len() != usize::from(length) {
        return Err(bad(
            el,
            t,
            format!("a Node-ID is {length} bytes, this is {}", raw.len()),
        ));
    }
    let bytes: [u8; 16] = raw
        .as_slice()
        .try_into()
        .map_err(|_| bad(el, t, "only 128-bit Node-IDs are supported"))?;
    Ok(NodeId::from_bytes(bytes))
}

/// RFC 3339 date-time to seconds since the Unix epoch.
pub(super) fn rfc3339(value: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| e.to_string())
}

fn configuration(el: &Element, source: &str) -> Result<Configuration, ConfigError> {
    let name = el
        .attr("instance-name")
        .ok_or_else(|| ConfigError::Invalid("configuration without instance-name".into()))?;
    let mut c = Configuration::new(name.trim());
    if let Some(seq) = el.attr("sequence") {
        let n: i64 = seq
            .trim()
            .parse()
            .map_err(|e| bad(el, seq, format!("sequence: {e}")))?;
        c.sequence = u16::try_from(n)
            .ok()
            .filter(|s| *s < u16::MAX)
            .ok_or_else(|| bad(el, seq, "sequence must be between 0 and 65534"))?;
    }
    if let Some(exp) = el.attr("expiration") {
        c.expiration = Some(rfc3339(exp).map_err(|e| bad(el, exp, format!("expiration: {e}")))?);
    }
    // node-id-length first: Node-ID lists depend on it.
    if let Some(len) = el
        .children
        .iter()
        .find(|c| c.ns == BASE_NS && c.name == "node-id-length")
    {
        c.node_id_length = number(len)?;
    }
    for child in &el.children {
        match child.ns.as_str() {
            BASE_NS => base_parameter(&mut c, child, source)?,
            CHORD_NS => chord_parameter(&mut c, child)?,
            XOR_NS => xor_parameter(&mut c, child)?,
            _ => {} // foreign-elements: ignored unless a mandatory extension (validate)
        }
    }
    c.validate()?;
    Ok(c)
}

fn base_parameter(c: &mut Configuration, el: &Element, source: &str) -> Result<(), ConfigError> {
    let len = c.node_id_length;
    match el.name.as_str() {
        "topology-plugin" => c.topology_plugin = text(el).to_owned(),
        "node-id-length" => {}
        "root-cert" => c.root_certs.push(base64(el)?),
        "enrollment-server" => c.enrollment_servers.push(text(el).to_owned()),
        "self-signed-permitted" => {
            c.self_signed = Some(SelfSigned {
                permitted: boolean(el, &el.text)?,
                digest: el.attr("digest").unwrap_or("sha1").trim().to_owned(),
            });
        }
        "bootstrap-node" => {
            let address = el
                .attr("address")
                .ok_or_else(|| bad(el, "", "bootstrap-node without address"))?;
            let port = match el.attr("port") {
                Some(p) => p
                    .trim()
                    .parse()
                    .map_err(|e| bad(el, p, format!("port: {e}")))?,
                None => 6084,
            };
            c.bootstrap_nodes.push(BootstrapNode {
                address: address
                    .trim()
                    .parse()
                    .map_err(|e| bad(el, address, format!("address: {e}")))?,
                port,
            });
        }
        "turn-density" => c.turn_density = number(el)?,
        "clients-permitted" => c.clients_permitted = boolean(el, &el.text)?,
        "no-ice" => c.no_ice = boolean(el, &el.text)?,
        "shared-secret" => c.shared_secret = Some(text(el).to_owned()),
        "max-message-size" => c.max_message_size = number(el)?,
        "initial-ttl" => c.initial_ttl = number(el)?,
        "overlay-reliability-timer" => c.overlay_reliability_timer = number(el)?,
        "overlay-link-protocol" => c.overlay_link_protocols.push(text(el).to_owned()),
        "kind-signer" => c.kind_signers.push(node_id(el, len)?),
        "configuration-signer" => c.configuration_signers.push(node_id(el, len)?),
        "bad-node" => c.bad_nodes.push(node_id(el, len)?),
        "mandatory-extension" => c.mandatory_extensions.push(text(el).to_owned()),
        "required-kinds" => c.required_kinds = required_kinds(el, source)?,
        other => {
            return Err(ConfigError::Invalid(format!(
                "unknown element <{other}> in <configuration>"
            )));
        }
    }
    Ok(())
}

fn chord_parameter(c: &mut Configuration, el: &Element) -> Result<(), ConfigError> {
    match el.name.as_str() {
        "chord-update-interval" => c.chord_update_interval = Some(number(el)?),
        "chord-ping-interval" => c.chord_ping_interval = Some(number(el)?),
        "chord-reactive" => c.chord_reactive = boolean(el, &el.text)?,
        other => {
            return Err(ConfigError::Invalid(format!(
                "unknown chord element <{other}>"
            )));
        }
    }
    Ok(())
}

fn xor_parameter(c: &mut Configuration, el: &Element) -> Result<(), ConfigError> {
    match el.name.as_str() {
        "revoked-ca" => {
            let t = text(el);
            let raw = hex::decode(t).map_err(|e| bad(el, t, format!("not hex: {e}")))?;
            let fp: [u8; 32] = raw
                .try_into()
                .map_err(|_| bad(el, t, "a SHA-256 fingerprint is 32 bytes"))?;
            c.revoked_cas.push(fp);
        }
        other => {
            return Err(ConfigError::Invalid(format!(
                "unknown xor element <{other}>"
            )));
        }
    }
    Ok(())
}

/// The kind-blocks of a `required-kinds` element; `source` is the text its spans index.
fn required_kinds(el: &Element, source: &str) -> Result<Vec<KindBlock>, ConfigError> {
    let mut blocks = Vec::new();
    for block in &el.children {
        if block.ns != BASE_NS || block.name != "kind-block" {
            return Err(ConfigError::Invalid(format!(
                "<{}> inside <required-kinds>",
                block.name
            )));
        }
        let mut kind = None;
        let mut signature = None;
        for part in &block.children {
            match (part.ns.as_str(), part.name.as_str()) {
                (BASE_NS, "kind") if kind.is_none() => kind = Some(part),
                (BASE_NS, "kind-signature") if signature.is_none() => {
                    signature = Some(base64(part)?)
                }
                (_, other) => {
                    return Err(ConfigError::Invalid(format!(
                        "unexpected <{other}> in <kind-block>"
                    )));
                }
            }
        }
        let kind = kind.ok_or_else(|| ConfigError::Invalid("kind-block without kind".into()))?;
        blocks.push(KindBlock {
            kind: kind_spec(kind)?,
            raw: source.get(kind.span.clone()).unwrap_or_default().to_owned(),
            signature,
        });
    }
    Ok(blocks)
}

fn kind_spec(el: &Element) -> Result<KindSpec, ConfigError> {
    let name = match (el.attr("name"), el.attr("id")) {
        (Some(n), None) => KindName::Name(n.trim().to_owned()),
        (None, Some(id)) => KindName::Id(
            id.trim()
                .parse()
                .map_err(|e| bad(el, id, format!("kind id: {e}")))?,
        ),
        _ => {
            return Err(ConfigError::Invalid(
                "a kind has either a name or an id attribute".into(),
            ));
        }
    };
    let mut data_model = None;
    let mut access_control = None;
    let mut max_count = None;
    let mut max_size = None;
    let mut max_node_multiple = None;
    for p in &el.children {
        if p.ns != BASE_NS {
            continue;
        }
        match p.name.as_str() {
            "data-model" => data_model = Some(text(p).to_owned()),
            "access-control" => access_control = Some(text(p).to_owned()),
            "max-count" => max_count = Some(number(p)?),
            "max-size" => max_size = Some(number(p)?),
            "max-node-multiple" => max_node_multiple = Some(number(p)?),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "unknown element <{other}> in <kind>"
                )));
            }
        }
    }
    let missing = |what: &str| ConfigError::Invalid(format!("kind without <{what}>"));
    Ok(KindSpec {
        name,
        data_model: data_model.ok_or_else(|| missing("data-model"))?,
        access_control: access_control.ok_or_else(|| missing("access-control"))?,
        max_count: max_count.ok_or_else(|| missing("max-count"))?,
        max_size: max_size.ok_or_else(|| missing("max-size"))?,
        max_node_multiple,
    })
}
