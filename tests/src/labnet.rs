//! An xor overlay in the network lab, run the way its users run it: an operator host
//! with `xor-node ca …`, `account set` and `enroll-server`, and device hosts that
//! `xor-node enroll` over HTTPS and `xor-node run` with the defaults of
//! `xor-node config-example` — only the profile, the password and the resource set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::daemon::{Daemon, DaemonPorts, xor_node_bin};
use crate::external::Slix;
use crate::netlab::Host;

/// The lab overlay's name.
pub const OVERLAY: &str = "lab.xor";
/// The users' domain.
pub const DOMAIN: &str = "example.org";
/// Every account's password (and every client port's).
pub const PASSWORD: &str = "lab-password";
/// The enrollment server's port on the operator host.
pub const ENROLL_PORT: u16 = 8443;
/// The overlay port of `config-example`.
pub const OVERLAY_PORT: u16 = 6084;
/// The local client port of every device, inside its host.
pub const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5222);

/// A device's overlay address on `host` (`config-example`'s port).
pub fn overlay_addr(host: &Host) -> SocketAddr {
    SocketAddr::new(host.addr(), OVERLAY_PORT)
}

/// A slixmpp client of `user`'s device on `host`, logged in on its client port.
pub async fn login(user: &str, host: &Host) -> Slix {
    Slix::login_at(
        &format!("{user}@{DOMAIN}"),
        PASSWORD,
        CLIENT,
        &host.prefix(),
    )
    .await
}

/// Runs `xor-node ARGS` on `host` with `env`; its output, or why it failed.
pub async fn xor_node(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &host.ns])
        .arg(xor_node_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "xor-node {} on {}: {text}",
            args.join(" "),
            host.ns
        ))
    }
}

/// The operator: CA, accounts, published configuration and enrollment server.
#[derive(Debug)]
pub struct Operator {
    /// Where everything lives (CA, accounts, profiles, configurations, logs).
    pub dir: tempfile::TempDir,
    /// The host running the enrollment server.
    pub host: Host,
    server: Child,
}

impl Operator {
    /// Sets up the CA on `host` with an account `<user>@example.org` for each of
    /// `users`, publishes a configuration naming `bootstrap`, and starts the
    /// enrollment server.
    pub async fn start(
        host: &Host,
        users: &[&str],
        bootstrap: &[SocketAddr],
    ) -> Result<Operator, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca = dir.path().join("ca");
        let ca_s = ca.to_string_lossy().into_owned();
        let ip = host.ip.to_string();
        xor_node(
            host,
            &[
                "ca",
                "init",
                "--dir",
                &ca_s,
                "--overlay",
                OVERLAY,
                "--web-name",
                &ip,
            ],
            &[],
        )
        .await?;
        xor_node(host, &["ca", "domain", "--dir", &ca_s, DOMAIN], &[]).await?;
        let enroll_url = format!("https://{ip}:{ENROLL_PORT}/enroll");
        let mut publish = vec!["ca", "publish", "--dir", &ca_s, "--enroll-url", &enroll_url];
        let boot: Vec<String> = bootstrap.iter().map(ToString::to_string).collect();
        for b in &boot {
            publish.extend(["--bootstrap", b.as_str()]);
        }
        xor_node(host, &publish, &[]).await?;
        let accounts = dir.path().join("accounts").to_string_lossy().into_owned();
        for u in users {
            let jid = format!("{u}@{DOMAIN}");
            xor_node(
                host,
                &["account", "--accounts", &accounts, "set", &jid],
                &[("XOR_PASSWORD", PASSWORD)],
            )
            .await?;
        }
        let listen = format!("{ip}:{ENROLL_PORT}");
        let log = std::fs::File::create(dir.path().join("enroll-server.log"))
            .map_err(|e| e.to_string())?;
        let server = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .arg(xor_node_bin())
            .args([
                "enroll-server",
                "--dir",
                &ca_s,
                "--accounts",
                &accounts,
                "--listen",
                &listen,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        // Ready when the port answers.
        for _ in 0..100 {
            let probe = format!(
                "import socket; s = socket.create_connection(('{ip}', {ENROLL_PORT}), 1); print('up')"
            );
            if host.python(&probe) == "up" {
                return Ok(Operator {
                    dir,
                    host: host.clone(),
                    server,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the enrollment server did not come up".into())
    }

    /// The configuration URL.
    pub fn config_url(&self) -> String {
        format!(
            "https://{}:{ENROLL_PORT}/.well-known/reload-config",
            self.host.ip
        )
    }

    /// The overlay root (PEM), the HTTPS trust anchor of the enrollment server.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("ca").join("root.pem")
    }

    /// Enrolls a device of `user` on `host` and writes its configuration: the
    /// defaults of `config-example`, with the profile, password and resource set
    /// (and the overlay's first node allowed to start it, `may_start`).
    pub async fn enroll(
        &self,
        host: &Host,
        user: &str,
        resource: &str,
        may_start: bool,
    ) -> Result<PathBuf, String> {
        let name = format!("{user}-{resource}");
        let profile = self.dir.path().join(&name);
        let p = profile.to_string_lossy().into_owned();
        let root = self.root().to_string_lossy().into_owned();
        xor_node(
            host,
            &[
                "enroll",
                "--jid",
                &format!("{user}@{DOMAIN}"),
                "--overlay",
                OVERLAY,
                "--config-url",
                &self.config_url(),
                "--profile",
                &p,
                "--ca",
                &root,
            ],
            &[("XOR_PASSWORD", PASSWORD)],
        )
        .await?;
        let mut text = xor_node_example();
        text = text.replace(
            "profile = \"~/.local/share/xor/profile\"",
            &format!("profile = \"{p}\""),
        );
        text = text.replace(
            "resource = \"desktop\"",
            &format!("resource = \"{resource}\""),
        );
        text = text.replace("password = \"\"", &format!("password = \"{PASSWORD}\""));
        if may_start {
            text = text.replace("may_start = false", "may_start = true");
        }
        let config = self.dir.path().join(format!("{name}.toml"));
        let _ = std::fs::remove_file(&config);
        xor_node::config::write_private(&config, &text).map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Enrolls a device and runs it with its configuration text changed by `edit`
    /// (as a user edits the file `config-example` gave them).
    pub async fn device_edited(
        &self,
        host: &Host,
        user: &str,
        resource: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Result<Daemon, String> {
        self.device_with(host, user, resource, false, edit).await
    }

    /// [`Operator::device_edited`], for a device that may start the overlay.
    pub async fn device_with(
        &self,
        host: &Host,
        user: &str,
        resource: &str,
        may_start: bool,
        edit: impl FnOnce(String) -> String,
    ) -> Result<Daemon, String> {
        let config = self.enroll(host, user, resource, may_start).await?;
        let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&config);
        xor_node::config::write_private(&config, &edit(text)).map_err(|e| e.to_string())?;
        run_device(host, &config).await
    }

    /// Enrolls and runs a device of `user` on `host`.
    pub async fn device(
        &self,
        host: &Host,
        user: &str,
        resource: &str,
        may_start: bool,
    ) -> Result<Daemon, String> {
        let config = self.enroll(host, user, resource, may_start).await?;
        run_device(host, &config).await
    }
}

/// Runs `xor-node run` on `host` with the configuration file `config` (written by
/// [`Operator::enroll`]).
pub async fn run_device(host: &Host, config: &Path) -> Result<Daemon, String> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let ports = DaemonPorts {
        overlay: SocketAddr::new(host.addr(), OVERLAY_PORT),
        streams: SocketAddr::new(host.addr(), 0),
        client: CLIENT,
    };
    Daemon::start(config, &text, ports, &host.prefix()).await
}

/// [`run_device`] with extra environment variables for the daemon (e.g.
/// `SSLKEYLOGFILE`), set through `env` inside the host's namespace so that other
/// daemons of the same test process do not inherit them.
pub async fn run_device_with_env(
    host: &Host,
    config: &Path,
    env: &[(&str, &str)],
) -> Result<Daemon, String> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let ports = DaemonPorts {
        overlay: SocketAddr::new(host.addr(), OVERLAY_PORT),
        streams: SocketAddr::new(host.addr(), 0),
        client: CLIENT,
    };
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut prefix = host.prefix();
    prefix.push("env");
    prefix.extend(vars.iter().map(String::as_str));
    Daemon::start(config, &text, ports, &prefix).await
}

/// `xor-node config-example`, as a user would start from.
fn xor_node_example() -> String {
    xor_node::config::EXAMPLE.to_owned()
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.server.start_kill();
        // For a look after a failure: `XOR_LAB_KEEP=DIR` copies configurations and logs.
        if let Some(keep) = std::env::var_os("XOR_LAB_KEEP") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
                for e in entries.flatten() {
                    if e.path().is_file() {
                        let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                    }
                }
            }
        }
    }
}
