//! # xor-overlay — RELOAD (RFC 6940) for the xor peer-to-peer XMPP node
//!
//! This crate is the protocol core: the wire codec ([`wire`]), identifiers and the
//! overlay hash ([`id`]), and (as they land) certificate identity and signatures,
//! the CHORD-RELOAD topology, message transport and storage. The core is sans-IO: it
//! never opens a socket, spawns a task or reads a clock. Time comes in as
//! [`time::Instant`] values and randomness from a seeded RNG, so the same core runs in
//! the tokio runtime and in the deterministic simulator.

pub mod chord;
pub mod id;
pub mod identity;
pub mod link;
pub mod node;
pub mod respond;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testnet;
pub mod time;
pub mod wire;

pub use id::{NodeId, ResourceId};
