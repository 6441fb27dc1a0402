//! The tokio side: the real clock, TLS overlay links, and (as it lands) the node driver.
//!
//! Everything here does I/O; the protocol decisions stay in the sans-IO core.

pub mod admission;
pub mod clock;
pub mod driver;
pub mod link;
pub mod tls;

#[cfg(test)]
mod tests;

pub use clock::Clock;
pub use driver::{AppRequest, Neighbors, Overlay, StartError};
pub use link::{
    Accepted, Link, LinkClosed, LinkEvent, LinkId, LinkOptions, Listener, OversizeResponder,
};
pub use tls::{ConnectError, Expect, PeerInfo, TlsContext};
