//! coturn (the STUN/TURN server most deployments run) on a lab host, for the NAT
//! traversal tests. `XOR_REQUIRE_EXTERNAL` turns a missing `turnserver` into a
//! failure, as for the other external programs.

#![allow(clippy::print_stderr)] // the skip notice is for the person running the tests

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::netlab::{Host, Lab, Switch};

/// The STUN/TURN port.
pub const PORT: u16 = 3478;
/// The TURN user and password the tests configure.
pub const USER: (&str, &str) = ("xor", "turn-secret");

/// Whether coturn is installed (or the test must fail because it is not).
pub fn have_coturn() -> bool {
    let ok = std::process::Command::new("turnserver")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("XOR_REQUIRE_EXTERNAL").is_none(),
            "coturn (turnserver) is required (XOR_REQUIRE_EXTERNAL is set)"
        );
        eprintln!("SKIPPED: coturn (turnserver) is not installed");
    }
    ok
}

/// A running coturn; killed when dropped.
#[derive(Debug)]
pub struct Coturn {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    /// Its log, for a look after a failure.
    pub log: tempfile::NamedTempFile,
    child: Child,
}

impl Coturn {
    /// Starts coturn on `host` as STUN server and TURN server (long-term credentials
    /// [`USER`], realm `lab.xor`), relaying from the host's own address.
    pub async fn start(host: &Host) -> Result<Coturn, String> {
        let ip = host.ip.to_string();
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let user = format!("{}:{}", USER.0, USER.1);
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns, "turnserver"])
            .args([
                "-n",
                "--listening-ip",
                &ip,
                "--relay-ip",
                &ip,
                "--listening-port",
                &PORT.to_string(),
                "--min-port",
                "49152",
                "--max-port",
                "49452",
                "--lt-cred-mech",
                "--user",
                &user,
                "--realm",
                "lab.xor",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-tcp-relay",
                // As production deployments are told to: no relaying into private
                // networks (RFC 1918). Besides, the lab's public hosts have no route
                // there, and coturn drops an allocation whose relay send fails, so
                // one check towards a peer's private host candidate would end it.
                "--denied-peer-ip=10.0.0.0-10.255.255.255",
                "--denied-peer-ip=172.16.0.0-172.31.255.255",
                "--denied-peer-ip=192.168.0.0-192.168.255.255",
                "--no-multicast-peers",
                "--verbose",
                "--log-file",
                "stdout",
            ])
            .stdout(log.reopen().map_err(|e| e.to_string())?)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("turnserver: {e}"))?;
        let addr = SocketAddr::new(host.addr(), PORT);
        for _ in 0..100 {
            let out = host.run("ss", &["-lun"]);
            if String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}:{PORT}")) {
                return Ok(Coturn { addr, log, child });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("coturn did not come up".into())
    }

    /// `stun:` URL.
    pub fn stun_url(&self) -> String {
        format!("stun:{}", self.addr)
    }

    /// `turn:` URL.
    pub fn turn_url(&self) -> String {
        format!("turn:{}", self.addr)
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The public segment of a NAT-traversal lab: the operator's host, the bootstrap
/// node's host and, unless the overlay relays for itself, coturn on a third (RFC 5737
/// addresses, as on the internet).
#[derive(Debug)]
pub struct PublicSegment {
    /// The segment, for more hosts and NAT routers.
    pub switch: Switch,
    /// Where the operator's enrollment server runs.
    pub op: Host,
    /// Where the bootstrap node runs.
    pub boot: Host,
    /// coturn as STUN and TURN server, if started.
    pub coturn: Option<Coturn>,
}

impl PublicSegment {
    /// Makes the segment and its three hosts in `lab` and starts coturn.
    pub async fn start(lab: &mut Lab) -> Result<PublicSegment, String> {
        let mut seg = PublicSegment::without_coturn(lab)?;
        let turn = lab.host("turn", &mut seg.switch, None)?;
        seg.coturn = Some(Coturn::start(&turn).await?);
        Ok(seg)
    }

    /// The segment with the operator's and the bootstrap node's hosts only: no
    /// STUN or TURN server but what the overlay's peers serve (RFC 6940 §9).
    pub fn without_coturn(lab: &mut Lab) -> Result<PublicSegment, String> {
        let mut switch = lab.public()?;
        let op = lab.host("op", &mut switch, None)?;
        let boot = lab.host("boot", &mut switch, None)?;
        Ok(PublicSegment {
            switch,
            op,
            boot,
            coturn: None,
        })
    }

    /// coturn, for a segment made by [`PublicSegment::start`].
    pub fn coturn(&self) -> &Coturn {
        self.coturn.as_ref().expect("the segment runs coturn")
    }
}
