//! The simulation harness: many nodes over the sans-IO cores, latency and churn models, metrics.
