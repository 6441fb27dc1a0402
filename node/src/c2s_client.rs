//! A small XMPP client (RFC 6120): TCP, STARTTLS, SASL SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, resource
//! binding. The node uses it for the C2S fallback (XEP-0415 "Interaction with XMPP
//! Core"); tests use it as a second, independent client of the local port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minidom::Element;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use xor_xmpp::stream::io::{StreamEnd, XmlIo};
use xor_xmpp::stream::{NS_CLIENT, NS_STREAMS, StreamEvent, writer};
use xor_xmpp::{Jid, stanza};

use crate::sasl::{ScramClient, ScramHash, plain};

/// `urn:ietf:params:xml:ns:xmpp-tls`.
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl`.
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-bind`.
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// `urn:ietf:params:xml:ns:xmpp-session`.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The account (bare JID).
    pub jid: Jid,
    /// Its password.
    pub password: String,
    /// The resource to ask for.
    pub resource: String,
    /// The server's address.
    pub server: SocketAddr,
    /// Trust anchors (DER) for the server certificate; empty means the Web PKI.
    pub tls_roots: Vec<Vec<u8>>,
    /// Skip certificate checks (a local port with a self-made certificate).
    pub insecure: bool,
    /// Timeout of each step.
    pub timeout: Duration,
}

/// Why the client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A network failure.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The XML stream ended or broke.
    #[error(transparent)]
    Stream(#[from] StreamEnd),
    /// The TLS configuration was refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The JID's domain is not a name TLS can check.
    #[error("{0} is not a DNS name")]
    ServerName(String),
    /// The server took longer than the timeout.
    #[error("timed out")]
    TimedOut,
    /// The server said no or broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// Authentication failed.
    #[error("authentication failed: {0}")]
    Auth(String),
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A connected, authenticated, bound client.
#[derive(Debug)]
pub struct C2sClient {
    conn: XmlIo<Tls>,
    jid: Jid,
    timeout: Duration,
}

/// Accepts any server certificate (only for `insecure`).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(o: &ClientOptions) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if o.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if o.tls_roots.is_empty() {
            roots.extend(webpki_roots_shim());
        }
        for r in &o.tls_roots {
            roots.add(CertificateDer::from(r.clone()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if let Ok(path) = std::env::var("SSLKEYLOGFILE")
        && !path.is_empty()
    {
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
    Ok(config)
}

/// The Web PKI roots (from the `webpki-roots` crate, via xor-enrollment's client).
fn webpki_roots_shim() -> Vec<rustls_pki_types::TrustAnchor<'static>> {
    xor_enrollment::client::web_pki_roots()
}

impl C2sClient {
    /// Connects, negotiates TLS and SASL, binds a resource.
    pub async fn connect(o: &ClientOptions) -> Result<C2sClient, ClientError> {
        tokio::time::timeout(o.timeout * 4, Self::connect_inner(o))
            .await
            .map_err(|_| ClientError::TimedOut)?
    }

    async fn connect_inner(o: &ClientOptions) -> Result<C2sClient, ClientError> {
        let domain = o.jid.domain().to_owned();
        let tcp = TcpStream::connect(o.server).await?;
        let mut plain_conn = XmlIo::new(tcp, 1 << 20);
        plain_conn
            .write(&writer::header(None, Some(&domain), None))
            .await?;
        let features = read_features(&mut plain_conn).await?;
        if !features.has_child("starttls", NS_TLS) {
            return Err(ClientError::Protocol(
                "the server does not offer STARTTLS; refusing to send a password in clear".into(),
            ));
        }
        plain_conn
            .send(&stanza::element("starttls", NS_TLS, &[]))
            .await?;
        match plain_conn.next().await? {
            StreamEvent::Element(e) if e.name() == "proceed" => {}
            other => return Err(ClientError::Protocol(format!("no <proceed/>: {other:?}"))),
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(o)?));
        let name = ServerName::try_from(domain.clone())
            .map_err(|_| ClientError::ServerName(domain.clone()))?;
        let tls = connector.connect(name, plain_conn.into_inner()).await?;
        let mut conn = XmlIo::new(tls, 1 << 20);
        conn.write(&writer::header(None, Some(&domain), None))
            .await?;
        let features = read_features(&mut conn).await?;
        authenticate(&mut conn, &features, o).await?;
        // Both sides restart the stream after SASL success (RFC 6120 §6.4.6).
        conn.parser.reset();
        conn.write(&writer::header(None, Some(&domain), None))
            .await?;
        let features = read_features(&mut conn).await?;
        if !features.has_child("bind", NS_BIND) {
            return Err(ClientError::Protocol("no resource binding offered".into()));
        }
        let mut bind = stanza::element("iq", NS_CLIENT, &[("type", "set"), ("id", "bind")]);
        let mut b = stanza::element("bind", NS_BIND, &[]);
        let mut r = stanza::element("resource", NS_BIND, &[]);
        r.append_text_node(o.resource.clone());
        b.append_child(r);
        bind.append_child(b);
        conn.send(&bind).await?;
        let jid = loop {
            match conn.next().await? {
                StreamEvent::Element(e) if e.name() == "iq" && e.attr("id") == Some("bind") => {
                    if e.attr("type") != Some("result") {
                        return Err(ClientError::Protocol(format!(
                            "binding refused: {}",
                            String::from_utf8_lossy(&writer::element(&e))
                        )));
                    }
                    let text = e
                        .get_child("bind", NS_BIND)
                        .and_then(|b| b.get_child("jid", NS_BIND))
                        .map(Element::text)
                        .unwrap_or_default();
                    break Jid::parse(&text).map_err(|e| ClientError::Protocol(e.to_string()))?;
                }
                StreamEvent::Element(_) => {}
                other => return Err(ClientError::Protocol(format!("while binding: {other:?}"))),
            }
        };
        if features
            .get_child("session", NS_SESSION)
            .is_some_and(|s| !s.has_child("optional", NS_SESSION))
        {
            let mut iq = stanza::element("iq", NS_CLIENT, &[("type", "set"), ("id", "sess")]);
            iq.append_child(stanza::element("session", NS_SESSION, &[]));
            conn.send(&iq).await?;
        }
        Ok(C2sClient {
            conn,
            jid,
            timeout: o.timeout,
        })
    }

    /// The bound full JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// Sends a stanza.
    pub async fn send(&mut self, el: &Element) -> Result<(), ClientError> {
        self.conn.send(el).await?;
        Ok(())
    }

    /// Sends raw bytes (tests of hostile input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.write(bytes).await?;
        Ok(())
    }

    /// The next stanza, or `None` when the stream ends or nothing arrives in time.
    pub async fn recv(&mut self) -> Option<Element> {
        match tokio::time::timeout(self.timeout, self.conn.next()).await {
            Ok(Ok(StreamEvent::Element(e))) => Some(e),
            _ => None,
        }
    }

    /// The next stanza within `wait`, whatever the step timeout.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Element> {
        match tokio::time::timeout(wait, self.conn.next()).await {
            Ok(Ok(StreamEvent::Element(e))) => Some(e),
            _ => None,
        }
    }

    /// Closes the stream.
    pub async fn close(mut self) {
        let _ = self.conn.write(writer::close()).await;
    }
}

async fn read_features<S>(conn: &mut XmlIo<S>) -> Result<Element, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match conn.next().await? {
            StreamEvent::Header(_) => {}
            StreamEvent::Element(e) if e.name() == "features" && e.ns() == NS_STREAMS => {
                return Ok(e);
            }
            StreamEvent::Element(e) if e.name() == "error" && e.ns() == NS_STREAMS => {
                return Err(ClientError::Protocol(format!(
                    "stream error: {}",
                    String::from_utf8_lossy(&writer::element(&e))
                )));
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected stream features, got {other:?}"
                )));
            }
        }
    }
}

fn sasl_element(name: &str, data: &[u8], mechanism: Option<&str>) -> Element {
    let attrs: Vec<(&str, &str)> = mechanism.map(|m| ("mechanism", m)).into_iter().collect();
    let mut el = stanza::element(name, NS_SASL, &attrs);
    el.append_text_node(if data.is_empty() {
        "=".to_owned()
    } else {
        STANDARD.encode(data)
    });
    el
}

async fn sasl_step(conn: &mut XmlIo<Tls>) -> Result<(String, Vec<u8>), ClientError> {
    match conn.next().await? {
        StreamEvent::Element(e) if e.ns() == NS_SASL => {
            let text = e.text();
            let data = if text.trim() == "=" || text.trim().is_empty() {
                Vec::new()
            } else {
                STANDARD
                    .decode(text.trim())
                    .map_err(|_| ClientError::Protocol("bad base64 from the server".into()))?
            };
            Ok((e.name().to_owned(), data))
        }
        other => Err(ClientError::Protocol(format!("during SASL: {other:?}"))),
    }
}

async fn authenticate(
    conn: &mut XmlIo<Tls>,
    features: &Element,
    o: &ClientOptions,
) -> Result<(), ClientError> {
    let mechanisms: Vec<String> = features
        .get_child("mechanisms", NS_SASL)
        .map(|m| m.children().map(Element::text).collect())
        .unwrap_or_default();
    let user = o.jid.to_string();
    let local = user.split('@').next().unwrap_or_default().to_owned();
    // The strongest SCRAM the server offers (RFC 7677 before RFC 5802), else PLAIN.
    let scram_hash = [ScramHash::Sha256, ScramHash::Sha1]
        .into_iter()
        .find(|h| mechanisms.iter().any(|m| m == h.mechanism()));
    if let Some(hash) = scram_hash {
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let mut scram = ScramClient::new(hash, &local, &o.password, &nonce);
        conn.send(&sasl_element(
            "auth",
            &scram.first(),
            Some(hash.mechanism()),
        ))
        .await?;
        let (name, data) = sasl_step(conn).await?;
        if name != "challenge" {
            return Err(ClientError::Auth(format!(
                "<{name}/> instead of a challenge"
            )));
        }
        let fin = scram
            .respond(&data)
            .map_err(|e| ClientError::Auth(e.to_string()))?;
        conn.send(&sasl_element("response", &fin, None)).await?;
        let (name, data) = sasl_step(conn).await?;
        if name != "success" {
            return Err(ClientError::Auth(format!("the server answered <{name}/>")));
        }
        scram
            .verify(&data)
            .map_err(|_| ClientError::Auth("the server did not prove it knows the password".into()))
    } else if mechanisms.iter().any(|m| m == "PLAIN") {
        conn.send(&sasl_element(
            "auth",
            &plain(&local, &o.password),
            Some("PLAIN"),
        ))
        .await?;
        match sasl_step(conn).await? {
            (name, _) if name == "success" => Ok(()),
            (name, _) => Err(ClientError::Auth(format!("the server answered <{name}/>"))),
        }
    } else {
        Err(ClientError::Auth(format!(
            "no supported mechanism among {mechanisms:?}"
        )))
    }
}
