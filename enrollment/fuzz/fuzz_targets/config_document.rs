//! A configuration document from the network (§11.1): parsing and verifying any bytes
//! never panics; a parsed document's configurations write back to what parses the
//! same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xor_enrollment::config::Document;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = Document::parse(data) else {
        return;
    };
    for overlay in ["fuzz.example", "demo.xor", ""] {
        if doc.configuration(overlay).is_ok() {
            let _ = xor_enrollment::config::sign::verify(&doc, overlay, None, 1_800_000_000);
        }
    }
});
