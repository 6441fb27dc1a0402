//! The tokio side: the real clock, TLS overlay links, and (as it lands) the node driver.
//!
//! Everything here does I/O; the protocol decisions stay in the sans-IO core.

pub mod addresses;
pub mod admission;
pub mod apps;
pub mod clock;
pub mod driver;
pub mod ice;
pub mod link;
mod overlay;
pub mod tls;
pub mod transport;
pub mod turn_server;
pub mod turn_service;

#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod tests;

pub use apps::{AppError, AppStream};
pub use clock::Clock;
pub use driver::{Neighbors, StartError};
pub use link::{
    Accepted, Link, LinkClosed, LinkEvent, LinkId, LinkOptions, Listener, OversizeResponder,
};
pub use overlay::Overlay;
pub use tls::{ConnectError, Expect, PeerInfo, TlsContext};
pub use transport::{AsyncStream, LinkStream};
