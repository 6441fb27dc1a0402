//! RFC 6120 XML streams, sans-IO: [`StreamParser`] turns bytes into a stream header,
//! top-level elements (stanzas and nonzas) and the close; [`writer`] makes the bytes of
//! headers, features, stanzas, stream errors and the close. The same code serves the
//! direct peer streams and the local client port.

mod error;
#[cfg(feature = "runtime")]
pub mod io;
pub mod negotiate;
mod parser;
pub mod writer;

pub use error::{StreamCondition, StreamEnd, StreamError};
pub use parser::{
    ATTRIBUTE_COST, ELEMENT_COST, MAX_DEPTH, StreamEvent, StreamHeader, StreamParser,
};

/// `http://etherx.jabber.org/streams`.
pub const NS_STREAMS: &str = xmpp_parsers::ns::STREAM;
/// `jabber:client`: the content namespace of every stream here (peer streams use it
/// too, as XEP-0174 does).
pub const NS_CLIENT: &str = xmpp_parsers::ns::JABBER_CLIENT;
/// `urn:ietf:params:xml:ns:xmpp-streams`.
pub const NS_STREAM_ERRORS: &str = xmpp_parsers::ns::XMPP_STREAMS;
/// `urn:ietf:params:xml:ns:xmpp-stanzas`.
pub const NS_STANZA_ERRORS: &str = xmpp_parsers::ns::XMPP_STANZAS;
