//! `xor-sim`: run the overlay at scale in simulated time.

// A command-line program reports on its terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xor_simulations::models::{Churn, Latency, Session, parse_duration};
use xor_simulations::{Phase, Sim, SimConfig, report, scenario};

/// Deterministic simulation of the xor RELOAD overlay.
#[derive(Parser, Debug)]
#[command(name = "xor-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One run with the given models.
    Run {
        /// Nodes (the population churn keeps).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// none, poisson, or massfail.
        #[arg(long, default_value = "none")]
        churn: String,
        /// Median session for poisson churn (e.g. 1.4m, 6m, 60m).
        #[arg(long, default_value = "60m")]
        median_session: String,
        /// exponential or weibull (shape 0.6) session times.
        #[arg(long, default_value = "exponential")]
        sessions: String,
        /// Fraction failing at once for massfail (at a third of the run).
        #[arg(long, default_value_t = 0.5)]
        fraction: f64,
        /// Simulated time after the initial joins (e.g. 10m, 1h).
        #[arg(long, default_value = "10m")]
        duration: String,
        /// constant:10ms, uniform:5ms-80ms, wan or wan:loss=0.01.
        #[arg(long, default_value = "wan")]
        latency: String,
        /// Location lookups per simulated second.
        #[arg(long, default_value_t = 10.0)]
        lookup_rate: f64,
        /// Chat messages per simulated second: every device runs the XMPP usage's
        /// device core; users send to each other's bare and full JIDs (0: off).
        #[arg(long, default_value_t = 0.0)]
        chat_rate: f64,
        /// No workload at all (no lookups, stores or pings): what keeping the
        /// overlay up costs each node.
        #[arg(long)]
        idle: bool,
        /// `chord-update-interval` (e.g. 30s, 10m).
        #[arg(long, default_value = "60s")]
        update_interval: String,
        /// Predecessors and successors each node keeps (at least 3; RFC 6940 §10.7
        /// recommends O(log N); more survive faster churn).
        #[arg(long, default_value_t = 3)]
        neighbors: usize,
        /// Turn proximity neighbour selection off (fingers then stay the first peer
        /// found in their interval), to measure what it costs and gains.
        #[arg(long)]
        no_proximity: bool,
        /// The seed: the same seed gives the same results.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write summary, CSVs and plots.
        #[arg(long, default_value = "results")]
        out: PathBuf,
    },
    /// A named experiment: chord-paper, churn-bamboo, mass-failure.
    Scenario {
        /// Its name.
        name: String,
        /// Override the population.
        #[arg(long)]
        nodes: Option<usize>,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Results go to OUT/<scenario>/<run>/.
        #[arg(long, default_value = "results")]
        out: PathBuf,
    },
}

fn config_of(cmd: &Command) -> Result<SimConfig, String> {
    let Command::Run {
        nodes,
        churn,
        median_session,
        sessions,
        fraction,
        duration,
        latency,
        lookup_rate,
        chat_rate,
        idle,
        update_interval,
        neighbors,
        no_proximity,
        seed,
        ..
    } = cmd
    else {
        return Err("not a run".into());
    };
    if *nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let mut c = SimConfig::new(*nodes, *seed);
    c.duration = parse_duration(duration)?;
    c.latency = Latency::parse(latency)?;
    c.lookup_rate = *lookup_rate;
    c.chat_rate = *chat_rate;
    if *idle {
        (c.lookup_rate, c.store_rate, c.ping_rate) = (0.0, 0.0, 0.0);
    }
    c.update_interval = parse_duration(update_interval)?;
    if *neighbors < 3 {
        return Err("--neighbors must be at least 3 (RFC 6940 §10.7)".into());
    }
    c.neighbors = *neighbors;
    c.proximity = !*no_proximity;
    let median = parse_duration(median_session)?;
    let session = match sessions.as_str() {
        "exponential" => Session::Exponential(median),
        "weibull" => Session::Weibull { median, k: 0.6 },
        other => {
            return Err(format!(
                "unknown session model {other:?} (exponential, weibull)"
            ));
        }
    };
    c.churn = match churn.as_str() {
        "none" => Churn::None,
        "poisson" => Churn::Poisson(session),
        "massfail" => {
            if !(0.0..=1.0).contains(fraction) {
                return Err("--fraction must be between 0 and 1".into());
            }
            Churn::MassFailure {
                at: c.duration / 3,
                fraction: *fraction,
            }
        }
        other => {
            return Err(format!(
                "unknown churn model {other:?} (none, poisson, massfail)"
            ));
        }
    };
    Ok(c)
}

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn run_one(label: &str, cfg: SimConfig, out: &Path) -> Result<(), String> {
    let started = std::time::Instant::now();
    let nodes = cfg.nodes;
    let simulated = cfg.duration;
    let mut sim = Sim::new(cfg.clone());
    let mut last = std::time::Instant::now();
    sim.run(|phase, done, s| {
        if last.elapsed() < Duration::from_millis(250) && done < 1.0 {
            return;
        }
        last = std::time::Instant::now();
        let width = 30;
        let filled = (done * width as f64).round() as usize;
        let phase = match phase {
            Phase::Joining => "joining",
            Phase::Settling => "settling",
            Phase::Measuring => "measuring",
        };
        eprint!(
            "\r{label}: [{}{}] {:>3.0}% {phase}, {} live nodes, {:.0} s simulated, {:.0} s wall   ",
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            done * 100.0,
            s.live(),
            s.now()
                .saturating_duration_since(xor_overlay::time::Instant::ZERO)
                .as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    });
    eprintln!();
    let wall = started.elapsed();
    let rss = peak_rss().unwrap_or(0);
    let m = sim.metrics();
    let total_sim = m.window.1;
    let header = format!(
        "run {label}: {nodes} nodes, {:.0} s measured ({:.0} s simulated in all) in {:.1} s wall ({:.1}× real time); peak memory {:.0} MiB ({:.1} KiB per node)\n",
        simulated.as_secs_f64(),
        total_sim.as_secs_f64(),
        wall.as_secs_f64(),
        total_sim.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        rss as f64 / (1 << 20) as f64,
        rss as f64 / 1024.0 / nodes.max(1) as f64
    );
    report::write(out, m, nodes, &header)?;
    print!("{header}{}", m.summary(nodes));
    println!("results in {}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        cmd @ Command::Run { out, .. } => config_of(cmd).and_then(|c| run_one("run", c, out)),
        Command::Scenario {
            name,
            nodes,
            seed,
            out,
        } => scenario::named(name, *seed, *nodes).and_then(|s| {
            println!("scenario {name}: {}", s.about);
            for (label, cfg) in s.runs {
                run_one(&label, cfg, &out.join(name).join(&label))?;
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xor-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
