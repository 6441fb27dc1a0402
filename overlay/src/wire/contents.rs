//! Message contents (§6.3.3): the message code, the body bytes, extensions, and the
//! error response (§6.3.3.1) with every error code of §14.9.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{
    Decode, Encode, EncodeError, Res, Width, boolean, invalid, list, opaque_bytes, put_list,
    put_opaque, u16_,
};

/// A message code (§6.3.3, registry §14.8). Requests are odd, the matching answer is the
/// request code plus one, `0xffff` is an error.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageCode(pub u16);

macro_rules! message_codes {
    ($($name:ident = $value:expr, $text:expr;)*) => {
        impl MessageCode {
            $(
                #[doc = concat!("`", $text, "`")]
                pub const $name: MessageCode = MessageCode($value);
            )*

            /// The registry name (§14.8), if the code is assigned.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

message_codes! {
    PROBE_REQ = 0x01, "probe_req";
    PROBE_ANS = 0x02, "probe_ans";
    ATTACH_REQ = 0x03, "attach_req";
    ATTACH_ANS = 0x04, "attach_ans";
    STORE_REQ = 0x07, "store_req";
    STORE_ANS = 0x08, "store_ans";
    FETCH_REQ = 0x09, "fetch_req";
    FETCH_ANS = 0x0a, "fetch_ans";
    FIND_REQ = 0x0d, "find_req";
    FIND_ANS = 0x0e, "find_ans";
    JOIN_REQ = 0x0f, "join_req";
    JOIN_ANS = 0x10, "join_ans";
    LEAVE_REQ = 0x11, "leave_req";
    LEAVE_ANS = 0x12, "leave_ans";
    UPDATE_REQ = 0x13, "update_req";
    UPDATE_ANS = 0x14, "update_ans";
    ROUTE_QUERY_REQ = 0x15, "route_query_req";
    ROUTE_QUERY_ANS = 0x16, "route_query_ans";
    PING_REQ = 0x17, "ping_req";
    PING_ANS = 0x18, "ping_ans";
    STAT_REQ = 0x19, "stat_req";
    STAT_ANS = 0x1a, "stat_ans";
    APP_ATTACH_REQ = 0x1d, "app_attach_req";
    APP_ATTACH_ANS = 0x1e, "app_attach_ans";
    CONFIG_UPDATE_REQ = 0x21, "config_update_req";
    CONFIG_UPDATE_ANS = 0x22, "config_update_ans";
    EXP_A_REQ = 0x23, "exp_a_req";
    EXP_A_ANS = 0x24, "exp_a_ans";
    EXP_B_REQ = 0x25, "exp_b_req";
    EXP_B_ANS = 0x26, "exp_b_ans";
    ERROR = 0xffff, "error";
}

impl MessageCode {
    /// Whether this is a request (odd codes in `0x1..=0x7fff`).
    pub fn is_request(self) -> bool {
        (1..=0x7fff).contains(&self.0) && !self.0.is_multiple_of(2)
    }

    /// Whether this is a success answer or an error.
    pub fn is_response(self) -> bool {
        self == MessageCode::ERROR || ((1..=0x7fff).contains(&self.0) && self.0.is_multiple_of(2))
    }

    /// The success answer code for a request code.
    pub fn answer(self) -> MessageCode {
        MessageCode(self.0.wrapping_add(1))
    }
}

impl fmt::Debug for MessageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "message_code({:#06x})", self.0),
        }
    }
}

impl fmt::Display for MessageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A message extension (§6.3.3). Unknown, non-critical extensions are kept as bytes so
/// that a message survives decode → encode unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExtension {
    /// `MessageExtensionType` (§14.14).
    pub kind: u16,
    /// Whether the recipient must understand it (else Error_Unknown_Extension).
    pub critical: bool,
    /// The extension contents.
    pub contents: Bytes,
}

impl Encode for MessageExtension {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u16(self.kind);
        out.put_u8(self.critical as u8);
        put_opaque(out, Width::U32, "extension_contents", &self.contents)
    }
}

impl Decode for MessageExtension {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, kind) = u16_(i, "extension_type")?;
        if kind == 0 {
            return invalid(i, "extension_type", "invalidMessageExtensionType(0)");
        }
        let (rest, critical) = boolean(rest, "critical")?;
        let (rest, contents) = opaque_bytes(rest, Width::U32, "extension_contents")?;
        Ok((
            rest,
            MessageExtension {
                kind,
                critical,
                contents,
            },
        ))
    }
}

/// `MessageContents` (§6.3.3). The body stays as bytes here: intermediate peers forward
/// it untouched, and [`super::Body::parse`] interprets it at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContents {
    /// What the body is.
    pub code: MessageCode,
    /// The encoded body for `code`.
    pub body: Bytes,
    /// Message extensions.
    pub extensions: Vec<MessageExtension>,
}

impl Encode for MessageContents {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u16(self.code.0);
        put_opaque(out, Width::U32, "message_body", &self.body)?;
        put_list(out, Width::U32, "extensions", &self.extensions)
    }
}

impl Decode for MessageContents {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, code) = u16_(i, "message_code")?;
        if code == 0 {
            return invalid(i, "message_code", "invalidMessageCode(0)");
        }
        let (rest, body) = opaque_bytes(rest, Width::U32, "message_body")?;
        let (rest, extensions) = list(rest, Width::U32, "extensions", MessageExtension::parse)?;
        Ok((
            rest,
            MessageContents {
                code: MessageCode(code),
                body,
                extensions,
            },
        ))
    }
}

macro_rules! error_codes {
    ($($variant:ident = $value:expr, $text:expr;)*) => {
        /// The RELOAD error codes (§6.3.3.1, registry §14.9). This is the on-the-wire
        /// code, kept apart from the Rust error enums of each layer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $text, "`")]
                $variant,
            )*
            /// A code not assigned by RFC 6940 (kept for forwarding and display).
            Other(u16),
        }

        impl ErrorCode {
            /// The 16-bit wire value.
            pub fn to_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $value,)*
                    ErrorCode::Other(v) => v,
                }
            }

            /// The typed code for a wire value.
            pub fn from_u16(v: u16) -> ErrorCode {
                match v {
                    $($value => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other),
                }
            }

            /// The registry name, e.g. `Error_Forbidden`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Other(_) => "Error_Unassigned",
                }
            }
        }
    };
}

error_codes! {
    Forbidden = 0x02, "Error_Forbidden";
    NotFound = 0x03, "Error_Not_Found";
    RequestTimeout = 0x04, "Error_Request_Timeout";
    GenerationCounterTooLow = 0x05, "Error_Generation_Counter_Too_Low";
    IncompatibleWithOverlay = 0x06, "Error_Incompatible_with_Overlay";
    UnsupportedForwardingOption = 0x07, "Error_Unsupported_Forwarding_Option";
    DataTooLarge = 0x08, "Error_Data_Too_Large";
    DataTooOld = 0x09, "Error_Data_Too_Old";
    TtlExceeded = 0x0a, "Error_TTL_Exceeded";
    MessageTooLarge = 0x0b, "Error_Message_Too_Large";
    UnknownKind = 0x0c, "Error_Unknown_Kind";
    UnknownExtension = 0x0d, "Error_Unknown_Extension";
    ResponseTooLarge = 0x0e, "Error_Response_Too_Large";
    ConfigTooOld = 0x0f, "Error_Config_Too_Old";
    ConfigTooNew = 0x10, "Error_Config_Too_New";
    InProgress = 0x11, "Error_In_Progress";
    ExpA = 0x12, "Error_Exp_A";
    ExpB = 0x13, "Error_Exp_B";
    InvalidMessage = 0x14, "Error_Invalid_Message";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Other(v) => write!(f, "Error_Unassigned({v:#06x})"),
            known => f.write_str(known.name()),
        }
    }
}

/// `ErrorResponse` (§6.3.3.1): the body of a message with code `0xffff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// What went wrong.
    pub code: ErrorCode,
    /// Diagnostic bytes: UTF-8 text unless the error defines a structure (e.g. the
    /// unknown Kind-IDs of Error_Unknown_Kind, §7.4.1.2).
    pub info: Bytes,
}

impl ErrorResponse {
    /// An error with a human-readable explanation.
    pub fn new(code: ErrorCode, info: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            code,
            info: Bytes::from(info.into()),
        }
    }

    /// `error_info` as text, if it is UTF-8.
    pub fn info_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.info).ok()
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info_text() {
            Some(text) if !text.is_empty() => write!(f, "{}: {}", self.code, text),
            _ => write!(f, "{}", self.code),
        }
    }
}

impl Encode for ErrorResponse {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u16(self.code.to_u16());
        put_opaque(out, Width::U16, "error_info", &self.info)
    }
}

impl Decode for ErrorResponse {
    fn parse(i: &[u8]) -> Res<'_, Self> {
        let (rest, code) = u16_(i, "error_code")?;
        if code == 0 {
            return invalid(i, "error_code", "invalidErrorCode(0)");
        }
        let (rest, info) = opaque_bytes(rest, Width::U16, "error_info")?;
        Ok((
            rest,
            ErrorResponse {
                code: ErrorCode::from_u16(code),
                info,
            },
        ))
    }
}
