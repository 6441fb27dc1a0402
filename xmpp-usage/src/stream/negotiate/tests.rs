//! The negotiation machines driven by hand: two of them talking through parsers in
//! memory, and one against hostile bytes.

use super::*;
use crate::stream::{StreamParser, writer};

/// One end: its machine, the parser of what it reads, what it wrote, how it ended.
struct End {
    n: Negotiation,
    parser: StreamParser,
    wrote: Vec<u8>,
    /// Bytes for the other end not yet handed over.
    pending: Vec<u8>,
    done: Option<Result<Outcome, StreamEnd>>,
}

impl End {
    fn new(role: Role, seed: u64) -> End {
        End {
            n: Negotiation::new(role, seed),
            parser: StreamParser::new(PRE_AUTH_MAX_ELEMENT),
            wrote: Vec::new(),
            pending: Vec::new(),
            done: None,
        }
    }

    /// Takes the machine's steps as a driver would (TLS and the throttle at once);
    /// returns the bytes for the other end.
    fn steps(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(step) = self.n.poll() {
            match step {
                Step::Write(b) => out.extend(b),
                Step::NewParser(max) => self.parser = StreamParser::new(max),
                Step::Opened => {}
                Step::StartTls => self.n.tls_up(),
                Step::Authenticating => self.n.resume(),
                Step::Done(r) => self.done = Some(r),
            }
        }
        self.wrote.extend(&out);
        out
    }

    /// Reads `bytes` and hands every event to the machine.
    fn read(&mut self, bytes: &[u8]) {
        if let Err(e) = self.parser.feed(bytes) {
            self.n.ended(StreamEnd::Sent(e));
            return;
        }
        while let Some(ev) = self.parser.poll() {
            self.n.handle(ev);
            // Steps are taken between events, as the driver does.
            let out = self.steps();
            self.pending.extend(out);
        }
    }

    fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// Runs two ends until neither has anything to say.
fn talk(a: &mut End, b: &mut End) {
    let mut to_b = a.steps();
    let mut to_a = b.steps();
    for _ in 0..100 {
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        b.read(&to_b);
        a.read(&to_a);
        to_b = a.take_pending();
        to_a = b.take_pending();
    }
    panic!("the negotiation did not settle");
}

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn server(password: &str) -> Role {
    Role::Server(ServerConfig {
        account: jid("alice@example.org/desk"),
        password: password.into(),
        max_stanza: 1 << 16,
    })
}

fn client(user: &str, password: &str) -> Role {
    Role::Client(ClientConfig {
        jid: jid(user),
        password: password.into(),
        resource: "game".into(),
    })
}

fn wrote(e: &End) -> String {
    String::from_utf8_lossy(&e.wrote).into_owned()
}

#[test]
fn the_fallback_client_logs_in_to_the_local_port_with_scram_sha_256_rfc6120_6_and_7() {
    let mut c = End::new(client("alice@example.org", "s3cret"), 1);
    let mut s = End::new(server("s3cret"), 2);
    talk(&mut c, &mut s);
    // The session is bound to the account's device, whatever resource was asked.
    assert_eq!(
        c.done.take().unwrap().unwrap(),
        Outcome::Bound(jid("alice@example.org/desk"))
    );
    assert_eq!(s.done.take().unwrap().unwrap(), Outcome::Session);
    let sw = wrote(&s);
    assert!(
        sw.contains("<required/>") || sw.contains("required"),
        "{sw}"
    );
    assert!(wrote(&c).contains("SCRAM-SHA-256"));
    // Three stream headers each way: plain, after TLS, after SASL.
    assert_eq!(sw.matches("<stream:stream").count(), 3);
    assert_eq!(wrote(&c).matches("<stream:stream").count(), 3);
}

#[test]
fn a_wrong_password_is_refused_and_the_client_says_why() {
    let mut c = End::new(client("alice@example.org", "guess"), 3);
    let mut s = End::new(server("s3cret"), 4);
    talk(&mut c, &mut s);
    let Some(Err(StreamEnd::AuthFailed(why))) = c.done.take() else {
        panic!("{:?}", c.done)
    };
    assert!(why.contains("failure"), "{why}");
    // The server waits for another try (3 in all).
    assert!(s.done.is_none());
    assert!(wrote(&s).contains("not-authorized"));
}

/// The local port's opening, up to SASL, from raw client bytes.
fn opened_port() -> End {
    let mut s = End::new(server("s3cret"), 5);
    s.read(&writer::header(None, Some("example.org"), None));
    s.read(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    s.read(&writer::header(None, Some("example.org"), None));
    s.steps();
    s
}

#[test]
fn three_failed_attempts_close_the_stream_with_policy_violation() {
    let mut s = opened_port();
    let wrong = writer::element(
        &xmpp_parsers::sasl::Auth {
            mechanism: xmpp_parsers::sasl::Mechanism::Plain,
            data: crate::sasl::plain("alice", "nope"),
        }
        .into(),
    );
    for attempt in 1..=MAX_AUTH_FAILURES {
        assert!(s.done.is_none(), "closed before attempt {attempt}");
        s.read(&wrong);
    }
    let Some(Err(StreamEnd::Sent(e))) = s.done.take() else {
        panic!("{:?}", s.done)
    };
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
    assert_eq!(wrote(&s).matches("not-authorized").count(), 3);
}

#[test]
fn plain_with_the_right_password_logs_in() {
    let mut s = opened_port();
    let auth = writer::element(
        &xmpp_parsers::sasl::Auth {
            mechanism: xmpp_parsers::sasl::Mechanism::Plain,
            data: crate::sasl::plain("alice@example.org", "s3cret"),
        }
        .into(),
    );
    s.read(&auth);
    assert!(wrote(&s).contains("<success"), "{}", wrote(&s));
}

#[test]
fn an_unknown_mechanism_is_invalid_mechanism_rfc6120_6_5_4() {
    let mut s = opened_port();
    s.read(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>");
    assert!(wrote(&s).contains("invalid-mechanism"), "{}", wrote(&s));
    assert!(s.done.is_none());
}

#[test]
fn a_stanza_before_starttls_is_refused_after_our_header_rfc6120_4_9_1_1() {
    let mut s = End::new(server("pw"), 6);
    s.read(&writer::header(None, Some("example.org"), None));
    s.read(b"<message to='bob@example.org'><body>hi</body></message>");
    let Some(Err(StreamEnd::Sent(e))) = s.done.take() else {
        panic!()
    };
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
    assert!(!wrote(&s).contains("<body>"));
}

#[test]
fn a_stream_to_another_domain_is_host_unknown_with_a_header_first() {
    let mut s = End::new(server("pw"), 7);
    s.read(&writer::header(None, Some("evil.example"), None));
    let Some(Err(StreamEnd::Sent(e))) = s.done.take() else {
        panic!()
    };
    assert_eq!(e.condition, StreamCondition::HostUnknown);
    let w = wrote(&s);
    assert!(w.find("<stream:stream").unwrap() < w.find("host-unknown").unwrap());
}

#[test]
fn the_client_refuses_a_server_without_starttls() {
    let mut c = End::new(client("alice@example.org", "pw"), 8);
    c.steps();
    c.read(&writer::header(Some("example.org"), None, Some("x")));
    c.read(&writer::features(&[]));
    let Some(Err(StreamEnd::Refused(why))) = c.done.take() else {
        panic!()
    };
    assert!(why.contains("STARTTLS"));
    assert!(!wrote(&c).contains("auth"));
}

#[test]
fn a_timeout_is_connection_timeout() {
    let mut s = End::new(server("pw"), 9);
    s.n.timed_out("no stream header");
    s.steps();
    let Some(Err(StreamEnd::Sent(e))) = s.done.take() else {
        panic!()
    };
    assert_eq!(e.condition, StreamCondition::ConnectionTimeout);
}

fn peers(vouched_by_responder: &str, vouched_by_initiator: &str) -> (End, End) {
    let initiator = Role::PeerInitiator {
        me: jid("alice@example.org/desk"),
        expect: jid("bob@example.org"),
        vouched: vec![jid(vouched_by_initiator)],
    };
    let responder = Role::PeerResponder {
        me: jid("bob@example.org/phone"),
        vouched: vec![jid(vouched_by_responder)],
    };
    (End::new(initiator, 10), End::new(responder, 11))
}

#[test]
fn peer_streams_negotiate_xep0415() {
    let (mut i, mut r) = peers("alice@example.org", "bob@example.org");
    talk(&mut i, &mut r);
    assert_eq!(
        i.done.take().unwrap().unwrap(),
        Outcome::Peer(jid("bob@example.org/phone"))
    );
    assert_eq!(
        r.done.take().unwrap().unwrap(),
        Outcome::Peer(jid("alice@example.org/desk"))
    );
}

#[test]
fn a_peer_header_naming_a_jid_its_certificate_lacks_is_invalid_from() {
    // The responder's view of the initiator's certificate says mallory.
    let (mut i, mut r) = peers("mallory@example.org", "bob@example.org");
    talk(&mut i, &mut r);
    let Some(Err(StreamEnd::Sent(e))) = r.done.take() else {
        panic!()
    };
    assert_eq!(e.condition, StreamCondition::InvalidFrom);
    assert!(matches!(i.done, Some(Err(StreamEnd::Received(_)))));
}

#[test]
fn an_initiator_whose_peer_certificate_is_someone_else_stops_at_once() {
    let (mut i, _) = peers("alice@example.org", "mallory@example.org");
    i.steps();
    let Some(Err(StreamEnd::Sent(e))) = i.done.take() else {
        panic!()
    };
    assert_eq!(e.condition, StreamCondition::NotAuthorized);
}

/// The features of each stream the local port offers, as written.
fn features_written(s: &End) -> Vec<String> {
    let w = wrote(s);
    w.split("<stream:features")
        .skip(1)
        .map(|f| f[..f.find("</stream:features>").unwrap()].to_owned())
        .collect()
}

#[test]
fn the_port_offers_starttls_then_mechanisms_by_preference_then_binding() {
    let mut c = End::new(client("alice@example.org", "s3cret"), 12);
    let mut s = End::new(server("s3cret"), 13);
    talk(&mut c, &mut s);
    let f = features_written(&s);
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(
        f[0].contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{}",
        f[0]
    );
    assert!(!f[0].contains("mechanism"), "{}", f[0]);
    let order: Vec<usize> = ["SCRAM-SHA-256", "SCRAM-SHA-1<", "PLAIN"]
        .iter()
        .map(|m| f[1].find(m).unwrap_or_else(|| panic!("{m} in {}", f[1])))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", f[1]);
    assert_eq!(f[1].matches("<mechanisms").count(), 1, "{}", f[1]);
    assert!(
        f[2].contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{}",
        f[2]
    );
    assert!(f[2].contains("<optional/>"), "{}", f[2]);
    assert!(
        !f[2].contains("mechanism") && !f[2].contains("starttls"),
        "{}",
        f[2]
    );
}
