//! The simulator's correctness properties (not timings): determinism, the Chord
//! path-length bound, and the ring invariants under churn.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use xor_simulations::models::{Churn, Latency, Session};
use xor_simulations::{Sim, SimConfig, report};

fn run(cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg);
    sim.run(|_, _, _| {});
    sim
}

#[test]
fn the_same_seed_gives_byte_identical_results_and_another_seed_does_not() {
    let cfg = |seed| {
        let mut c = SimConfig::new(40, seed);
        c.duration = Duration::from_secs(180);
        c.churn = Churn::Poisson(Session::Exponential(Duration::from_secs(360)));
        c.sample = Duration::from_secs(30);
        c.update_interval = Duration::from_secs(30);
        c.chat_rate = 1.0;
        c
    };
    let files = |sim: &Sim| {
        let dir = tempfile::tempdir().unwrap();
        report::write(dir.path(), sim.metrics(), 40, "").unwrap();
        [
            "timeseries.csv",
            "hops.csv",
            "latency.csv",
            "violations.csv",
            "summary.txt",
        ]
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
    };
    let a = files(&run(cfg(7)));
    let b = files(&run(cfg(7)));
    assert_eq!(a, b, "same seed, same bytes");
    assert!(a[0].len() > 200, "the time series has rows");
    let c = files(&run(cfg(8)));
    assert_ne!(a[0], c[0], "another seed, another run");
}

#[test]
fn lookups_at_1000_nodes_take_at_most_half_log2_n_plus_one_hops() {
    let mut c = SimConfig::new(1000, 3);
    c.latency = Latency::Constant(Duration::from_millis(20));
    c.join_rate = 200.0;
    c.update_interval = Duration::from_secs(600);
    c.duration = Duration::from_secs(120);
    c.lookup_rate = 20.0;
    c.ping_rate = 20.0;
    c.store_rate = 0.0;
    let sim = run(c);
    let m = sim.metrics();
    let bound = 0.5 * 1000f64.log2() + 1.0;
    assert!(m.hops.len() > 1000, "{} measured lookups", m.hops.len());
    assert!(
        m.mean_hops() <= bound,
        "mean {:.2} hops exceeds ½·log₂N + 1 = {bound:.2}",
        m.mean_hops()
    );
    let (lookups, found, correct) = m.lookup_totals();
    assert_eq!(found, lookups, "every record found on a stable ring");
    assert_eq!(
        correct, lookups,
        "every lookup answered by the responsible node"
    );
    assert!(m.violations.is_empty(), "{:?}", m.violations);
}

#[test]
fn the_ring_invariants_hold_under_six_minute_sessions_with_eight_neighbours() {
    // Rhea et al.'s 6-minute median sessions, checked every 10 s: with eight
    // predecessors and successors (RFC 6940 §10.7's O(log N)) no node is ever left
    // without a live successor, although a node's neighbours fail every few seconds.
    let mut c = SimConfig::new(200, 11);
    c.churn = Churn::Poisson(Session::Exponential(Duration::from_secs(360)));
    c.update_interval = Duration::from_secs(30);
    c.neighbors = 8;
    c.duration = Duration::from_secs(600);
    c.check_every = Duration::from_secs(10);
    c.store_rate = 0.0;
    let sim = run(c);
    let m = sim.metrics();
    assert!(m.failures > 100, "{} failures: churn happened", m.failures);
    assert!(m.violations.is_empty(), "{:?}", m.violations);
    // Most lookups still find the record (BENCHMARKS.md reports the rates at 1,000).
    let (lookups, found, _) = m.lookup_totals();
    assert!(
        found as f64 >= 0.8 * lookups as f64,
        "{found} of {lookups} lookups found the record"
    );
}

#[test]
fn chat_on_the_device_core_reaches_every_online_device_once() {
    // Users with one to five devices send to each other's bare and full JIDs; every
    // device runs the XMPP usage's core, which looks recipients up with real Fetches.
    let chat = |churn| {
        let mut c = SimConfig::new(60, 5);
        c.duration = Duration::from_secs(300);
        c.latency = Latency::wide_area();
        c.chat_rate = 2.0;
        c.churn = churn;
        (c.lookup_rate, c.store_rate, c.ping_rate) = (0.0, 0.0, 0.0);
        run(c).metrics().chat.clone().unwrap()
    };
    let stable = chat(Churn::None);
    assert!(stable.messages > 400, "{stable:?}");
    assert!(
        stable.expected > stable.messages,
        "bare JIDs reach several devices"
    );
    assert_eq!(stable.delivered, stable.expected, "{stable:?}");
    assert_eq!(stable.duplicates, 0);
    assert_eq!(stable.failed_sends, 0);
    // Devices coming and going (20-minute sessions): nothing is shown twice, and a
    // device that stays online gets what is sent to it.
    let churn = chat(Churn::Poisson(Session::Exponential(Duration::from_secs(
        1200,
    ))));
    assert_eq!(churn.duplicates, 0);
    assert!(
        churn.delivered as f64 >= 0.95 * churn.expected as f64,
        "{churn:?}"
    );
}

#[test]
fn the_cli_writes_summary_csvs_and_plots_and_names_bad_options() {
    let bin = env!("CARGO_BIN_EXE_xor-sim");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args([
            "run",
            "--nodes",
            "20",
            "--duration",
            "2m",
            "--churn",
            "poisson",
        ])
        .args(["--median-session", "1.4m", "--seed", "5", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("½·log₂N"), "{stdout}");
    for f in [
        "summary.txt",
        "timeseries.csv",
        "hops.csv",
        "latency.csv",
        "hops.svg",
        "hops.png",
        "latency_cdf.svg",
        "latency_cdf.png",
        "over_time.svg",
        "over_time.png",
        "traffic.svg",
        "traffic.png",
    ] {
        let meta = std::fs::metadata(dir.path().join(f)).unwrap();
        assert!(meta.len() > 40, "{f} is empty");
    }
    // A header, and a line per violation (none is expected here).
    let violations = std::fs::read_to_string(dir.path().join("violations.csv")).unwrap();
    assert!(
        violations.starts_with("time_s,seed,violation\n"),
        "{violations}"
    );
    let png = std::fs::read(dir.path().join("hops.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let svg = std::fs::read_to_string(dir.path().join("hops.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("Lookup hops"));

    let bad = std::process::Command::new(bin)
        .args(["run", "--churn", "sometimes"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown churn model"));
}
