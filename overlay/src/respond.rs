//! Building responses (§6.2.2, §6.3.3.1).

use bytes::Bytes;

use crate::id::NodeId;
use crate::identity::Credentials;
use crate::wire::{
    Destination, Encode, EncodeError, ErrorResponse, ForwardingHeader, Fragment, Message,
    MessageCode, MessageContents,
};

/// The destination list of a response: the node the request came from, then the
/// request's via list reversed (§6.1.2, §6.2.2).
pub fn response_destinations(via_list: &[Destination], previous_hop: NodeId) -> Vec<Destination> {
    std::iter::once(Destination::Node(previous_hop))
        .chain(via_list.iter().rev().cloned())
        .collect()
}

/// The forwarding header of a response to `request` received from `previous_hop`.
pub fn response_header(
    request: &ForwardingHeader,
    previous_hop: NodeId,
    ttl: u8,
) -> ForwardingHeader {
    ForwardingHeader {
        overlay: request.overlay,
        configuration_sequence: request.configuration_sequence,
        ttl,
        fragment: Fragment::WHOLE,
        transaction_id: request.transaction_id,
        // "This value SHOULD be set to zero for responses." (§6.3.2)
        max_response_length: 0,
        via_list: Vec::new(),
        destination_list: response_destinations(&request.via_list, previous_hop),
        options: Vec::new(),
    }
}

/// A signed message with `code` and `body` under `header`.
pub fn signed_message(
    header: ForwardingHeader,
    code: MessageCode,
    body: Bytes,
    creds: &Credentials,
) -> Result<Message, EncodeError> {
    let contents = MessageContents {
        code,
        body,
        extensions: Vec::new(),
    };
    let encoded = contents.to_bytes()?;
    let security = creds.security_block(header.overlay, header.transaction_id, &encoded);
    Ok(Message {
        header,
        contents,
        security,
    })
}

/// A signed error response to `request`, encoded.
pub fn error_response(
    request: &ForwardingHeader,
    previous_hop: NodeId,
    error: &ErrorResponse,
    creds: &Credentials,
    ttl: u8,
) -> Result<Bytes, EncodeError> {
    let header = response_header(request, previous_hop, ttl);
    signed_message(header, MessageCode::ERROR, error.to_bytes()?, creds)?.encode()
}
