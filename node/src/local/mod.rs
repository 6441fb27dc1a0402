//! The local client port: a small XMPP server on 127.0.0.1:5222 for the user's own
//! ordinary XMPP client (Gajim, Conversations, a script with slixmpp). One user per
//! node: the account is this device's JID; the password is set in the configuration.

pub mod account;
pub mod outbox;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use account::Account;
pub use session::DEFAULT_AUTH_TIMEOUT;

/// How the port behaves.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The password clients log in with.
    pub password: String,
    /// Largest stanza accepted.
    pub max_stanza: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// How long a client may take to log in.
    pub auth_timeout: Duration,
    /// TLS for STARTTLS.
    pub tls: Arc<rustls::ServerConfig>,
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
        let settings = Arc::new(settings);
        let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many local clients; connection refused");
                    continue;
                };
                let (s, a) = (settings.clone(), account.clone());
                tokio::spawn(async move {
                    session::serve(tcp, s, a).await;
                    drop(permit);
                });
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

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
