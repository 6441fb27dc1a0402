//! CHORD-RELOAD (§10): the routing table and the ring invariants.
//!
//! The protocol handlers that keep the table up to date (join, update, leave,
//! stabilisation) live in [`crate::node`], which owns the links and transactions.

pub mod invariants;
pub mod table;

pub use invariants::{PeerView, Violation, check_ring, check_stable};
pub use table::{NextHop, RoutingTable};
