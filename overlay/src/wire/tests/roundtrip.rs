//! Generated round trips: `decode(encode(m)) == m`.

use proptest::prelude::*;

use super::strategies;
use crate::wire::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn whole_messages_round_trip(m in strategies::message()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn fragments_round_trip_through_the_forwarding_layer(
        header in strategies::header(false),
        payload in strategies::bytes(300),
    ) {
        let raw = RawMessage { header, payload };
        let bytes = raw.encode().unwrap();
        prop_assert_eq!(RawMessage::decode(&bytes).unwrap(), raw);
    }

    #[test]
    fn every_body_round_trips(body in strategies::body()) {
        let models = super::storage::models();
        let bytes = body.to_bytes().unwrap();
        prop_assert_eq!(Body::parse(body.code(), &bytes, &models).unwrap(), body);
    }

    #[test]
    fn messages_carrying_typed_bodies_round_trip(
        mut m in strategies::message(),
        body in strategies::body(),
    ) {
        m.contents.code = body.code();
        m.contents.body = body.to_bytes().unwrap();
        let back = Message::decode(&m.encode().unwrap()).unwrap();
        let models = super::storage::models();
        prop_assert_eq!(Body::parse(back.contents.code, &back.contents.body, &models).unwrap(), body);
        prop_assert_eq!(back, m);
    }

    #[test]
    fn framed_messages_round_trip(seq in any::<u32>(), msg in strategies::bytes(500), ack in any::<bool>()) {
        let frame = if ack {
            FramedMessage::Ack { ack_sequence: seq, received: seq.rotate_left(7) }
        } else {
            FramedMessage::Data { sequence: seq, message: msg }
        };
        prop_assert_eq!(FramedMessage::decode(&frame.to_bytes().unwrap()).unwrap(), frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let models = super::storage::models();
        let _ = Message::decode(&bytes);
        for code in 1u16..=0x26 {
            let _ = Body::parse(MessageCode(code), &bytes, &models);
        }
    }
}
