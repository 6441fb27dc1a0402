//! TLS 1.3 with overlay certificates on both sides (link type TLS-TCP-FH-NO-ICE, §6.6.5).
//!
//! Both verifiers check the chain to the overlay roots with the [`TrustStore`]; the
//! client side also checks that the server is the node it meant to reach (§6.5.1.13,
//! §6.5.1.11: "The certificate exchanged during the TLS or DTLS handshake MUST match the
//! node which sent the AttachReqAns"). The server side requires a client certificate and
//! reports the client's Node-IDs so the caller can match them to its pending Attaches.
//! `SSLKEYLOGFILE` is honoured so captures can be decrypted in Wireshark.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::id::NodeId;
use crate::identity::{CertIdentity, Credentials, IdentityError, TrustStore, Usage};

/// How long a TCP connect plus TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer's certificate was refused.
    #[error("peer refused: {0}")]
    Identity(IdentityError),
    /// The TLS handshake failed for another reason (including the peer refusing us).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// Connect and handshake took longer than [`HANDSHAKE_TIMEOUT`].
    #[error("connection timed out")]
    Timeout,
    /// No candidate connected; what went wrong with each.
    #[error("no candidate connected ({0})")]
    Candidates(String),
}

impl ConnectError {
    fn from_io(e: std::io::Error) -> ConnectError {
        let tls = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned();
        match tls {
            Some(rustls::Error::InvalidCertificate(cert)) => {
                ConnectError::Identity(identity_of(&cert))
            }
            Some(other) => ConnectError::Tls(other.to_string()),
            None => ConnectError::Io(e),
        }
    }
}

fn identity_of(e: &CertificateError) -> IdentityError {
    match e {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            IdentityError::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            IdentityError::NotYetValid
        }
        CertificateError::UnknownIssuer => IdentityError::UnknownIssuer,
        CertificateError::Other(other) => match other.0.downcast_ref::<IdentityError>() {
            Some(id) => id.clone(),
            None => IdentityError::Untrusted(other.to_string()),
        },
        other => IdentityError::Untrusted(format!("{other:?}")),
    }
}

fn to_rustls(e: IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(match e {
        IdentityError::Expired => CertificateError::Expired,
        IdentityError::NotYetValid => CertificateError::NotValidYet,
        IdentityError::UnknownIssuer => CertificateError::UnknownIssuer,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    })
}

/// Whom a connection is meant to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this node (the Node-ID from the Attach or the destination list).
    Node(NodeId),
    /// Any node of the overlay (a bootstrap node whose Node-ID is not known yet).
    AnyNode,
}

/// The verified peer of a link.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// What the peer's certificate says.
    pub identity: Arc<CertIdentity>,
    /// The peer's end-entity certificate.
    pub cert: CertificateDer<'static>,
    /// Its address.
    pub addr: SocketAddr,
    /// The link's own secret, exported from the TLS session (RFC 5705): what both
    /// ends derive a TURN credential from ([`super::turn_service`]).
    pub secret: LinkSecret,
}

/// 32 bytes of keying material exported from a link's TLS session with the label
/// [`LinkSecret::LABEL`]; both ends hold the same bytes and nobody else does.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkSecret(pub [u8; 32]);

impl LinkSecret {
    /// The exporter label (RFC 5705 §4: labels begin with "EXPORTER").
    pub const LABEL: &'static [u8] = b"EXPORTER-xor-turn-credential";

    fn export(exported: Result<[u8; 32], rustls::Error>) -> Result<LinkSecret, ConnectError> {
        exported
            .map(LinkSecret)
            .map_err(|e| ConnectError::Tls(format!("keying material: {e}")))
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(…)")
    }
}

impl PeerInfo {
    /// The peer's (first) Node-ID.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_ids[0]
    }
}

fn unix_secs(now: UnixTime) -> i64 {
    now.as_secs() as i64
}

fn check(
    trust: &RwLock<TrustStore>,
    ee: &CertificateDer<'_>,
    im: &[CertificateDer<'_>],
    now: UnixTime,
    usage: Usage,
) -> Result<CertIdentity, IdentityError> {
    let chain: Vec<&[u8]> = im.iter().map(|c| c.as_ref()).collect();
    let trust = trust
        .read()
        .map_err(|_| IdentityError::Untrusted("trust store poisoned".into()))?;
    trust.verify(ee, &chain, unix_secs(now), usage)
}

#[derive(Debug)]
struct ServerVerifier {
    trust: Arc<RwLock<TrustStore>>,
    expect: Expect,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id =
            check(&self.trust, end_entity, intermediates, now, Usage::Server).map_err(to_rustls)?;
        if let Expect::Node(expected) = self.expect
            && !id.node_ids.contains(&expected)
        {
            return Err(to_rustls(IdentityError::WrongNodeId {
                expected,
                found: id.node_ids,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Debug)]
struct ClientVerifier {
    trust: Arc<RwLock<TrustStore>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check(&self.trust, end_entity, intermediates, now, Usage::Client).map_err(to_rustls)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A node's TLS setup: its credentials and the overlay's trust, shared by all links.
#[derive(Clone)]
pub struct TlsContext {
    creds: Credentials,
    trust: Arc<RwLock<TrustStore>>,
    provider: Arc<CryptoProvider>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("node", &self.creds.node_id())
            .finish()
    }
}

impl TlsContext {
    /// TLS for `creds`, trusting `trust`.
    pub fn new(creds: Credentials, trust: TrustStore) -> Result<TlsContext, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let trust = Arc::new(RwLock::new(trust));
        let verifier = Arc::new(ClientVerifier {
            trust: trust.clone(),
            algs: provider.signature_verification_algorithms,
        });
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ConnectError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(cert_chain(&creds), private_key(&creds))
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        server.key_log = Arc::new(rustls::KeyLogFile::new());
        Ok(TlsContext {
            creds,
            trust,
            provider,
            server: Arc::new(server),
        })
    }

    /// This node's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The shared trust store (update it when a new configuration arrives).
    pub fn trust(&self) -> &Arc<RwLock<TrustStore>> {
        &self.trust
    }

    /// A client configuration that accepts only the `expect`ed peer.
    pub fn client_config(&self, expect: Expect) -> Result<Arc<ClientConfig>, ConnectError> {
        let verifier = Arc::new(ServerVerifier {
            trust: self.trust.clone(),
            expect,
            algs: self.provider.signature_verification_algorithms,
        });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ConnectError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(cert_chain(&self.creds), private_key(&self.creds))
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        config.enable_sni = false;
        config.key_log = Arc::new(rustls::KeyLogFile::new());
        Ok(Arc::new(config))
    }

    /// The server configuration (client certificates required).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// Connects to `addr` over TCP and runs the TLS handshake as client.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expect: Expect,
    ) -> Result<(TlsStream<TcpStream>, PeerInfo), ConnectError> {
        let attempt = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            self.handshake_client(tcp, addr, expect).await
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    /// Runs the client side of the handshake over `io`, a stream to `addr` that some
    /// other transport opened (an ICE pair, say).
    pub async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
        addr: SocketAddr,
        expect: Expect,
    ) -> Result<(TlsStream<S>, PeerInfo), ConnectError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake_client(io, addr, expect))
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    async fn handshake_client<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
        addr: SocketAddr,
        expect: Expect,
    ) -> Result<(TlsStream<S>, PeerInfo), ConnectError> {
        let connector = TlsConnector::from(self.client_config(expect)?);
        let name =
            ServerName::try_from("reload.invalid").map_err(|e| ConnectError::Tls(e.to_string()))?;
        let tls = connector
            .connect(name, io)
            .await
            .map_err(ConnectError::from_io)?;
        let conn = tls.get_ref().1;
        let secret =
            LinkSecret::export(conn.export_keying_material([0u8; 32], LinkSecret::LABEL, None))?;
        let peer = self.peer_info(conn.peer_certificates(), addr, secret)?;
        Ok((TlsStream::Client(tls), peer))
    }

    /// Runs the server side of the handshake on an accepted TCP connection.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> Result<(TlsStream<TcpStream>, PeerInfo), ConnectError> {
        tcp.set_nodelay(true)?;
        self.accept_over(tcp, addr).await
    }

    /// Runs the server side of the handshake over `io`, a stream from `addr`.
    pub async fn accept_over<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
        addr: SocketAddr,
    ) -> Result<(TlsStream<S>, PeerInfo), ConnectError> {
        let acceptor = TlsAcceptor::from(self.server.clone());
        let attempt = async {
            let tls = acceptor.accept(io).await.map_err(ConnectError::from_io)?;
            let conn = tls.get_ref().1;
            let secret = LinkSecret::export(conn.export_keying_material(
                [0u8; 32],
                LinkSecret::LABEL,
                None,
            ))?;
            let peer = self.peer_info(conn.peer_certificates(), addr, secret)?;
            Ok((TlsStream::Server(tls), peer))
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    fn peer_info(
        &self,
        certs: Option<&[CertificateDer<'static>]>,
        addr: SocketAddr,
        secret: LinkSecret,
    ) -> Result<PeerInfo, ConnectError> {
        let cert = certs
            .and_then(|c| c.first())
            .cloned()
            .ok_or_else(|| ConnectError::Tls("the peer presented no certificate".into()))?;
        let overlay = self
            .trust
            .read()
            .map(|t| t.overlay().to_owned())
            .unwrap_or_default();
        let identity = CertIdentity::parse(&cert, &overlay).map_err(ConnectError::Identity)?;
        if identity.node_ids.is_empty() {
            return Err(ConnectError::Identity(IdentityError::NoNodeId { overlay }));
        }
        Ok(PeerInfo {
            identity: Arc::new(identity),
            cert,
            addr,
            secret,
        })
    }
}

fn cert_chain(creds: &Credentials) -> Vec<CertificateDer<'static>> {
    std::iter::once(creds.cert())
        .chain(creds.chain().iter())
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect()
}

fn private_key(creds: &Credentials) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key().to_pkcs8_der()))
}
