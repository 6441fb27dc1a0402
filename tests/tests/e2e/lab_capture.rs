//! What xor sends decodes in Wireshark: a capture on the public bootstrap node of the
//! lab, while two NATed users join through it and chat over ICE, is decrypted with
//! the node's `SSLKEYLOGFILE` and read by tshark (Debian package). Every RELOAD
//! message decodes without a malformed field, and the Attach and AppAttach messages
//! carry their ICE candidates (RFC 6940 §6.5.1.1) as tshark reads them: TLS-TCP host
//! candidates and, for AppAttach, DTLS-UDP-SR ones with server-reflexive addresses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use xor_tests::coturn::{PublicSegment, have_coturn};
use xor_tests::external::{have_slixmpp, have_tshark};
use xor_tests::labnet::{DOMAIN, OVERLAY_PORT, Operator, login, overlay_addr, run_device_with_env};
use xor_tests::netlab::{Lab, NatKind};

/// Runs tshark with `args`, returning its standard output.
fn tshark(args: &[&str]) -> String {
    let out = std::process::Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The overlay links' decrypted bytes, re-captured as plain TCP to port 6084 — the
/// transport tshark's RELOAD framing dissector (RFC 6940 §6.6.3) registers on; it
/// has no registration above TLS. tshark decrypts the capture with the secrets in
/// `keys`; each link direction becomes one TCP flow of `dir/plain.pcap`, written by
/// text2pcap (Wireshark's own tool).
fn decrypted_overlay_traffic(pcap: &Path, keys: &Path, dir: &Path) -> PathBuf {
    let fields = tshark(&[
        "-r",
        &pcap.display().to_string(),
        "-o",
        &format!("tls.keylog_file:{}", keys.display()),
        "-d",
        &format!("tcp.port=={OVERLAY_PORT},tls"),
        "-Y",
        &format!("tcp.port=={OVERLAY_PORT} && data"),
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "tcp.srcport",
        "-e",
        "data.data",
    ]);
    // (stream, from the listener) -> the bytes, in order.
    let mut flows: BTreeMap<(u32, bool), Vec<u8>> = BTreeMap::new();
    for line in fields.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let [stream, src, data] = cols[..] else {
            continue;
        };
        let key = (stream.parse().unwrap_or(0), src == OVERLAY_PORT.to_string());
        let flow = flows.entry(key).or_default();
        for chunk in data.split(',') {
            flow.extend(hex::decode(chunk).unwrap_or_default());
        }
    }
    let plain = dir.join("plain.pcap");
    let mut first = true;
    for (i, ((_, _), bytes)) in flows.iter().enumerate() {
        // text2pcap's hex dump: a packet starts at offset 0; one frame per packet.
        let mut dump = String::new();
        for seg in frames(bytes) {
            for (o, line) in seg.chunks(16).enumerate() {
                dump.push_str(&format!("{:06x} {}\n", o * 16, hex_spaced(line)));
            }
        }
        let txt = dir.join(format!("flow{i}.txt"));
        let out = dir.join(format!("flow{i}.pcap"));
        std::fs::write(&txt, dump).unwrap();
        let ok = std::process::Command::new("text2pcap")
            .args(["-q", "-T", &format!("{},{OVERLAY_PORT}", 40000 + i)])
            .arg(&txt)
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("text2pcap runs");
        assert!(ok.success(), "text2pcap failed");
        if first {
            std::fs::copy(&out, &plain).unwrap();
            first = false;
        } else {
            let merged = dir.join("merged.pcap");
            let ok = std::process::Command::new("mergecap")
                .args(["-a", "-F", "pcap", "-w"])
                .arg(&merged)
                .arg(&plain)
                .arg(&out)
                .status()
                .expect("mergecap runs");
            assert!(ok.success(), "mergecap failed");
            std::fs::rename(&merged, &plain).unwrap();
        }
    }
    plain
}

/// A link's bytes cut into its frames (RFC 6940 §6.6.3.1: DATA is 128, a 32-bit
/// sequence number, a 24-bit length and the message; ACK is 129, a 32-bit sequence
/// number and a 32-bit received bitmask).
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(&kind) = rest.first() {
        let len = match kind {
            128 if rest.len() >= 8 => {
                8 + (usize::from(rest[5]) << 16 | usize::from(rest[6]) << 8 | usize::from(rest[7]))
            }
            129 => 9,
            _ => panic!("not a RELOAD frame: {:02x?}", &rest[..rest.len().min(16)]),
        };
        assert!(rest.len() >= len, "a frame cut short");
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

fn hex_spaced(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capture_of_joins_and_ice_attaches_decodes_in_tshark_without_malformed_fields() {
    let Some(mut lab) = Lab::new() else { return };
    if !have_slixmpp() || !have_coturn() || !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pcap, keys) = (dir.path().join("boot.pcapng"), dir.path().join("keys.log"));
    let mut seg = PublicSegment::start(&mut lab).await.unwrap();
    let boot = overlay_addr(&seg.boot);
    let op = Operator::start(&seg.op, &["boot", "dave", "erin"], &[boot])
        .await
        .unwrap();
    let mut capture = Command::new("ip")
        .args([
            "netns",
            "exec",
            &seg.boot.ns,
            "dumpcap",
            "-q",
            "-i",
            "any",
            "-w",
        ])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("dumpcap runs");
    for _ in 0..50 {
        if std::fs::metadata(&pcap).is_ok_and(|m| m.len() > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = op.enroll(&seg.boot, "boot", "server", true).await.unwrap();
    // The bootstrap node also serves a relay (RFC 6940 §9): the devices' Fetches of
    // TURN-SERVICE come back with its TurnServer value, for tshark to decode.
    let text = std::fs::read_to_string(&config).unwrap();
    let serve = format!("[nat]\nrelay = \"{}:3478\"\n", seg.boot.addr());
    std::fs::remove_file(&config).unwrap();
    xor_node::config::write_private(&config, &text.replace("[nat]\n", &serve)).unwrap();
    let keylog = keys.display().to_string();
    let b = run_device_with_env(&seg.boot, &config, &[("SSLKEYLOGFILE", &keylog)])
        .await
        .unwrap();
    let stun = format!("stun = [\"{}\"]", seg.coturn().stun_url());
    let natted = |text: String| {
        text.replace("role = \"peer\"", "role = \"client\"")
            .replace("stun = []\n", &format!("{stun}\n"))
    };
    let (_r1, h1) = lab
        .behind_nat("dave", NatKind::PortRestricted, &mut seg.switch, 61)
        .unwrap();
    let (_r2, h2) = lab
        .behind_nat("erin", NatKind::PortRestricted, &mut seg.switch, 62)
        .unwrap();
    let dave = op
        .device_edited(&h1, "dave", "laptop", natted)
        .await
        .unwrap();
    let erin = op
        .device_edited(&h2, "erin", "laptop", natted)
        .await
        .unwrap();
    let mut d = login("dave", &h1).await;
    let mut e = login("erin", &h2).await;
    d.message(&format!("erin@{DOMAIN}"), "captured").await;
    assert!(
        e.got("captured", Duration::from_secs(30)).await.is_some(),
        "{:?}",
        e.seen
    );
    d.quit().await;
    e.quit().await;
    dave.stop().await;
    erin.stop().await;
    b.stop().await;
    if let Some(pid) = capture.id() {
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), capture.wait()).await;

    // For a look after a failure: `XOR_LAB_KEEP=DIR` keeps the capture and secrets.
    if let Some(keep) = std::env::var_os("XOR_LAB_KEEP") {
        let keep = std::path::PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&pcap, keep.join("boot.pcapng"));
        let _ = std::fs::copy(&keys, keep.join("keys.log"));
    }
    let plain = decrypted_overlay_traffic(&pcap, &keys, dir.path());
    if let Some(keep) = std::env::var_os("XOR_LAB_KEEP") {
        let _ = std::fs::copy(&plain, std::path::PathBuf::from(keep).join("plain.pcap"));
    }
    let plain = plain.display().to_string();
    // tshark knows the Kinds of RFC 6940's registry; XMPP-LOCATION (XEP-0415: Kind-ID
    // 5, a dictionary) is told to it as the overlay's configuration document tells
    // the nodes.
    let kinds = "uat:reload_kindids:\"5\",\"XMPP-LOCATION\",\"DICTIONARY\"";
    let read = |filter: &str, fields: &[&str]| {
        let mut args = vec![
            "-o",
            kinds,
            "-r",
            &plain,
            "-Y",
            filter,
            "-T",
            "fields",
            "-E",
            "separator=;",
        ];
        for f in fields {
            args.extend(["-e", f]);
        }
        tshark(&args)
    };
    // Every RELOAD message decodes, none malformed.
    let codes = read("reload", &["reload.message.code"]);
    let count = codes.lines().filter(|l| !l.is_empty()).count();
    assert!(
        count >= 10,
        "tshark decoded {count} RELOAD messages:\n{codes}"
    );
    // One exception, a gap in Wireshark's dissector, not in the bytes: a Fetch of a
    // single value nobody stored (TURN-SERVICE at a peer that serves no relay) is
    // answered with `exists = false` and, as RFC 6940 §7.4.2.2 says, identity_type
    // "none" (3) with an empty identity; tshark names the type but flags its empty
    // value "Unknown identity type".
    let flagged = read(
        "_ws.malformed || _ws.expert.severity == error",
        &[
            "frame.number",
            "_ws.col.Info",
            "_ws.expert.message",
            "reload.signature.identity.type",
        ],
    );
    let malformed: Vec<&str> = flagged
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let f: Vec<&str> = l.split(';').collect();
            let messages: Vec<&str> = f.get(2).unwrap_or(&"").split(',').collect();
            let nones = f
                .get(3)
                .unwrap_or(&"")
                .split(',')
                .filter(|t| *t == "3")
                .count();
            let only_none_identities =
                messages.iter().all(|m| *m == "Unknown identity type") && messages.len() <= nones;
            !only_none_identities
        })
        .collect();
    assert!(malformed.is_empty(), "malformed in tshark:\n{malformed:#?}");
    // The TurnServer values (§9) decode as Wireshark reads them: iteration 1, the
    // bootstrap node's address.
    let turn = read(
        "reload.turnserver",
        &[
            "reload.turnserver.iteration",
            "reload.ipv4addr",
            "reload.port",
        ],
    );
    let want = format!("1;{};3478", seg.boot.addr());
    assert!(
        turn.lines().any(|l| l == want),
        "no TurnServer value {want} in the capture:\n{turn}"
    );
    // Attach and AppAttach carry their candidates, as (overlay link types, candidate
    // types) per message: TLS-TCP-FH-NO-ICE is 4, DTLS-UDP-SR 1; host is 1,
    // server-reflexive 2 (§6.5.1.1).
    let candidates = |filter: &str| -> Vec<(Vec<String>, Vec<String>)> {
        read(
            filter,
            &["reload.overlaylink.type", "reload.icecandidate.type"],
        )
        .lines()
        .filter_map(|l| {
            let (links, types) = l.split_once(';')?;
            let list = |x: &str| x.split(',').map(str::to_owned).collect::<Vec<_>>();
            Some((list(links), list(types)))
        })
        .collect()
    };
    let has = |v: &[String], x: &str| v.iter().any(|e| e == x);
    let attach = candidates("reload.attachreqans");
    assert!(
        attach.iter().any(|(l, t)| has(l, "4") && has(t, "1")),
        "no Attach with a TLS-TCP host candidate decoded: {attach:?}"
    );
    let app = candidates("reload.appattachreq || reload.appattachans");
    assert!(
        app.iter().any(|(l, t)| has(l, "1") && has(t, "2")),
        "no AppAttach with a DTLS-UDP-SR server-reflexive candidate decoded: {app:?}"
    );
}
