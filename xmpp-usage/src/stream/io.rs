//! An XML stream over any async byte stream (TCP, TLS): write bytes, read the next
//! [`StreamEvent`]. The runtime's direct streams and the node's local client port and
//! fallback client all use it.

use minidom::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use super::StreamEnd;
use super::negotiate::{Negotiation, Step};
use super::{StreamError, StreamEvent, StreamParser, writer};

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

    /// Runs `n` on this stream: writes what it asks, reads what it waits for, and
    /// returns at the first step only the caller can take — [`Step::Opened`],
    /// [`Step::StartTls`], [`Step::Authenticating`] — or at [`Step::Done`] (after a
    /// stream error was sent, the transport is shut down).
    pub async fn negotiate(&mut self, n: &mut Negotiation) -> Step {
        loop {
            while let Some(step) = n.poll() {
                match step {
                    Step::Write(bytes) => {
                        if let Err(e) = self.write(&bytes).await {
                            n.ended(StreamEnd::Io(e));
                        }
                    }
                    Step::NewParser(max) => self.parser = StreamParser::new(max),
                    Step::Done(result) => {
                        if matches!(result, Err(StreamEnd::Sent(_))) {
                            let _ = self.io.shutdown().await;
                        }
                        return Step::Done(result);
                    }
                    other => return other,
                }
            }
            match self.next().await {
                Ok(ev) => n.handle(ev),
                Err(end) => n.ended(end),
            }
        }
    }

    /// The transport, for a TLS upgrade (STARTTLS); unread input is dropped, as RFC
    /// 6120 §5.4.3.3 requires.
    pub fn into_inner(self) -> S {
        self.io
    }
}
