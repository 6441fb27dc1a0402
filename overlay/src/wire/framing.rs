//! The framing header (§6.6.2) used on every overlay link hop.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, DecodeError, DecodeErrorKind, Encode, EncodeError, Res, Width, invalid, opaque_bytes,
    put_opaque, u8_, u32_,
};

/// `FramedMessageType` data(128).
pub const FRAME_DATA: u8 = 128;
/// `FramedMessageType` ack(129).
pub const FRAME_ACK: u8 = 129;
/// Largest message a data frame can carry: `opaque message<0..2^24-1>`.
pub const MAX_FRAMED_MESSAGE: usize = 0xff_ffff;

/// `FramedMessage` (§6.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramedMessage {
    /// A RELOAD message with its per-link sequence number.
    Data {
        /// Increments by one per frame sent on the connection, from zero.
        sequence: u32,
        /// The RELOAD message (or fragment).
        message: Bytes,
    },
    /// Acknowledges `ack_sequence`; `received` flags the 32 sequence numbers before it.
    Ack {
        /// The sequence number acknowledged.
        ack_sequence: u32,
        /// Bit `N-M` is set if sequence `M` (N-32 < M < N) was among the 32 most recent
        /// frames received.
        received: u32,
    },
}

impl Encode for FramedMessage {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            FramedMessage::Data { sequence, message } => {
                out.put_u8(FRAME_DATA);
                out.put_u32(*sequence);
                put_opaque(out, Width::U24, "message", message)
            }
            FramedMessage::Ack {
                ack_sequence,
                received,
            } => {
                out.put_u8(FRAME_ACK);
                out.put_u32(*ack_sequence);
                out.put_u32(*received);
                Ok(())
            }
        }
    }
}

impl Decode for FramedMessage {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u8_(i, "framed_message_type")?;
        match kind {
            FRAME_DATA => {
                let (rest, sequence) = u32_(rest, "sequence")?;
                let (rest, message) = opaque_bytes(rest, Width::U24, "message")?;
                Ok((rest, FramedMessage::Data { sequence, message }))
            }
            FRAME_ACK => {
                let (rest, ack_sequence) = u32_(rest, "ack_sequence")?;
                let (rest, received) = u32_(rest, "received")?;
                Ok((
                    rest,
                    FramedMessage::Ack {
                        ack_sequence,
                        received,
                    },
                ))
            }
            _ => invalid(
                i,
                "framed_message_type",
                "FramedMessageType must be data(128) or ack(129)",
            ),
        }
    }
}

/// Why a framed byte stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame announces a message larger than `max-message-size` (§6.6): answer
    /// Error_Message_Too_Large and close the link.
    #[error("framed message of {len} bytes exceeds max-message-size {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The stream is not a sequence of frames.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
}

/// Splits a reliable byte stream (TLS over TCP) into frames.
///
/// Feed received bytes into a `BytesMut` and call [`FrameDecoder::decode`] until it
/// returns `Ok(None)`. A data frame longer than `max_message_size` is refused as soon as
/// its length is known, before the rest of it arrives (§6.6).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_message_size: usize,
}

impl FrameDecoder {
    /// A decoder refusing messages above `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> FrameDecoder {
        FrameDecoder {
            max_message_size: max_message_size.min(MAX_FRAMED_MESSAGE),
        }
    }

    /// Takes one complete frame off the front of `buf`, if there is one.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<FramedMessage>, FrameError> {
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        let needed = match kind {
            FRAME_DATA => {
                if buf.len() < 8 {
                    return Ok(None);
                }
                let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
                if len > self.max_message_size {
                    return Err(FrameError::TooLarge {
                        len,
                        max: self.max_message_size,
                    });
                }
                8 + len
            }
            FRAME_ACK => 9,
            _ => {
                return Err(FrameError::Malformed(DecodeError {
                    field: "framed_message_type",
                    offset: 0,
                    kind: DecodeErrorKind::Invalid(
                        "FramedMessageType must be data(128) or ack(129)",
                    ),
                }));
            }
        };
        if buf.len() < needed {
            return Ok(None);
        }
        let frame = buf.split_to(needed);
        Ok(Some(FramedMessage::decode(&frame)?))
    }
}
