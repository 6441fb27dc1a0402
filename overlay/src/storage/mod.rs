//! Storage (§7): Kinds, data models, access control.

pub mod access;
pub mod kinds;

pub use access::AccessControl;
pub use kinds::{CERTIFICATE_BY_NODE, CERTIFICATE_BY_USER, KindDef, KindTable, Policy};
