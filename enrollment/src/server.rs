//! The HTTPS enrollment and configuration server (RFC 6940 §11.2, §11.3).
//!
//! - `GET /.well-known/reload-config`: the signed configuration document
//!   (`application/p2p-overlay+xml`);
//! - `POST <enroll path>` (default `/enroll`), `multipart/form-data` with `username`,
//!   `password`, optional `nodeids` (how many Node-IDs) and `csr`
//!   (`application/pkcs10`, DER or PEM): answers `200` with the certificate as
//!   `application/pkix-cert`, or `403` with one of the tokens `failed_authentication`,
//!   `username_not_available`, `Node-IDs_not_available`, `bad_CSR`;
//! - `GET /.well-known/reload-ca/<domain>`: the domain CA certificate that issued it.
//!   The RFC answers with a single bare certificate, but a client must chain it to a
//!   root (§11.3); the enrollment answer points at its issuer with
//!   `Link: <…>; rel="up"`, as ACME does (RFC 8555 §7.4.2).
//!
//! Node-IDs are drawn from the OS RNG, unique across accounts; every enrollment is a
//! device with Node-IDs of its own, at most `max_account_node_ids` per account.
//! Requests are rate limited per client address; failed password checks are limited
//! per (account, address), per address and in all, so guessing never locks the
//! account's owner out (`429` with `Retry-After`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use xor_overlay::id::NodeId;
use xor_overlay::identity::KeyPair;
use xor_overlay::identity::issue::Validity;

use crate::accounts::AccountStore;
use crate::ca::{DomainCa, IssueError, check_user_name};
use crate::config::CONTENT_TYPE;
use crate::files::os_random;
use crate::ratelimit::{AuthFailures, FailureLimits, Rate, RateLimiter};

/// The path of the configuration document (§11.2).
pub const CONFIG_PATH: &str = "/.well-known/reload-config";
/// Where domain CA certificates are served.
pub const CA_PATH: &str = "/.well-known/reload-ca";
/// `application/pkix-cert` (RFC 2585).
pub const PKIX_CERT: &str = "application/pkix-cert";
/// How long a connection may take to send a request's headers (the TLS handshake has
/// axum-server's 10 s), and a request its body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The enrollment POST path.
    pub enroll_path: String,
    /// Days an issued certificate is valid.
    pub validity_days: i64,
    /// Most Node-IDs one enrollment may ask for.
    pub max_node_ids: u32,
    /// Most Node-IDs one account may hold in all: every enrollment is a device with
    /// Node-IDs of its own, so this caps the devices (identities) of an account.
    /// Removing a device's Node-IDs from the account (`xor-node account revoke`)
    /// frees its slot.
    pub max_account_node_ids: u32,
    /// Requests per client address.
    pub per_address: Rate,
    /// Failed password checks allowed per (account, address), per address and in all.
    pub failures: FailureLimits,
    /// Largest request body.
    pub max_body: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            enroll_path: "/enroll".into(),
            validity_days: 365,
            max_node_ids: 4,
            max_account_node_ids: 16,
            per_address: Rate {
                burst: 30,
                interval: Duration::from_secs(2),
            },
            failures: FailureLimits::default(),
            max_body: 64 * 1024,
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS key or certificate is unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

struct Inner {
    document: RwLock<Bytes>,
    domains: RwLock<HashMap<String, DomainCa>>,
    accounts: Arc<dyn AccountStore>,
    settings: ServerSettings,
    per_address: Mutex<RateLimiter>,
    failures: Mutex<AuthFailures>,
    /// Serialises Node-ID assignment (check unique, then record).
    assign: tokio::sync::Mutex<()>,
}

type Shared = Arc<Inner>;

/// A running enrollment server.
#[derive(Debug)]
pub struct EnrollmentServer {
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    inner: Arc<InnerHandle>,
}

struct InnerHandle(Shared);

impl std::fmt::Debug for InnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollmentServerState")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EnrollmentServer {
    /// Starts serving `document` and enrolling users of `accounts` in the `domains`
    /// (each with its CA), over HTTPS with `tls_key` and `tls_chain` (DER, leaf first).
    pub async fn start(
        settings: ServerSettings,
        tls_key: &KeyPair,
        tls_chain: &[Vec<u8>],
        document: Bytes,
        domains: Vec<DomainCa>,
        accounts: Arc<dyn AccountStore>,
    ) -> Result<EnrollmentServer, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls_key.to_pkcs8_der()));
        let chain = tls_chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener =
            std::net::TcpListener::bind(settings.listen).map_err(|source| ServerError::Listen {
                addr: settings.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: settings.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Listen { addr, source })?;
        let inner: Shared = Arc::new(Inner {
            document: RwLock::new(document),
            domains: RwLock::new(
                domains
                    .into_iter()
                    .map(|d| (d.domain().to_owned(), d))
                    .collect(),
            ),
            accounts,
            per_address: Mutex::new(RateLimiter::new(settings.per_address, 100_000)),
            failures: Mutex::new(AuthFailures::new(settings.failures)),
            assign: tokio::sync::Mutex::new(()),
            settings: settings.clone(),
        });
        let app = Router::new()
            .route(CONFIG_PATH, get(config))
            .route(&format!("{CA_PATH}/{{domain}}"), get(ca_cert))
            .route(&settings.enroll_path, post(enroll))
            .layer(DefaultBodyLimit::max(settings.max_body))
            .with_state(inner.clone());
        let handle = axum_server::Handle::new();
        let mut server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
        )
        .map_err(|source| ServerError::Listen { addr, source })?
        .handle(handle.clone())
        .first_request_timeout(REQUEST_TIMEOUT);
        // A connection that trickles its headers is closed (no slow-loris holds).
        server
            .http_builder()
            .http1()
            .header_read_timeout(Some(REQUEST_TIMEOUT));
        tokio::spawn(async move {
            if let Err(e) = server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
            {
                tracing::error!(error = %e, "enrollment server stopped");
            }
        });
        tracing::info!(%addr, "enrollment server listening");
        Ok(EnrollmentServer {
            addr,
            handle,
            inner: Arc::new(InnerHandle(inner)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves a new configuration document from now on.
    pub fn set_document(&self, document: Bytes) {
        if let Ok(mut d) = self.inner.0.document.write() {
            *d = document;
        }
    }

    /// Stops taking new domains' requests: removes `domain`'s CA (after revocation).
    pub fn remove_domain(&self, domain: &str) {
        if let Ok(mut d) = self.inner.0.domains.write() {
            d.remove(domain);
        }
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
    }
}

impl Drop for EnrollmentServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_owned(),
    )
        .into_response()
}

fn forbidden(e: &IssueError) -> Response {
    tracing::info!(error = %e, "enrollment refused");
    text(StatusCode::FORBIDDEN, e.token())
}

fn too_many(wait: Duration) -> Response {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let secs = wait.as_secs().max(1).to_string();
    if let Ok(v) = HeaderValue::from_str(&secs) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn limited(limiter: &Mutex<RateLimiter>, key: &str) -> Option<Response> {
    lock(limiter).check(key, Instant::now()).err().map(too_many)
}

async fn config(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if let Some(r) = limited(&s.per_address, &peer.ip().to_string()) {
        return r;
    }
    let doc = s.document.read().map(|d| d.clone()).unwrap_or_default();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], doc).into_response()
}

async fn ca_cert(State(s): State<Shared>, Path(domain): Path<String>) -> Response {
    let der = s.domains.read().ok().and_then(|d| {
        d.get(&domain.to_ascii_lowercase())
            .map(|c| c.der().to_vec())
    });
    match der {
        Some(der) => ([(header::CONTENT_TYPE, PKIX_CERT)], der).into_response(),
        None => text(StatusCode::NOT_FOUND, "no CA for this domain"),
    }
}

/// The form of an enrollment request.
#[derive(Default)]
struct Form {
    username: Option<String>,
    password: Option<String>,
    nodeids: Option<String>,
    csr: Option<Bytes>,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, String> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        let data = field.bytes().await.map_err(|e| e.to_string())?;
        let utf8 = || String::from_utf8(data.to_vec()).map_err(|_| format!("{name} is not UTF-8"));
        match name.as_str() {
            "username" => form.username = Some(utf8()?),
            "password" => form.password = Some(utf8()?),
            "nodeids" => form.nodeids = Some(utf8()?),
            "csr" => form.csr = Some(data),
            _ => {} // unknown parameters are ignored
        }
    }
    Ok(form)
}

fn accepts_pkix(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or_default().trim();
        t == PKIX_CERT || t == "*/*" || t == "application/*"
    })
}

fn csr_der(data: &[u8]) -> Result<Vec<u8>, IssueError> {
    if data.starts_with(b"-----BEGIN") {
        CertificateSigningRequestDer::from_pem_slice(data)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| IssueError::BadCsr(format!("bad PEM: {e}")))
    } else {
        Ok(data.to_vec())
    }
}

async fn enroll(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    if let Some(r) = limited(&s.per_address, &peer.ip().to_string()) {
        return r;
    }
    if !accepts_pkix(&headers) {
        return text(
            StatusCode::NOT_ACCEPTABLE,
            "the answer is application/pkix-cert",
        );
    }
    let form = match tokio::time::timeout(REQUEST_TIMEOUT, read_form(multipart)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, &format!("bad form: {e}")),
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the request body took too long",
            );
        }
    };
    let (Some(username), Some(password)) = (form.username, form.password) else {
        return text(StatusCode::FORBIDDEN, "failed_authentication");
    };
    // Accounts and certificates hold the prepared name (PRECIS): `Alice@example.org`
    // enrolls as alice@example.org, whose xmppAddr matches her prepared JID.
    let Ok(username) = crate::ca::prepare_user_name(&username) else {
        return text(StatusCode::FORBIDDEN, "failed_authentication");
    };
    // Failures are counted, not attempts: a guesser locks out its own address, and
    // the account's owner still gets in (hardening issue, defect 7).
    let source = peer.ip().to_string();
    if let Err(wait) = lock(&s.failures).may_try(&username, &source, Instant::now()) {
        return too_many(wait);
    }
    let accounts = s.accounts.clone();
    let (u, p) = (username.clone(), password);
    let authenticated = tokio::task::spawn_blocking(move || accounts.authenticate(&u, &p))
        .await
        .unwrap_or(false);
    if !authenticated {
        tracing::info!(%username, %peer, "enrollment: failed authentication");
        lock(&s.failures).failed(&username, &source, Instant::now());
        return text(StatusCode::FORBIDDEN, "failed_authentication");
    }
    lock(&s.failures).succeeded(&username, &source);
    match issue(&s, &username, form.nodeids.as_deref(), form.csr.as_deref()).await {
        Ok((cert, domain)) => {
            tracing::info!(%username, "certificate issued");
            let link = format!("<{CA_PATH}/{domain}>; rel=\"up\"");
            let mut r = ([(header::CONTENT_TYPE, PKIX_CERT)], cert).into_response();
            if let Ok(v) = HeaderValue::from_str(&link) {
                r.headers_mut().insert(header::LINK, v);
            }
            r
        }
        Err(e) => forbidden(&e),
    }
}

async fn issue(
    s: &Inner,
    username: &str,
    nodeids: Option<&str>,
    csr: Option<&[u8]>,
) -> Result<(Bytes, String), IssueError> {
    let domain = check_user_name(username)
        .map_err(IssueError::UsernameNotAvailable)?
        .to_ascii_lowercase();
    let ca = s
        .domains
        .read()
        .ok()
        .and_then(|d| d.get(&domain).cloned())
        .ok_or_else(|| {
            IssueError::UsernameNotAvailable(format!("this server has no CA for {domain}"))
        })?;
    let wanted: u32 = match nodeids.map(str::trim) {
        None | Some("") => 1,
        Some(n) => n
            .parse()
            .map_err(|_| IssueError::NodeIdsNotAvailable(format!("nodeids {n:?}")))?,
    };
    if wanted == 0 || wanted > s.settings.max_node_ids {
        return Err(IssueError::NodeIdsNotAvailable(format!(
            "{wanted} asked, between 1 and {} allowed",
            s.settings.max_node_ids
        )));
    }
    let csr = csr_der(csr.ok_or_else(|| IssueError::BadCsr("no csr parameter".into()))?)?;
    let _guard = s.assign.lock().await;
    // Every enrollment is a device (XEP-0415: each device of a user is a peer), so it
    // gets Node-IDs of its own, never one another device of the account already uses;
    // an account holds a bounded number of them (no endless identities per account).
    let held = s.accounts.node_ids(username);
    let max = s.settings.max_account_node_ids as usize;
    if held.len() + wanted as usize > max {
        return Err(IssueError::NodeIdsNotAvailable(format!(
            "the account holds {} of its {max} Node-IDs; revoke a device to free one",
            held.len()
        )));
    }
    let mut ids = Vec::new();
    while ids.len() < wanted as usize {
        let id = NodeId::from_bytes(os_random()[..16].try_into().unwrap_or_default());
        if !s.accounts.node_id_taken(id) && !held.contains(&id) && !ids.contains(&id) {
            ids.push(id);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let cert = ca.issue_csr(
        &csr,
        username,
        &ids,
        Validity::days_from(now, s.settings.validity_days),
    )?;
    s.accounts
        .add_node_ids(username, &ids)
        .map_err(IssueError::NodeIdsNotAvailable)?;
    Ok((cert, domain))
}
