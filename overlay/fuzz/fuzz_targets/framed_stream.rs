//! A framed TLS byte stream (§6.6.2): split into frames in arbitrary chunks, re-encode
//! each frame and its RELOAD message, and check the bytes match what was consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use xor_overlay::wire::{Encode, FrameDecoder, FramedMessage, RawMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = (chunk as usize).max(1);
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    let mut consumed = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    consumed.extend_from_slice(&frame.to_bytes().expect("a frame re-encodes"));
                    if let FramedMessage::Data { message, .. } = &frame {
                        if let Ok(raw) = RawMessage::decode(message) {
                            assert_eq!(raw.encode().expect("encodes"), *message);
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(&consumed[..], &stream[..stream.len() - buf.len()]);
});
