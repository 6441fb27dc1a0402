//! The client side of enrollment (RFC 6940 §11.2, §11.3): find the configuration
//! server by DNS SRV, fetch and verify the configuration document, generate a key and
//! CSR, enroll over HTTPS, check the certificate chains to the configured roots, and
//! keep key, certificate and configuration together on disk.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use rustls_pki_types::CertificateDer;
use xor_overlay::id::NodeId;
use xor_overlay::identity::{Credentials, KeyPair, Usage};

use crate::ca::make_csr;
use crate::config::sign::{Verified, trust_of, verify};
use crate::config::{self, ConfigError, Configuration, Document, MAX_DOCUMENT};
use crate::files::{
    FileError, certs_pem, key_pem, os_rng, read_certs, read_key, recover_dir, replace_dir,
};
use crate::server::{CONFIG_PATH, PKIX_CERT};

/// How the client reaches the servers.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Trust anchors (DER) for the HTTPS servers; empty means the Web PKI roots.
    pub http_roots: Vec<Vec<u8>>,
    /// The DNS server to ask; `None` reads the system's resolver configuration.
    pub dns_server: Option<SocketAddr>,
    /// Timeout of each HTTP request and DNS query.
    pub timeout: Duration,
    /// Whether to look the configuration server up in DNS (§11.2) before trying the
    /// configured URL; off for overlays that exist only on one machine (the demo).
    pub discover: bool,
    /// The local address HTTPS requests leave from (multi-homed hosts); `None` lets
    /// the system choose.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            http_roots: Vec::new(),
            dns_server: None,
            timeout: Duration::from_secs(10),
            discover: true,
            local_address: None,
        }
    }
}

/// Why the enrollment server refused (§11.3's tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `failed_authentication`.
    FailedAuthentication,
    /// `username_not_available`.
    UsernameNotAvailable,
    /// `Node-IDs_not_available`.
    NodeIdsNotAvailable,
    /// `bad_CSR`.
    BadCsr,
    /// A token this client does not know (§11.3: "a failure for an unknown reason").
    Unknown(String),
}

impl Refusal {
    fn from_token(token: &str) -> Refusal {
        match token.trim() {
            "failed_authentication" => Refusal::FailedAuthentication,
            "username_not_available" => Refusal::UsernameNotAvailable,
            "Node-IDs_not_available" => Refusal::NodeIdsNotAvailable,
            "bad_CSR" => Refusal::BadCsr,
            other => Refusal::Unknown(other.chars().take(200).collect()),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::FailedAuthentication => f.write_str("wrong user name or password"),
            Refusal::UsernameNotAvailable => f.write_str("this user name is not available"),
            Refusal::NodeIdsNotAvailable => f.write_str("that many Node-IDs are not available"),
            Refusal::BadCsr => f.write_str("the server refused the certificate request"),
            Refusal::Unknown(t) => write!(f, "refused for an unknown reason ({t})"),
        }
    }
}

/// What went wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No configuration server could be found or reached.
    #[error("no configuration server for {overlay}: {reasons}")]
    Discovery {
        /// The overlay.
        overlay: String,
        /// What each attempt said.
        reasons: String,
    },
    /// An HTTP exchange failed.
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The configuration document is not acceptable.
    #[error("configuration document: {0}")]
    Config(#[from] ConfigError),
    /// The enrollment server refused.
    #[error("enrollment refused: {0}")]
    Refused(Refusal),
    /// Too many attempts; try again after this long.
    #[error("rate limited by the enrollment server; retry in {0:?}")]
    RateLimited(Duration),
    /// The issued certificate is not usable.
    #[error("the issued certificate is not acceptable: {0}")]
    Certificate(String),
    /// Reading or writing the profile failed.
    #[error(transparent)]
    File(#[from] FileError),
}

fn http_err(url: &str, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Http {
        url: url.to_owned(),
        reason: reason.to_string(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The Web PKI trust anchors (Mozilla's, from `webpki-roots`).
pub fn web_pki_roots() -> Vec<rustls_pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.to_vec()
}

/// An HTTPS client trusting `s.http_roots` (or the Web PKI), ring provider, no
/// redirects, `resolve` overriding DNS for one name.
fn http_client(
    s: &ClientSettings,
    resolve: Option<(&str, SocketAddr)>,
) -> Result<reqwest::Client, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if s.http_roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for r in &s.http_roots {
            roots
                .add(CertificateDer::from(r.clone()))
                .map_err(|e| http_err("(roots)", format!("bad HTTPS root: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| http_err("(tls)", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(s.timeout)
        .local_address(s.local_address)
        .no_proxy();
    if let Some((name, addr)) = resolve {
        b = b.resolve(name, addr);
    }
    b.build().map_err(|e| http_err("(client)", e))
}

/// Reads a body of at most `limit` bytes.
async fn body(url: &str, mut resp: reqwest::Response, limit: usize) -> Result<Bytes, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(url, e))? {
        if out.len() + chunk.len() > limit {
            return Err(http_err(url, format!("answer larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The configuration servers of `overlay` from `_reload-config._tcp.<overlay>` SRV
/// records (§11.2), in the order RFC 2782 says to try them.
pub async fn discover(overlay: &str, s: &ClientSettings) -> Result<Vec<SocketAddr>, ClientError> {
    let fail = |reason: String| ClientError::Discovery {
        overlay: overlay.to_owned(),
        reasons: reason,
    };
    let provider = TokioRuntimeProvider::default();
    let mut builder = match s.dns_server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for c in &mut ns.connections {
                c.port = server.port();
            }
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), vec![ns]),
                provider,
            )
        }
        None => hickory_resolver::Resolver::builder(provider)
            .map_err(|e| fail(format!("system DNS configuration: {e}")))?,
    };
    builder.options_mut().timeout = s.timeout;
    builder.options_mut().attempts = 2;
    let resolver = builder.build().map_err(|e| fail(e.to_string()))?;
    let name = format!("_reload-config._tcp.{}.", overlay.trim_end_matches('.'));
    let srv = resolver
        .srv_lookup(name.as_str())
        .await
        .map_err(|e| fail(format!("SRV {name}: {e}")))?;
    let mut records: Vec<(u16, u16, u16, String)> = srv
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.priority, srv.weight, srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    // Lowest priority first; within a priority, heavier first (a deterministic
    // reading of RFC 2782's weighted choice).
    records.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = Vec::new();
    for (_, _, port, target) in records {
        if target == "." {
            continue; // "service decidedly not available"
        }
        match resolver.lookup_ip(target.as_str()).await {
            Ok(ips) => out.extend(ips.iter().map(|ip: IpAddr| SocketAddr::new(ip, port))),
            Err(e) => tracing::debug!(%target, error = %e, "SRV target does not resolve"),
        }
    }
    if out.is_empty() {
        return Err(fail(format!("{name} names no reachable target")));
    }
    Ok(out)
}

async fn get_document(client: &reqwest::Client, url: &str) -> Result<Bytes, ClientError> {
    let resp = client
        .get(url)
        .header(ACCEPT, config::CONTENT_TYPE)
        .send()
        .await
        .map_err(|e| http_err(url, e))?;
    if !resp.status().is_success() {
        return Err(http_err(url, format!("HTTP {}", resp.status())));
    }
    body(url, resp, MAX_DOCUMENT).await
}

/// A verified configuration document.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The document as served.
    pub document: Bytes,
    /// The verified configuration for the overlay.
    pub verified: Verified,
}

/// Parses and verifies `document` for `overlay` (§11.2: the instance name must match;
/// §11.1: the signature must verify, against `previous` when there is one).
pub fn check_document(
    overlay: &str,
    document: Bytes,
    previous: Option<&Configuration>,
) -> Result<Fetched, ClientError> {
    let doc = Document::parse(&document)?;
    let verified = verify(&doc, overlay, previous, unix_now())?;
    Ok(Fetched { document, verified })
}

/// Fetches the configuration of `overlay`: by DNS SRV and
/// `https://<overlay>/.well-known/reload-config` first (the server's certificate must
/// match the overlay name), then `fallback_url` if given (its certificate must match
/// its host). The document is verified before it is returned.
pub async fn fetch_config(
    overlay: &str,
    fallback_url: Option<&str>,
    previous: Option<&Configuration>,
    s: &ClientSettings,
) -> Result<Fetched, ClientError> {
    let mut reasons = Vec::new();
    let found = if s.discover {
        discover(overlay, s).await
    } else {
        Err(ClientError::Discovery {
            overlay: overlay.to_owned(),
            reasons: "DNS discovery is off".into(),
        })
    };
    match found {
        Ok(targets) => {
            let url = format!("https://{overlay}{CONFIG_PATH}");
            for addr in targets {
                let client = http_client(s, Some((overlay, addr)))?;
                match get_document(&client, &url).await {
                    Ok(doc) => return check_document(overlay, doc, previous),
                    Err(e) => reasons.push(format!("{addr}: {e}")),
                }
            }
        }
        Err(e) => reasons.push(e.to_string()),
    }
    if let Some(url) = fallback_url {
        let client = http_client(s, None)?;
        match get_document(&client, url).await {
            Ok(doc) => return check_document(overlay, doc, previous),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(ClientError::Discovery {
        overlay: overlay.to_owned(),
        reasons: reasons.join("; "),
    })
}

/// An issued certificate with its key.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The node's key.
    pub key: KeyPair,
    /// Its certificate (DER).
    pub cert: Vec<u8>,
    /// The intermediates up to (not including) a root, leaf's issuer first.
    pub chain: Vec<Vec<u8>>,
    /// The Node-IDs it names.
    pub node_ids: Vec<NodeId>,
}

impl Enrolled {
    /// The credentials a node runs with.
    pub fn credentials(&self, overlay: &str) -> Result<Credentials, ClientError> {
        Credentials::new(
            self.key.clone(),
            self.cert.clone(),
            self.chain.iter().map(|c| Bytes::from(c.clone())).collect(),
            overlay,
        )
        .map_err(|e| ClientError::Certificate(e.to_string()))
    }
}

/// The URL in a `Link: <url>; rel="up"` header, resolved against `base`.
fn up_link(resp: &reqwest::Response, base: &reqwest::Url) -> Option<reqwest::Url> {
    resp.headers().get_all(LINK).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.split(',').find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let up = params
                .split(';')
                .any(|p| p.trim().replace(' ', "") == "rel=\"up\"" || p.trim() == "rel=up");
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            up.then(|| base.join(target).ok()).flatten()
        })
    })
}

/// Enrolls `username` (§11.3): a fresh P-256 key and CSR, a multipart POST to each
/// `enrollment-server` of `config` until one answers, then the issuer chain from
/// `rel="up"` links, and the check that the certificate chains to a `root-cert` and
/// holds the key.
pub async fn enroll(
    config: &Configuration,
    username: &str,
    password: &str,
    node_ids: u32,
    s: &ClientSettings,
) -> Result<Enrolled, ClientError> {
    if config.enrollment_servers.is_empty() {
        return Err(ClientError::Discovery {
            overlay: config.instance_name.clone(),
            reasons: "the configuration names no enrollment-server".into(),
        });
    }
    // The server prepares the name (PRECIS) before anything else; so does the CSR.
    let prepared = crate::ca::prepare_user_name(username).map_err(ClientError::Certificate)?;
    let username = prepared.as_str();
    let key = KeyPair::generate(&mut os_rng());
    let csr = make_csr(&key, username).map_err(|e| ClientError::Certificate(e.to_string()))?;
    let client = http_client(s, None)?;
    let mut reasons = Vec::new();
    for url in &config.enrollment_servers {
        let mut form = Form::new()
            .text("username", username.to_owned())
            .text("password", password.to_owned());
        if node_ids > 1 {
            form = form.text("nodeids", node_ids.to_string());
        }
        let part = Part::bytes(csr.clone())
            .file_name("request.p10")
            .mime_str("application/pkcs10")
            .map_err(|e| http_err(url, e))?;
        form = form.part("csr", part);
        let resp = match client
            .post(url)
            .header(ACCEPT, PKIX_CERT)
            .multipart(form)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                reasons.push(format!("{url}: {e}"));
                continue;
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            let token = body(url, resp, 1024).await?;
            return Err(ClientError::Refused(Refusal::from_token(
                &String::from_utf8_lossy(&token),
            )));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(60);
            return Err(ClientError::RateLimited(Duration::from_secs(wait)));
        }
        if !status.is_success() {
            reasons.push(format!("{url}: HTTP {status}"));
            continue;
        }
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !ctype.starts_with(PKIX_CERT) {
            reasons.push(format!("{url}: answer is {ctype:?}, not {PKIX_CERT}"));
            continue;
        }
        let base = resp.url().clone();
        let up = up_link(&resp, &base);
        let cert = body(url, resp, 64 * 1024).await?.to_vec();
        let chain = fetch_chain(&client, up, config).await?;
        return finish(config, key, cert, chain);
    }
    Err(ClientError::Discovery {
        overlay: config.instance_name.clone(),
        reasons: reasons.join("; "),
    })
}

/// Follows `rel="up"` links (at most four) until a certificate the roots sign.
async fn fetch_chain(
    client: &reqwest::Client,
    mut next: Option<reqwest::Url>,
    config: &Configuration,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut chain = Vec::new();
    for _ in 0..4 {
        let Some(url) = next.take() else { break };
        let resp = client
            .get(url.clone())
            .header(ACCEPT, PKIX_CERT)
            .send()
            .await
            .map_err(|e| http_err(url.as_str(), e))?;
        if !resp.status().is_success() {
            return Err(http_err(url.as_str(), format!("HTTP {}", resp.status())));
        }
        next = up_link(&resp, &url);
        let der = body(url.as_str(), resp, 64 * 1024).await?.to_vec();
        if config.root_certs.contains(&der) {
            break;
        }
        chain.push(der);
    }
    Ok(chain)
}

/// Checks the issued certificate (§11.3: it chains to a root-cert, with
/// BasicConstraints checks; the key is ours) and reads its Node-IDs.
fn finish(
    config: &Configuration,
    key: KeyPair,
    cert: Vec<u8>,
    chain: Vec<Vec<u8>>,
) -> Result<Enrolled, ClientError> {
    let trust = trust_of(config)?;
    let inter: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let id = trust
        .verify(&cert, &inter, unix_now(), Usage::Client)
        .map_err(|e| ClientError::Certificate(e.to_string()))?;
    if id.spki != key.spki_der() {
        return Err(ClientError::Certificate(
            "the certificate is not for our key".into(),
        ));
    }
    Ok(Enrolled {
        key,
        cert,
        chain,
        node_ids: id.node_ids,
    })
}

/// What a node needs to run, as stored in a profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Key and certificate chain.
    pub credentials: Credentials,
    /// The signed configuration document.
    pub document: Bytes,
    /// The configuration for the overlay.
    pub config: Configuration,
}

/// Writes key (owner-only), certificate chain and configuration document into `dir`
/// as one step: either all three are replaced or none is (see
/// [`crate::files::replace_dir`]).
pub fn save_profile(dir: &Path, enrolled: &Enrolled, document: &[u8]) -> Result<(), ClientError> {
    let key = key_pem(&enrolled.key);
    let certs = certs_pem(
        std::iter::once(enrolled.cert.as_slice()).chain(enrolled.chain.iter().map(Vec::as_slice)),
    );
    replace_dir(
        dir,
        &[
            ("key.pem", key.as_bytes(), true),
            ("cert.pem", certs.as_bytes(), false),
            ("config.xml", document, false),
        ],
    )?;
    Ok(())
}

/// Replaces only the configuration document of a profile (after a ConfigUpdate).
pub fn save_profile_document(dir: &Path, document: &[u8]) -> Result<(), ClientError> {
    crate::files::write_atomic(&dir.join("config.xml"), document, false)?;
    Ok(())
}

/// Loads the profile in `dir` for `overlay`. The document is parsed but its signature
/// is not checked again: it was verified before it was saved.
pub fn load_profile(dir: &Path, overlay: &str) -> Result<Profile, ClientError> {
    recover_dir(dir)?;
    let key = read_key(&dir.join("key.pem"))?;
    let mut certs = read_certs(&dir.join("cert.pem"))?;
    let leaf = certs.remove(0);
    let doc_path = dir.join("config.xml");
    let document = Bytes::from(std::fs::read(&doc_path).map_err(|e| FileError::new(&doc_path, e))?);
    let config = Document::parse(&document)?
        .configuration(overlay)?
        .config
        .clone();
    let credentials = Credentials::new(
        key,
        leaf,
        certs.into_iter().map(Bytes::from).collect(),
        overlay,
    )
    .map_err(|e| ClientError::Certificate(e.to_string()))?;
    Ok(Profile {
        credentials,
        document,
        config,
    })
}
