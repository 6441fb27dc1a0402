//! What `xor-node run`, `status` and `resolve` do, apart from argument parsing.

// A command-line program reports on its terminal.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Duration;

use xor_xmpp::Jid;

use crate::c2s_client::ClientOptions;
use crate::config::{ConfigError, FallbackSection, NodeFile};
use crate::daemon::{ClientPort, Device, DeviceOptions, StartupError};
use crate::status::{ControlError, ControlSocket};

/// Why `xor-node run` could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The device did not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The control socket (also: another daemon runs with this profile).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The `[fallback]` section names a server that cannot be used.
    #[error("[fallback] {0}")]
    Fallback(String),
}

/// The fallback account's connection options: the server named in the file, or the
/// JID's domain on port 5222; trust anchors from `ca`, else the Web PKI.
pub async fn fallback_options(
    f: &FallbackSection,
    resource: &str,
) -> Result<ClientOptions, RunError> {
    let jid =
        Jid::parse(&f.jid).map_err(|e| RunError::Fallback(format!("jid {:?}: {e}", f.jid)))?;
    let host = f
        .server
        .clone()
        .unwrap_or_else(|| format!("{}:5222", jid.domain()));
    let server: SocketAddr = tokio::net::lookup_host(&host)
        .await
        .map_err(|e| RunError::Fallback(format!("server {host:?}: {e}")))?
        .next()
        .ok_or_else(|| RunError::Fallback(format!("server {host:?} has no address")))?;
    let tls_roots = match &f.ca {
        Some(path) => xor_enrollment::files::read_certs(path)
            .map_err(|e| RunError::Fallback(format!("ca: {e}")))?,
        None => Vec::new(),
    };
    Ok(ClientOptions {
        jid: jid.bare(),
        password: f.password.clone(),
        resource: resource.to_owned(),
        server,
        tls_roots,
        insecure: false,
        timeout: Duration::from_secs(10),
    })
}

/// The device options a configuration file describes.
pub async fn device_options(file: &NodeFile) -> Result<DeviceOptions, RunError> {
    let mut o = DeviceOptions::new(&file.profile, &file.resource);
    o.priority = file.priority;
    o.overlay_listen = file.overlay.listen;
    o.bootstrap = file.overlay.bootstrap.clone();
    o.may_start = file.overlay.may_start;
    o.overlay_client = file.overlay.role == crate::config::Role::Client;
    o.stream_listen = file.overlay.stream_listen;
    o.ice = file.nat.ice()?;
    o.join_timeout = Duration::from_secs(file.overlay.join_timeout.max(1));
    if file.client.enabled {
        o.client = Some(ClientPort {
            listen: file.client.listen,
            password: file.client.password.clone(),
            roster: Some(file.roster_path()),
        });
    }
    if let Some(f) = &file.fallback {
        o.fallback = Some(fallback_options(f, &file.resource).await?);
    }
    Ok(o)
}

/// Waits for SIGINT or SIGTERM.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A running daemon: the device and its control socket.
#[derive(Debug)]
pub struct Daemon {
    /// The device.
    pub device: Device,
    _control: ControlSocket,
}

impl Daemon {
    /// Starts the device the file describes and its control socket.
    pub async fn start(file: &NodeFile) -> Result<Daemon, RunError> {
        let opts = device_options(file).await?;
        // Refuse before joining if another daemon runs with this profile.
        let control_path = file.control_path();
        if control_path.exists() && tokio::net::UnixStream::connect(&control_path).await.is_ok() {
            return Err(ControlError::InUse(control_path).into());
        }
        let device = Device::start(opts).await?;
        let control = match ControlSocket::start(&control_path, device.reporter()).await {
            Ok(c) => c,
            Err(e) => {
                device.shutdown().await;
                return Err(e.into());
            }
        };
        Ok(Daemon {
            device,
            _control: control,
        })
    }

    /// One paragraph for the terminal and the log.
    pub fn banner(&self) -> String {
        let d = &self.device;
        let mut s = format!(
            "{} is online in overlay {} (Node-ID {}, overlay port {})",
            d.jid(),
            d.overlay(),
            d.node().overlay().node_id(),
            d.node().overlay().local_addr()
        );
        match d.client_addr() {
            Some(a) => s.push_str(&format!(
                "\nyour XMPP client: log in as {} at {a} (self-signed certificate)",
                d.jid().bare()
            )),
            None => s.push_str("\nthe local client port is off"),
        }
        s
    }

    /// Removes the location record and leaves the overlay.
    pub async fn shutdown(self) {
        self.device.shutdown().await;
    }
}

/// `xor-node run`: starts, prints the banner, runs until SIGINT or SIGTERM, then
/// removes the location record and leaves.
pub async fn run(file: &NodeFile) -> Result<(), RunError> {
    let daemon = Daemon::start(file).await?;
    println!("{}", daemon.banner());
    terminated().await;
    tracing::info!("stopping: removing the location record and leaving the overlay");
    daemon.shutdown().await;
    Ok(())
}
