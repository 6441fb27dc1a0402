//! Identity tests: certificate facts, trust decisions, and one test per way a
//! signature can be wrong.

mod certs;
mod signatures;
