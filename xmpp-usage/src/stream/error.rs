//! Stream error conditions (RFC 6120 §4.9.3).

use std::fmt;

/// A defined stream error condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamCondition {
    /// `bad-format`.
    BadFormat,
    /// `connection-timeout`.
    ConnectionTimeout,
    /// `host-unknown`.
    HostUnknown,
    /// `internal-server-error`.
    InternalServerError,
    /// `invalid-from`: a `from` that the stream is not authorised for.
    InvalidFrom,
    /// `invalid-namespace`.
    InvalidNamespace,
    /// `not-authorized`.
    NotAuthorized,
    /// `not-well-formed`.
    NotWellFormed,
    /// `policy-violation` (e.g. a stanza over the size limit).
    PolicyViolation,
    /// `resource-constraint`.
    ResourceConstraint,
    /// `system-shutdown`.
    SystemShutdown,
    /// `unsupported-stanza-type`.
    UnsupportedStanzaType,
    /// `unsupported-version`.
    UnsupportedVersion,
    /// `undefined-condition` (also what a received condition this list lacks reads as).
    UndefinedCondition,
}

impl StreamCondition {
    /// The element name.
    pub fn name(self) -> &'static str {
        use StreamCondition::*;
        match self {
            BadFormat => "bad-format",
            ConnectionTimeout => "connection-timeout",
            HostUnknown => "host-unknown",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            SystemShutdown => "system-shutdown",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
            UndefinedCondition => "undefined-condition",
        }
    }

    /// The condition with this element name.
    pub fn from_name(name: &str) -> Option<StreamCondition> {
        use StreamCondition::*;
        [
            BadFormat,
            ConnectionTimeout,
            HostUnknown,
            InternalServerError,
            InvalidFrom,
            InvalidNamespace,
            NotAuthorized,
            NotWellFormed,
            PolicyViolation,
            ResourceConstraint,
            SystemShutdown,
            UnsupportedStanzaType,
            UnsupportedVersion,
            UndefinedCondition,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// A stream error: the condition and a human-readable text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StreamError {
    /// The condition.
    pub condition: StreamCondition,
    /// Explanation.
    pub text: String,
}

impl StreamError {
    /// A stream error.
    pub fn new(condition: StreamCondition, text: impl Into<String>) -> StreamError {
        StreamError {
            condition,
            text: text.into(),
        }
    }

    /// The stream error a peer sent (`<stream:error/>`, RFC 6120 §4.9.2), if `el` is
    /// one. A condition this list lacks reads as `undefined-condition`.
    pub fn from_element(el: &minidom::Element) -> Option<StreamError> {
        if !el.is("error", super::NS_STREAMS) {
            return None;
        }
        let mut condition = StreamCondition::UndefinedCondition;
        let mut text = String::new();
        for child in el.children().filter(|c| c.ns() == super::NS_STREAM_ERRORS) {
            match child.name() {
                "text" => text = child.text(),
                name => {
                    condition = StreamCondition::from_name(name)
                        .unwrap_or(StreamCondition::UndefinedCondition)
                }
            }
        }
        Some(StreamError { condition, text })
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.condition.name(), self.text)
    }
}

/// Why an XML stream ended, or its negotiation could not go on.
#[derive(Debug, thiserror::Error)]
pub enum StreamEnd {
    /// Reading or writing the transport failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection without closing the stream.
    #[error("the peer closed the connection")]
    Eof,
    /// The peer closed the stream (RFC 6120 §4.4).
    #[error("closed by the peer")]
    ClosedByPeer,
    /// This end closed the stream.
    #[error("closed")]
    Closed,
    /// This end sent this stream error and closed.
    #[error("stream error sent: {0}")]
    Sent(StreamError),
    /// The peer sent this stream error.
    #[error("stream error received: {0}")]
    Received(StreamError),
    /// Something else arrived than the negotiation allows at this point.
    #[error("expected {0}")]
    Unexpected(&'static str),
    /// The other end refused what this end needs, or answered against the protocol
    /// (the fallback client: no STARTTLS offered, binding refused…).
    #[error("{0}")]
    Refused(String),
    /// SASL failed on this end's side: the server refused the credentials, or could
    /// not prove it knows the password (SCRAM).
    #[error("authentication failed: {0}")]
    AuthFailed(String),
}
