//! # xor-xmpp — the XMPP usage of RELOAD (XEP-0415 "XMPP Over RELOAD")
//!
//! "Send this stanza to juliet@capulet.lit" reaches every device Juliet has online,
//! directly:
//!
//! - [`location`]: the `XmppLocation` record and the XMPP-LOCATION Kind ([`kind`]):
//!   a dictionary at the hash of the bare JID, keyed by each device's Node-ID,
//!   writable only by a certificate whose `id-on-xmppAddr` is that JID;
//! - [`jid`]: JID preparation (PRECIS, RFC 7622);
//! - [`resolve`]: JID → destination lists, following address forwards;
//! - [`stream`]: RFC 6120 XML streams as a sans-IO parser and writer;
//! - [`fanout`]: who gets a stanza — every device of the recipient, `received`
//!   carbons to one's other devices, `sent` carbons (XEP-0280/0297), duplicates
//!   suppressed by XEP-0359 ids;
//! - `runtime` (feature, default): the node a game client links: registration, direct
//!   TLS streams after AppAttach(5222), reconnects, the `send`/`incoming` API.
//!
//! Everything except `runtime` is sans-IO: no sockets, no clock, no global RNG.

pub mod device;
pub mod fanout;
pub mod jid;
pub mod kind;
pub mod location;
pub mod resolve;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod sasl;
pub mod stanza;
pub mod stream;

pub use jid::{Jid, JidError};
pub use location::XmppLocation;

/// The RELOAD Application-ID of XMPP (§6.5.2; XEP-0415: "MUST be 5222").
pub const XMPP_APPLICATION: u16 = 5222;
