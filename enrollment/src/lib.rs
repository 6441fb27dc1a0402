//! Enrollment and bootstrap for xor overlays (RFC 6940 §11, XEP-0415 "Trust model").
//!
//! - [`config`]: the overlay configuration document — build, serialise, parse, sign
//!   and verify (§11.1);
//! - [`authority`]: from a verified configuration to a node's settings, and the
//!   verifier of ConfigUpdates (§6.5.4).

pub mod accounts;
pub mod authority;
pub mod ca;
pub mod cli;
pub mod client;
pub mod config;
pub mod files;
pub mod ratelimit;
pub mod server;

#[cfg(test)]
mod ca_tests;
