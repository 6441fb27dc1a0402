//! The local client port: a small XMPP server on 127.0.0.1:5222 for the user's own
//! ordinary XMPP client (Gajim, Conversations, a script with slixmpp). One user per
//! node: the account is this device's JID; the password is set in the configuration.

pub mod account;
pub mod admission;
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

/// The local port's certificate file in a profile: its key and the self-signed
/// certificate, PEM, owner-only.
pub const LOCAL_PORT_PEM: &str = "local-port.pem";

/// Why the local port's certificate or TLS configuration could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LocalTlsError {
    /// Making the certificate failed.
    #[error("cannot make the local port's certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("the local port's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Reading or writing the certificate file failed.
    #[error(transparent)]
    File(#[from] crate::config::ConfigError),
}

/// A self-signed certificate for `domain` (and `localhost`) and its key.
fn make_local_cert(
    domain: &str,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), LocalTlsError> {
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec![domain.to_owned(), "localhost".to_owned()])?;
    let cert = params.self_signed(&key)?;
    Ok((
        CertificateDer::from(cert.der().to_vec()),
        PrivatePkcs8KeyDer::from(key.serialize_der()),
    ))
}

/// The certificate kept in `path`, or a new one written there (owner-only). A file
/// that cannot be read as one is replaced, with a warning: clients that pinned the
/// old certificate will ask again, which beats a node that cannot start.
pub fn local_cert(
    path: &std::path::Path,
    domain: &str,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), LocalTlsError> {
    use rustls_pki_types::pem::PemObject;
    if let Ok(text) = std::fs::read(path) {
        let cert = CertificateDer::pem_slice_iter(&text)
            .next()
            .and_then(Result::ok);
        let key = PrivatePkcs8KeyDer::from_pem_slice(&text).ok();
        if let (Some(cert), Some(key)) = (cert, key) {
            return Ok((cert, key));
        }
        tracing::warn!(path = %path.display(), "the local port's certificate file is unreadable; making a new one");
        std::fs::remove_file(path).map_err(crate::config::ConfigError::file(path))?;
    }
    let (cert, key) = make_local_cert(domain)?;
    let text = xor_enrollment::files::pem("PRIVATE KEY", key.secret_pkcs8_der())
        + &xor_enrollment::files::pem("CERTIFICATE", &cert);
    crate::config::write_private(path, &text)?;
    Ok((cert, key))
}

/// A TLS server configuration for the local port: the certificate kept in `profile`
/// (see [`local_cert`]), so a client that pinned it keeps trusting it across
/// restarts, or — without a profile — one made on the spot. Clients see a
/// self-signed certificate for a port on their own machine.
pub fn local_port_tls(
    profile: Option<&std::path::Path>,
    domain: &str,
) -> Result<Arc<rustls::ServerConfig>, LocalTlsError> {
    let (cert, key) = match profile {
        Some(dir) => local_cert(&dir.join(LOCAL_PORT_PEM), domain)?,
        None => make_local_cert(domain)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key))?;
    if std::env::var_os("SSLKEYLOGFILE").is_some() {
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
    Ok(Arc::new(config))
}

/// [`local_port_tls`] with a certificate made on the spot.
pub fn self_signed_tls(domain: &str) -> Result<Arc<rustls::ServerConfig>, LocalTlsError> {
    local_port_tls(None, domain)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_certificate_persists_in_the_profile_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCAL_PORT_PEM);
        let (first, _) = local_cert(&path, "example.org").unwrap();
        let (again, _) = local_cert(&path, "example.org").unwrap();
        assert_eq!(first, again, "the same certificate after a restart");
        crate::config::owner_only(&path, "the local port's key").unwrap();
        std::fs::write(&path, "garbage").unwrap();
        let (fresh, _) = local_cert(&path, "example.org").unwrap();
        assert_ne!(fresh, first, "an unreadable file is replaced");
        assert!(local_port_tls(Some(dir.path()), "example.org").is_ok());
    }
}
