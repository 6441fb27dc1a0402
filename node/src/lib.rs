//! xor-node: the program users run and its embedding API.

pub mod c2s_client;
pub mod config;
pub mod fallback;
pub mod local;
pub mod roster;
pub mod sasl;
