//! What `xor-node status` and `xor-node resolve` show, and the control socket they
//! ask it through: a Unix socket `control.sock` in the profile directory (owner-only,
//! like the profile), one request line (`status`, `resolve JID`), a text answer, then
//! the daemon closes the connection.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use xor_overlay::node::JoinState;
use xor_xmpp::Jid;
use xor_xmpp::runtime::XmppNode;

use crate::local::Account;

/// Longest request line the control socket reads.
const MAX_REQUEST: u64 = 4096;

/// Answers status questions about a running device (cheap to clone).
#[derive(Clone)]
pub struct Reporter {
    /// The node.
    pub node: XmppNode,
    /// The local account.
    pub account: Arc<Account>,
    /// The local client port.
    pub client_addr: Option<SocketAddr>,
    /// The overlay name.
    pub overlay: String,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("jid", self.node.jid())
            .finish()
    }
}

fn short(id: impl std::fmt::Display) -> String {
    let s = id.to_string();
    s.chars().take(8).collect()
}

fn list(ids: &[xor_overlay::id::NodeId]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter().map(short).collect::<Vec<_>>().join(" ")
}

impl Reporter {
    /// The status report: identity, overlay neighbours, storage, devices, local port,
    /// contacts and resolved contacts.
    pub async fn status(&self) -> String {
        let mut out = String::new();
        let overlay = self.node.overlay();
        let _ = writeln!(out, "device      {}", self.node.jid());
        let _ = writeln!(
            out,
            "overlay     {} as Node-ID {} listening on {}",
            self.overlay,
            overlay.node_id(),
            overlay.local_addr()
        );
        let reachable: Vec<String> = overlay
            .advertised()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "reachable   at {}", reachable.join(", "));
        match overlay.neighbors().await {
            Ok(n) => {
                let state = match n.state {
                    JoinState::Client { peer } => format!(
                        "client (RFC 6940 §4.2.1) through peer {peer}: stores nothing for others"
                    ),
                    other => format!("{other:?}"),
                };
                let _ = writeln!(out, "state       {state}, {} links open", n.links);
                if let Some(why) = overlay.join_error().filter(|_| !n.state.in_overlay()) {
                    let _ = writeln!(out, "last join   failed: {why}");
                }
                let _ = writeln!(out, "predecessors {}", list(&n.predecessors));
                let _ = writeln!(out, "successors  {}", list(&n.successors));
                let _ = writeln!(out, "fingers     {} distinct", n.fingers.len());
            }
            Err(e) => {
                let _ = writeln!(out, "state       {e}");
            }
        }
        if let Some(addr) = overlay.relay_addr() {
            let _ = writeln!(out, "relay       serving STUN and TURN at {addr}");
        }
        for (peer, addr) in overlay.overlay_relays() {
            let _ = writeln!(out, "relay       using {addr} (Node-ID {})", short(peer));
        }
        let stored = overlay
            .with_node(|n| {
                let s = n.storage();
                (s.resources().len(), s.values(), s.bytes())
            })
            .await;
        if let Ok((resources, values, bytes)) = stored {
            let _ = writeln!(
                out,
                "storage     {values} values under {resources} resources ({bytes} bytes) held for the overlay"
            );
        }
        let mut devices = self.node.device_paths().await;
        devices.sort_by_key(|(d, _)| d.jid.to_string());
        let _ = writeln!(out, "streams     {} device(s) connected", devices.len());
        for (d, addr) in &devices {
            let _ = writeln!(
                out,
                "            {} (Node-ID {}) at {addr}",
                d.jid,
                short(d.node)
            );
        }
        match self.client_addr {
            Some(a) => {
                let _ = writeln!(
                    out,
                    "client port {a}, {} client session(s)",
                    self.account.sessions()
                );
            }
            None => {
                let _ = writeln!(out, "client port off");
            }
        }
        let contacts = self.account.contacts();
        let _ = writeln!(out, "roster      {} contact(s)", contacts.len());
        for (jid, sub) in contacts {
            let _ = writeln!(out, "            {jid} (subscription {sub})");
        }
        let resolved = self.node.resolved_contacts().await;
        let _ = writeln!(out, "resolved    {} recipient(s)", resolved.len());
        for (jid, routes) in resolved {
            let _ = writeln!(out, "            {jid}: {routes} device(s)");
        }
        out
    }

    /// Looks `jid` up in the overlay and lists its devices.
    pub async fn resolve(&self, jid: &str) -> String {
        let jid = match Jid::parse(jid.trim()) {
            Ok(j) => j,
            Err(e) => return format!("error: {jid:?} is not a JID: {e}\n"),
        };
        match self.node.resolve(&jid).await {
            Ok(routes) => {
                let mut out = format!("{} has {} device(s):\n", jid.bare(), routes.len());
                for r in routes {
                    let via = r.destinations.len().saturating_sub(1);
                    let _ = writeln!(
                        out,
                        "  Node-ID {} priority {} (record of {}, {via} hop(s) in the destination list)",
                        r.node, r.priority, r.jid
                    );
                }
                out
            }
            Err(e) => format!("error: {e}\n"),
        }
    }

    /// Answers one control request line.
    pub async fn answer(&self, line: &str) -> String {
        let line = line.trim();
        match line.split_once(' ') {
            None if line == "status" => self.status().await,
            Some(("resolve", jid)) => self.resolve(jid).await,
            _ => format!("error: unknown request {line:?} (expected `status` or `resolve JID`)\n"),
        }
    }
}

/// The control socket of a running daemon.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlSocket {
    /// Listens on `path` (a stale socket from a crashed daemon is replaced; a live one
    /// is an error: another daemon uses this profile).
    pub async fn start(path: &Path, reporter: Reporter) -> Result<ControlSocket, ControlError> {
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::InUse(path.to_owned()));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|source| ControlError::Create {
            path: path.to_owned(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let r = reporter.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    let mut line = String::new();
                    let mut rd = BufReader::new(rd.take(MAX_REQUEST));
                    if rd.read_line(&mut line).await.is_ok() {
                        let answer = r.answer(&line).await;
                        let _ = wr.write_all(answer.as_bytes()).await;
                    }
                    let _ = wr.shutdown().await;
                });
            }
        });
        Ok(ControlSocket {
            path: path.to_owned(),
            task,
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends `request` to the daemon listening on `path` and returns its answer.
pub async fn ask(path: &Path, request: &str) -> Result<String, ControlError> {
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::NotRunning {
            path: path.to_owned(),
            source,
        })?;
    s.write_all(format!("{request}\n").as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Why the control socket could not be served or asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon answers on the socket.
    #[error("another xor-node is running with this profile ({} answers)", .0.display())]
    InUse(PathBuf),
    /// The socket could not be made.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Nothing listens on the socket.
    #[error("no xor-node is running with this profile ({}: {source}); start it with `xor-node run`", path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("the control connection failed: {0}")]
    Io(#[from] std::io::Error),
}
