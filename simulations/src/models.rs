//! The latency and churn models. Every random draw comes from the simulation's seeded
//! ChaCha RNG, so a seed fixes the whole run.

use std::time::Duration;

use rand::RngExt;
use rand_chacha::ChaCha12Rng;
use xor_overlay::id::NodeId;
use xor_overlay::testnet::LatencyModel;

/// How long messages take.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    /// The same one-way delay for every message.
    Constant(Duration),
    /// One-way delay uniform in `[min, max]`, drawn per message.
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
    /// A wide-area model: every pair of nodes has a base one-way delay drawn once from
    /// a log-normal distribution (median `median`, shape `sigma`; with the defaults
    /// 40 ms and 0.6 the 10th/90th percentiles are about 19 and 87 ms, close to the
    /// King data set's spread of Internet host pairs), and each message adds a
    /// Pareto-distributed queueing delay (scale `jitter`, shape 2.5: heavy-tailed,
    /// mean ⅔ of the scale above it). `loss` is the probability that a message is
    /// dropped (0 by default: links are reliable streams).
    WideArea {
        /// Median base one-way delay.
        median: Duration,
        /// Log-normal shape.
        sigma: f64,
        /// Pareto scale of the per-message jitter.
        jitter: Duration,
        /// Message loss probability.
        loss: f64,
    },
}

impl Latency {
    /// The wide-area model with its documented defaults.
    pub fn wide_area() -> Latency {
        Latency::WideArea {
            median: Duration::from_millis(40),
            sigma: 0.6,
            jitter: Duration::from_millis(2),
            loss: 0.0,
        }
    }

    /// Parses `constant:10ms`, `uniform:5ms-80ms` or `wan` / `wan:loss=0.01`.
    pub fn parse(s: &str) -> Result<Latency, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "constant" => Ok(Latency::Constant(parse_duration(arg)?)),
            "uniform" => {
                let (a, b) = arg
                    .split_once('-')
                    .ok_or("uniform needs MIN-MAX, e.g. uniform:5ms-80ms")?;
                Ok(Latency::Uniform {
                    min: parse_duration(a)?,
                    max: parse_duration(b)?,
                })
            }
            "wan" => {
                let mut l = Latency::wide_area();
                if let Some(p) = arg.strip_prefix("loss=")
                    && let Latency::WideArea { loss, .. } = &mut l
                {
                    *loss = p.parse().map_err(|_| format!("bad loss {p:?}"))?;
                }
                Ok(l)
            }
            _ => Err(format!(
                "unknown latency model {s:?} (constant:10ms, uniform:5ms-80ms, wan)"
            )),
        }
    }
}

/// The [`LatencyModel`] the virtual network uses.
#[derive(Debug)]
pub struct LatencyImpl {
    model: Latency,
}

impl LatencyImpl {
    /// Wraps `model`.
    pub fn new(model: Latency) -> LatencyImpl {
        LatencyImpl { model }
    }
}

/// A deterministic uniform draw in (0, 1) for the pair (`a`, `b`), the same either way.
fn pair_uniform(a: NodeId, b: NodeId) -> f64 {
    let (x, y) = if a.0 < b.0 { (a.0, b.0) } else { (b.0, a.0) };
    let mut h =
        (x ^ y.rotate_left(41)) as u64 ^ ((x >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// The inverse of the standard normal CDF (Acklam's rational approximation).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

impl LatencyModel for LatencyImpl {
    fn delay(&mut self, from: NodeId, to: NodeId, rng: &mut ChaCha12Rng) -> Duration {
        match &self.model {
            Latency::Constant(d) => *d,
            Latency::Uniform { min, max } => {
                let (a, b) = (min.as_secs_f64(), max.as_secs_f64().max(min.as_secs_f64()));
                Duration::from_secs_f64(a + rng.random::<f64>() * (b - a))
            }
            Latency::WideArea {
                median,
                sigma,
                jitter,
                ..
            } => {
                let z = normal_quantile(pair_uniform(from, to));
                let base = median.as_secs_f64() * (sigma * z).exp();
                let u: f64 = rng.random::<f64>().max(1e-12);
                let pareto = jitter.as_secs_f64() * (u.powf(-1.0 / 2.5) - 1.0);
                Duration::from_secs_f64((base + pareto).min(10.0))
            }
        }
    }

    fn lost(&mut self, _: NodeId, _: NodeId, rng: &mut ChaCha12Rng) -> bool {
        match &self.model {
            Latency::WideArea { loss, .. } if *loss > 0.0 => rng.random::<f64>() < *loss,
            _ => false,
        }
    }
}

/// How long a node stays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Session {
    /// Exponential session times with this median.
    Exponential(Duration),
    /// Weibull session times with this median and shape `k` (k < 1: many short
    /// sessions and a long tail, as measured in deployed peer-to-peer systems).
    Weibull {
        /// Median.
        median: Duration,
        /// Shape.
        k: f64,
    },
}

impl Session {
    /// A session length.
    pub fn draw(&self, rng: &mut ChaCha12Rng) -> Duration {
        let u: f64 = rng.random::<f64>().clamp(1e-12, 1.0 - 1e-12);
        let secs = match *self {
            // median = mean·ln 2
            Session::Exponential(m) => -(m.as_secs_f64() / std::f64::consts::LN_2) * u.ln(),
            // median = λ (ln 2)^(1/k)
            Session::Weibull { median, k } => {
                let lambda = median.as_secs_f64() / std::f64::consts::LN_2.powf(1.0 / k);
                lambda * (-u.ln()).powf(1.0 / k)
            }
        };
        Duration::from_secs_f64(secs.max(1.0))
    }

    /// The mean session length (for the arrival rate that keeps the population).
    pub fn mean(&self) -> Duration {
        match *self {
            Session::Exponential(m) => m.div_f64(std::f64::consts::LN_2),
            Session::Weibull { median, k } => {
                let lambda = median.as_secs_f64() / std::f64::consts::LN_2.powf(1.0 / k);
                Duration::from_secs_f64(lambda * gamma(1.0 + 1.0 / k))
            }
        }
    }
}

/// Γ(x) for x > 0 (Lanczos).
fn gamma(x: f64) -> f64 {
    const G: [f64; 8] = [
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = 0.999_999_999_999_809_9;
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate() {
        a += g / (x + i as f64 + 1.0);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

/// Who joins and leaves when.
#[derive(Debug, Clone, PartialEq)]
pub enum Churn {
    /// Nobody leaves.
    None,
    /// A fixed schedule: at each time, `+n` nodes join or `-n` nodes fail.
    Schedule(Vec<(Duration, i64)>),
    /// Poisson arrivals keeping the population near its start size; each node fails
    /// (silently) at the end of its session.
    Poisson(Session),
    /// At `at`, `fraction` of the live nodes fail at once.
    MassFailure {
        /// When.
        at: Duration,
        /// Share of the live nodes.
        fraction: f64,
    },
}

/// Parses `90s`, `6m`, `1.4m`, `1h`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 90s, 6m, 1h)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn session_medians_are_what_was_asked() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        for model in [
            Session::Exponential(Duration::from_secs(360)),
            Session::Weibull {
                median: Duration::from_secs(360),
                k: 0.6,
            },
        ] {
            let mut v: Vec<f64> = (0..20_001)
                .map(|_| model.draw(&mut rng).as_secs_f64())
                .collect();
            v.sort_by(f64::total_cmp);
            let median = v[10_000];
            assert!((median - 360.0).abs() < 20.0, "{model:?}: median {median}");
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let want = model.mean().as_secs_f64();
            assert!(
                (mean - want).abs() / want < 0.08,
                "{model:?}: mean {mean} vs {want}"
            );
        }
    }

    #[test]
    fn the_wide_area_model_has_the_documented_spread() {
        let mut rng = ChaCha12Rng::seed_from_u64(2);
        let mut l = LatencyImpl::new(Latency::wide_area());
        let mut v: Vec<f64> = (0..5000u128)
            .map(|i| {
                l.delay(NodeId(i * 7919), NodeId(i * 104_729 + 1), &mut rng)
                    .as_secs_f64()
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let (p10, p50, p90) = (v[500], v[2500], v[4500]);
        assert!((0.015..0.024).contains(&p10), "p10 {p10}");
        assert!((0.038..0.046).contains(&p50), "p50 {p50}");
        assert!((0.080..0.100).contains(&p90), "p90 {p90}");
        // A pair keeps its base delay (only the small jitter varies).
        let a = l.delay(NodeId(5), NodeId(9), &mut rng);
        let b = l.delay(NodeId(9), NodeId(5), &mut rng);
        assert!(a.abs_diff(b) < Duration::from_millis(30));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1.4m").unwrap(), Duration::from_secs(84));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
