//! RFC 6120 XML streams, sans-IO: [`StreamParser`] turns bytes into a stream header,
//! top-level elements (stanzas and nonzas) and the close; [`writer`] makes the bytes of
//! headers, features, stanzas, stream errors and the close. The same code serves the
//! direct peer streams and the local client port.

mod error;
#[cfg(feature = "runtime")]
pub mod io;
mod parser;
pub mod writer;

pub use error::{StreamCondition, StreamError};
pub use parser::{
    ATTRIBUTE_COST, ELEMENT_COST, MAX_DEPTH, StreamEvent, StreamHeader, StreamParser,
};

/// `http://etherx.jabber.org/streams`.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// `jabber:client`: the content namespace of every stream here (peer streams use it
/// too, as XEP-0174 does).
pub const NS_CLIENT: &str = "jabber:client";
/// `urn:ietf:params:xml:ns:xmpp-streams`.
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// `urn:ietf:params:xml:ns:xmpp-stanzas`.
pub const NS_STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
