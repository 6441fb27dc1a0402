//! The network lab: hosts, switches and NAT routers built from Linux network
//! namespaces, so that xor runs between real addresses on one machine.
//!
//! Every namespace of a lab carries the lab's prefix; dropping the [`Lab`] deletes them
//! all (their interfaces go with them), and a new lab first removes what a crashed run
//! left behind. Nothing is connected to the machine's own namespace: no host of the
//! lab has a route out of it.
//!
//! Addresses follow the internet's classes: LANs use RFC 1918 ranges, the "public"
//! segment the RFC 5737 documentation range 203.0.113.0/24, so that rules about
//! private and public addresses behave as on the internet.
//!
//! NAT routers are nftables rules of the RFC 4787 kinds ([`NatKind`]); a router has a
//! `wan` interface on a switch and a `lan` interface on its own private switch, and
//! one host behind it (enough to tell the mapping and filtering behaviours apart).
//!
//! Building a lab needs root (or CAP_NET_ADMIN) and `ip` and `nft`; where they are
//! missing, [`Lab::new`] returns `None` after printing SKIPPED — unless
//! `XOR_REQUIRE_EXTERNAL` is set, which makes it a failure.

#![allow(clippy::print_stderr)] // the skip notice is for the person running the tests

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// How a NAT router maps and filters (RFC 4787 §4 and §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering ("full cone"): the host's source
    /// port is kept, and anyone may send to it.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering ("restricted
    /// cone"): only addresses the host has sent to may send back.
    AddressRestricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering ("port
    /// restricted cone"): only address and port pairs the host has sent to.
    PortRestricted,
    /// Address-and-port-dependent mapping and filtering ("symmetric"): a new random
    /// port for each destination, replies only.
    Symmetric,
    /// No UDP at all passes (TCP as a port-restricted NAT).
    NoUdp,
}

impl NatKind {
    /// Every kind, for test matrices.
    pub const ALL: [NatKind; 5] = [
        NatKind::FullCone,
        NatKind::AddressRestricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::NoUdp,
    ];

    /// A short name (also used in namespace names).
    pub fn name(self) -> &'static str {
        match self {
            NatKind::FullCone => "fullcone",
            NatKind::AddressRestricted => "addr",
            NatKind::PortRestricted => "port",
            NatKind::Symmetric => "sym",
            NatKind::NoUdp => "noudp",
        }
    }
}

/// A host (a namespace with one interface, `eth0`).
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace.
    pub ns: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

impl Host {
    /// The command prefix that runs a program on this host.
    pub fn exec(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns.clone()]
    }

    /// [`Host::exec`] as `&str`s.
    pub fn prefix(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.ns]
    }

    /// The address as an `IpAddr`.
    pub fn addr(&self) -> IpAddr {
        IpAddr::V4(self.ip)
    }

    /// Runs `program args` on this host and waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs a Python snippet on this host; its standard output, trimmed.
    pub fn python(&self, code: &str) -> String {
        let out = self.run("python3", &["-c", code]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a Python snippet on this host in the background.
    pub fn spawn_python(&self, code: &str) -> tokio::process::Child {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", code])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ip netns exec runs")
    }
}

/// A switch: a namespace holding a bridge, and its subnet `a.b.c.0/24`.
#[derive(Debug, Clone)]
pub struct Switch {
    ns: String,
    subnet: [u8; 3],
    next_host: u8,
}

/// A lab of namespaces, deleted on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    next_link: u32,
}

static LABS: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn available() -> Result<(), String> {
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
    {
        return Err("the network lab needs root".into());
    }
    for tool in [["ip", "-V"], ["nft", "--version"]] {
        run(&tool).map_err(|e| {
            format!(
                "{} is needed ({e}); apt-get install iproute2 nftables",
                tool[0]
            )
        })?;
    }
    // Namespaces may be forbidden inside some containers.
    let probe = format!(
        "xlprobe{}x{}",
        std::process::id(),
        LABS.fetch_add(1, Ordering::SeqCst)
    );
    run(&["ip", "netns", "add", &probe])?;
    run(&["ip", "netns", "del", &probe])
}

impl Lab {
    /// A new lab, or `None` (after printing SKIPPED) where namespaces cannot be made
    /// and `XOR_REQUIRE_EXTERNAL` is not set.
    pub fn new() -> Option<Lab> {
        if let Err(why) = available() {
            assert!(
                std::env::var_os("XOR_REQUIRE_EXTERNAL").is_none(),
                "the network lab is required (XOR_REQUIRE_EXTERNAL is set): {why}"
            );
            eprintln!("SKIPPED: {why} (set XOR_REQUIRE_EXTERNAL=1 to fail instead)");
            return None;
        }
        cleanup_stale();
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        Some(Lab {
            prefix: format!("xl{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            next_link: 0,
        })
    }

    fn namespace(&mut self, role: &str) -> Result<String, String> {
        let ns = format!("{}-{role}", self.prefix);
        run(&["ip", "netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair between two namespaces, named `a_if` and `b_if` inside them.
    fn wire(&mut self, a: &str, a_if: &str, b: &str, b_if: &str) -> Result<(), String> {
        self.next_link += 1;
        // Created in the machine's namespace under unique names, moved at once.
        let (ta, tb) = (
            format!("{}a{}", self.prefix, self.next_link),
            format!("{}b{}", self.prefix, self.next_link),
        );
        let (ta, tb) = (short(&ta), short(&tb));
        run(&[
            "ip", "link", "add", &ta, "type", "veth", "peer", "name", &tb,
        ])?;
        run(&["ip", "link", "set", &ta, "netns", a])?;
        run(&["ip", "link", "set", &tb, "netns", b])?;
        run(&["ip", "-n", a, "link", "set", &ta, "name", a_if])?;
        run(&["ip", "-n", b, "link", "set", &tb, "name", b_if])?;
        run(&["ip", "-n", a, "link", "set", a_if, "up"])?;
        run(&["ip", "-n", b, "link", "set", b_if, "up"])
    }

    /// A switch for the subnet `a.b.c.0/24`.
    pub fn switch(&mut self, name: &str, subnet: [u8; 3]) -> Result<Switch, String> {
        let ns = self.namespace(&format!("sw{name}"))?;
        run(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &ns, "link", "set", "br0", "up"])?;
        Ok(Switch {
            ns,
            subnet,
            next_host: 10,
        })
    }

    /// The public segment, 203.0.113.0/24 (RFC 5737).
    pub fn public(&mut self) -> Result<Switch, String> {
        self.switch("pub", [203, 0, 113])
    }

    /// A host on `sw` with the next free address; its default route goes to
    /// `gateway` when given.
    pub fn host(
        &mut self,
        name: &str,
        sw: &mut Switch,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Host, String> {
        let ns = self.namespace(name)?;
        let ip = sw.take();
        let port = format!("p{}", sw.next_host);
        self.wire(&ns, "eth0", &sw.ns, &port)?;
        run(&["ip", "-n", &sw.ns, "link", "set", &port, "master", "br0"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        if let Some(gw) = gateway {
            run(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &gw.to_string(),
            ])?;
        }
        Ok(Host { ns, ip })
    }

    /// A host behind a NAT router of `kind`: the router's `wan` is on `wan` (with the
    /// next free address there), its `lan` is 10.`lan`.0.1/24 with the host at
    /// 10.`lan`.0.10. Returns (router's public side, host).
    pub fn behind_nat(
        &mut self,
        name: &str,
        kind: NatKind,
        wan: &mut Switch,
        lan: u8,
    ) -> Result<(Host, Host), String> {
        let router = self.host(&format!("{name}r"), wan, None)?;
        let mut private = self.switch(&format!("{name}l"), [10, lan, 0])?;
        let gw = Ipv4Addr::new(10, lan, 0, 1);
        let port = "lanp";
        self.wire(&router.ns, "lan", &private.ns, port)?;
        run(&[
            "ip",
            "-n",
            &private.ns,
            "link",
            "set",
            port,
            "master",
            "br0",
        ])?;
        run(&[
            "ip",
            "-n",
            &router.ns,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            "lan",
        ])?;
        run(&[
            "ip",
            "netns",
            "exec",
            &router.ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        let host = self.host(name, &mut private, Some(gw))?;
        nat(&router.ns, kind, router.ip, host.ip)?;
        Ok((router, host))
    }
}

impl Switch {
    fn take(&mut self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        let ip = Ipv4Addr::new(a, b, c, self.next_host);
        self.next_host += 1;
        ip
    }
}

/// Interface names are at most 15 bytes.
fn short(name: &str) -> String {
    let keep = name.len().saturating_sub(15);
    name[keep..].to_owned()
}

/// The nftables rules of a NAT router with one host behind it.
fn nat(ns: &str, kind: NatKind, wan: Ipv4Addr, host: Ipv4Addr) -> Result<(), String> {
    let inbound_to_host = format!("ip daddr {wan} dnat to {host}");
    let (mapping, inbound, forward_extra) = match kind {
        // The host's ports are kept; anyone's packets to them are let in.
        NatKind::FullCone => (
            format!("oifname \"eth0\" ip saddr {host} snat to {wan} persistent"),
            format!("iifname \"eth0\" {inbound_to_host}"),
            String::new(),
        ),
        // Let in what comes from an address (or address and port) the host sent to.
        NatKind::AddressRestricted => (
            format!("oifname \"eth0\" ip saddr {host} snat to {wan} persistent"),
            format!("iifname \"eth0\" ip saddr @contacted {inbound_to_host}"),
            "iifname \"lan\" update @contacted { ip daddr }".to_owned(),
        ),
        NatKind::PortRestricted | NatKind::NoUdp => (
            format!("oifname \"eth0\" ip saddr {host} snat to {wan} persistent"),
            format!("iifname \"eth0\" ip saddr . th sport @contacted_port {inbound_to_host}"),
            "iifname \"lan\" update @contacted_port { ip daddr . th dport }".to_owned(),
        ),
        // A random port per new flow; only replies come back (conntrack).
        NatKind::Symmetric => (
            format!("oifname \"eth0\" ip saddr {host} masquerade random"),
            String::new(),
            String::new(),
        ),
    };
    let drop_udp = if kind == NatKind::NoUdp {
        "meta l4proto udp drop"
    } else {
        ""
    };
    // The router's own interfaces are `eth0` (wan) and `lan`.
    let rules = format!(
        r#"table ip nat {{
    set contacted {{ type ipv4_addr; flags timeout; timeout 2m; }}
    set contacted_port {{ type ipv4_addr . inet_service; flags timeout; timeout 2m; }}
    chain prerouting {{
        type nat hook prerouting priority dstnat;
        {inbound}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat;
        {mapping}
    }}
    chain forward {{
        type filter hook forward priority filter;
        {drop_udp}
        {forward_extra}
    }}
    chain input {{
        type filter hook input priority filter;
        iifname "eth0" ct state new drop
    }}
}}
"#
    );
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&path, rules).map_err(|e| e.to_string())?;
    let file = path.to_string_lossy().into_owned();
    let r = run(&["ip", "netns", "exec", ns, "nft", "-f", &file]);
    let _ = std::fs::remove_file(&path);
    r
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Deletes namespaces of labs whose process is gone (a test that crashed).
fn cleanup_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let ns = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = ns.strip_prefix("xl") else {
            continue;
        };
        let pid: Option<u32> = rest.split('x').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
