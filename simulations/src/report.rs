//! A run's results on disk: `summary.txt`, one CSV per metric, and plots (SVG and
//! PNG) drawn with plotters and the DejaVu Sans font shipped in `assets/`.

use std::path::Path;

use plotters::prelude::*;

use crate::metrics::Metrics;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Writes summary, CSVs and plots of `m` (a run of `nodes` nodes) into `dir`.
pub fn write(dir: &Path, m: &Metrics, nodes: usize, header: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = [
        ("summary.txt", format!("{header}{}", m.summary(nodes))),
        ("timeseries.csv", m.timeseries_csv()),
        ("hops.csv", m.hops_csv()),
        ("latency.csv", m.latency_csv()),
        ("violations.csv", m.violations_csv()),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    plots(dir, m, nodes).map_err(|e| format!("plotting into {}: {e}", dir.display()))
}

/// Pixel size of every plot.
const SIZE: (u32, u32) = (800, 500);

/// Draws the four plots, each as SVG and PNG.
pub fn plots(dir: &Path, m: &Metrics, nodes: usize) -> DrawResult {
    register_font();
    macro_rules! draw_with {
        ($backend:ident, $ext:literal) => {{
            let file = |name: &str| dir.join(format!("{name}.{}", $ext));
            let (hops, cdf, time) = (file("hops"), file("latency_cdf"), file("over_time"));
            hop_plot($backend::new(&hops, SIZE).into_drawing_area(), m, nodes)?;
            cdf_plot($backend::new(&cdf, SIZE).into_drawing_area(), m)?;
            time_plot($backend::new(&time, SIZE).into_drawing_area(), m)?;
            let traffic = file("traffic");
            traffic_plot($backend::new(&traffic, SIZE).into_drawing_area(), m)?;
        }};
    }
    draw_with!(SVGBackend, "svg");
    draw_with!(BitMapBackend, "png");
    Ok(())
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
use plotters::coord::types::RangedCoordf64;

/// A white plot with a caption and a labelled mesh: `x` and `y` are each a range and
/// its axis description.
fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x: (std::ops::Range<f64>, &str),
    y: (std::ops::Range<f64>, &str),
) -> Result<Chart<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x.0, y.0)?;
    chart
        .configure_mesh()
        .x_desc(x.1)
        .y_desc(y.1)
        .label_style(("sans-serif", 14))
        .draw()?;
    Ok(chart)
}

/// The legend box, at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn hop_plot<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    m: &Metrics,
    nodes: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let hist = m.hop_histogram();
    let total = hist.iter().sum::<u64>().max(1) as f64;
    let fractions: Vec<f64> = hist.iter().map(|n| *n as f64 / total).collect();
    let top = fractions.iter().copied().fold(0.0, f64::max).max(0.05) * 1.15;
    let half_log = 0.5 * (nodes.max(1) as f64).log2();
    let max_x = (hist.len() as f64).max(half_log + 2.0);
    let caption = format!(
        "Lookup hops, N = {nodes} (mean {:.2}, ½·log₂N = {half_log:.2})",
        m.mean_hops()
    );
    let mut chart = chart(
        &area,
        &caption,
        (-0.5..max_x, "hops"),
        (0.0..top, "fraction of lookups"),
    )?;
    chart.draw_series(fractions.iter().enumerate().map(|(h, f)| {
        let x = h as f64;
        Rectangle::new([(x - 0.4, 0.0), (x + 0.4, *f)], BLUE.mix(0.6).filled())
    }))?;
    chart
        .draw_series(LineSeries::new(
            vec![(half_log, 0.0), (half_log, top)],
            RED.stroke_width(2),
        ))?
        .label("½·log₂N")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            vec![(m.mean_hops(), 0.0), (m.mean_hops(), top)],
            BLACK.stroke_width(1),
        ))?
        .label("measured mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
    area.present()?;
    Ok(())
}

fn cdf_plot<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    m: &Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let v = m.sorted_latencies();
    let max = v.last().copied().unwrap_or(1.0).max(1.0) * 1.05;
    let mut chart = chart(
        &area,
        "Lookup latency CDF (simulated time)",
        (0.0..max, "latency (ms)"),
        (0.0..1.0, "fraction of lookups"),
    )?;
    let n = v.len().max(1) as f64;
    chart.draw_series(LineSeries::new(
        v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n)),
        BLUE.stroke_width(2),
    ))?;
    area.present()?;
    Ok(())
}

fn time_plot<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    m: &Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let pts = |f: &dyn Fn(&crate::metrics::Sample) -> f64| -> Vec<(f64, f64)> {
        m.samples
            .iter()
            .map(|s| (s.at.as_secs_f64() / 60.0, f(s)))
            .collect()
    };
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let success = pts(&|s| ratio(s.lookups_found, s.lookups));
    let correct = pts(&|s| ratio(s.lookups_correct, s.lookups));
    let avail = pts(&|s| ratio(s.records_present as u64, s.records_expected as u64));
    let t0 = success.first().map_or(0.0, |p| p.0);
    let t1 = success.last().map_or(1.0, |p| p.0).max(t0 + 1.0);
    let low = success
        .iter()
        .chain(&avail)
        .chain(&correct)
        .map(|p| p.1)
        .fold(1.0, f64::min)
        .min(0.9)
        - 0.02;
    let mut chart = chart(
        &area,
        "Lookup success and record availability over time",
        (t0..t1, "simulated time (min)"),
        (low.max(0.0)..1.01, "fraction"),
    )?;
    for (data, color, label) in [
        (success, BLUE, "lookups that found the record"),
        (correct, GREEN, "answered by the responsible node"),
        (avail, RED, "records at the responsible node"),
    ] {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    area.present()?;
    Ok(())
}

/// What each live node sends per second over time (maintenance and workload).
fn traffic_plot<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    m: &Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let data: Vec<(f64, f64)> = m
        .samples
        .iter()
        .map(|s| (s.at.as_secs_f64() / 60.0, s.bytes_per_node_s))
        .collect();
    let t0 = data.first().map_or(0.0, |p| p.0);
    let t1 = data.last().map_or(1.0, |p| p.0).max(t0 + 1.0);
    let top = data.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = chart(
        &area,
        "Traffic per live node over time",
        (t0..t1, "simulated time (min)"),
        (0.0..top, "bytes/s sent per node"),
    )?;
    chart.draw_series(LineSeries::new(data, BLUE.stroke_width(2)))?;
    area.present()?;
    Ok(())
}
