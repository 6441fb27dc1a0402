//! What a run measures, sampled over simulated time, and its CSV form. Numbers are
//! written with fixed precision so the same seed gives byte-identical files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One sampling period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// End of the period (simulated time since the start).
    pub at: Duration,
    /// Live nodes.
    pub live: usize,
    /// Live nodes that have joined.
    pub joined: usize,
    /// XMPP-LOCATION lookups answered or failed in the period.
    pub lookups: u64,
    /// … that found the record.
    pub lookups_found: u64,
    /// … answered by the node truly responsible at that moment.
    pub lookups_correct: u64,
    /// Random fetches of stored values.
    pub fetches: u64,
    /// … that found the value.
    pub fetches_found: u64,
    /// Routed pings.
    pub pings: u64,
    /// … answered.
    pub pings_ok: u64,
    /// Users with a live registered device (records that should exist).
    pub records_expected: usize,
    /// … whose record is at the responsible node.
    pub records_present: usize,
    /// Bytes sent per live node per second (all traffic: maintenance and workload).
    pub bytes_per_node_s: f64,
    /// … of which upkeep: everything but the messages of the workload's requests and
    /// their answers (framing, acks and keep-alives all count as upkeep).
    pub upkeep_per_node_s: f64,
    /// Messages sent in the period.
    pub messages: u64,
    /// Overlay links per live node at the end of the period.
    pub links_per_node: f64,
    /// Mean hops of the period's lookups and pings.
    pub mean_hops: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// The seed (violations are reported with it).
    pub seed: u64,
    /// Nodes added.
    pub joins: u64,
    /// Nodes failed.
    pub failures: u64,
    /// The periods.
    pub samples: Vec<Sample>,
    /// Hop counts of every measured lookup and ping.
    pub hops: Vec<u32>,
    /// Latencies of every successful lookup and ping, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Ring invariant violations: when, what.
    pub violations: Vec<(Duration, String)>,
    /// Stores issued / acknowledged.
    pub stores: (u64, u64),
    /// When measuring began (after the initial joins) and ended.
    pub window: (Duration, Duration),
    /// Upkeep messages over the measured window by message name: (messages, bytes).
    pub upkeep_by_message: BTreeMap<String, (u64, u64)>,
    /// Upkeep bytes written on links beyond the messages (framing, acks, keep-alives).
    pub framing_bytes: u64,
    /// The chat workload's totals, when it ran.
    pub chat: Option<ChatStats>,
    measuring: bool,
    current: Sample,
    hop_sum: (u64, u64),
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// The chat workload's totals (messages sent up to 30 s before the end).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatStats {
    /// Messages sent.
    pub messages: u64,
    /// Deliveries owed: each message times the recipient's devices online when it
    /// was sent (one for a full JID), less those that left before getting it.
    pub expected: u64,
    /// Of those, delivered to the device's application.
    pub delivered: u64,
    /// Copies an application got more than once (goal: 0).
    pub duplicates: u64,
    /// Sends the sender's core gave up on (recipient not found or unreachable).
    pub failed_sends: u64,
    /// From the send to the first delivery on a device.
    pub latency_p50: Duration,
    /// The same, 99th percentile.
    pub latency_p99: Duration,
}

impl Metrics {
    /// Empty metrics for a run with `seed`.
    pub fn new(seed: u64) -> Metrics {
        Metrics {
            seed,
            ..Metrics::default()
        }
    }

    /// Counts from now on.
    pub fn start_measuring(&mut self, at: Duration) {
        self.measuring = true;
        self.window.0 = at;
    }

    /// The end of the run.
    pub fn finish(&mut self, at: Duration) {
        self.window.1 = at;
    }

    fn hop(&mut self, hops: u32, latency: Duration, ok: bool) {
        self.hops.push(hops);
        self.hop_sum.0 += u64::from(hops);
        self.hop_sum.1 += 1;
        if ok {
            self.latencies_ms.push(latency.as_secs_f64() * 1000.0);
        }
    }

    /// A lookup (`location`) or random fetch finished.
    pub fn lookup(
        &mut self,
        location: bool,
        answered: bool,
        found: bool,
        correct: bool,
        hops: u32,
        latency: Duration,
    ) {
        if !self.measuring {
            return;
        }
        if location {
            self.current.lookups += 1;
            self.current.lookups_found += u64::from(found);
            self.current.lookups_correct += u64::from(correct);
            if answered {
                self.hop(hops, latency, found);
            }
        } else {
            self.current.fetches += 1;
            self.current.fetches_found += u64::from(found);
        }
    }

    /// A routed ping finished.
    pub fn ping(&mut self, answered: bool, correct: bool, hops: u32, latency: Duration) {
        if !self.measuring {
            return;
        }
        self.current.pings += 1;
        self.current.pings_ok += u64::from(answered && correct);
        if answered {
            self.hop(hops, latency, true);
        }
    }

    /// A store finished.
    pub fn store(&mut self, ok: bool) {
        if self.measuring {
            self.stores.0 += 1;
            self.stores.1 += u64::from(ok);
        }
    }

    /// Upkeep messages of one period: message name → (messages, bytes), and the bytes
    /// written beyond messages.
    pub fn upkeep(
        &mut self,
        by_message: impl IntoIterator<Item = (String, (u64, u64))>,
        framing: u64,
    ) {
        if !self.measuring {
            return;
        }
        for (name, (m, b)) in by_message {
            let e = self.upkeep_by_message.entry(name).or_default();
            e.0 += m;
            e.1 += b;
        }
        self.framing_bytes += framing;
    }

    /// A ring invariant failed.
    pub fn violation(&mut self, at: Duration, what: String) {
        self.violations.push((at, what));
    }

    /// Ends a period with the state-based figures in `s`.
    pub fn close_sample(&mut self, mut s: Sample) {
        let c = std::mem::take(&mut self.current);
        s.lookups = c.lookups;
        s.lookups_found = c.lookups_found;
        s.lookups_correct = c.lookups_correct;
        s.fetches = c.fetches;
        s.fetches_found = c.fetches_found;
        s.pings = c.pings;
        s.pings_ok = c.pings_ok;
        let (sum, n) = std::mem::take(&mut self.hop_sum);
        s.mean_hops = if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        self.samples.push(s);
    }

    /// The time series as CSV.
    pub fn timeseries_csv(&self) -> String {
        let mut out = String::from(
            "time_s,live,joined,lookups,lookup_success,lookup_correct,fetches,fetch_success,pings,ping_success,records_expected,records_available,availability,bytes_per_node_s,upkeep_per_node_s,messages,links_per_node,mean_hops\n",
        );
        for s in &self.samples {
            let _ = writeln!(
                out,
                "{:.0},{},{},{},{:.4},{:.4},{},{:.4},{},{:.4},{},{},{:.4},{:.1},{:.1},{},{:.1},{:.3}",
                s.at.as_secs_f64(),
                s.live,
                s.joined,
                s.lookups,
                ratio(s.lookups_found, s.lookups),
                ratio(s.lookups_correct, s.lookups),
                s.fetches,
                ratio(s.fetches_found, s.fetches),
                s.pings,
                ratio(s.pings_ok, s.pings),
                s.records_expected,
                s.records_present,
                ratio(s.records_present as u64, s.records_expected as u64),
                s.bytes_per_node_s,
                s.upkeep_per_node_s,
                s.messages,
                s.links_per_node,
                s.mean_hops
            );
        }
        out
    }

    /// The hop-count histogram as CSV.
    pub fn hops_csv(&self) -> String {
        let mut out = String::from("hops,count\n");
        for (h, n) in self.hop_histogram().iter().enumerate() {
            let _ = writeln!(out, "{h},{n}");
        }
        out
    }

    /// Count of measured requests per hop count.
    pub fn hop_histogram(&self) -> Vec<u64> {
        let max = self.hops.iter().copied().max().unwrap_or(0) as usize;
        let mut h = vec![0u64; max + 1];
        for x in &self.hops {
            h[*x as usize] += 1;
        }
        h
    }

    /// Sorted latencies (ms).
    pub fn sorted_latencies(&self) -> Vec<f64> {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The latency CDF as CSV (one row per percent).
    pub fn latency_csv(&self) -> String {
        let v = self.sorted_latencies();
        let mut out = String::from("percentile,latency_ms\n");
        for p in 0..=100 {
            let _ = writeln!(out, "{p},{:.2}", pct(&v, f64::from(p) / 100.0));
        }
        out
    }

    /// The invariant violations as CSV.
    pub fn violations_csv(&self) -> String {
        let mut out = String::from("time_s,seed,violation\n");
        for (t, v) in &self.violations {
            let _ = writeln!(
                out,
                "{:.3},{},\"{}\"",
                t.as_secs_f64(),
                self.seed,
                v.replace('"', "'")
            );
        }
        out
    }

    /// Mean hop count over the run.
    pub fn mean_hops(&self) -> f64 {
        if self.hops.is_empty() {
            return 0.0;
        }
        self.hops.iter().map(|h| f64::from(*h)).sum::<f64>() / self.hops.len() as f64
    }

    /// Hop-count percentile.
    pub fn hops_pct(&self, p: f64) -> f64 {
        let mut v: Vec<f64> = self.hops.iter().map(|h| f64::from(*h)).collect();
        v.sort_by(f64::total_cmp);
        pct(&v, p)
    }

    /// Latency percentile (ms).
    pub fn latency_pct(&self, p: f64) -> f64 {
        pct(&self.sorted_latencies(), p)
    }

    /// Totals over the samples: (lookups, found, correct).
    pub fn lookup_totals(&self) -> (u64, u64, u64) {
        self.samples.iter().fold((0, 0, 0), |a, s| {
            (
                a.0 + s.lookups,
                a.1 + s.lookups_found,
                a.2 + s.lookups_correct,
            )
        })
    }

    /// The largest parts of the upkeep, as shares of its bytes.
    fn upkeep_shares(&self) -> String {
        let total: u64 =
            self.framing_bytes + self.upkeep_by_message.values().map(|v| v.1).sum::<u64>();
        let mut parts: Vec<(&str, u64, u64)> = self
            .upkeep_by_message
            .iter()
            .map(|(k, v)| (k.as_str(), v.0, v.1))
            .collect();
        parts.push(("framing, acks, keep-alives", 0, self.framing_bytes));
        parts.sort_by_key(|p| std::cmp::Reverse(p.2));
        parts
            .iter()
            .take(6)
            .map(|(name, m, b)| {
                let share = 100.0 * *b as f64 / total.max(1) as f64;
                if *m == 0 {
                    format!("{name} {share:.0}%")
                } else {
                    format!("{name} {share:.0}% ({m} msgs, {} B each)", b / m)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The human summary.
    pub fn summary(&self, nodes: usize) -> String {
        let (l, found, correct) = self.lookup_totals();
        let (f, ff) = self
            .samples
            .iter()
            .fold((0, 0), |a, s| (a.0 + s.fetches, a.1 + s.fetches_found));
        let (p, pok) = self
            .samples
            .iter()
            .fold((0, 0), |a, s| (a.0 + s.pings, a.1 + s.pings_ok));
        let avail: Vec<f64> = self
            .samples
            .iter()
            .map(|s| ratio(s.records_present as u64, s.records_expected as u64))
            .collect();
        let min_avail = avail.iter().copied().fold(1.0, f64::min);
        let last_avail = avail.last().copied().unwrap_or(1.0);
        let mean = |f: fn(&Sample) -> f64| {
            self.samples.iter().map(f).sum::<f64>() / self.samples.len().max(1) as f64
        };
        let bytes = mean(|s| s.bytes_per_node_s);
        let upkeep = mean(|s| s.upkeep_per_node_s);
        let links = mean(|s| s.links_per_node);
        let half_log = 0.5 * (nodes.max(1) as f64).log2();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "nodes {nodes}, seed {}, measured {:.0} s of simulated time after {:.0} s of joins",
            self.seed,
            (self.window.1.saturating_sub(self.window.0)).as_secs_f64(),
            self.window.0.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "hops        mean {:.2} (½·log₂N = {half_log:.2}), p50 {:.0}, p99 {:.0}",
            self.mean_hops(),
            self.hops_pct(0.5),
            self.hops_pct(0.99)
        );
        let _ = writeln!(
            out,
            "latency     p50 {:.0} ms, p99 {:.0} ms (simulated)",
            self.latency_pct(0.5),
            self.latency_pct(0.99)
        );
        let _ = writeln!(
            out,
            "lookups     {l}: {:.2}% found the record, {:.2}% answered by the responsible node",
            100.0 * ratio(found, l),
            100.0 * ratio(correct, l)
        );
        let _ = writeln!(
            out,
            "fetches     {f}: {:.2}% found the value; routed pings {p}: {:.2}% reached the responsible node",
            100.0 * ratio(ff, f),
            100.0 * ratio(pok, p)
        );
        let _ = writeln!(
            out,
            "records     availability {:.2}% at the end, {:.2}% at worst",
            100.0 * last_avail,
            100.0 * min_avail
        );
        let _ = writeln!(
            out,
            "traffic     {bytes:.0} bytes/s per node on average; churn: {} joins, {} failures",
            self.joins, self.failures
        );
        let _ = writeln!(
            out,
            "upkeep      {upkeep:.0} bytes/s per node (all but the workload's messages; {links:.1} links per node): {}",
            self.upkeep_shares()
        );
        if let Some(c) = &self.chat {
            let _ = writeln!(
                out,
                "chat        {} messages: {:.2}% of {} deliveries made, {} duplicates shown, {} sends failed; latency p50 {:.0} ms, p99 {:.0} ms",
                c.messages,
                100.0 * ratio(c.delivered, c.expected),
                c.expected,
                c.duplicates,
                c.failed_sends,
                c.latency_p50.as_secs_f64() * 1000.0,
                c.latency_p99.as_secs_f64() * 1000.0
            );
        }
        let _ = writeln!(
            out,
            "invariants  {}",
            if self.violations.is_empty() {
                "held at every check".to_owned()
            } else {
                format!(
                    "{} violation(s), first at {:.1} s: {} (reproduce with --seed {})",
                    self.violations.len(),
                    self.violations[0].0.as_secs_f64(),
                    self.violations[0].1,
                    self.seed
                )
            }
        );
        out
    }
}
