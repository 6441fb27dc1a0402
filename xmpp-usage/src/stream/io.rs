//! An XML stream over any async byte stream (TCP, TLS): write bytes, read the next
//! [`StreamEvent`]. The runtime's direct streams and the node's local client port and
//! fallback client all use it.

use minidom::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{StreamError, StreamEvent, StreamParser, writer};

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
}

/// One XML stream over `S`.
#[derive(Debug)]
pub struct XmlIo<S> {
    /// The transport.
    pub io: S,
    /// The parser of the incoming direction.
    pub parser: StreamParser,
    /// The read buffer.
    pub buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> XmlIo<S> {
    /// A stream over `io` refusing incoming elements larger than `max_element`.
    pub fn new(io: S, max_element: usize) -> XmlIo<S> {
        XmlIo {
            io,
            parser: StreamParser::new(max_element),
            buf: vec![0u8; 16 * 1024],
        }
    }

    /// Writes and flushes `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Writes one element.
    pub async fn send(&mut self, el: &Element) -> std::io::Result<()> {
        self.write(&writer::element(el)).await
    }

    /// Reads until the parser has an event. A parse error is answered with the stream
    /// error and reported.
    pub async fn next(&mut self) -> Result<StreamEvent, StreamEnd> {
        loop {
            if let Some(ev) = self.parser.poll() {
                return Ok(ev);
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Err(StreamEnd::Eof);
            }
            if let Err(e) = self.parser.feed(&self.buf[..n]) {
                let _ = self.write(&writer::error(&e)).await;
                return Err(StreamEnd::Sent(e));
            }
        }
    }

    /// Sends stream error `e`, closes, and says so.
    pub async fn fail(&mut self, e: StreamError) -> StreamEnd {
        let _ = self.write(&writer::error(&e)).await;
        let _ = self.io.shutdown().await;
        StreamEnd::Sent(e)
    }

    /// The transport, for a TLS upgrade (STARTTLS); unread input is dropped, as RFC
    /// 6120 §5.4.3.3 requires.
    pub fn into_inner(self) -> S {
        self.io
    }
}
