//! Storage (§7): Kinds and their limits, access-control policies, the data models and
//! the Store, Fetch, Stat and Find methods, behind a backend trait with an in-memory
//! default. Replication and hand-over (§10.4, §10.5, §10.7.3) are driven by
//! [`crate::node`], which knows the ring.

pub mod access;
pub mod engine;
pub mod kinds;
pub mod store;

#[cfg(test)]
mod tests;

pub use access::{AccessControl, name_matches, node_multiple_resource, node_resource};
pub use engine::{Storage, StorageLimits, StoreContext};
pub use kinds::{CERTIFICATE_BY_NODE, CERTIFICATE_BY_USER, KindDef, KindTable, Policy};
pub use store::{Entries, Entry, KindData, MemoryBackend, StorageBackend};
