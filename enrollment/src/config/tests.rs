//! Tests of the configuration document (RFC 6940 §11.1).

use xor_overlay::id::NodeId;
use xor_overlay::identity::Credentials;
use xor_overlay::identity::issue::{NodeCertSpec, Validity};
use xor_overlay::identity::testca::TestCa;

use super::sign::{sign_kind, signed_document, verify, verify_kinds};
use super::*;

const OVERLAY: &str = "overlay.example.org";
const NOW: i64 = 1_800_000_000;

fn signer(ca: &mut TestCa, id: u128) -> Credentials {
    ca.issue_node(&NodeCertSpec {
        overlay: OVERLAY.into(),
        node_ids: vec![NodeId(id)],
        user: None,
        xmpp_addr: None,
        validity: Validity::LONG,
    })
}

fn full_config(ca: &TestCa, signer: &Credentials) -> Configuration {
    let mut c = Configuration::new(OVERLAY);
    c.sequence = 22;
    c.expiration = Some(NOW + 86_400);
    c.root_certs = vec![ca.root.der.clone()];
    c.enrollment_servers = vec!["https://example.org".into(), "https://example.net".into()];
    c.self_signed = Some(SelfSigned {
        permitted: false,
        digest: "sha256".into(),
    });
    c.bootstrap_nodes = vec![
        BootstrapNode {
            address: "192.0.2.1".parse().unwrap(),
            port: 6084,
        },
        BootstrapNode {
            address: "2001:db8::1".parse().unwrap(),
            port: 7000,
        },
    ];
    c.turn_density = 20;
    c.clients_permitted = false;
    c.no_ice = true;
    c.chord_update_interval = Some(400);
    c.chord_ping_interval = Some(30);
    c.chord_reactive = false;
    c.shared_secret = Some("pass<word>&".into());
    c.max_message_size = 4000;
    c.initial_ttl = 30;
    c.overlay_reliability_timer = 2500;
    c.overlay_link_protocols = vec!["TLS".into()];
    c.configuration_signers = vec![signer.node_id()];
    c.kind_signers = vec![signer.node_id(), NodeId(0x6eba)];
    c.bad_nodes = vec![NodeId(0xbad1), NodeId(0xbad2)];
    c.mandatory_extensions = vec![XOR_NS.into()];
    c.revoked_cas = vec![[7u8; 32]];
    c.required_kinds = vec![
        sign_kind(
            signer,
            KindSpec {
                name: KindName::Name("XMPP-LOCATION".into()),
                data_model: "DICTIONARY".into(),
                access_control: "USER-NODE-MATCH".into(),
                max_count: 64,
                max_size: 1024,
                max_node_multiple: None,
            },
        ),
        sign_kind(
            signer,
            KindSpec {
                name: KindName::Id(2000),
                data_model: "ARRAY".into(),
                access_control: "NODE-MULTIPLE".into(),
                max_count: 22,
                max_size: 4,
                max_node_multiple: Some(3),
            },
        ),
    ];
    c
}

#[test]
fn every_element_survives_sign_write_parse_verify_rfc6940_11_1() {
    let mut ca = TestCa::new(OVERLAY, 1);
    let s = signer(&mut ca, 0x4711);
    let config = full_config(&ca, &s);
    let text = signed_document(&config, &s);
    let doc = Document::parse(text.as_bytes()).unwrap();
    let verified = verify(&doc, OVERLAY, None, NOW).unwrap();
    assert_eq!(verified.signer, NodeId(0x4711));
    assert_eq!(verified.config, config);
    assert_eq!(doc.bytes(), text.as_bytes());
    assert_eq!(verified.config.required_kinds[0].kind.kind_id(), Some(5));
}

#[test]
fn defaults_apply_when_elements_are_absent_rfc6940_11_1() {
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<overlay xmlns="{BASE_NS}"><configuration instance-name="o.example">
<self-signed-permitted digest="sha1">1</self-signed-permitted></configuration></overlay>"#
    );
    let doc = Document::parse(doc.as_bytes()).unwrap();
    let c = &doc.configuration("O.EXAMPLE").unwrap().config;
    assert_eq!(c.sequence, 0);
    assert_eq!(c.topology_plugin, "CHORD-RELOAD");
    assert_eq!(c.node_id_length, 16);
    assert_eq!(c.max_message_size, 5000);
    assert_eq!(c.initial_ttl, 100);
    assert_eq!(c.overlay_reliability_timer, 3000);
    assert_eq!(c.turn_density, 1);
    assert!(c.clients_permitted && !c.no_ice && c.chord_reactive);
    assert!(c.self_signed_permitted());
    assert!(doc.configurations[0].signatures.is_empty());
}

/// The RFC's example document (§11.1), with its Node-IDs widened to 128 bits.
fn rfc_example(mandatory: bool) -> String {
    let ext = if mandatory {
        "<mandatory-extension>\n          urn:ietf:params:xml:ns:p2p:config-ext1\n      </mandatory-extension>"
    } else {
        ""
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
   <overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base"
      xmlns:ext="urn:ietf:params:xml:ns:p2p:config-ext1"
      xmlns:chord="urn:ietf:params:xml:ns:p2p:config-chord">
      <configuration instance-name="overlay.example.org" sequence="22"
          expiration="2002-10-10T07:00:00Z" ext:ext-example="stuff" >
          <topology-plugin> CHORD-RELOAD </topology-plugin>
          <node-id-length>16</node-id-length>
          <root-cert> YmFkIGNlcnQK </root-cert>
          <enrollment-server>https://example.org</enrollment-server>
          <enrollment-server>https://example.net</enrollment-server>
          <self-signed-permitted
                    digest="sha1">false</self-signed-permitted>
          <bootstrap-node address="192.0.0.1" port="6084" />
          <bootstrap-node address="192.0.2.2" port="6084" />
          <bootstrap-node address="2001:DB8::1" />
          <turn-density> 20 </turn-density>
          <clients-permitted> false </clients-permitted>
          <no-ice> false </no-ice>
          <chord:chord-update-interval>
              400</chord:chord-update-interval>
          <chord:chord-ping-interval>30</chord:chord-ping-interval>
          <chord:chord-reactive> true </chord:chord-reactive>
          <shared-secret> password </shared-secret>
          <max-message-size>4000</max-message-size>
          <initial-ttl> 30 </initial-ttl>
          <overlay-reliability-timer> 3000 </overlay-reliability-timer>
          <overlay-link-protocol>TLS</overlay-link-protocol>
          <configuration-signer>47112162e84c69ba47112162e84c69ba</configuration-signer>
          <kind-signer> 47112162e84c69ba47112162e84c69ba </kind-signer>
          <kind-signer> 6eba45d31a900c066eba45d31a900c06 </kind-signer>
          <bad-node> 6ebc45d31a900c066ebc45d31a900c06 </bad-node>
          <ext:example-extension> foo </ext:example-extension>
          {ext}
          <required-kinds>
            <kind-block>
              <kind name="SIP-REGISTRATION">
                  <data-model>SINGLE</data-model>
                  <access-control>USER-MATCH</access-control>
                  <max-count>1</max-count>
                  <max-size>100</max-size>
              </kind>
              <kind-signature>
                   VGhpcyBpcyBub3QgcmlnaHQhCg==
              </kind-signature>
            </kind-block>
            <kind-block>
              <kind id="2000">
                  <data-model>ARRAY</data-model>
                  <access-control>NODE-MULTIPLE</access-control>
                  <max-node-multiple>3</max-node-multiple>
                  <max-count>22</max-count>
                  <max-size>4</max-size>
                  <ext:example-kind-extension> 1
                          </ext:example-kind-extension>
              </kind>
              <kind-signature>
                 VGhpcyBpcyBub3QgcmlnaHQhCg==
              </kind-signature>
            </kind-block>
          </required-kinds>
      </configuration>
      <signature> VGhpcyBpcyBub3QgcmlnaHQhCg== </signature>

      <configuration instance-name="other.example.net">
        <self-signed-permitted digest="sha256">true</self-signed-permitted>
      </configuration>
      <signature> VGhpcyBpcyBub3QgcmlnaHQhCg== </signature>

    </overlay>"#
    )
}

#[test]
fn the_rfc_example_document_parses_rfc6940_11_1() {
    let text = rfc_example(false);
    let doc = Document::parse(text.as_bytes()).unwrap();
    assert_eq!(doc.configurations.len(), 2);
    let sc = doc.configuration("overlay.example.org").unwrap();
    let c = &sc.config;
    assert_eq!(c.sequence, 22);
    assert_eq!(c.expiration, Some(1_034_233_200));
    assert_eq!(c.root_certs, vec![b"bad cert\n".to_vec()]);
    assert_eq!(c.bootstrap_nodes.len(), 3);
    assert_eq!(c.bootstrap_nodes[2].port, 6084);
    assert_eq!(c.turn_density, 20);
    assert!(!c.clients_permitted);
    assert_eq!(c.chord_update_interval, Some(400));
    assert_eq!(c.shared_secret.as_deref(), Some("password"));
    assert_eq!(c.kind_signers.len(), 2);
    assert_eq!(
        c.bad_nodes,
        vec![NodeId(0x6ebc45d31a900c066ebc45d31a900c06)]
    );
    assert_eq!(c.required_kinds.len(), 2);
    assert_eq!(c.required_kinds[1].kind.max_node_multiple, Some(3));
    assert!(sc.raw.starts_with("<configuration instance-name"));
    assert!(sc.raw.ends_with("</configuration>"));
    assert!(
        c.required_kinds[0]
            .raw
            .starts_with("<kind name=\"SIP-REGISTRATION\">")
    );
    assert!(c.required_kinds[0].raw.ends_with("</kind>"));
    assert_eq!(sc.signatures, vec![b"This is not right!\n".to_vec()]);
    assert!(
        doc.configuration("other.example.net")
            .unwrap()
            .config
            .self_signed_permitted()
    );
    // Its signatures are placeholders: verification fails cleanly.
    assert!(matches!(
        verify(&doc, "overlay.example.org", None, 1_000_000_000),
        Err(ConfigError::Signature(_))
    ));
}

#[test]
fn an_unknown_mandatory_extension_refuses_the_configuration_rfc6940_11_1() {
    let text = rfc_example(true);
    assert_eq!(
        Document::parse(text.as_bytes()).unwrap_err(),
        ConfigError::UnsupportedExtension("urn:ietf:params:xml:ns:p2p:config-ext1".into())
    );
}

fn signed(seed: u64) -> (TestCa, Credentials, Configuration, String) {
    let mut ca = TestCa::new(OVERLAY, seed);
    let s = signer(&mut ca, 0x4711);
    let config = full_config(&ca, &s);
    let text = signed_document(&config, &s);
    (ca, s, config, text)
}

#[test]
fn a_tampered_document_is_rejected_rfc6940_11_1() {
    let (_, _, _, text) = signed(2);
    let sig_at = text.find("<signature>").unwrap();
    // One byte changed anywhere in the configuration breaks the signature: a value,
    // and even whitespace ("treated as a binary blob").
    let edits = [
        ("<max-message-size>4000", "<max-message-size>5000"),
        ("<bad-node>", "<bad-node >"),
        (
            "<initial-ttl>30</initial-ttl>\n",
            "<initial-ttl>30</initial-ttl>\r",
        ),
    ];
    for (from, to) in edits {
        let at = text.find(from).unwrap();
        assert!(at < sig_at);
        let mut t = text.clone();
        t.replace_range(at..at + from.len(), to);
        let doc = Document::parse(t.as_bytes()).unwrap();
        let err = verify(&doc, OVERLAY, None, NOW).unwrap_err();
        assert!(matches!(err, ConfigError::Signature(_)), "{from}: {err:?}");
    }
    // A byte of the signature itself.
    let mut bytes = text.into_bytes();
    let pos = sig_at + "<signature>".len() + 30;
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    let doc = Document::parse(&bytes).unwrap();
    assert!(matches!(
        verify(&doc, OVERLAY, None, NOW),
        Err(ConfigError::Signature(_))
    ));
}

#[test]
fn only_configuration_signers_may_sign_rfc6940_11_1() {
    let (mut ca, _, config, _) = signed(3);
    // A certificate of the same CA whose Node-ID is not a configuration-signer.
    let intruder = signer(&mut ca, 0x666);
    let doc = Document::parse(signed_document(&config, &intruder).as_bytes()).unwrap();
    let err = verify(&doc, OVERLAY, None, NOW).unwrap_err();
    assert!(
        err.to_string().contains("not an authorised signer"),
        "{err}"
    );
    // A signer with the right Node-ID from another CA.
    let mut other = TestCa::new(OVERLAY, 99);
    let forger = signer(&mut other, 0x4711);
    let doc = Document::parse(signed_document(&config, &forger).as_bytes()).unwrap();
    assert!(matches!(
        verify(&doc, OVERLAY, None, NOW),
        Err(ConfigError::Signature(_))
    ));
}

#[test]
fn a_new_configuration_is_authorised_by_the_previous_one_rfc6940_11_1() {
    let (mut ca, s, old, _) = signed(4);
    // The new configuration hands signing to another key: the old signer signs it.
    let successor = signer(&mut ca, 0x5000);
    let mut new = old.clone();
    new.sequence = 23;
    new.configuration_signers = vec![successor.node_id()];
    let doc = Document::parse(signed_document(&new, &s).as_bytes()).unwrap();
    let v = verify(&doc, OVERLAY, Some(&old), NOW).unwrap();
    assert_eq!(v.config.sequence, 23);
    // Signed by the successor instead, it is refused by the configuration in use.
    let doc = Document::parse(signed_document(&new, &successor).as_bytes()).unwrap();
    assert!(verify(&doc, OVERLAY, Some(&old), NOW).is_err());
    // The same sequence again, or an older one, is not newer.
    for seq in [22, 21] {
        let mut same = old.clone();
        same.sequence = seq;
        let doc = Document::parse(signed_document(&same, &s).as_bytes()).unwrap();
        assert_eq!(
            verify(&doc, OVERLAY, Some(&old), NOW).unwrap_err(),
            ConfigError::NotNewer {
                offered: seq,
                current: 22
            }
        );
    }
    // Sequences wrap (§6.3.2.1): 0 follows 65534.
    let mut last = old.clone();
    last.sequence = 65534;
    let mut wrapped = old.clone();
    wrapped.sequence = 0;
    let doc = Document::parse(signed_document(&wrapped, &s).as_bytes()).unwrap();
    assert!(verify(&doc, OVERLAY, Some(&last), NOW).is_ok());
}

#[test]
fn an_expired_configuration_is_refused_rfc6940_11_1() {
    let (_, _, config, text) = signed(5);
    let doc = Document::parse(text.as_bytes()).unwrap();
    let exp = config.expiration.unwrap();
    assert_eq!(
        verify(&doc, OVERLAY, None, exp + 1).unwrap_err(),
        ConfigError::Expired(exp)
    );
}

#[test]
fn kind_blocks_need_a_kind_signer_signature_rfc6940_11_1() {
    let (mut ca, s, config, _) = signed(6);
    let outsider = signer(&mut ca, 0x777);
    let spec = config.required_kinds[0].kind.clone();
    // Signed by a kind-signer: fine on its own (ConfigUpdate of type kind, §6.5.4).
    let good = sign_kind(&s, spec.clone());
    verify_kinds(&config, std::slice::from_ref(&good), NOW).unwrap();
    // Not a kind-signer.
    let bad = sign_kind(&outsider, spec.clone());
    assert!(verify_kinds(&config, std::slice::from_ref(&bad), NOW).is_err());
    // Inside a configuration that is itself correctly signed, the bad kind still fails.
    let mut c = config.clone();
    c.required_kinds = vec![bad];
    let doc = Document::parse(signed_document(&c, &s).as_bytes()).unwrap();
    let err = verify(&doc, OVERLAY, None, NOW).unwrap_err();
    assert!(err.to_string().contains("kind XMPP-LOCATION"), "{err}");
    // A tampered kind element.
    let mut tampered = good.clone();
    tampered.raw = tampered.raw.replace("1024", "9999");
    assert!(verify_kinds(&config, &[tampered], NOW).is_err());
    // Unsigned.
    let mut unsigned = good;
    unsigned.signature = None;
    assert!(verify_kinds(&config, &[unsigned], NOW).is_err());
}

#[test]
fn standalone_kind_blocks_parse_with_the_base_namespace_rfc6940_6_5_4_1() {
    let (_, s, config, _) = signed(7);
    let block = sign_kind(&s, config.required_kinds[1].kind.clone());
    let sig = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        block.signature.as_ref().unwrap(),
    );
    let xml = format!(
        "<kind-block>{}<kind-signature>{sig}</kind-signature></kind-block>",
        block.raw
    );
    let blocks = parse_kind_blocks(xml.as_bytes()).unwrap();
    assert_eq!(blocks, vec![block]);
    verify_kinds(&config, &blocks, NOW).unwrap();
}

#[test]
fn malformed_documents_get_clear_errors() {
    let head = format!("<overlay xmlns=\"{BASE_NS}\">");
    let cases: Vec<(String, &str)> = vec![
        ("<overlay".into(), "malformed XML"),
        (
            format!("{head}<configuration instance-name=\"a\">"),
            "malformed XML",
        ),
        (
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><overlay/>".into(),
            "DOCTYPE",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><shared-secret>&bogus;</shared-secret></configuration></overlay>"
            ),
            "undefined entity",
        ),
        ("<overlay xmlns=\"urn:other\"/>".into(), "root element"),
        (format!("{head}</overlay>"), "no configuration"),
        (
            format!("{head}<signature>AA==</signature></overlay>"),
            "precedes",
        ),
        (
            format!(
                "{head}<configuration><self-signed-permitted digest=\"sha1\">true</self-signed-permitted></configuration></overlay>"
            ),
            "instance-name",
        ),
        (
            format!("{head}<configuration instance-name=\"a\" sequence=\"65535\"/></overlay>"),
            "sequence",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><max-message-size>-1</max-message-size></configuration></overlay>"
            ),
            "max-message-size",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><no-ice>maybe</no-ice></configuration></overlay>"
            ),
            "not a boolean",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><bad-node>47112162e84c69ba</bad-node></configuration></overlay>"
            ),
            "Node-ID is 16 bytes",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><root-cert>!!</root-cert></configuration></overlay>"
            ),
            "not base64",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><root-cert>AA==</root-cert><frobnicate/></configuration></overlay>"
            ),
            "unknown element <frobnicate>",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><root-cert>AA==</root-cert><overlay-reliability-timer>100</overlay-reliability-timer></configuration></overlay>"
            ),
            "at least 200",
        ),
        (
            format!(
                "{head}<configuration instance-name=\"a\"><root-cert>AA==</root-cert><enrollment-server>http://x</enrollment-server></configuration></overlay>"
            ),
            "https",
        ),
        (
            format!("{head}<configuration instance-name=\"a\"/></overlay>"),
            "no root-cert",
        ),
    ];
    for (text, expect) in cases {
        let err = Document::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains(expect), "{text}: {err}");
    }
    assert!(matches!(
        Document::parse(&[0xff, 0xfe, b'<']),
        Err(ConfigError::Xml { .. })
    ));
    let huge = vec![b' '; MAX_DOCUMENT + 1];
    assert_eq!(
        Document::parse(&huge).unwrap_err(),
        ConfigError::TooLarge(MAX_DOCUMENT + 1)
    );
}

#[test]
fn truncations_and_byte_flips_never_panic() {
    let (_, _, _, text) = signed(8);
    let bytes = text.as_bytes();
    for cut in (0..bytes.len()).step_by(7) {
        let _ = Document::parse(&bytes[..cut]);
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut b = bytes.to_vec();
        let i = (rng as usize) % b.len();
        b[i] = (rng >> 32) as u8;
        if let Ok(doc) = Document::parse(&b) {
            let _ = verify(&doc, OVERLAY, None, NOW);
        }
    }
}
