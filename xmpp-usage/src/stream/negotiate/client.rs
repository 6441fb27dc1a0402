//! The C2S fallback client's side (RFC 6120 §5–§7): STARTTLS (refusing a server that
//! does not offer it), the strongest SASL mechanism offered (SCRAM-SHA-256,
//! SCRAM-SHA-1, then PLAIN over TLS), resource binding, and the RFC 3921 session when
//! the server still requires it.

use minidom::Element;
use rand::Rng;
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::sasl::{self, Auth, Mechanism};
use xmpp_parsers::starttls;
use xmpp_parsers::stream_features::StreamFeatures;

use super::{Negotiation, Outcome, Phase as Outer, Stage, Step};
use crate::jid::Jid;
use crate::sasl::{ScramClient, ScramHash, plain};
use crate::stanza::NS_SESSION;
use crate::stream::{NS_CLIENT, NS_STREAMS, StreamEnd, StreamEvent, writer};

/// Largest element the client takes from its server.
pub const CLIENT_MAX_ELEMENT: usize = 1 << 20;

/// The account to log in to.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The account (bare JID).
    pub jid: Jid,
    /// Its password.
    pub password: String,
    /// The resource to ask for.
    pub resource: String,
}

#[derive(Debug)]
pub(super) enum Phase {
    Features(Stage),
    Proceed,
    Tls,
    /// SCRAM: waiting for the challenge.
    Challenge(ScramClient),
    /// Waiting for `<success/>` (with the SCRAM state to check the server's proof).
    Success(Option<ScramClient>),
    Bind {
        session: bool,
    },
}

fn refused(why: impl Into<String>) -> StreamEnd {
    StreamEnd::Refused(why.into())
}

impl Negotiation {
    fn client_config(&self) -> &ClientConfig {
        match &self.role {
            super::Role::Client(c) => c,
            _ => unreachable!("client phases only run for Role::Client"),
        }
    }

    pub(super) fn client_event(&mut self, phase: Phase, ev: StreamEvent) {
        let el = match ev {
            StreamEvent::Header(_) => {
                self.phase = Outer::Client(phase);
                return;
            }
            StreamEvent::Element(el) => el,
            StreamEvent::Close => return self.finish(Err(StreamEnd::ClosedByPeer)),
        };
        match phase {
            Phase::Features(stage) => {
                if !el.is("features", NS_STREAMS) {
                    return self.finish(Err(refused(format!(
                        "expected stream features, got <{}/>",
                        el.name()
                    ))));
                }
                // Unknown or malformed features read as none offered.
                let f = StreamFeatures::try_from(el).unwrap_or_default();
                self.features(stage, f);
            }
            Phase::Proceed => {
                if starttls::Proceed::try_from(el).is_err() {
                    return self.finish(Err(refused("the server did not proceed with TLS")));
                }
                self.steps.push_back(Step::StartTls);
                self.phase = Outer::Client(Phase::Tls);
            }
            Phase::Tls => self.finish(Err(refused("the server spoke before TLS"))),
            Phase::Challenge(mut scram) => {
                let Ok(challenge) = sasl::Challenge::try_from(el.clone()) else {
                    return self.finish(Err(StreamEnd::AuthFailed(format!(
                        "<{}/> instead of a challenge",
                        el.name()
                    ))));
                };
                match scram.respond(&challenge.data) {
                    Ok(fin) => {
                        self.send(sasl::Response { data: fin }.into());
                        self.phase = Outer::Client(Phase::Success(Some(scram)));
                    }
                    Err(e) => self.finish(Err(StreamEnd::AuthFailed(e.to_string()))),
                }
            }
            Phase::Success(scram) => {
                let Ok(success) = sasl::Success::try_from(el.clone()) else {
                    return self.finish(Err(StreamEnd::AuthFailed(format!(
                        "the server answered <{}/>",
                        el.name()
                    ))));
                };
                if let Some(s) = scram
                    && s.verify(&success.data).is_err()
                {
                    return self.finish(Err(StreamEnd::AuthFailed(
                        "the server did not prove it knows the password".into(),
                    )));
                }
                // RFC 6120 §6.4.6: both sides restart the stream.
                self.restart(Stage::Authenticated);
            }
            Phase::Bind { session } => self.bound(el, session),
        }
    }

    pub(super) fn client_tls_up(&mut self, phase: Phase) {
        if matches!(phase, Phase::Tls) {
            self.restart(Stage::Tls);
        } else {
            self.phase = Outer::Client(phase);
        }
    }

    fn restart(&mut self, stage: Stage) {
        self.steps.push_back(Step::NewParser(CLIENT_MAX_ELEMENT));
        let header = writer::header(None, Some(self.client_config().jid.domain()), None);
        self.write(header);
        self.phase = Outer::Client(Phase::Features(stage));
    }

    fn features(&mut self, stage: Stage, f: StreamFeatures) {
        match stage {
            Stage::Plain => {
                if !f.can_starttls() {
                    return self.finish(Err(refused(
                        "the server does not offer STARTTLS; refusing to send a password in clear",
                    )));
                }
                self.send(starttls::Request.into());
                self.phase = Outer::Client(Phase::Proceed);
            }
            Stage::Tls => self.authenticate(&f),
            Stage::Authenticated => {
                if !f.can_bind() {
                    return self.finish(Err(refused("no resource binding offered")));
                }
                let resource = self.client_config().resource.clone();
                let iq = Iq::from_set("bind", BindQuery::new(Some(resource)));
                self.send(iq.into());
                // RFC 3921 §3 sessions: only a server that does not mark it optional
                // (RFC 6121 Appendix E) is asked for one.
                let session = f
                    .others
                    .iter()
                    .any(|e| e.is("session", NS_SESSION) && !e.has_child("optional", NS_SESSION));
                self.phase = Outer::Client(Phase::Bind { session });
            }
        }
    }

    fn authenticate(&mut self, f: &StreamFeatures) {
        let c = self.client_config().clone();
        let user = c.jid.bare_str();
        let local = user.split('@').next().unwrap_or_default().to_owned();
        let offered = |m: &str| f.sasl_mechanisms.iter().any(|o| o == m);
        // The strongest SCRAM offered (RFC 7677 before RFC 5802), else PLAIN.
        let scram = [ScramHash::Sha256, ScramHash::Sha1]
            .into_iter()
            .find(|h| offered(h.mechanism()));
        if let Some(hash) = scram {
            let mut nonce = [0u8; 12];
            self.rng.fill_bytes(&mut nonce);
            let scram = ScramClient::new(hash, &local, &c.password, &hex::encode(nonce));
            let mechanism = match hash {
                ScramHash::Sha256 => Mechanism::ScramSha256,
                ScramHash::Sha1 => Mechanism::ScramSha1,
            };
            self.send(
                Auth {
                    mechanism,
                    data: scram.first(),
                }
                .into(),
            );
            self.phase = Outer::Client(Phase::Challenge(scram));
        } else if offered("PLAIN") {
            self.send(
                Auth {
                    mechanism: Mechanism::Plain,
                    data: plain(&local, &c.password),
                }
                .into(),
            );
            self.phase = Outer::Client(Phase::Success(None));
        } else {
            self.finish(Err(StreamEnd::AuthFailed(format!(
                "no supported mechanism among {:?}",
                f.sasl_mechanisms
            ))));
        }
    }

    fn bound(&mut self, el: Element, session: bool) {
        if !(el.is("iq", NS_CLIENT) && el.attr("id") == Some("bind")) {
            // Anything else before the answer is ignored (RFC 6120 §7.6.1 allows the
            // server nothing else, but a push costs nothing to skip).
            self.phase = Outer::Client(Phase::Bind { session });
            return;
        }
        let jid = match Iq::try_from(el.clone()) {
            Ok(Iq::Result {
                payload: Some(p), ..
            }) => BindResponse::try_from(p)
                .ok()
                .and_then(|b| Jid::parse(&b.jid.to_string()).ok()),
            _ => None,
        };
        let Some(jid) = jid else {
            return self.finish(Err(refused(format!(
                "binding refused: {}",
                String::from_utf8_lossy(&writer::element(&el))
            ))));
        };
        if session {
            let mut iq = Element::bare("iq", NS_CLIENT);
            crate::stanza::set_attr(&mut iq, "type", "set");
            crate::stanza::set_attr(&mut iq, "id", "sess");
            iq.append_child(Element::bare("session", NS_SESSION));
            self.send(iq);
        }
        self.finish(Ok(Outcome::Bound(jid)));
    }
}
