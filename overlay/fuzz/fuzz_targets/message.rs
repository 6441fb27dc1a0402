//! Parse → encode → reparse → assert equal, for a whole RELOAD message and its body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xor_overlay::wire::{Body, DataModel, Encode, KindId, Message, RawMessage};

/// The fuzzer sees one Kind of each data model, and treats the rest as unknown.
fn models(kind: KindId) -> Option<DataModel> {
    match kind % 4 {
        0 => Some(DataModel::Single),
        1 => Some(DataModel::Array),
        2 => Some(DataModel::Dictionary),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    // The forwarding layer's view must re-encode byte for byte (forwarding fidelity).
    if let Ok(raw) = RawMessage::decode(data) {
        let again = raw.encode().expect("a decoded message encodes");
        assert_eq!(&again[..], data, "forwarding re-encoding differs");
        assert_eq!(RawMessage::decode(&again).expect("reparses"), raw);
    }
    if let Ok(m) = Message::decode(data) {
        let again = m.encode().expect("a decoded message encodes");
        assert_eq!(&again[..], data);
        assert_eq!(Message::decode(&again).expect("reparses"), m);
    }
    // Bodies: the first two bytes pick the message code.
    if data.len() >= 2 {
        let code = xor_overlay::wire::MessageCode(u16::from_be_bytes([data[0], data[1]]));
        if let Ok(body) = Body::parse(code, &data[2..], &models) {
            let again = body.to_bytes().expect("a decoded body encodes");
            let reparsed = Body::parse(code, &again, &models).expect("reparses");
            assert_eq!(reparsed, body);
        }
    }
});
