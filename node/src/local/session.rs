//! One connection on the local client port (RFC 6120): the stream header, STARTTLS
//! (required), SASL (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, three tries), resource binding, then the
//! stanza loop. The session is bound to the account's JID whatever resource the
//! client asks for ("one user per node").

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use xor_xmpp::stanza;
use xor_xmpp::stream::io::{StreamEnd, XmlIo};
use xor_xmpp::stream::{
    NS_CLIENT, StreamCondition, StreamError, StreamEvent, StreamParser, writer,
};

use super::account::Account;
use super::{Control, LocalSettings, lock};
use crate::c2s_client::{NS_BIND, NS_SASL, NS_SESSION, NS_TLS};
use crate::sasl::{SaslError, ScramHash, ScramServer, check_plain};

/// Failed SASL attempts before the stream is closed.
const MAX_AUTH_FAILURES: u32 = 3;

/// Largest element before login: SASL and STARTTLS elements are a few hundred bytes,
/// so a stranger's connection holds at most this much parsed XML (plus the parser's
/// 16 KiB token limit and the read buffer).
pub const PRE_AUTH_MAX_ELEMENT: usize = 8 * 1024;

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

/// Reads the client's stream header (within [`HEADER_TIMEOUT`]) and answers with
/// ours and `features`.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut XmlIo<S>,
    domain: &str,
    features: &[Element],
) -> Result<(), LoginError> {
    let first = match tokio::time::timeout(HEADER_TIMEOUT, conn.next()).await {
        Ok(ev) => ev?,
        Err(_) => {
            conn.write(&writer::header(Some(domain), None, Some(&stream_id())))
                .await?;
            return Err(conn
                .fail(StreamError::new(
                    StreamCondition::ConnectionTimeout,
                    "no stream header",
                ))
                .await
                .into());
        }
    };
    match first {
        StreamEvent::Header(h) => {
            if let Some(to) = &h.to
                && !to.eq_ignore_ascii_case(domain)
            {
                let e = StreamError::new(
                    StreamCondition::HostUnknown,
                    format!("this port serves {domain} only"),
                );
                conn.write(&writer::header(Some(domain), None, Some(&stream_id())))
                    .await?;
                return Err(conn.fail(e).await.into());
            }
        }
        other => {
            return Err(conn
                .fail(StreamError::new(
                    StreamCondition::BadFormat,
                    format!("expected a stream header, got {other:?}"),
                ))
                .await
                .into());
        }
    }
    let mut bytes = writer::header(Some(domain), None, Some(&stream_id()));
    bytes.extend(writer::features(features));
    Ok(conn.write(&bytes).await?)
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

async fn negotiate(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    settings: &LocalSettings,
    account: &Account,
    ctl: &Mutex<Control>,
) -> Result<XmlIo<Tls>, LoginError> {
    let domain = account.jid().domain().to_owned();
    let mut conn = XmlIo::new(tcp, PRE_AUTH_MAX_ELEMENT);
    let mut starttls = stanza::element("starttls", NS_TLS, &[]);
    starttls.append_child(stanza::element("required", NS_TLS, &[]));
    open(&mut conn, &domain, &[starttls]).await?;
    // It spoke: idle sockets are closed before it when the port is full.
    lock(ctl).admission.spoke(id);
    match conn.next().await? {
        StreamEvent::Element(e) if e.name() == "starttls" && e.ns() == NS_TLS => {}
        _ => {
            return Err(conn
                .fail(StreamError::new(
                    StreamCondition::PolicyViolation,
                    "STARTTLS is required on this port",
                ))
                .await
                .into());
        }
    }
    conn.send(&stanza::element("proceed", NS_TLS, &[])).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(settings.tls.clone());
    let tls = acceptor
        .accept(conn.into_inner())
        .await
        .map_err(LoginError::Tls)?;
    let mut conn = XmlIo::new(tls, PRE_AUTH_MAX_ELEMENT);
    let mut mechanisms = stanza::element("mechanisms", NS_SASL, &[]);
    for m in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        let mut el = stanza::element("mechanism", NS_SASL, &[]);
        el.append_text_node(m);
        mechanisms.append_child(el);
    }
    open(&mut conn, &domain, &[mechanisms]).await?;
    authenticate(&mut conn, peer, settings, account, ctl).await?;
    // Logged in: the restarted stream may carry stanzas of full size.
    conn.parser = StreamParser::new(settings.max_stanza);
    let mut session = stanza::element("session", NS_SESSION, &[]);
    session.append_child(stanza::element("optional", NS_SESSION, &[]));
    open(
        &mut conn,
        &domain,
        &[stanza::element("bind", NS_BIND, &[]), session],
    )
    .await?;
    match conn.next().await? {
        StreamEvent::Element(iq) if iq.name() == "iq" && iq.has_child("bind", NS_BIND) => {
            let mut result = stanza::element("iq", NS_CLIENT, &[("type", "result")]);
            if let Some(id) = iq.attr("id") {
                stanza::set_attr(&mut result, "id", id);
            }
            let mut bind = stanza::element("bind", NS_BIND, &[]);
            let mut jid = stanza::element("jid", NS_BIND, &[]);
            jid.append_text_node(account.jid().to_string());
            bind.append_child(jid);
            result.append_child(bind);
            conn.send(&result).await?;
            Ok(conn)
        }
        StreamEvent::Element(_) => Err(conn
            .fail(StreamError::new(
                StreamCondition::NotAuthorized,
                "bind a resource first",
            ))
            .await
            .into()),
        _ => Err(StreamEnd::Unexpected("a resource binding").into()),
    }
}

fn sasl(name: &str, data: Option<&[u8]>) -> Element {
    let mut el = stanza::element(name, NS_SASL, &[]);
    if let Some(d) = data {
        el.append_text_node(STANDARD.encode(d));
    }
    el
}

fn failure(condition: &str) -> Element {
    let mut f = stanza::element("failure", NS_SASL, &[]);
    f.append_child(stanza::element(condition, NS_SASL, &[]));
    f
}

fn decode(el: &Element) -> Result<Vec<u8>, SaslError> {
    let t = el.text();
    let t = t.trim();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(t)
        .map_err(|_| SaslError::Malformed("not base64".into()))
}

/// The user names that mean this account: the localpart or the bare JID.
fn is_me(account: &Account, user: &str) -> bool {
    let bare = account.jid().bare_str();
    user == bare || bare.split('@').next() == Some(user)
}

async fn authenticate(
    conn: &mut XmlIo<Tls>,
    peer: SocketAddr,
    settings: &LocalSettings,
    account: &Account,
    ctl: &Mutex<Control>,
) -> Result<(), LoginError> {
    let mut failures = 0;
    loop {
        let auth = match conn.next().await? {
            StreamEvent::Element(e) if e.name() == "auth" && e.ns() == NS_SASL => e,
            _ => {
                return Err(conn
                    .fail(StreamError::new(
                        StreamCondition::NotAuthorized,
                        "authenticate first",
                    ))
                    .await
                    .into());
            }
        };
        // Attempts from one address take turns, spaced by its failures (see
        // `admission`): guessing gains nothing from parallel connections.
        let turn = lock(ctl)
            .throttle
            .reserve(peer.ip(), std::time::Instant::now());
        tokio::time::sleep_until(tokio::time::Instant::from_std(turn)).await;
        // The SASL failure condition (RFC 6120 §6.5) of a failed attempt.
        let refused = |e: SaslError| {
            tracing::info!(%e, "local client failed to authenticate");
            match e {
                SaslError::NotAuthorized => "not-authorized",
                SaslError::Malformed(_) => "malformed-request",
            }
        };
        let outcome = match auth.attr("mechanism") {
            Some("PLAIN") => decode(&auth)
                .and_then(|m| {
                    check_plain(&m, |u, p| is_me(account, u) && p == settings.password)
                        .map(|_| None)
                })
                .map_err(refused),
            Some(name) => match ScramHash::of_mechanism(name) {
                Some(hash) => scram(conn, hash, &auth, settings, account)
                    .await
                    .map_err(refused),
                None => Err("invalid-mechanism"),
            },
            None => Err("invalid-mechanism"),
        };
        if outcome.is_ok() {
            lock(ctl).throttle.succeeded(peer.ip());
        }
        match outcome {
            Ok(extra) => {
                conn.send(&sasl("success", extra.as_deref())).await?;
                conn.parser.reset();
                return Ok(());
            }
            Err(condition) => {
                conn.send(&failure(condition)).await?;
                failures += 1;
                if failures >= MAX_AUTH_FAILURES {
                    return Err(conn
                        .fail(StreamError::new(
                            StreamCondition::PolicyViolation,
                            "too many failed authentication attempts",
                        ))
                        .await
                        .into());
                }
            }
        }
    }
}

/// SCRAM-SHA-256 or SCRAM-SHA-1: challenge, response, success with the server
/// signature.
async fn scram(
    conn: &mut XmlIo<Tls>,
    hash: ScramHash,
    auth: &Element,
    settings: &LocalSettings,
    account: &Account,
) -> Result<Option<Vec<u8>>, SaslError> {
    let salt: [u8; 16] = rand::random();
    let mut server = ScramServer::new(hash, &hex::encode(rand::random::<[u8; 12]>()), &salt, 4096);
    let (first, user) = server.client_first(&decode(auth)?)?;
    conn.send(&sasl("challenge", Some(&first)))
        .await
        .map_err(|e| SaslError::Malformed(e.to_string()))?;
    let response = match conn.next().await {
        Ok(StreamEvent::Element(e)) if e.name() == "response" && e.ns() == NS_SASL => e,
        _ => return Err(SaslError::Malformed("expected a SASL response".into())),
    };
    let last = server.client_final(&decode(&response)?, &settings.password)?;
    if !is_me(account, &user) {
        return Err(SaslError::NotAuthorized);
    }
    Ok(Some(last))
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
