//! A stranger's bytes to the local port's negotiation (server role) and a hostile
//! server's bytes to the fallback client's (client role), in any chunking: nothing
//! panics, nothing but a wrong-password-free login ends in a session, and every
//! machine stops within its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xor_xmpp::Jid;
use xor_xmpp::stream::StreamParser;
use xor_xmpp::stream::negotiate::{
    ClientConfig, Negotiation, Outcome, PRE_AUTH_MAX_ELEMENT, Role, ServerConfig, Step,
};

fn run(role: Role, data: &[u8]) -> Option<Outcome> {
    let Some((&chunk, bytes)) = data.split_first() else {
        return None;
    };
    let chunk = usize::from(chunk).max(1);
    let mut n = Negotiation::new(role, 7);
    let mut parser = StreamParser::new(PRE_AUTH_MAX_ELEMENT);
    let mut outcome = None;
    let mut take = |n: &mut Negotiation, parser: &mut StreamParser| {
        while let Some(step) = n.poll() {
            match step {
                Step::NewParser(max) => *parser = StreamParser::new(max),
                Step::StartTls => n.tls_up(),
                Step::Authenticating => n.resume(),
                Step::Done(r) => outcome = Some(r.ok()),
                Step::Write(_) | Step::Opened => {}
            }
        }
    };
    take(&mut n, &mut parser);
    for piece in bytes.chunks(chunk) {
        if parser.feed(piece).is_err() {
            return None;
        }
        while let Some(ev) = parser.poll() {
            n.handle(ev);
            take(&mut n, &mut parser);
        }
    }
    outcome.flatten()
}

fuzz_target!(|data: &[u8]| {
    let jid = Jid::parse("alice@example.org/desk").unwrap();
    let server = Role::Server(ServerConfig {
        account: jid.clone(),
        // No input the fuzzer finds in reasonable time carries this password.
        password: "a password of forty random characters 9f3b2c".into(),
        max_stanza: 1 << 16,
    });
    assert_ne!(run(server, data), Some(Outcome::Session));
    let client = Role::Client(ClientConfig {
        jid: jid.bare(),
        password: "pw".into(),
        resource: "r".into(),
    });
    let _ = run(client, data);
});
