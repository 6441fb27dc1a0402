//! Serialising configurations (§11.1). The output is deterministic, so signing the
//! string this writes and embedding it verbatim gives a verifiable document.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{BASE_NS, CHORD_NS, Configuration, KindName, KindSpec, XOR_NS};

/// `&`, `<`, `>`, `"` and `'` escaped for text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// base64 in lines of 64 characters, indented.
fn b64_block(data: &[u8], indent: &str) -> String {
    let text = STANDARD.encode(data);
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(64) {
        out.push('\n');
        out.push_str(indent);
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out.push('\n');
    out
}

/// Seconds since the Unix epoch as an RFC 3339 UTC date-time.
pub(super) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// A `kind` element (what a `kind-signature` signs).
pub fn write_kind(k: &KindSpec) -> String {
    let mut s = String::new();
    match &k.name {
        KindName::Name(n) => {
            let _ = write!(s, "<kind name=\"{}\">", esc(n));
        }
        KindName::Id(id) => {
            let _ = write!(s, "<kind id=\"{id}\">");
        }
    }
    let i = "\n          ";
    let _ = write!(s, "{i}<data-model>{}</data-model>", esc(&k.data_model));
    let _ = write!(
        s,
        "{i}<access-control>{}</access-control>",
        esc(&k.access_control)
    );
    if let Some(m) = k.max_node_multiple {
        let _ = write!(s, "{i}<max-node-multiple>{m}</max-node-multiple>");
    }
    let _ = write!(s, "{i}<max-count>{}</max-count>", k.max_count);
    let _ = write!(s, "{i}<max-size>{}</max-size>", k.max_size);
    s.push_str("\n        </kind>");
    s
}

/// A `configuration` element, from `<configuration` to `</configuration>` (what the
/// document signature signs). Kind blocks are written with their signed `raw` bytes
/// when they have them.
pub fn write_configuration(c: &Configuration) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<configuration instance-name=\"{}\" sequence=\"{}\"",
        esc(&c.instance_name),
        c.sequence
    );
    if let Some(exp) = c.expiration {
        let _ = write!(s, " expiration=\"{}\"", rfc3339(exp));
    }
    s.push('>');
    let i = "\n    ";
    let mut el = |name: &str, value: &str| {
        let _ = write!(s, "{i}<{name}>{}</{name}>", esc(value));
    };
    el("topology-plugin", &c.topology_plugin);
    el("node-id-length", &c.node_id_length.to_string());
    el("max-message-size", &c.max_message_size.to_string());
    el("initial-ttl", &c.initial_ttl.to_string());
    el(
        "overlay-reliability-timer",
        &c.overlay_reliability_timer.to_string(),
    );
    el("turn-density", &c.turn_density.to_string());
    el("clients-permitted", &c.clients_permitted.to_string());
    el("no-ice", &c.no_ice.to_string());
    for p in &c.overlay_link_protocols {
        el("overlay-link-protocol", p);
    }
    for url in &c.enrollment_servers {
        el("enrollment-server", url);
    }
    if let Some(secret) = &c.shared_secret {
        el("shared-secret", secret);
    }
    let hexes = [
        ("configuration-signer", &c.configuration_signers),
        ("kind-signer", &c.kind_signers),
        ("bad-node", &c.bad_nodes),
    ];
    for (name, ids) in hexes {
        for id in ids.iter() {
            el(name, &hex::encode(id.to_be_bytes()));
        }
    }
    for ext in &c.mandatory_extensions {
        el("mandatory-extension", ext);
    }
    if let Some(ss) = &c.self_signed {
        let _ = write!(
            s,
            "{i}<self-signed-permitted digest=\"{}\">{}</self-signed-permitted>",
            esc(&ss.digest),
            ss.permitted
        );
    }
    for b in &c.bootstrap_nodes {
        let _ = write!(
            s,
            "{i}<bootstrap-node address=\"{}\" port=\"{}\"/>",
            b.address, b.port
        );
    }
    if let Some(v) = c.chord_update_interval {
        let _ = write!(
            s,
            "{i}<chord:chord-update-interval>{v}</chord:chord-update-interval>"
        );
    }
    if let Some(v) = c.chord_ping_interval {
        let _ = write!(
            s,
            "{i}<chord:chord-ping-interval>{v}</chord:chord-ping-interval>"
        );
    }
    let _ = write!(
        s,
        "{i}<chord:chord-reactive>{}</chord:chord-reactive>",
        c.chord_reactive
    );
    for fp in &c.revoked_cas {
        let _ = write!(s, "{i}<xor:revoked-ca>{}</xor:revoked-ca>", hex::encode(fp));
    }
    for cert in &c.root_certs {
        let _ = write!(
            s,
            "{i}<root-cert>{}    </root-cert>",
            b64_block(cert, "      ")
        );
    }
    if !c.required_kinds.is_empty() {
        let _ = write!(s, "{i}<required-kinds>");
        for block in &c.required_kinds {
            let kind = if block.raw.is_empty() {
                write_kind(&block.kind)
            } else {
                block.raw.clone()
            };
            let _ = write!(s, "\n      <kind-block>\n        {kind}");
            if let Some(sig) = &block.signature {
                let _ = write!(
                    s,
                    "\n        <kind-signature>{}        </kind-signature>",
                    b64_block(sig, "          ")
                );
            }
            s.push_str("\n      </kind-block>");
        }
        let _ = write!(s, "{i}</required-kinds>");
    }
    s.push_str("\n  </configuration>");
    s
}

/// A whole document: each configuration's exact text followed by its signatures.
pub fn write_document(configurations: &[(String, Vec<Vec<u8>>)]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<overlay xmlns=\"{BASE_NS}\"\n    xmlns:chord=\"{CHORD_NS}\"\n    xmlns:xor=\"{XOR_NS}\">\n"
    );
    for (raw, signatures) in configurations {
        let _ = writeln!(s, "  {raw}");
        for sig in signatures {
            let _ = writeln!(s, "  <signature>{}  </signature>", b64_block(sig, "    "));
        }
    }
    s.push_str("</overlay>\n");
    s
}
