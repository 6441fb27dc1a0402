//! End-to-end tests over real sockets, one module per behaviour.

#![allow(clippy::unwrap_used)] // helpers in a test binary fail the test on any error

mod embed;
mod enrollment;
mod hardening;
mod idle;
mod lab_capture;
mod lab_ice;
mod lab_lan;
mod lab_matrix;
mod lab_nat;
mod netlab;
mod rfc6940_config_update;
mod rfc6940_overlay;
mod rfc6940_silent_failure;
mod rfc6940_storage;
mod rfc6940_turn_service;
mod vs_prosody;
mod xor_fanout;
mod xor_node;
