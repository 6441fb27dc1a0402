//! Enrollment and bootstrap for xor overlays (RFC 6940 §11, XEP-0415 "Trust model").
//!
//! - [`config`]: the overlay configuration document — build, serialise, parse, sign
//!   and verify (§11.1).
#![doc = ""]

pub mod config;
