//! xor-node: the program users run and its embedding API.
//!
//! [`daemon::Device`] is one running device (overlay node, location record, streams to
//! other devices, local client port, C2S fallback); `xor-node run` starts one from a
//! configuration file, and [`demo`] starts a whole loopback overlay of them.

pub mod c2s_client;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod devnet;
pub mod embed;
pub mod fallback;
pub mod local;
pub mod roster;
/// SASL lives with the stream negotiation in `xor-xmpp`.
pub use xor_xmpp::sasl;
pub mod status;

/// The README's code blocks, compiled as doc tests (the embedding example must build).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
