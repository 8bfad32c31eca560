//! Pictures of a run: a CPU timeline and a latency CDF as SVG (plotters); its trace for
//! Perfetto is [`crate::perfetto`].
//! The legend and the palette here are also those of `upsched sweep`'s plots.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::engine::RunOutcome;
use crate::metrics::Histogram;
use crate::scenario::Scenario;
use crate::units::{MS, Time};

/// CPUs drawn in the timeline at most (the trace has all of them).
pub const TIMELINE_MAX_CPUS: u32 = 64;

/// Well-separated colours, one per legend key; a plot never needs more keys than this (the
/// timeline groups its tasks until they fit, see [`timeline_svg`]).
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 128),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(158, 218, 229),
    RGBColor(219, 219, 141),
    RGBColor(128, 128, 0),
];

/// Legend keys a plot shows at most: one colour each.
pub const MAX_KEYS: usize = PALETTE.len();

/// The colour of legend key `index` (keys past [`MAX_KEYS`] reuse colours).
pub fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Switching and migration time in the timeline.
const SWITCH_COLOUR: RGBColor = BLACK;
/// The tasks the timeline's legend gathers under one key when they are too many.
const OTHERS_COLOUR: RGBColor = RGBColor(190, 190, 190);

/// Width of the area that holds `legend`: room for its longest label.
pub fn legend_width(legend: &[LegendEntry]) -> u32 {
    let chars = legend
        .iter()
        .map(|e| e.label.chars().count())
        .max()
        .unwrap_or(0);
    (40 + 7 * chars.min(LEGEND_MAX_CHARS) as u32).max(120)
}

const LEGEND_MAX_CHARS: usize = 36;
const LEGEND_ROW: i32 = 18;

/// How a legend key is drawn: a filled box (areas) or a line (curves).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Swatch {
    Box,
    Line,
}

/// One row of a legend: its label and its colour.
pub struct LegendEntry {
    pub label: String,
    pub colour: RGBColor,
    pub swatch: Swatch,
}

/// Draws `entries` top down in `area`, an area of its own beside the chart, so that the
/// legend never hides data.
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(), String> {
    let font = ("sans-serif", 13).into_font();
    for (row, entry) in entries.iter().enumerate() {
        let y = 40 + row as i32 * LEGEND_ROW;
        match entry.swatch {
            Swatch::Box => area.draw(&Rectangle::new(
                [(6, y - 5), (22, y + 5)],
                entry.colour.filled(),
            )),
            Swatch::Line => area.draw(&PathElement::new(
                [(4, y), (24, y)],
                entry.colour.stroke_width(2),
            )),
        }
        .map_err(plot_error)?;
        let label: String = if entry.label.chars().count() > LEGEND_MAX_CHARS {
            let mut short: String = entry.label.chars().take(LEGEND_MAX_CHARS - 1).collect();
            short.push('…');
            short
        } else {
            entry.label.clone()
        };
        area.draw(&Text::new(
            label,
            (30, y),
            TextStyle::from(font.clone()).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(plot_error)?;
    }
    Ok(())
}

/// Height a legend of `rows` entries needs.
fn legend_height(rows: usize) -> u32 {
    (50 + rows as i32 * LEGEND_ROW) as u32
}

pub fn plot_error(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// The timeline's legend: its keys and the key each record is drawn in.
struct TimelineKeys {
    labels: Vec<String>,
    /// The last key gathers the tasks that did not get one of their own.
    others: bool,
    /// Per record; `None` for the records that did not run in the window.
    of_record: Vec<Option<usize>>,
}

impl TimelineKeys {
    fn colour(&self, key: usize) -> RGBColor {
        if self.others && key == self.labels.len() - 1 {
            OTHERS_COLOUR
        } else {
            colour(key)
        }
    }
}

/// The legend key of every record that ran in the timeline: one key per task while they fit
/// the palette, else one per task name (its instances together), else one per cgroup, else
/// the busiest tasks and one key for the others.
fn timeline_keys(
    outcome: &RunOutcome,
    scenario: &Scenario,
    cpu_in_window: &[Time],
) -> TimelineKeys {
    let shown: Vec<usize> = (0..outcome.records.len())
        .filter(|r| cpu_in_window[*r] > 0)
        .collect();
    let group = |label: &dyn Fn(usize) -> String| {
        let mut labels: Vec<String> = Vec::new();
        let mut keys = vec![None; outcome.records.len()];
        for &r in &shown {
            let l = label(r);
            let key = match labels.iter().position(|x| *x == l) {
                Some(k) => k,
                None => {
                    labels.push(l);
                    labels.len() - 1
                }
            };
            keys[r] = Some(key);
        }
        TimelineKeys {
            labels,
            others: false,
            of_record: keys,
        }
    };
    let by_task = group(&|r| outcome.records[r].name.clone());
    if by_task.labels.len() <= MAX_KEYS {
        return by_task;
    }
    let by_name = group(&|r| {
        scenario.tasks[outcome.records[r].spec as usize]
            .name
            .clone()
    });
    if by_name.labels.len() <= MAX_KEYS {
        return by_name;
    }
    let by_cgroup = group(&|r| scenario.cgroups[outcome.records[r].cgroup as usize].clone());
    if by_cgroup.labels.len() <= MAX_KEYS {
        return by_cgroup;
    }
    let mut busiest = shown.clone();
    busiest.sort_by(|a, b| cpu_in_window[*b].cmp(&cpu_in_window[*a]).then(a.cmp(b)));
    let others = busiest.split_off(MAX_KEYS - 1);
    let mut labels: Vec<String> = busiest
        .iter()
        .map(|r| outcome.records[*r].name.clone())
        .collect();
    labels.push(format!("{} other tasks", others.len()));
    let mut keys = vec![None; outcome.records.len()];
    for (k, r) in busiest.iter().enumerate() {
        keys[*r] = Some(k);
    }
    for r in others {
        keys[r] = Some(MAX_KEYS - 1);
    }
    TimelineKeys {
        labels,
        others: true,
        of_record: keys,
    }
}

/// Black text on light colours, white on dark ones.
fn text_colour_on(c: RGBColor) -> RGBColor {
    let luma = 0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64;
    if luma > 140.0 { BLACK } else { WHITE }
}

/// Which task ran on which CPU during the first `window` ns, as SVG text: one colour per
/// legend key (see [`timeline_keys`]), switching and migration time in black, and the task's
/// name written in every stint wide enough for it.
pub fn timeline_svg(
    outcome: &RunOutcome,
    scenario: &Scenario,
    window: Time,
) -> Result<String, String> {
    let window = window.min(outcome.end).max(1);
    let cpus = scenario.machine.nr_cpus().min(TIMELINE_MAX_CPUS);
    let shown = || {
        outcome
            .trace
            .iter()
            .filter(move |s| s.cpu < cpus && s.dispatched < window)
    };
    let mut cpu_in_window = vec![0; outcome.records.len()];
    for s in shown() {
        cpu_in_window[s.record as usize] += s.end.min(window).saturating_sub(s.exec.min(window));
    }
    let keys = timeline_keys(outcome, scenario, &cpu_in_window);
    let mut legend: Vec<LegendEntry> = keys
        .labels
        .iter()
        .enumerate()
        .map(|(k, label)| LegendEntry {
            label: label.clone(),
            colour: keys.colour(k),
            swatch: Swatch::Box,
        })
        .collect();
    legend.push(LegendEntry {
        label: "switch / migration".into(),
        colour: SWITCH_COLOUR,
        swatch: Swatch::Box,
    });
    let legend_width = legend_width(&legend);
    let height = (120 + cpus * 18).min(1400).max(legend_height(legend.len()));
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1000 + legend_width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (plot_area, legend_area) = root.split_horizontally(1000);
        let window_ms = window as f64 / MS as f64;
        let mut chart = ChartBuilder::on(&plot_area)
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
            // CPU c's row is centred on c, where the axis labels it.
            .build_cartesian_2d(0f64..window_ms, -0.5f64..cpus as f64 - 0.5)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("time (ms)")
            .y_desc("CPU")
            .y_labels(cpus.min(16) as usize)
            .y_label_formatter(&|y| {
                if y.fract() == 0.0 {
                    format!("{y}")
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()
            .map_err(plot_error)?;
        let to_ms = |t: Time| t.min(window) as f64 / MS as f64;
        let task_colour =
            |record: u32| keys.of_record[record as usize].map_or(OTHERS_COLOUR, |k| keys.colour(k));
        chart
            .draw_series(shown().flat_map(|s| {
                let y = s.cpu as f64;
                let overhead = Rectangle::new(
                    [(to_ms(s.dispatched), y - 0.4), (to_ms(s.exec), y + 0.4)],
                    SWITCH_COLOUR.filled(),
                );
                let run = Rectangle::new(
                    [(to_ms(s.exec), y - 0.4), (to_ms(s.end), y + 0.4)],
                    task_colour(s.record).filled(),
                );
                [overhead, run]
            }))
            .map_err(plot_error)?;
        // Names in the stints wide enough to hold them (about 6 px a character).
        let font = ("sans-serif", 10).into_font();
        let names: Vec<_> = shown()
            .filter_map(|s| {
                let (x0, _) = chart.backend_coord(&(to_ms(s.exec), 0.0));
                let (x1, _) = chart.backend_coord(&(to_ms(s.end), 0.0));
                let name = &outcome.records[s.record as usize].name;
                if name.chars().count() as i32 * 6 + 4 > x1 - x0 {
                    return None;
                }
                let style = font
                    .clone()
                    .color(&text_colour_on(task_colour(s.record)))
                    .pos(Pos::new(HPos::Left, VPos::Center));
                Some(Text::new(
                    name.clone(),
                    (to_ms(s.exec), s.cpu as f64),
                    style,
                ))
            })
            .collect();
        chart.draw_series(names).map_err(plot_error)?;
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The empirical CDF as a staircase: flat at each fraction until the next value, then a step
/// up, from `from` (fraction 0) to `to` (the last fraction).
fn staircase(cdf: &[(f64, f64)], from: f64, to: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(2 * cdf.len() + 2);
    points.push((from, 0.0));
    let mut below = 0.0;
    for &(x, fraction) in cdf {
        points.push((x, below));
        points.push((x, fraction));
        below = fraction;
    }
    points.push((to, below));
    points
}

/// CDF of runnable-wait per cgroup (or per task when there is one cgroup), as SVG text: a
/// staircase per curve, since the waits are discrete samples.
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
    let curves: Vec<CdfCurve> = curves
        .into_iter()
        .map(|(label, h)| CdfCurve {
            label,
            points: h.cdf(),
        })
        .collect();
    wait_cdf_svg(
        &format!(
            "{} under {}: runnable-wait CDF",
            scenario.name, outcome.policy
        ),
        &curves,
    )
}

/// One curve of a wait CDF: (wait in ns, fraction of waits at or below it), rising.
pub struct CdfCurve {
    pub label: String,
    pub points: Vec<(Time, f64)>,
}

/// At most this many points per curve from exact samples: a trace holds millions of waits,
/// and the plot cannot show more steps than it has pixels.
const MAX_CDF_POINTS: usize = 2000;

/// The empirical CDF of exact samples (sorted here), thinned to [`MAX_CDF_POINTS`] evenly
/// spaced ranks; the last point is always the maximum at fraction 1.
pub fn samples_cdf(samples: &mut [u64]) -> Vec<(Time, f64)> {
    samples.sort_unstable();
    let n = samples.len();
    let step = n.div_ceil(MAX_CDF_POINTS).max(1);
    let mut points = Vec::with_capacity(n.min(MAX_CDF_POINTS));
    let mut below = 0;
    while below < n {
        let value = samples[(below + step).min(n) - 1];
        // A run of equal samples is one step, at its highest rank.
        let at_or_below = samples.partition_point(|&s| s <= value);
        points.push((value, at_or_below as f64 / n as f64));
        below = at_or_below;
    }
    points
}

/// Wait CDFs on one log-scaled axis, as SVG text: a staircase per curve, a legend beside.
pub fn wait_cdf_svg(title: &str, curves: &[CdfCurve]) -> Result<String, String> {
    const MIN_US: f64 = 0.01;
    let to_us = |ns: Time| (ns as f64 / 1000.0).max(MIN_US);
    let max_us = curves
        .iter()
        .filter_map(|c| c.points.last())
        .map(|&(v, _)| to_us(v))
        .fold(1.0f64, f64::max)
        * 1.5;
    let legend: Vec<LegendEntry> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| LegendEntry {
            label: c.label.clone(),
            colour: colour(i),
            swatch: Swatch::Line,
        })
        .collect();
    let legend_width = legend_width(&legend);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800 + legend_width, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (plot_area, legend_area) = root.split_horizontally(800);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((MIN_US..max_us).log_scale(), 0f64..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("runnable wait (µs, log scale)")
            .y_desc("fraction of waits")
            .draw()
            .map_err(plot_error)?;
        for (entry, curve) in legend.iter().zip(curves) {
            let cdf: Vec<(f64, f64)> = curve.points.iter().map(|&(v, f)| (to_us(v), f)).collect();
            chart
                .draw_series(LineSeries::new(
                    staircase(&cdf, MIN_US, max_us),
                    entry.colour.stroke_width(2),
                ))
                .map_err(plot_error)?;
        }
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
