//! The simulation harness: thousands of the overlay's own sans-IO nodes on a
//! deterministic virtual network, with latency, churn and workload models, metrics,
//! CSV and plots. The same seed gives the same run, byte for byte.

mod chat;
pub mod metrics;
pub mod models;
pub mod report;
pub mod scenario;
pub mod sim;
mod tap;
mod workload;

pub use metrics::{ChatStats, Metrics, Sample};
pub use models::{Churn, Latency, Session};
pub use sim::{Phase, Sim, SimConfig};
