//! Enrollment and bootstrap for xor overlays (RFC 6940 §11, XEP-0415 "Trust model").
//!
//! - [`config`]: the overlay configuration document — build, serialise, parse, sign
//!   and verify (§11.1);
//! - [`authority`]: from a verified configuration to a node's settings, and the
//!   verifier of ConfigUpdates (§6.5.4);
//! - [`ca`]: the overlay root, the configuration signer, per-XMPP-domain intermediate
//!   CAs (limited to their domain, revocable), certificates from CSRs, publishing;
//! - [`server`]: the HTTPS configuration and enrollment server (§11.2, §11.3) over
//!   [`accounts`] with [`ratelimit`]s;
//! - [`client`]: DNS SRV discovery, fetching and verifying the configuration,
//!   enrolling, and the profile on disk;
//! - [`cli`]: what the `xor` command runs for `ca …`, `enroll-server` and `enroll`;
//! - [`files`]: PEM and atomic file writes.

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
