//! A small XMPP client (RFC 6120): TCP, STARTTLS, SASL SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, resource
//! binding. The node uses it for the C2S fallback (XEP-0415 "Interaction with XMPP
//! Core"); tests use it as a second, independent client of the local port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use xor_xmpp::Jid;
use xor_xmpp::stream::io::{StreamEnd, XmlIo};
use xor_xmpp::stream::negotiate::{
    CLIENT_MAX_ELEMENT, ClientConfig, Negotiation, Outcome, Role, Step,
};
use xor_xmpp::stream::{StreamEvent, writer};

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
    /// Authentication failed: the server refused the credentials, or could not
    /// prove it knows the password (SCRAM).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server took longer than the timeout.
    #[error("timed out")]
    TimedOut,
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
        let config = ClientConfig {
            jid: o.jid.bare(),
            password: o.password.clone(),
            resource: o.resource.clone(),
        };
        let mut n = Negotiation::new(Role::Client(config), rand::random());
        let tcp = TcpStream::connect(o.server).await?;
        let mut plain_conn = XmlIo::new(tcp, CLIENT_MAX_ELEMENT);
        match plain_conn.negotiate(&mut n).await {
            Step::StartTls => {}
            other => return Err(failed(other)),
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(o)?));
        let name = ServerName::try_from(domain.clone())
            .map_err(|_| ClientError::ServerName(domain.clone()))?;
        let tls = connector.connect(name, plain_conn.into_inner()).await?;
        n.tls_up();
        let mut conn = XmlIo::new(tls, CLIENT_MAX_ELEMENT);
        let jid = match conn.negotiate(&mut n).await {
            Step::Done(Ok(Outcome::Bound(jid))) => jid,
            other => return Err(failed(other)),
        };
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

/// The error of a negotiation that stopped where it should not have.
fn failed(step: Step) -> ClientError {
    match step {
        Step::Done(Err(StreamEnd::AuthFailed(why))) => ClientError::Auth(why),
        Step::Done(Err(e)) => ClientError::Stream(e),
        other => ClientError::Stream(StreamEnd::Refused(format!(
            "the negotiation stopped at {other:?}"
        ))),
    }
}
