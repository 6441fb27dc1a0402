//! One connection on the local client port (RFC 6120): the negotiation — header,
//! STARTTLS (required), SASL (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, three tries),
//! resource binding — is the one machine of `xor_xmpp::stream::negotiate` (server
//! role), driven here with the port's TLS and its per-address SASL throttle; then the
//! stanza loop. The session is bound to the account's JID whatever resource the client
//! asks for ("one user per node").

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use xor_xmpp::stanza;
use xor_xmpp::stream::io::{StreamEnd, XmlIo};
pub use xor_xmpp::stream::negotiate::PRE_AUTH_MAX_ELEMENT;
use xor_xmpp::stream::negotiate::{Negotiation, Outcome, Role, ServerConfig, Step};
use xor_xmpp::stream::{StreamCondition, StreamError, StreamEvent, writer};

use super::account::Account;
use super::{Control, LocalSettings, lock};

/// How long a new connection may take to send its stream header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a refusal (header and stream error) may take to write.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

fn stream_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Why a local client's login ended without a session.
#[derive(Debug, thiserror::Error)]
enum LoginError {
    /// The XML stream ended or broke (a stream error sent says why).
    #[error(transparent)]
    Stream(#[from] StreamEnd),
    /// Writing to the client failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake after STARTTLS failed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

/// Refuses a connection with a stream error (RFC 6120 §4.9.1.1: a header first).
pub(super) async fn refuse(tcp: TcpStream, domain: &str) {
    let mut conn = XmlIo::new(tcp, PRE_AUTH_MAX_ELEMENT);
    let write = async {
        let _ = conn
            .write(&writer::header(Some(domain), None, Some(&stream_id())))
            .await;
        conn.fail(StreamError::new(
            StreamCondition::PolicyViolation,
            "too many clients are connected to this port",
        ))
        .await
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, write).await;
}

/// Serves one connection until it ends; whether it logged in.
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    settings: Arc<LocalSettings>,
    account: Arc<Account>,
    ctl: &Mutex<Control>,
) -> bool {
    let login = negotiate(tcp, peer, id, &settings, &account, ctl);
    match tokio::time::timeout(settings.auth_timeout, login).await {
        Ok(Ok(mut conn)) => {
            if !lock(ctl).admission.logged_in(id) {
                let e = StreamError::new(
                    StreamCondition::PolicyViolation,
                    "too many clients are logged in to this port",
                );
                conn.fail(e).await;
                return false;
            }
            run(conn, &account).await;
            true
        }
        Ok(Err(why)) => {
            tracing::info!(%peer, %why, "local client refused");
            false
        }
        Err(_) => {
            tracing::info!(%peer, "local client took too long to log in");
            false
        }
    }
}

type Tls = tokio_rustls::server::TlsStream<TcpStream>;

/// Runs the one negotiation machine (`xor_xmpp::stream::negotiate`, server role) on a
/// new connection: the header within [`HEADER_TIMEOUT`], STARTTLS, SASL attempts
/// spaced by the address's throttle, binding.
async fn negotiate(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    settings: &LocalSettings,
    account: &Account,
    ctl: &Mutex<Control>,
) -> Result<XmlIo<Tls>, LoginError> {
    let config = ServerConfig {
        account: account.jid().clone(),
        password: settings.password.clone(),
        max_stanza: settings.max_stanza,
    };
    let mut n = Negotiation::new(Role::Server(config), rand::random());
    let mut conn = XmlIo::new(tcp, PRE_AUTH_MAX_ELEMENT);
    let first = match tokio::time::timeout(HEADER_TIMEOUT, conn.negotiate(&mut n)).await {
        Ok(step) => step,
        Err(_) => {
            n.timed_out("no stream header");
            conn.negotiate(&mut n).await
        }
    };
    expect(first, |s| matches!(s, Step::Opened))?;
    // It spoke: idle sockets are closed before it when the port is full.
    lock(ctl).admission.spoke(id);
    expect(conn.negotiate(&mut n).await, |s| {
        matches!(s, Step::StartTls)
    })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(settings.tls.clone());
    let tls = acceptor
        .accept(conn.into_inner())
        .await
        .map_err(LoginError::Tls)?;
    n.tls_up();
    let mut conn = XmlIo::new(tls, PRE_AUTH_MAX_ELEMENT);
    loop {
        match conn.negotiate(&mut n).await {
            Step::Authenticating => {
                // Attempts from one address take turns, spaced by its failures (see
                // `admission`): guessing gains nothing from parallel connections.
                let turn = lock(ctl)
                    .throttle
                    .reserve(peer.ip(), std::time::Instant::now());
                tokio::time::sleep_until(tokio::time::Instant::from_std(turn)).await;
                n.resume();
            }
            Step::Done(Ok(Outcome::Session)) => {
                lock(ctl).throttle.succeeded(peer.ip());
                return Ok(conn);
            }
            other => return Err(stopped(other)),
        }
    }
}

/// `Ok` when the negotiation stopped at the step `wanted` accepts; its failure
/// otherwise.
fn expect(step: Step, wanted: impl Fn(&Step) -> bool) -> Result<(), LoginError> {
    if wanted(&step) {
        Ok(())
    } else {
        Err(stopped(step))
    }
}

/// Why a login stopped at `step`.
fn stopped(step: Step) -> LoginError {
    match step {
        Step::Done(Err(e)) => e.into(),
        _ => StreamEnd::Unexpected("the next login step").into(),
    }
}

/// The stanza loop of an authenticated, bound session.
async fn run(mut conn: XmlIo<Tls>, account: &Arc<Account>) {
    let (id, mut rx) = account.attach();
    let me = account.jid().clone();
    tracing::info!(session = id, jid = %me, "local client logged in");
    let reason = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(el) => {
                    if let Err(e) = conn.send(&el).await {
                        break StreamEnd::Io(e);
                    }
                }
                // The account dropped the session (a newer one took its place).
                None => break StreamEnd::Closed,
            },
            ev = conn.next() => match ev {
                Ok(StreamEvent::Element(mut el)) => {
                    if !stanza::is_stanza(&el) {
                        if el.name() == "r" || el.name() == "enable" {
                            continue; // stream management is not offered; ignore probes of it
                        }
                        break conn.fail(StreamError::new(StreamCondition::UnsupportedStanzaType, format!("<{}/> is not a stanza", el.name()))).await;
                    }
                    if let Some(from) = el.attr("from")
                        && from != me.to_string()
                        && from != me.bare_str()
                    {
                        break conn.fail(StreamError::new(StreamCondition::InvalidFrom, format!("this session is {me}, not {from}"))).await;
                    }
                    stanza::set_attr(&mut el, "from", &me.to_string());
                    let mut failed = None;
                    for reply in account.from_client(id, el).await {
                        if let Err(e) = conn.send(&reply).await {
                            failed = Some(StreamEnd::Io(e));
                            break;
                        }
                    }
                    if let Some(f) = failed {
                        break f;
                    }
                }
                Ok(StreamEvent::Close) => {
                    let _ = conn.write(writer::close()).await;
                    break StreamEnd::ClosedByPeer;
                }
                Ok(StreamEvent::Header(_)) => {
                    break conn.fail(StreamError::new(StreamCondition::BadFormat, "a second stream header")).await;
                }
                Err(e) => break e,
            },
        }
    };
    account.detach(id).await;
    tracing::info!(session = id, %reason, "local client session ended");
}

/// How long the whole login may take.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
