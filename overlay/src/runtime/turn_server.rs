//! A peer serving STUN and TURN to the overlay (RFC 6940 §9, RFC 5766) with the
//! `turn` crate of webrtc-rs, the server behind the `webrtc-ice` client the runtime
//! already runs.
//!
//! Who may allocate: the overlay's members this node holds a link with, and only
//! through that link's credential ([`LinkSecrets`]). The user name is the requester's
//! Node-ID and a fingerprint of the link; the password is keying material both ends
//! exported from the link's TLS session (RFC 5705), so a third party cannot use the
//! relay, not even one behind the requester's NAT address, and an enrolled peer
//! cannot spend another's quota.
//!
//! What it costs, bounded ([`RelayLimits`]): at most `per_peer` live allocations per
//! user name (RFC 5766 §6.2: "SHOULD define it based on the username") and `total`
//! in all; a request beyond them gets 508 (Insufficient Capacity). Relayed packets
//! never go to loopback, unspecified, multicast, link-local or private (RFC 1918,
//! RFC 4193) addresses unless `allow_private_peers`: the relay must not become a way
//! into the network it stands in, which is what coturn deployments configure with
//! `denied-peer-ip`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stun::attributes::ATTR_USERNAME;
use stun::message::{CLASS_REQUEST, METHOD_ALLOCATE, Message};
use tokio::net::UdpSocket;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::RelayAddressGenerator;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::Conn;

use super::turn_service::LinkSecrets;

/// The TURN realm of every xor relay.
pub const REALM: &str = "reload";
/// Live allocations one user name may hold.
pub const PER_PEER_ALLOCATIONS: usize = 4;
/// Live allocations in all.
pub const MAX_ALLOCATIONS: usize = 256;

/// What a relay allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Live allocations per user name.
    pub per_peer: usize,
    /// Live allocations in all.
    pub total: usize,
    /// Relay to private and loopback addresses too (a development overlay on one
    /// host or a LAN).
    pub allow_private_peers: bool,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            per_peer: PER_PEER_ALLOCATIONS,
            total: MAX_ALLOCATIONS,
            allow_private_peers: false,
        }
    }
}

/// A running STUN/TURN server; stops when dropped or closed.
pub struct RelayServer {
    server: Server,
    local: SocketAddr,
    public: SocketAddr,
    quota: Arc<Quota>,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("local", &self.local)
            .finish()
    }
}

impl RelayServer {
    /// Serves STUN and TURN on the UDP address `listen`, relaying from `relay_ip`
    /// (the address peers see; relayed ports are picked by the system).
    pub async fn start(
        listen: SocketAddr,
        relay_ip: IpAddr,
        secrets: Arc<LinkSecrets>,
        limits: RelayLimits,
    ) -> std::io::Result<RelayServer> {
        let socket = UdpSocket::bind(listen).await?;
        let local = socket.local_addr()?;
        let quota = Arc::new(Quota {
            limits,
            state: Mutex::new(QuotaState::default()),
        });
        let conn = Arc::new(Listening {
            socket,
            quota: quota.clone(),
        });
        let config = ServerConfig {
            conn_configs: vec![ConnConfig {
                conn,
                relay_addr_generator: Box::new(Relays {
                    bind_ip: listen.ip(),
                    relay_ip,
                    quota: quota.clone(),
                }),
            }],
            realm: REALM.into(),
            auth_handler: Arc::new(LinkAuth { secrets }),
            channel_bind_timeout: std::time::Duration::ZERO,
            alloc_close_notify: None,
        };
        let server = Server::new(config)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(RelayServer {
            server,
            local,
            public: SocketAddr::new(relay_ip, local.port()),
            quota,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where peers reach it: the relay address and the listening port.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// Live allocations.
    pub fn allocations(&self) -> usize {
        self.quota.state.lock().map_or(0, |s| s.total)
    }

    /// Stops serving and ends every allocation.
    pub async fn close(&self) {
        let _ = self.server.close().await;
    }
}

/// The user names' live allocations.
#[derive(Debug)]
struct Quota {
    limits: RelayLimits,
    state: Mutex<QuotaState>,
}

#[derive(Debug, Default)]
struct QuotaState {
    /// The user name of the Allocate request being handled (the server handles a
    /// listener's datagrams one at a time, so this is the request that asks
    /// [`Relays::allocate_conn`] for a socket).
    current: Option<String>,
    per_user: HashMap<String, usize>,
    total: usize,
}

impl Quota {
    /// Takes a slot for the Allocate being handled, or says why not.
    fn take(&self) -> Result<String, turn::Error> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| turn::Error::Other("quota poisoned".into()))?;
        let user = s.current.take().unwrap_or_default();
        let held = s.per_user.get(&user).copied().unwrap_or(0);
        if s.total >= self.limits.total || held >= self.limits.per_peer {
            tracing::info!(
                user,
                held,
                total = s.total,
                "TURN allocation refused: quota"
            );
            return Err(turn::Error::Other("allocation quota reached".into()));
        }
        s.total += 1;
        *s.per_user.entry(user.clone()).or_default() += 1;
        Ok(user)
    }

    fn give_back(&self, user: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.total = s.total.saturating_sub(1);
            if let Some(n) = s.per_user.get_mut(user) {
                *n -= 1;
                if *n == 0 {
                    s.per_user.remove(user);
                }
            }
        }
    }
}

/// The listening socket: notes the user name of each Allocate request for the
/// quota before the server handles it.
struct Listening {
    socket: UdpSocket,
    quota: Arc<Quota>,
}

fn allocate_user(datagram: &[u8]) -> Option<String> {
    let mut m = Message::new();
    m.unmarshal_binary(datagram).ok()?;
    if m.typ.method != METHOD_ALLOCATE || m.typ.class != CLASS_REQUEST {
        return None;
    }
    let name = m.get(ATTR_USERNAME).ok()?;
    Some(String::from_utf8_lossy(&name).into_owned())
}

#[async_trait]
impl Conn for Listening {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(std::io::Error::other("not connected").into())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        let user = allocate_user(&buf[..n]);
        if let Ok(mut s) = self.quota.state.lock() {
            s.current = user;
        }
        Ok((n, from))
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(std::io::Error::other("not connected").into())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Every allocation "closes" the listening socket it shares when it ends; the
    /// socket closes when the server drops it.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Makes the relayed sockets of allocations.
struct Relays {
    bind_ip: IpAddr,
    relay_ip: IpAddr,
    quota: Arc<Quota>,
}

#[async_trait]
impl RelayAddressGenerator for Relays {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        _requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        if use_ipv4 != self.relay_ip.is_ipv4() {
            return Err(turn::Error::Other("address family not served".into()));
        }
        let user = self.quota.take()?;
        let socket = match UdpSocket::bind(SocketAddr::new(self.bind_ip, 0)).await {
            Ok(s) => s,
            Err(e) => {
                self.quota.give_back(&user);
                return Err(turn::Error::Other(e.to_string()));
            }
        };
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let conn = Relayed {
            socket,
            user,
            quota: self.quota.clone(),
            released: AtomicBool::new(false),
        };
        Ok((Arc::new(conn), SocketAddr::new(self.relay_ip, port)))
    }
}

/// One allocation's relayed socket: sends only to allowed peers, and gives its
/// quota slot back when the allocation ends.
struct Relayed {
    socket: UdpSocket,
    user: String,
    quota: Arc<Quota>,
    released: AtomicBool,
}

impl Relayed {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.quota.give_back(&self.user);
        }
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether a relay may send to `ip`.
pub fn relay_allowed(ip: IpAddr, allow_private: bool) -> bool {
    let always_denied = ip.is_unspecified() || ip.is_multicast();
    let private = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || (seg0 & 0xfe00) == 0xfc00 // unique local, RFC 4193
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some()
        }
    };
    !always_denied && (allow_private || !private)
}

#[async_trait]
impl Conn for Relayed {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(std::io::Error::other("not connected").into())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.recv(buf).await?)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Ok(self.socket.recv_from(buf).await?)
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(std::io::Error::other("not connected").into())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if !relay_allowed(target.ip(), self.quota.limits.allow_private_peers) {
            tracing::debug!(%target, user = self.user, "TURN relay to a denied peer dropped");
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("relaying to {target} is not allowed"),
            )
            .into());
        }
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.release();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Long-term credentials from the links' exported secrets.
struct LinkAuth {
    secrets: Arc<LinkSecrets>,
}

impl AuthHandler for LinkAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        match self.secrets.password(username) {
            Some(password) => Ok(generate_auth_key(username, realm, &password)),
            None => {
                tracing::debug!(username, %src_addr, "TURN request from no linked peer");
                Err(turn::Error::Other("no such user".into()))
            }
        }
    }
}
