//! End-to-end tests across the crates over real sockets. The tests live in `tests/`.
