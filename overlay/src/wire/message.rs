//! Whole messages (§6.3): forwarding header, contents, security block.

use bytes::{Bytes, BytesMut};

use super::codec::{
    Decode, DecodeError, DecodeErrorKind, Encode, EncodeError, decode_all, decode_prefix,
};
use super::{ForwardingHeader, MessageContents, SecurityBlock};

/// Byte offset of the `length` field in the forwarding header.
const LENGTH_OFFSET: usize = 16;

/// A message as the forwarding layer sees it: a parsed header and the bytes after it
/// (contents and security block, or one fragment of them). Intermediate peers only ever
/// touch this form (§6.1), so unknown message codes and extensions pass through intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The forwarding header.
    pub header: ForwardingHeader,
    /// Everything after the header.
    pub payload: Bytes,
}

impl RawMessage {
    /// Decodes one message (or fragment) whose `length` must equal `bytes.len()`.
    pub fn decode(bytes: &[u8]) -> Result<RawMessage, DecodeError> {
        let (rest, (header, length)) = decode_prefix(bytes, ForwardingHeader::parse_with_length)?;
        if length as usize != bytes.len() {
            return Err(DecodeError {
                field: "length",
                offset: LENGTH_OFFSET,
                kind: DecodeErrorKind::LengthOverrun {
                    declared: length as usize,
                    available: bytes.len(),
                },
            });
        }
        Ok(RawMessage {
            header,
            payload: Bytes::copy_from_slice(rest),
        })
    }

    /// The message code (§6.3.3), when this is the first (or only) fragment: the
    /// contents start with it.
    pub fn code(&self) -> Option<super::MessageCode> {
        (self.header.fragment.offset() == 0 && self.payload.len() >= 2)
            .then(|| super::MessageCode(u16::from_be_bytes([self.payload[0], self.payload[1]])))
    }

    /// Encodes header and payload, filling in `length`.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(self.header.encoded_len() + self.payload.len());
        self.header
            .encode_with_payload_len(&mut out, self.payload.len())?;
        out.extend_from_slice(&self.payload);
        Ok(out.freeze())
    }

    /// Interprets the payload of a complete (unfragmented or reassembled) message.
    pub fn into_message(self) -> Result<Message, DecodeError> {
        if !self.header.fragment.is_whole() {
            return Err(DecodeError {
                field: "fragment",
                offset: 0,
                kind: DecodeErrorKind::Invalid("a fragment must be reassembled before decoding"),
            });
        }
        let header = self.header;
        let (contents, security) = decode_all(&self.payload, |i| {
            let (i, contents) = MessageContents::parse(i)?;
            let (i, security) = SecurityBlock::parse(i)?;
            Ok((i, (contents, security)))
        })
        .map_err(|mut e| {
            e.offset += header.encoded_len();
            e
        })?;
        Ok(Message {
            header,
            contents,
            security,
        })
    }
}

/// A complete RELOAD message (§6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The forwarding header.
    pub header: ForwardingHeader,
    /// Code, body and extensions.
    pub contents: MessageContents,
    /// Certificates and signature.
    pub security: SecurityBlock,
}

impl Message {
    /// Decodes a whole message.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        RawMessage::decode(bytes)?.into_message()
    }

    /// Encodes the message, computing the header's `length`.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        self.to_raw().and_then(|raw| raw.encode())
    }

    /// The forwarding-layer view of this message.
    pub fn to_raw(&self) -> Result<RawMessage, EncodeError> {
        let mut payload = BytesMut::new();
        self.contents.encode(&mut payload)?;
        self.security.encode(&mut payload)?;
        Ok(RawMessage {
            header: self.header.clone(),
            payload: payload.freeze(),
        })
    }
}
