//! The named scenarios: the experiments the README and `BENCHMARKS.md` report.

use std::time::Duration;

use crate::models::{Churn, Session};
use crate::sim::SimConfig;

/// A named experiment: one or more runs, each with a label.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// What it shows.
    pub about: &'static str,
    /// (label, configuration) of each run.
    pub runs: Vec<(String, SimConfig)>,
}

/// The scenario called `name`; `nodes` overrides the population where it applies.
pub fn named(name: &str, seed: u64, nodes: Option<usize>) -> Result<Scenario, String> {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    match name {
        // Stoica et al., Chord (SIGCOMM 2001) §5: path length grows as ½·log₂N.
        "chord-paper" => {
            let sizes = match nodes {
                Some(n) => vec![n],
                None => vec![100, 1000, 10_000],
            };
            let runs = sizes
                .into_iter()
                .map(|n| {
                    let mut c = SimConfig::new(n, seed);
                    c.duration = minutes(60);
                    c.join_rate = 50.0;
                    c.update_interval = minutes(10);
                    c.store_rate = 0.0;
                    c.lookup_rate = 20.0;
                    c.ping_rate = 20.0;
                    (format!("n{n}"), c)
                })
                .collect();
            Ok(Scenario {
                about: "mean lookup hops against ½·log₂N on a stable ring",
                runs,
            })
        }
        // Rhea et al., Handling Churn in a DHT (USENIX 2004): median sessions of
        // 1.4 min to hours; here 60 and 6 minutes at 1,000 nodes. Eight predecessors
        // and successors (RFC 6940 §10.7 recommends O(log N)): with three, all of a
        // node's successors fail within one failure-detection time every few minutes
        // at 6-minute sessions, and the ring breaks until it repairs.
        "churn-bamboo" => {
            let n = nodes.unwrap_or(1000);
            let runs = [60u64, 6]
                .into_iter()
                .map(|median| {
                    let mut c = SimConfig::new(n, seed);
                    c.duration = minutes(60);
                    c.churn = Churn::Poisson(Session::Exponential(minutes(median)));
                    c.update_interval = Duration::from_secs(30);
                    c.neighbors = 8;
                    (format!("median{median}m"), c)
                })
                .collect();
            Ok(Scenario {
                about: "lookup success and record availability under Poisson churn",
                runs,
            })
        }
        "mass-failure" => {
            let n = nodes.unwrap_or(1000);
            let mut c = SimConfig::new(n, seed);
            c.duration = minutes(20);
            c.churn = Churn::MassFailure {
                at: minutes(5),
                fraction: 0.5,
            };
            c.update_interval = Duration::from_secs(30);
            // Fine enough to see whether routing is whole within 10 s.
            c.sample = Duration::from_secs(5);
            Ok(Scenario {
                about: "half of the nodes fail at once at minute 5",
                runs: vec![(format!("n{n}"), c)],
            })
        }
        _ => Err(format!(
            "unknown scenario {name:?} (chord-paper, churn-bamboo, mass-failure)"
        )),
    }
}
