//! The node's own C2S client logged in to a device's local port, as the end-to-end
//! tests use it.

use std::time::Duration;

use xor_node::c2s_client::{C2sClient, ClientOptions};
use xor_node::daemon::Device;
use xor_node::devnet::PASSWORD;
use xor_xmpp::Jid;
use xor_xmpp::stanza;
use xor_xmpp::stream::NS_CLIENT;

/// How long a test waits for a stanza.
pub const WAIT: Duration = Duration::from_secs(20);

/// Client options for `jid` with `password` at `d`'s local port (its self-signed
/// certificate accepted).
pub fn options(jid: &str, password: &str, d: &Device) -> ClientOptions {
    ClientOptions {
        jid: Jid::parse(jid).expect("test JID"),
        password: password.into(),
        resource: "test".into(),
        server: d.client_addr().expect("client port"),
        tls_roots: Vec::new(),
        insecure: true,
        timeout: Duration::from_secs(10),
    }
}

/// Logs in as `jid` with the development password.
pub async fn login(jid: &str, d: &Device) -> C2sClient {
    C2sClient::connect(&options(jid, PASSWORD, d))
        .await
        .expect("login")
}

/// The next message with a body from `c`, skipping everything else.
pub async fn next_body(c: &mut C2sClient) -> Option<String> {
    loop {
        let el = c.recv_within(WAIT).await?;
        if el.name() == "message"
            && el.attr("type") != Some("error")
            && let Some(b) = stanza::body(&el)
        {
            return Some(b);
        }
    }
}

/// Whether an XEP-0199 ping with `id` is answered with a result.
pub async fn ping(c: &mut C2sClient, id: &str) -> bool {
    let mut iq = stanza::element("iq", NS_CLIENT, &[("type", "get"), ("id", id)]);
    iq.append_child(stanza::element("ping", "urn:xmpp:ping", &[]));
    if c.send(&iq).await.is_err() {
        return false;
    }
    loop {
        match c.recv_within(WAIT).await {
            Some(el) if el.name() == "iq" && el.attr("id") == Some(id) => {
                return el.attr("type") == Some("result");
            }
            Some(_) => {}
            None => return false,
        }
    }
}
