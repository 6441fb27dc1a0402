//! The local client port: a small XMPP server on 127.0.0.1:5222 for the user's own
//! ordinary XMPP client (Gajim, Conversations, a script with slixmpp). One user per
//! node: the account is this device's JID; the password is set in the configuration.

pub mod account;
pub mod admission;
pub mod outbox;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use account::Account;
pub use session::{DEFAULT_AUTH_TIMEOUT, HEADER_TIMEOUT, PRE_AUTH_MAX_ELEMENT};

use self::admission::{Admission, AuthThrottle};

/// How the port behaves.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The password clients log in with.
    pub password: String,
    /// Largest stanza accepted after login.
    pub max_stanza: usize,
    /// Most simultaneous logged-in sessions.
    pub max_connections: usize,
    /// Most connections logging in at once; a new one evicts the oldest of them.
    pub max_pending: usize,
    /// How long a client may take to log in.
    pub auth_timeout: Duration,
    /// TLS for STARTTLS.
    pub tls: Arc<rustls::ServerConfig>,
}

impl LocalSettings {
    /// The defaults (see the limits table in `README.md`) for `listen`, `password`
    /// and `tls`.
    pub fn new(listen: SocketAddr, password: String, tls: Arc<rustls::ServerConfig>) -> Self {
        LocalSettings {
            listen,
            password,
            max_stanza: 256 * 1024,
            max_connections: 16,
            max_pending: 16,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            tls,
        }
    }
}

/// A TLS server configuration with a certificate for `domain`, made on the spot
/// (clients see a self-signed certificate for a port on their own machine).
pub fn self_signed_tls(domain: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(vec![domain.to_owned(), "localhost".to_owned()])
        .map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| e.to_string())?;
    if std::env::var_os("SSLKEYLOGFILE").is_some() {
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
    Ok(Arc::new(config))
}

/// The running port.
#[derive(Debug)]
pub struct LocalServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LocalServer {
    /// Listens on `settings.listen` for clients of `account`.
    pub async fn start(
        settings: LocalSettings,
        account: Arc<Account>,
    ) -> Result<LocalServer, std::io::Error> {
        let listener = TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let ctl = Arc::new(Mutex::new(Control {
            admission: Admission::new(settings.max_pending, settings.max_connections),
            throttle: AuthThrottle::default(),
            tasks: HashMap::new(),
        }));
        let settings = Arc::new(settings);
        let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSALS));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                let mut c = lock(&ctl);
                let Some(admitted) = c.admission.arrive(peer.ip()) else {
                    drop(c);
                    tracing::warn!(%peer, "too many local clients; connection refused");
                    // The refusal is a stream error (RFC 6120 §4.9.1.1), written by a
                    // bounded number of short tasks; beyond that the socket is dropped.
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        let domain = account.jid().domain().to_owned();
                        tokio::spawn(async move {
                            session::refuse(tcp, &domain).await;
                            drop(permit);
                        });
                    }
                    continue;
                };
                for old in admitted.evict {
                    if let Some(t) = c.tasks.remove(&old) {
                        tracing::info!(%peer, "local port: the oldest client still logging in was closed to make room");
                        t.abort();
                    }
                }
                let id = admitted.id;
                let (s, a, ctl2) = (settings.clone(), account.clone(), ctl.clone());
                // Spawned under the lock, so the task's clean-up (which takes it) runs
                // after its handle is recorded.
                let handle = tokio::spawn(async move {
                    let logged_in = session::serve(tcp, peer, id, s, a, &ctl2).await;
                    let mut c = lock(&ctl2);
                    c.admission.left(id, logged_in);
                    c.tasks.remove(&id);
                });
                c.tasks.insert(id, handle.abort_handle());
            }
        });
        tracing::info!(%addr, "local client port listening");
        Ok(LocalServer { addr, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Refusals answered with a stream error at once; more are dropped.
const REFUSALS: usize = 16;

/// Shared by the accept loop and the sessions.
#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) admission: Admission,
    pub(crate) throttle: AuthThrottle,
    tasks: HashMap<u64, tokio::task::AbortHandle>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
