//! Real `xor-node run` processes, as users run them: a configuration file written
//! owner-only, the banner read from stdout, the process killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `xor-node` program of this workspace, built from the current sources: `cargo
/// test --workspace` builds it for the node's own tests; a test run of this package
/// alone builds it here, once, if it is missing or older than any source file.
pub fn xor_node_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/<test> → target/<profile>/xor-node
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_owned();
        let bin = dir.join("xor-node");
        if stale(&bin) {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "xor-node", "--bin", "xor-node"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building xor-node failed");
        }
        bin
    })
    .clone()
}

/// Whether `bin` is missing or older than a source file of the crates it is built
/// from.
fn stale(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = ["node", "xmpp-usage", "overlay", "enrollment"]
        .iter()
        .map(|c| root.join(c).join("src"))
        .collect();
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
            {
                return true;
            }
        }
    }
    false
}

/// A free TCP port on `ip` (bound and released: the caller binds it next).
pub fn free_port(ip: std::net::IpAddr) -> u16 {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where a daemon listens.
#[derive(Debug, Clone)]
pub struct DaemonPorts {
    /// Overlay links.
    pub overlay: SocketAddr,
    /// Direct XMPP streams.
    pub streams: SocketAddr,
    /// The local client port.
    pub client: SocketAddr,
}

impl DaemonPorts {
    /// Free ports on `ip`.
    pub fn free(ip: std::net::IpAddr) -> DaemonPorts {
        DaemonPorts {
            overlay: SocketAddr::new(ip, free_port(ip)),
            streams: SocketAddr::new(ip, free_port(ip)),
            client: SocketAddr::new(ip, free_port(ip)),
        }
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` of /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The configuration file of a device.
pub fn config_text(
    profile: &Path,
    resource: &str,
    ports: &DaemonPorts,
    may_start: bool,
    bootstrap: &[SocketAddr],
    password: &str,
) -> String {
    let boot: Vec<String> = bootstrap.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"profile = "{}"
resource = "{resource}"
[overlay]
listen = "{}"
stream_listen = "{}"
may_start = {may_start}
bootstrap = [{}]
join_timeout = 30
[client]
listen = "{}"
password = "{password}"
[log]
level = "warn"
"#,
        profile.display(),
        ports.overlay,
        ports.streams,
        boot.join(", "),
        ports.client,
    )
}

/// A running `xor-node run`.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Its ports.
    pub ports: DaemonPorts,
    /// Its configuration file.
    pub config: PathBuf,
}

impl Daemon {
    /// Writes `config` (mode 0600) to `path` and runs `xor-node run` on it, waiting for
    /// the "online" banner. `prefix` runs the program under another (e.g. `ip netns
    /// exec NAME`).
    pub async fn start(
        path: &Path,
        config: &str,
        ports: DaemonPorts,
        prefix: &[&str],
    ) -> Result<Daemon, String> {
        let _ = std::fs::remove_file(path);
        xor_node::config::write_private(path, config).map_err(|e| e.to_string())?;
        let bin = xor_node_bin();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let log = path.with_extension("log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = cmd
            .args(["run", "--config"])
            .arg(path)
            .stderr(stderr)
            .env(
                "RUST_LOG",
                std::env::var("XOR_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let banner = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| format!("{}: no banner within 60 s", path.display()))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                let _ = std::fs::copy(&log, std::env::temp_dir().join("xor-failed-daemon.log"));
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!(
                    "{}: exited before its banner; its log ends:\n{}",
                    path.display(),
                    tail.join("\n")
                )
            })?;
        if !banner.contains("is online") {
            return Err(format!("{}: {banner}", path.display()));
        }
        // Keep reading stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Daemon {
            child,
            ports,
            config: path.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory in KiB (`VmRSS` of /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }

    /// Runs `xor-node ARGS --config <this daemon's>` and returns (success, stdout).
    pub async fn cli(&self, args: &[&str]) -> (bool, String) {
        cli(&self.config, args).await
    }

    /// Stops it with SIGTERM (it removes its location record and leaves).
    pub async fn stop(mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}

/// Runs `xor-node ARGS --config CONFIG` and returns (success, stdout and stderr).
pub async fn cli(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(xor_node_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await;
    match out {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// `users` users (`u0`, `u1`, …) with `devices` devices each (`d0`, …), every device an
/// `xor-node run` daemon on loopback enrolled in `net`; the first device starts the
/// overlay and is everyone's bootstrap node. Returns the daemons and their Node-IDs,
/// user by user.
pub async fn loopback_users(
    net: &xor_node::devnet::DevNet,
    users: usize,
    devices: usize,
) -> Result<(Vec<Daemon>, Vec<xor_overlay::id::NodeId>), String> {
    let localhost = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let mut daemons: Vec<Daemon> = Vec::new();
    let mut ids = Vec::new();
    for u in 0..users {
        for d in 0..devices {
            let opts = net
                .enroll(&format!("u{u}"), &format!("d{d}"))
                .await
                .map_err(|e| e.to_string())?;
            let profile =
                xor_enrollment::client::load_profile(&opts.profile, xor_node::devnet::OVERLAY)
                    .map_err(|e| e.to_string())?;
            ids.push(profile.credentials.node_id());
            let bootstrap: Vec<SocketAddr> = daemons
                .first()
                .map(|f| f.ports.overlay)
                .into_iter()
                .collect();
            let path = net.dir().join(format!("u{u}-d{d}.toml"));
            // A free port can be taken by a test running beside this one between
            // picking it and the daemon binding it: pick again then.
            let mut attempt = 0;
            let daemon = loop {
                let ports = DaemonPorts::free(localhost);
                let text = config_text(
                    &opts.profile,
                    &format!("d{d}"),
                    &ports,
                    daemons.is_empty(),
                    &bootstrap,
                    xor_node::devnet::PASSWORD,
                );
                match Daemon::start(&path, &text, ports, &[]).await {
                    Err(e) if e.contains("Address already in use") && attempt < 3 => attempt += 1,
                    other => break other?,
                }
            };
            daemons.push(daemon);
        }
    }
    Ok((daemons, ids))
}
