//! Pictures and traces of a run: a CPU timeline and a latency CDF as SVG (plotters), and the
//! Chrome/Perfetto JSON trace format (open in https://ui.perfetto.dev or chrome://tracing).

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::engine::RunOutcome;
use crate::metrics::Histogram;
use crate::scenario::Scenario;
use crate::units::{MS, Time};

/// CPUs drawn in the timeline at most (the trace has all of them).
pub const TIMELINE_MAX_CPUS: u32 = 64;

fn colour(record: u32) -> RGBColor {
    // Well-separated hues; tasks beyond the palette reuse colours.
    const PALETTE: [(u8, u8, u8); 12] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
        (0, 0, 128),
        (128, 128, 0),
    ];
    let (r, g, b) = PALETTE[record as usize % PALETTE.len()];
    RGBColor(r, g, b)
}

fn plot_error(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Which task ran on which CPU during the first `window` ns, as SVG text.
pub fn timeline_svg(
    outcome: &RunOutcome,
    scenario: &Scenario,
    window: Time,
) -> Result<String, String> {
    let window = window.min(outcome.end).max(1);
    let cpus = scenario.machine.nr_cpus().min(TIMELINE_MAX_CPUS);
    let height = (120 + cpus * 18).min(1400);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let window_ms = window as f64 / MS as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{} under {}: CPU timeline (first {window_ms:.1} ms)",
                    scenario.name, outcome.policy
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..window_ms, 0f64..cpus as f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("time (ms)")
            .y_desc("CPU")
            .y_labels(cpus.min(16) as usize)
            .y_label_formatter(&|y| format!("{}", *y as u32))
            .disable_y_mesh()
            .draw()
            .map_err(plot_error)?;
        let to_ms = |t: Time| t.min(window) as f64 / MS as f64;
        chart
            .draw_series(
                outcome
                    .trace
                    .iter()
                    .filter(|s| s.cpu < cpus && s.dispatched < window)
                    .flat_map(|s| {
                        let y = s.cpu as f64;
                        let overhead = Rectangle::new(
                            [(to_ms(s.dispatched), y + 0.1), (to_ms(s.exec), y + 0.9)],
                            BLACK.filled(),
                        );
                        let run = Rectangle::new(
                            [(to_ms(s.exec), y + 0.1), (to_ms(s.end), y + 0.9)],
                            colour(s.record).filled(),
                        );
                        [overhead, run]
                    }),
            )
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// CDF of runnable-wait per cgroup (or per task when there is one cgroup), as SVG text.
pub fn latency_cdf_svg(outcome: &RunOutcome, scenario: &Scenario) -> Result<String, String> {
    let mut curves: Vec<(String, Histogram)> = if scenario.cgroups.len() > 1 {
        crate::report::cgroup_waits(outcome, scenario)
            .into_iter()
            .enumerate()
            .map(|(i, h)| (scenario.cgroups[i].clone(), h))
            .collect()
    } else {
        outcome
            .records
            .iter()
            .map(|r| (r.name.clone(), r.wait.clone()))
            .collect()
    };
    curves.retain(|(_, h)| h.count > 0);
    // The ten curves with the most samples keep the plot readable.
    curves.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    curves.truncate(10);
    let to_us = |ns: Time| (ns as f64 / 1000.0).max(0.01);
    let max_us = curves
        .iter()
        .map(|(_, h)| to_us(h.max))
        .fold(1.0f64, f64::max)
        * 1.5;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{} under {}: runnable-wait CDF",
                    scenario.name, outcome.policy
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0.01f64..max_us).log_scale(), 0f64..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("wait (µs, log)")
            .y_desc("fraction of waits")
            .draw()
            .map_err(plot_error)?;
        for (i, (name, h)) in curves.iter().enumerate() {
            let c = colour(i as u32);
            let mut points = vec![(0.01, 0.0)];
            points.extend(h.cdf().into_iter().map(|(v, f)| (to_us(v), f)));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(plot_error)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}

/// The run's stints in the Chrome/Perfetto JSON trace format: one track per CPU, one slice
/// per stint named after the task, switching/migration cost as "switch" slices.
pub fn perfetto_trace(outcome: &RunOutcome, scenario: &Scenario) -> String {
    let mut out = String::with_capacity(outcome.trace.len() * 110 + 1024);
    out.push_str("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
    let _ = write!(
        out,
        "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":0,\"tid\":0,\"args\":{{\"name\":{}}}}}",
        json_string(&format!("{} ({})", scenario.name, outcome.policy))
    );
    for cpu in 0..scenario.machine.nr_cpus() {
        let _ = write!(
            out,
            ",\n{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":0,\"tid\":{cpu},\"args\":{{\"name\":\"CPU {cpu}\"}}}}"
        );
    }
    let us = |t: Time| format!("{}.{:03}", t / 1000, t % 1000);
    for s in &outcome.trace {
        if s.exec > s.dispatched {
            let _ = write!(
                out,
                ",\n{{\"ph\":\"X\",\"name\":\"switch\",\"cat\":\"overhead\",\"pid\":0,\"tid\":{},\"ts\":{},\"dur\":{}}}",
                s.cpu,
                us(s.dispatched),
                us(s.exec - s.dispatched)
            );
        }
        let record = &outcome.records[s.record as usize];
        let _ = write!(
            out,
            ",\n{{\"ph\":\"X\",\"name\":{},\"cat\":\"run\",\"pid\":0,\"tid\":{},\"ts\":{},\"dur\":{},\"args\":{{\"cgroup\":{}}}}}",
            json_string(&record.name),
            s.cpu,
            us(s.exec),
            us(s.end.saturating_sub(s.exec)),
            json_string(&scenario.cgroups[record.cgroup as usize])
        );
    }
    out.push_str("\n]}\n");
    out
}
