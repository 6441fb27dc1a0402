//! The one codec pattern every wire structure follows.
//!
//! Decoding uses `nom` over a byte slice with [`WireError`] as the error type; every
//! length prefix is compared with the bytes that remain before anything is sliced, and
//! lists grow one parsed element at a time, so decoding never allocates more than the
//! input could justify. The public entry points ([`Decode::decode`],
//! [`decode_all`]) turn the internal error into a [`DecodeError`] naming the field and
//! the byte offset from the start of the input.
//!
//! Encoding writes into a [`BytesMut`]; a value that does not fit its length prefix is
//! an [`EncodeError`], never a silently truncated field.

use bytes::{BufMut, Bytes, BytesMut};
use nom::Parser;
use nom::error::{ErrorKind, ParseError};

/// Why some bytes could not be decoded, with the field and offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode `{field}` at byte {offset}: {kind}")]
pub struct DecodeError {
    /// The name of the innermost field being decoded (RFC 6940 spelling).
    pub field: &'static str,
    /// Byte offset from the start of the decoded input.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// The ways input can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ends in the middle of a field.
    #[error("input ends early")]
    Truncated,
    /// A length prefix promises more bytes than remain.
    #[error("length {declared} overruns the {available} bytes that remain")]
    LengthOverrun {
        /// The length the prefix declares.
        declared: usize,
        /// The bytes actually left.
        available: usize,
    },
    /// A value that the RFC does not allow here.
    #[error("{0}")]
    Invalid(&'static str),
    /// Bytes left over after a complete structure.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

/// A value too large for the length prefix the RFC gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode `{field}`: {len} bytes exceed the maximum of {max}")]
pub struct EncodeError {
    /// The field that overflowed.
    pub field: &'static str,
    /// Its encoded length.
    pub len: usize,
    /// The largest length its prefix can carry.
    pub max: usize,
}

/// The `nom` error type used inside the codec. `at` is the address of the input
/// position where decoding failed, so that nested parsers working on sub-slices still
/// report an offset relative to the whole input.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    field: &'static str,
    at: usize,
    kind: DecodeErrorKind,
}

impl<'a> ParseError<&'a [u8]> for WireError {
    fn from_error_kind(input: &'a [u8], kind: ErrorKind) -> Self {
        let kind = match kind {
            ErrorKind::Eof | ErrorKind::Complete => DecodeErrorKind::Truncated,
            _ => DecodeErrorKind::Invalid("malformed"),
        };
        WireError {
            field: "",
            at: input.as_ptr() as usize,
            kind,
        }
    }

    fn append(_: &'a [u8], _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// The result type of every parser in [`crate::wire`].
pub type Res<'a, T> = nom::IResult<&'a [u8], T, WireError>;

/// Encoding into a buffer.
pub trait Encode {
    /// Appends the wire form of `self` to `out`.
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError>;

    /// The wire form of `self` as one buffer.
    fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

/// Decoding from a byte slice.
pub trait Decode: Sized {
    /// The `nom` parser: consumes a prefix of `input`.
    fn parse(input: &[u8]) -> Res<'_, Self>;

    /// Decodes exactly `bytes`: trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_all(bytes, Self::parse)
    }
}

/// Runs `parser` over all of `bytes`, converting errors to [`DecodeError`].
pub fn decode_all<'a, T>(
    bytes: &'a [u8],
    parser: impl FnOnce(&'a [u8]) -> Res<'a, T>,
) -> Result<T, DecodeError> {
    let (rest, value) = decode_prefix(bytes, parser)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError {
            field: "message",
            offset: bytes.len() - rest.len(),
            kind: DecodeErrorKind::TrailingBytes(rest.len()),
        })
    }
}

/// Runs `parser` over a prefix of `bytes`, returning the rest.
pub fn decode_prefix<'a, T>(
    bytes: &'a [u8],
    parser: impl FnOnce(&'a [u8]) -> Res<'a, T>,
) -> Result<(&'a [u8], T), DecodeError> {
    parser(bytes).map_err(|e| to_decode_error(bytes, e))
}

fn to_decode_error(base: &[u8], e: nom::Err<WireError>) -> DecodeError {
    match e {
        nom::Err::Error(w) | nom::Err::Failure(w) => DecodeError {
            field: if w.field.is_empty() {
                "message"
            } else {
                w.field
            },
            offset: w.at.saturating_sub(base.as_ptr() as usize).min(base.len()),
            kind: w.kind,
        },
        nom::Err::Incomplete(_) => DecodeError {
            field: "message",
            offset: base.len(),
            kind: DecodeErrorKind::Truncated,
        },
    }
}

/// A failure of kind `kind` at the start of `input`.
pub fn fail<'a, T>(input: &'a [u8], field: &'static str, kind: DecodeErrorKind) -> Res<'a, T> {
    Err(nom::Err::Error(WireError {
        field,
        at: input.as_ptr() as usize,
        kind,
    }))
}

/// A value the RFC does not allow, reported at the start of `input`.
pub fn invalid<'a, T>(input: &'a [u8], field: &'static str, why: &'static str) -> Res<'a, T> {
    fail(input, field, DecodeErrorKind::Invalid(why))
}

/// Names the innermost field of an error that has no name yet.
fn named(e: nom::Err<WireError>, field: &'static str) -> nom::Err<WireError> {
    e.map(|mut w| {
        if w.field.is_empty() {
            w.field = field;
        }
        w
    })
}

macro_rules! int_parser {
    ($name:ident, $ty:ty, $nom:path) => {
        #[doc = concat!("A big-endian `", stringify!($ty), "` named `field`.")]
        pub fn $name<'a>(i: &'a [u8], field: &'static str) -> Res<'a, $ty> {
            $nom(i).map_err(|e| named(e, field))
        }
    };
}

int_parser!(u8_, u8, nom::number::complete::be_u8);
int_parser!(u16_, u16, nom::number::complete::be_u16);
int_parser!(u24_, u32, nom::number::complete::be_u24);
int_parser!(u32_, u32, nom::number::complete::be_u32);
int_parser!(u64_, u64, nom::number::complete::be_u64);

/// `Boolean` (§6.3.1.1): one byte, 0 or 1.
pub fn boolean<'a>(i: &'a [u8], field: &'static str) -> Res<'a, bool> {
    let (rest, b) = u8_(i, field)?;
    match b {
        0 => Ok((rest, false)),
        1 => Ok((rest, true)),
        _ => invalid(i, field, "a Boolean must be 0 or 1"),
    }
}

/// Exactly `N` bytes.
pub fn array<'a, const N: usize>(i: &'a [u8], field: &'static str) -> Res<'a, [u8; N]> {
    let (rest, bytes) = take(i, N, field)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok((rest, out))
}

/// Exactly `n` bytes.
pub fn take<'a>(i: &'a [u8], n: usize, field: &'static str) -> Res<'a, &'a [u8]> {
    nom::bytes::complete::take(n)
        .parse(i)
        .map_err(|e| named(e, field))
}

/// The width of a length prefix, from the range in `<0..2^k-1>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    U8,
    U16,
    U24,
    U32,
}

impl Width {
    const fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U24 => 3,
            Width::U32 => 4,
        }
    }

    const fn max(self) -> usize {
        match self {
            Width::U8 => 0xff,
            Width::U16 => 0xffff,
            Width::U24 => 0xff_ffff,
            Width::U32 => 0xffff_ffff,
        }
    }
}

fn length<'a>(i: &'a [u8], width: Width, field: &'static str) -> Res<'a, usize> {
    let (rest, n) = match width {
        Width::U8 => u8_(i, field).map(|(r, n)| (r, n as usize))?,
        Width::U16 => u16_(i, field).map(|(r, n)| (r, n as usize))?,
        Width::U24 => u24_(i, field).map(|(r, n)| (r, n as usize))?,
        Width::U32 => u32_(i, field).map(|(r, n)| (r, n as usize))?,
    };
    Ok((rest, n))
}

/// `opaque field<0..2^k-1>`: a length prefix, checked against what remains, then bytes.
pub fn opaque<'a>(i: &'a [u8], width: Width, field: &'static str) -> Res<'a, &'a [u8]> {
    let (rest, n) = length(i, width, field)?;
    if n > rest.len() {
        return fail(
            i,
            field,
            DecodeErrorKind::LengthOverrun {
                declared: n,
                available: rest.len(),
            },
        );
    }
    Ok((&rest[n..], &rest[..n]))
}

/// [`opaque`] copied into [`Bytes`].
pub fn opaque_bytes<'a>(i: &'a [u8], width: Width, field: &'static str) -> Res<'a, Bytes> {
    let (rest, b) = opaque(i, width, field)?;
    Ok((rest, Bytes::copy_from_slice(b)))
}

/// `T field<0..2^k-1>`: a byte-length prefix, then elements until those bytes are used.
pub fn list<'a, T>(
    i: &'a [u8],
    width: Width,
    field: &'static str,
    mut element: impl FnMut(&'a [u8]) -> Res<'a, T>,
) -> Res<'a, Vec<T>> {
    let (rest, body) = opaque(i, width, field)?;
    let out = elements(body, field, &mut element)?;
    Ok((rest, out))
}

/// Parses elements until `body` (a length-delimited region) is used up.
pub fn elements<'a, T>(
    mut body: &'a [u8],
    field: &'static str,
    mut element: impl FnMut(&'a [u8]) -> Res<'a, T>,
) -> Result<Vec<T>, nom::Err<WireError>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (next, value) = element(body).map_err(|e| named(e, field))?;
        if next.len() == body.len() {
            return invalid(body, field, "list element consumed no bytes").map(|(_, v)| v);
        }
        out.push(value);
        body = next;
    }
    Ok(out)
}

/// Requires `parser` to consume all of `i` (a length-delimited region).
pub fn exact<'a, T>(
    i: &'a [u8],
    field: &'static str,
    parser: impl FnOnce(&'a [u8]) -> Res<'a, T>,
) -> Result<T, nom::Err<WireError>> {
    let (rest, value) = parser(i).map_err(|e| named(e, field))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(nom::Err::Error(WireError {
            field,
            at: rest.as_ptr() as usize,
            kind: DecodeErrorKind::TrailingBytes(rest.len()),
        }))
    }
}

/// Writes a length prefix of `width`, runs `body`, then patches the prefix.
pub fn put_prefixed(
    out: &mut BytesMut,
    width: Width,
    field: &'static str,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let at = out.len();
    out.put_bytes(0, width.bytes());
    body(out)?;
    let len = out.len() - at - width.bytes();
    if len > width.max() {
        out.truncate(at);
        return Err(EncodeError {
            field,
            len,
            max: width.max(),
        });
    }
    let be = (len as u32).to_be_bytes();
    out[at..at + width.bytes()].copy_from_slice(&be[4 - width.bytes()..]);
    Ok(())
}

/// `opaque field<0..2^k-1>` from a slice.
pub fn put_opaque(
    out: &mut BytesMut,
    width: Width,
    field: &'static str,
    data: &[u8],
) -> Result<(), EncodeError> {
    if data.len() > width.max() {
        return Err(EncodeError {
            field,
            len: data.len(),
            max: width.max(),
        });
    }
    let be = (data.len() as u32).to_be_bytes();
    out.put_slice(&be[4 - width.bytes()..]);
    out.put_slice(data);
    Ok(())
}

/// `T field<0..2^k-1>` from a slice of encodable elements.
pub fn put_list<T: Encode>(
    out: &mut BytesMut,
    width: Width,
    field: &'static str,
    items: &[T],
) -> Result<(), EncodeError> {
    put_prefixed(out, width, field, |out| {
        items.iter().try_for_each(|item| item.encode(out))
    })
}
