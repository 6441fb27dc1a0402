//! The hardening issue: an enrolled peer or a local process as attacker. One module
//! per input; each test reproduces an attack that used to succeed.

mod app_attach;
mod links;
mod local_port;
mod rejoin;
mod soak;
