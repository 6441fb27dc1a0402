use bytes::{Bytes, BytesMut};

use super::{both_ways, h};
use crate::wire::{FrameDecoder, FrameError, FramedMessage};

#[test]
fn data_frame_rfc6940_6_6_2() {
    // type data(128), sequence(4), message<0..2^24-1>
    both_ways(
        FramedMessage::Data {
            sequence: 1,
            message: Bytes::from_static(b"ab"),
        },
        &h("80 00000001 000002 6162"),
    );
}

#[test]
fn ack_frame_rfc6940_6_6_2() {
    // type ack(129), ack_sequence(4), received(4)
    both_ways(
        FramedMessage::Ack {
            ack_sequence: 1,
            received: 0x8000_0001,
        },
        &h("81 00000001 80000001"),
    );
}

#[test]
fn stream_decoder_splits_frames_and_waits_for_more() {
    let dec = FrameDecoder::new(1000);
    let mut buf = BytesMut::from(&h("80 00000001 000002 6162 81 00000001 0000")[..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(FramedMessage::Data {
            sequence: 1,
            message: Bytes::from_static(b"ab")
        })
    );
    assert_eq!(dec.decode(&mut buf).unwrap(), None, "ack is incomplete");
    buf.extend_from_slice(&h("0003"));
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(FramedMessage::Ack {
            ack_sequence: 1,
            received: 3
        })
    );
    assert!(buf.is_empty());
}

#[test]
fn stream_decoder_refuses_oversize_before_the_body_arrives_rfc6940_6_6() {
    let dec = FrameDecoder::new(100);
    let mut buf = BytesMut::from(&h("80 00000000 000065")[..]);
    assert_eq!(
        dec.decode(&mut buf),
        Err(FrameError::TooLarge { len: 101, max: 100 })
    );
}

#[test]
fn stream_decoder_refuses_unknown_frame_types() {
    let dec = FrameDecoder::new(100);
    let mut buf = BytesMut::from(&h("7f 00")[..]);
    assert!(
        matches!(dec.decode(&mut buf), Err(FrameError::Malformed(e)) if e.field == "framed_message_type")
    );
}
