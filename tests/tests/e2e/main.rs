//! End-to-end tests over real sockets, one module per behaviour.

mod rfc6940_overlay;
mod rfc6940_storage;
