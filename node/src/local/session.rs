//! One connection on the local client port (RFC 6120): the stream header, STARTTLS
//! (required), SASL (SCRAM-SHA-1 or PLAIN, three tries), resource binding, then the
//! stanza loop. The session is bound to the account's JID whatever resource the
//! client asks for ("one user per node").

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use xor_xmpp::stanza;
use xor_xmpp::stream::io::XmlIo;
use xor_xmpp::stream::{NS_CLIENT, StreamCondition, StreamError, StreamEvent, writer};

use super::LocalSettings;
use super::account::Account;
use crate::c2s_client::{NS_BIND, NS_SASL, NS_SESSION, NS_TLS};
use crate::sasl::{SaslError, ScramServer, check_plain};

/// Failed SASL attempts before the stream is closed.
const MAX_AUTH_FAILURES: u32 = 3;

fn stream_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Reads the client's stream header and answers with ours and `features`.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut XmlIo<S>,
    domain: &str,
    features: &[Element],
) -> Result<(), String> {
    match conn.next().await? {
        StreamEvent::Header(h) => {
            if let Some(to) = &h.to
                && !to.eq_ignore_ascii_case(domain)
            {
                let e = StreamError::new(
                    StreamCondition::HostUnknown,
                    format!("this port serves {domain} only"),
                );
                conn.write(&writer::header(Some(domain), None, Some(&stream_id())))
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(conn.fail(e).await);
            }
        }
        other => {
            return Err(conn
                .fail(StreamError::new(
                    StreamCondition::BadFormat,
                    format!("expected a stream header, got {other:?}"),
                ))
                .await);
        }
    }
    let mut bytes = writer::header(Some(domain), None, Some(&stream_id()));
    bytes.extend(writer::features(features));
    conn.write(&bytes).await.map_err(|e| e.to_string())
}

/// Serves one connection until it ends.
pub(super) async fn serve(tcp: TcpStream, settings: Arc<LocalSettings>, account: Arc<Account>) {
    let peer = tcp.peer_addr().ok();
    match tokio::time::timeout(settings.auth_timeout, negotiate(tcp, &settings, &account)).await {
        Ok(Ok(conn)) => run(conn, &settings, &account).await,
        Ok(Err(why)) => tracing::info!(?peer, %why, "local client refused"),
        Err(_) => tracing::info!(?peer, "local client took too long to log in"),
    }
}

type Tls = tokio_rustls::server::TlsStream<TcpStream>;

async fn negotiate(
    tcp: TcpStream,
    settings: &LocalSettings,
    account: &Account,
) -> Result<XmlIo<Tls>, String> {
    let domain = account.jid().domain().to_owned();
    let mut conn = XmlIo::new(tcp, settings.max_stanza);
    let mut starttls = stanza::element("starttls", NS_TLS, &[]);
    starttls.append_child(stanza::element("required", NS_TLS, &[]));
    open(&mut conn, &domain, &[starttls]).await?;
    match conn.next().await? {
        StreamEvent::Element(e) if e.name() == "starttls" && e.ns() == NS_TLS => {}
        _ => {
            return Err(conn
                .fail(StreamError::new(
                    StreamCondition::PolicyViolation,
                    "STARTTLS is required on this port",
                ))
                .await);
        }
    }
    conn.send(&stanza::element("proceed", NS_TLS, &[]))
        .await
        .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(settings.tls.clone());
    let tls = acceptor
        .accept(conn.into_inner())
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let mut conn = XmlIo::new(tls, settings.max_stanza);
    let mut mechanisms = stanza::element("mechanisms", NS_SASL, &[]);
    for m in ["SCRAM-SHA-1", "PLAIN"] {
        let mut el = stanza::element("mechanism", NS_SASL, &[]);
        el.append_text_node(m);
        mechanisms.append_child(el);
    }
    open(&mut conn, &domain, &[mechanisms]).await?;
    authenticate(&mut conn, settings, account).await?;
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
            conn.send(&result).await.map_err(|e| e.to_string())?;
            Ok(conn)
        }
        StreamEvent::Element(_) => Err(conn
            .fail(StreamError::new(
                StreamCondition::NotAuthorized,
                "bind a resource first",
            ))
            .await),
        other => Err(format!("before binding: {other:?}")),
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
    settings: &LocalSettings,
    account: &Account,
) -> Result<(), String> {
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
                    .await);
            }
        };
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
            Some("SCRAM-SHA-1") => scram(conn, &auth, settings, account).await.map_err(refused),
            _ => Err("invalid-mechanism"),
        };
        match outcome {
            Ok(extra) => {
                conn.send(&sasl("success", extra.as_deref()))
                    .await
                    .map_err(|e| e.to_string())?;
                conn.parser.reset();
                return Ok(());
            }
            Err(condition) => {
                conn.send(&failure(condition))
                    .await
                    .map_err(|e| e.to_string())?;
                failures += 1;
                if failures >= MAX_AUTH_FAILURES {
                    return Err(conn
                        .fail(StreamError::new(
                            StreamCondition::PolicyViolation,
                            "too many failed authentication attempts",
                        ))
                        .await);
                }
            }
        }
    }
}

/// SCRAM-SHA-1: challenge, response, success with the server signature.
async fn scram(
    conn: &mut XmlIo<Tls>,
    auth: &Element,
    settings: &LocalSettings,
    account: &Account,
) -> Result<Option<Vec<u8>>, SaslError> {
    let salt: [u8; 16] = rand::random();
    let mut server = ScramServer::new(&hex::encode(rand::random::<[u8; 12]>()), &salt, 4096);
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
async fn run(mut conn: XmlIo<Tls>, settings: &LocalSettings, account: &Arc<Account>) {
    let (id, mut rx) = account.attach();
    let me = account.jid().clone();
    tracing::info!(session = id, jid = %me, "local client logged in");
    let reason = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(el) => {
                    if let Err(e) = conn.send(&el).await {
                        break format!("write failed: {e}");
                    }
                }
                None => break "the session was dropped".to_owned(),
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
                            failed = Some(format!("write failed: {e}"));
                            break;
                        }
                    }
                    if let Some(f) = failed {
                        break f;
                    }
                }
                Ok(StreamEvent::Close) => {
                    let _ = conn.write(writer::close()).await;
                    break "the client closed the stream".to_owned();
                }
                Ok(StreamEvent::Header(_)) => {
                    break conn.fail(StreamError::new(StreamCondition::BadFormat, "a second stream header")).await;
                }
                Err(e) => break e,
            },
        }
    };
    let _ = settings;
    account.detach(id).await;
    tracing::info!(session = id, %reason, "local client session ended");
}

/// How long the whole login may take.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
