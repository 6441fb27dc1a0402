//! SASL for the local client port and the fallback client: PLAIN (RFC 4616, only over
//! TLS), SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), both sides, sans-IO.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac, pbkdf2};

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The exchange is malformed (RFC 6120 `malformed-request` / `incorrect-encoding`).
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// Wrong user or password (`not-authorized`).
    #[error("not authorized")]
    NotAuthorized,
}

fn malformed(what: &str) -> SaslError {
    SaslError::Malformed(what.into())
}

/// Checks a PLAIN message `[authzid] NUL authcid NUL passwd`; returns the authcid.
pub fn check_plain(msg: &[u8], accept: impl Fn(&str, &str) -> bool) -> Result<String, SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(_authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("PLAIN needs authzid NUL authcid NUL password"));
    };
    if accept(user, pass) {
        Ok(user.to_owned())
    } else {
        Err(SaslError::NotAuthorized)
    }
}

/// A PLAIN message for `user` and `password`.
pub fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// The hash of a SCRAM mechanism: SCRAM-SHA-1 (RFC 5802) or SCRAM-SHA-256 (RFC 7677).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The hash of the mechanism called `name`.
    pub fn of_mechanism(name: &str) -> Option<ScramHash> {
        [ScramHash::Sha256, ScramHash::Sha1]
            .into_iter()
            .find(|h| h.mechanism() == name)
    }

    fn len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => hmac::HMAC_SHA256,
        };
        hmac::sign(&hmac::Key::new(algorithm, key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &digest::SHA256,
        };
        digest::digest(algorithm, data).as_ref().to_vec()
    }

    /// `SaltedPassword := Hi(Normalize(password), salt, i)` (RFC 5802 §3).
    fn salted(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let algorithm = match self {
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        };
        let mut out = vec![0u8; self.len()];
        let n = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(algorithm, n, salt, password.as_bytes(), &mut out);
        out
    }
}

/// Equality in time independent of where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// `a=b,c=d` attributes (RFC 5802 §5: a name is one ASCII letter). Anything else —
/// a multi-byte name included — is skipped, never sliced.
fn attrs(msg: &str) -> Vec<(char, &str)> {
    msg.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let mut c = k.chars();
            let name = c.next().filter(char::is_ascii_alphabetic)?;
            c.next().is_none().then_some((name, v))
        })
        .collect()
}

fn attr<'a>(list: &[(char, &'a str)], k: char) -> Option<&'a str> {
    list.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

/// SASLprep-lite for names: `=` and `,` are escaped as `=3D` and `=2C` (RFC 5802 §5.1).
fn unescape_name(n: &str) -> Result<String, SaslError> {
    let mut out = String::new();
    let mut rest = n;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return Err(malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server side of SCRAM.
#[derive(Debug)]
pub struct ScramServer {
    hash: ScramHash,
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
    state: ServerState,
}

#[derive(Debug)]
enum ServerState {
    Start,
    Sent {
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

impl ScramServer {
    /// A server exchange with its own nonce part, salt and iteration count (fresh
    /// random values per exchange).
    pub fn new(hash: ScramHash, server_nonce: &str, salt: &[u8], iterations: u32) -> ScramServer {
        ScramServer {
            hash,
            nonce: server_nonce.to_owned(),
            salt: salt.to_vec(),
            iterations,
            state: ServerState::Start,
        }
    }

    /// Reads `client-first-message`; returns `server-first-message` and the user.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), SaslError> {
        let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
        // gs2-header: "n,," or "y,," (no channel binding), authzid ignored.
        let rest = text
            .strip_prefix("n,")
            .or_else(|| text.strip_prefix("y,"))
            .ok_or_else(|| malformed("channel binding is not supported"))?;
        let (_authz, bare) = rest
            .split_once(',')
            .ok_or_else(|| malformed("no client-first-message-bare"))?;
        let a = attrs(bare);
        let user = unescape_name(attr(&a, 'n').ok_or_else(|| malformed("no user name"))?)?;
        let cnonce = attr(&a, 'r').ok_or_else(|| malformed("no nonce"))?;
        if cnonce.is_empty() || cnonce.contains(',') {
            return Err(malformed("bad nonce"));
        }
        let server_first = format!(
            "r={cnonce}{},s={},i={}",
            self.nonce,
            STANDARD.encode(&self.salt),
            self.iterations
        );
        self.state = ServerState::Sent {
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
        };
        Ok((server_first.into_bytes(), user))
    }

    /// Reads `client-final-message` and checks the proof against `password`; returns
    /// `server-final-message`.
    pub fn client_final(&mut self, msg: &[u8], password: &str) -> Result<Vec<u8>, SaslError> {
        let ServerState::Sent {
            client_first_bare,
            server_first,
            ..
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(malformed("client-final before client-first"));
        };
        let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let a = attrs(without_proof);
        let nonce = attr(&a, 'r').ok_or_else(|| malformed("no nonce"))?;
        let expected_nonce = attr(&attrs(&server_first), 'r').unwrap_or_default();
        if nonce != expected_nonce {
            return Err(SaslError::NotAuthorized);
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| malformed("proof is not base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let h = self.hash;
        let salted = h.salted(password, &self.salt, self.iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let candidate = xor(&proof, &signature);
        if proof.len() != h.len() || !ct_eq(&h.hash(&candidate), &stored_key) {
            return Err(SaslError::NotAuthorized);
        }
        let server_key = h.hmac(&salted, b"Server Key");
        let server_sig = h.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_sig)).into_bytes())
    }
}

/// The client side of SCRAM.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    nonce: String,
    client_first_bare: String,
    expected_server_sig: Option<Vec<u8>>,
}

impl ScramClient {
    /// An exchange for `user` with a fresh `nonce`.
    pub fn new(hash: ScramHash, user: &str, password: &str, nonce: &str) -> ScramClient {
        let escaped = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={escaped},r={nonce}"),
            expected_server_sig: None,
        }
    }

    /// `client-first-message`.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Reads `server-first-message`; returns `client-final-message`.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text = std::str::from_utf8(server_first).map_err(|_| malformed("not UTF-8"))?;
        let a = attrs(text);
        let nonce = attr(&a, 'r').ok_or_else(|| malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) {
            return Err(malformed("the server's nonce does not extend ours"));
        }
        let salt = STANDARD
            .decode(attr(&a, 's').ok_or_else(|| malformed("no salt"))?)
            .map_err(|_| malformed("salt is not base64"))?;
        let iterations: u32 = attr(&a, 'i')
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=1_000_000).contains(i))
            .ok_or_else(|| malformed("bad iteration count"))?;
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let h = self.hash;
        let salted = h.salted(&self.password, &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &signature);
        let server_key = h.hmac(&salted, b"Server Key");
        self.expected_server_sig = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks `server-final-message` (mutual authentication).
    pub fn verify(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let text = std::str::from_utf8(server_final).map_err(|_| malformed("not UTF-8"))?;
        let v = text
            .strip_prefix("v=")
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(SaslError::NotAuthorized)?;
        match &self.expected_server_sig {
            Some(sig) if *sig == v => Ok(()),
            _ => Err(SaslError::NotAuthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example exchange of RFC 5802 §5.
    #[test]
    fn the_rfc_5802_example_exchange() {
        let salt = STANDARD.decode("QSXCR+Q6sek8bf92").unwrap();
        let mut server = ScramServer::new(ScramHash::Sha1, "3rfcNHYJY1ZVvWVs7j", &salt, 4096);
        let mut client = ScramClient::new(
            ScramHash::Sha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(client.first(), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let (server_first, user) = server.client_first(&client.first()).unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            server_first,
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let client_final = client.respond(&server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        let server_final = server.client_final(&client_final, "pencil").unwrap();
        assert_eq!(server_final, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
        client.verify(&server_final).unwrap();
    }

    /// The example exchange of RFC 7677 §3 (SCRAM-SHA-256).
    #[test]
    fn the_rfc_7677_example_exchange() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mut server = ScramServer::new(
            ScramHash::Sha256,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            &salt,
            4096,
        );
        let mut client =
            ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (server_first, user) = server.client_first(&client.first()).unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8(server_first.clone()).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = client.respond(&server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = server.client_final(&client_final, "pencil").unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        client.verify(&server_final).unwrap();
        // A SHA-1 proof does not pass a SHA-256 exchange.
        let mut server = ScramServer::new(ScramHash::Sha256, "s", &salt, 4096);
        let mut sha1 = ScramClient::new(ScramHash::Sha1, "user", "pencil", "c");
        let (first, _) = server.client_first(&sha1.first()).unwrap();
        let fin = sha1.respond(&first).unwrap();
        assert_eq!(
            server.client_final(&fin, "pencil"),
            Err(SaslError::NotAuthorized)
        );
    }

    #[test]
    fn a_wrong_password_or_a_replayed_nonce_is_refused() {
        let salt = b"saltsaltsalt";
        let mut server = ScramServer::new(ScramHash::Sha1, "srv", salt, 1000);
        let mut client = ScramClient::new(ScramHash::Sha1, "alice", "wrong", "cli");
        let (first, _) = server.client_first(&client.first()).unwrap();
        let fin = client.respond(&first).unwrap();
        assert_eq!(
            server.client_final(&fin, "right"),
            Err(SaslError::NotAuthorized)
        );
        let mut server = ScramServer::new(ScramHash::Sha1, "srv2", salt, 1000);
        let (_, _) = server.client_first(&client.first()).unwrap();
        assert_eq!(
            server.client_final(&fin, "wrong"),
            Err(SaslError::NotAuthorized)
        );
        for junk in [&b""[..], b"p=", b"n,,", b"\xff\xfe", b"x,,n=a,r=b"] {
            let mut s = ScramServer::new(ScramHash::Sha1, "s", salt, 1000);
            assert!(matches!(s.client_first(junk), Err(SaslError::Malformed(_))));
        }
    }

    /// The session-task panic of the hardening issue (defect 5): a multi-byte
    /// attribute name used to be sliced in the middle of a character.
    #[test]
    fn multi_byte_attribute_names_are_malformed_not_a_panic() {
        let salt = b"saltsaltsalt";
        for junk in [
            "n,,\u{20ac}=x,r=abc",
            "n,,n=a,\u{e9}\u{e9}=x",
            "n,,n=\u{1f600},r=\u{e9}",
            "n,,=,r=x",
            "n,,n,r",
        ] {
            let mut s = ScramServer::new(ScramHash::Sha1, "s", salt, 1000);
            let _ = s.client_first(junk.as_bytes());
        }
        let mut s = ScramServer::new(ScramHash::Sha1, "s", salt, 1000);
        let (first, user) = s
            .client_first("n,,\u{20ac}=x,n=alice,r=abc".as_bytes())
            .unwrap();
        assert_eq!(user, "alice", "the unknown attribute is skipped");
        assert!(first.starts_with(b"r=abcs"));
        for fin in [
            "\u{1f600}=1,p=AAAA",
            "c=biws,r=\u{e9}\u{e9},p=\u{e9}",
            "p=,p=",
        ] {
            let mut s = ScramServer::new(ScramHash::Sha1, "s", salt, 1000);
            s.client_first(b"n,,n=a,r=abc").unwrap();
            assert!(s.client_final(fin.as_bytes(), "pw").is_err());
        }
        let mut c = ScramClient::new(ScramHash::Sha1, "alice", "pw", "abc");
        assert!(
            c.respond("r=abc\u{e9}\u{e9}\u{e9},\u{e9}=1,s=c2FsdA==,i=4096".as_bytes())
                .is_ok()
        );
    }

    #[test]
    fn plain_checks_user_and_password() {
        let ok = |u: &str, p: &str| u == "alice" && p == "secret";
        assert_eq!(check_plain(&plain("alice", "secret"), ok).unwrap(), "alice");
        assert_eq!(
            check_plain(&plain("alice", "nope"), ok),
            Err(SaslError::NotAuthorized)
        );
        assert!(matches!(
            check_plain(b"alice", ok),
            Err(SaslError::Malformed(_))
        ));
    }
}
