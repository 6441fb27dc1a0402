//! XmppLocation values as stored by any enrolled peer: decode → encode → decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xor_overlay::wire::{Decode, Encode};
use xor_xmpp::XmppLocation;

fuzz_target!(|data: &[u8]| {
    if let Ok(loc) = XmppLocation::decode(data) {
        let again = loc.to_bytes().expect("a decoded location encodes");
        assert_eq!(XmppLocation::decode(&again).expect("reparses"), loc);
    }
});
