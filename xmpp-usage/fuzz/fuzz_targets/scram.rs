//! SASL from a stranger before login: any client-first and client-final message to the
//! server side, any server messages to the client side, and PLAIN. Nothing panics; a
//! proof is accepted only for the right password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xor_xmpp::sasl::{ScramClient, ScramHash, ScramServer, check_plain};

fuzz_target!(|data: &[u8]| {
    // Two messages separated by the first 0xff byte (not valid UTF-8, so never inside).
    let (first, second) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    for hash in [ScramHash::Sha256, ScramHash::Sha1] {
        let mut server = ScramServer::new(hash, "srvnonce", b"saltsaltsalt", 16);
        if server.client_first(first).is_ok() {
            // Random bytes never carry a valid proof for this password.
            assert!(server.client_final(second, "the password").is_err());
        }
        let mut client = ScramClient::new(hash, "alice", "pw", "nonce");
        if client.respond(first).is_ok() {
            let _ = client.verify(second);
        }
    }
    let _ = check_plain(data, |u, p| u == "alice" && p == "pw");
});
