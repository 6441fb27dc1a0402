//! The local client port's side (RFC 6120 §5–§7): header, STARTTLS (required), SASL
//! with three tries, resource binding. Every session is bound to the account's full
//! JID, whatever resource the client asks for ("one user per node").

use minidom::Element;
use rand::Rng;
use xmpp_parsers::bind::{BindFeature, BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::ns;
use xmpp_parsers::sasl::{self, Auth, Mechanism};
use xmpp_parsers::starttls::{self, StartTls};

use super::{Negotiation, Outcome, PRE_AUTH_MAX_ELEMENT, Phase as Outer, Stage, Step};
use crate::jid::Jid;
use crate::sasl::{SaslError, ScramHash, ScramServer, check_plain};
use crate::stanza::NS_SESSION;
use crate::stream::{StreamCondition, StreamEnd, StreamError, StreamEvent, writer};

/// Failed SASL attempts before the stream is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// SCRAM iterations the port asks for (RFC 5802 §5.1 "at least 4096").
const SCRAM_ITERATIONS: u32 = 4096;

/// The mechanisms offered, strongest first.
const MECHANISMS: [&str; 3] = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"];

/// The account the port serves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The full JID every session is bound to.
    pub account: Jid,
    /// The password clients log in with.
    pub password: String,
    /// Largest stanza after login.
    pub max_stanza: usize,
}

#[derive(Debug)]
pub(super) enum Phase {
    Header(Stage),
    StartTls,
    /// Waiting for the transport's TLS handshake.
    Tls,
    Auth {
        failures: u32,
    },
    /// An `<auth/>` waits for the driver's turn.
    Throttled(Pending),
    Scram {
        scram: ScramServer,
        user: String,
        failures: u32,
    },
    Bind,
}

/// An `<auth/>` and the failures before it.
#[derive(Debug)]
pub(super) struct Pending {
    auth: Element,
    failures: u32,
}

/// The SASL failure condition (RFC 6120 §6.5) of a refused attempt.
fn condition(e: &SaslError) -> sasl::DefinedCondition {
    match e {
        SaslError::NotAuthorized => sasl::DefinedCondition::NotAuthorized,
        SaslError::Malformed(_) => sasl::DefinedCondition::MalformedRequest,
    }
}

fn failure(condition: sasl::DefinedCondition) -> Element {
    sasl::Failure {
        defined_condition: condition,
        texts: Default::default(),
    }
    .into()
}

impl Negotiation {
    fn config(&self) -> &ServerConfig {
        match &self.role {
            super::Role::Server(c) => c,
            _ => unreachable!("server phases only run for Role::Server"),
        }
    }

    /// The user names that mean this account: the localpart or the bare JID.
    fn is_account(&self, user: &str) -> bool {
        let bare = self.config().account.bare_str();
        user == bare || bare.split('@').next() == Some(user)
    }

    pub(super) fn server_event(&mut self, phase: Phase, ev: StreamEvent) {
        match phase {
            Phase::Header(stage) => self.server_header(stage, ev),
            Phase::StartTls => match ev {
                StreamEvent::Element(e) if starttls::Request::try_from(e.clone()).is_ok() => {
                    self.send(starttls::Proceed.into());
                    self.steps.push_back(Step::StartTls);
                    self.phase = Outer::Server(Phase::Tls);
                }
                _ => self.fail(StreamError::new(
                    StreamCondition::PolicyViolation,
                    "STARTTLS is required on this port",
                )),
            },
            Phase::Tls | Phase::Throttled(_) => self.fail(StreamError::new(
                StreamCondition::PolicyViolation,
                "nothing may be sent before the answer",
            )),
            Phase::Auth { failures } => match ev {
                StreamEvent::Element(auth) if auth.is("auth", ns::SASL) => {
                    self.steps.push_back(Step::Authenticating);
                    self.phase = Outer::Server(Phase::Throttled(Pending { auth, failures }));
                }
                _ => self.fail(StreamError::new(
                    StreamCondition::NotAuthorized,
                    "authenticate first",
                )),
            },
            Phase::Scram {
                scram,
                user,
                failures,
            } => {
                let response = match ev {
                    StreamEvent::Element(e) => sasl::Response::try_from(e).ok(),
                    _ => None,
                };
                let outcome = match response {
                    Some(r) => self.scram_final(scram, &user, &r.data),
                    None => Err(SaslError::Malformed("expected a SASL response".into())),
                };
                self.auth_outcome(outcome, failures);
            }
            Phase::Bind => match ev {
                StreamEvent::Element(e) => self.bind(e),
                _ => self.finish(Err(StreamEnd::Unexpected("a resource binding"))),
            },
        }
    }

    fn server_header(&mut self, stage: Stage, ev: StreamEvent) {
        let StreamEvent::Header(h) = ev else {
            return self.fail(StreamError::new(
                StreamCondition::BadFormat,
                "expected a stream header",
            ));
        };
        let domain = self.config().account.domain().to_owned();
        if let Some(to) = &h.to
            && !to.eq_ignore_ascii_case(&domain)
        {
            return self.fail(StreamError::new(
                StreamCondition::HostUnknown,
                format!("this port serves {domain} only"),
            ));
        }
        if stage == Stage::Plain {
            self.steps.push_back(Step::Opened);
        }
        // Written child by child: `StreamFeatures` always writes a `<mechanisms/>`,
        // empty where SASL is not offered, and keeps mechanisms as a sorted set,
        // where RFC 6120 §6.3.3 makes their order the server's preference.
        let offer: Vec<Element> = match stage {
            Stage::Plain => vec![StartTls { required: true }.into()],
            Stage::Tls => {
                let mut list = Element::bare("mechanisms", ns::SASL);
                for m in MECHANISMS {
                    let mut el = Element::bare("mechanism", ns::SASL);
                    el.append_text(m);
                    list.append_child(el);
                }
                vec![list]
            }
            Stage::Authenticated => {
                let mut session = Element::bare("session", NS_SESSION);
                session.append_child(Element::bare("optional", NS_SESSION));
                vec![BindFeature { required: false }.into(), session]
            }
        };
        let mut bytes = self.own_header(None);
        self.header_sent = true;
        bytes.extend(writer::features(&offer));
        self.write(bytes);
        self.phase = Outer::Server(match stage {
            Stage::Plain => Phase::StartTls,
            Stage::Tls => Phase::Auth { failures: 0 },
            Stage::Authenticated => Phase::Bind,
        });
    }

    pub(super) fn server_tls_up(&mut self, phase: Phase) {
        if !matches!(phase, Phase::Tls) {
            self.phase = Outer::Server(phase);
            return;
        }
        // RFC 6120 §5.4.3.3: a new stream over TLS, nothing kept from before.
        self.steps.push_back(Step::NewParser(PRE_AUTH_MAX_ELEMENT));
        self.header_sent = false;
        self.phase = Outer::Server(Phase::Header(Stage::Tls));
    }

    /// An `<auth/>` whose turn came.
    pub(super) fn server_auth(&mut self, p: Pending) {
        let auth = match Auth::try_from(p.auth.clone()) {
            Ok(a) => a,
            Err(_) => {
                let known = p
                    .auth
                    .attr("mechanism")
                    .is_some_and(|m| MECHANISMS.contains(&m));
                let c = if known {
                    sasl::DefinedCondition::MalformedRequest
                } else {
                    sasl::DefinedCondition::InvalidMechanism
                };
                return self.refused(c, p.failures);
            }
        };
        let outcome = match auth.mechanism {
            Mechanism::Plain => {
                let password = self.config().password.clone();
                check_plain(&auth.data, |u, pw| self.is_account(u) && pw == password).map(|_| None)
            }
            Mechanism::ScramSha256 => return self.scram_first(ScramHash::Sha256, &auth.data, p),
            Mechanism::ScramSha1 => return self.scram_first(ScramHash::Sha1, &auth.data, p),
            _ => return self.refused(sasl::DefinedCondition::InvalidMechanism, p.failures),
        };
        self.auth_outcome(outcome, p.failures);
    }

    fn scram_first(&mut self, hash: ScramHash, data: &[u8], p: Pending) {
        let mut salt = [0u8; 16];
        self.rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 12];
        self.rng.fill_bytes(&mut nonce);
        let mut scram = ScramServer::new(hash, &hex::encode(nonce), &salt, SCRAM_ITERATIONS);
        match scram.client_first(data) {
            Ok((first, user)) => {
                self.send(sasl::Challenge { data: first }.into());
                self.phase = Outer::Server(Phase::Scram {
                    scram,
                    user,
                    failures: p.failures,
                });
            }
            Err(e) => self.auth_outcome(Err(e), p.failures),
        }
    }

    fn scram_final(
        &self,
        mut scram: ScramServer,
        user: &str,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, SaslError> {
        let last = scram.client_final(data, &self.config().password)?;
        // The proof is checked first: it says nothing about which names exist.
        if !self.is_account(user) {
            return Err(SaslError::NotAuthorized);
        }
        Ok(Some(last))
    }

    fn auth_outcome(&mut self, outcome: Result<Option<Vec<u8>>, SaslError>, failures: u32) {
        match outcome {
            Ok(extra) => {
                self.send(
                    sasl::Success {
                        data: extra.unwrap_or_default(),
                    }
                    .into(),
                );
                // RFC 6120 §6.4.6: both sides restart the stream; logged in, it may
                // carry stanzas of full size.
                let max = self.config().max_stanza;
                self.steps.push_back(Step::NewParser(max));
                self.header_sent = false;
                self.phase = Outer::Server(Phase::Header(Stage::Authenticated));
            }
            Err(e) => self.refused(condition(&e), failures),
        }
    }

    fn refused(&mut self, c: sasl::DefinedCondition, failures: u32) {
        self.send(failure(c));
        let failures = failures + 1;
        if failures >= MAX_AUTH_FAILURES {
            return self.fail(StreamError::new(
                StreamCondition::PolicyViolation,
                "too many failed authentication attempts",
            ));
        }
        self.phase = Outer::Server(Phase::Auth { failures });
    }

    fn bind(&mut self, el: Element) {
        let bind = match Iq::try_from(el) {
            Ok(Iq::Set { id, payload, .. }) if BindQuery::try_from(payload.clone()).is_ok() => {
                Some(id)
            }
            _ => None,
        };
        let Some(id) = bind else {
            return self.fail(StreamError::new(
                StreamCondition::NotAuthorized,
                "bind a resource first",
            ));
        };
        let account = self.config().account.clone();
        let Ok(jid) = FullJid::new(&account.to_string()) else {
            return self.fail(StreamError::new(
                StreamCondition::InternalServerError,
                "the account's JID cannot be written",
            ));
        };
        let result = Iq::Result {
            from: None,
            to: None,
            id,
            payload: Some(BindResponse { jid }.into()),
        };
        self.send(result.into());
        self.finish(Ok(Outcome::Session));
    }
}
