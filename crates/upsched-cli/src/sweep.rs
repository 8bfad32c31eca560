//! `upsched sweep`: run a scenario over a grid (one parameter × policies × seeds) on all cores
//! and write one CSV row per run and an SVG plot of a metric against the parameter.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use clap::{Args, Subcommand};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use upsched_sim::faas::FaasParams;
use upsched_sim::plots::{self, LegendEntry, Swatch, plot_error};
use upsched_sim::report::{self, RunReport};
use upsched_sim::units::{MS, parse_duration};
use upsched_sim::{RunOptions, Scenario, engine, tenants};

use crate::engine_arg::EngineArg;
use crate::failure::failure;
use crate::limits_arg::LimitArgs;

#[derive(Args)]
// A negative number reaches the value parser, which says what is wrong with it (clap would
// take it for an option and suggest `-- -1`).
#[command(
    allow_negative_numbers = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    /// Scenario: the built-in `faas[:NAME=VALUE,...]` (docs/faas-sim.md) or a TOML file.
    #[arg(required = true)]
    scenario: Option<String>,
    /// The parameter to vary and its values: `NAME=V1,V2,...` or `NAME=FROM..TO:STEP` (TO
    /// included). For `faas`, NAME is one of its parameters (chains, rate, cpus, spin,
    /// pollers, ...). For a TOML file, NAME is the dotted path of a value in the file, array
    /// elements chosen by index or by their `name`: `machine.cpus`, `arrival.requests.rate`,
    /// `task.0.count`, `duration`; the new value keeps the old one's type (integer, float,
    /// string such as "5ms").
    #[arg(long, value_name = "NAME=VALUES", required = true)]
    param: Option<String>,
    /// Policy to run at every point; repeat for several (default: the scenario's `policy`).
    /// Any name `upsched sim` accepts.
    #[arg(long = "policy", value_name = "NAME")]
    policies: Vec<String>,
    #[command(flatten)]
    engine: EngineArg,
    /// Seeds per point: 1..=N (the plot shows their mean and min-max band).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Metric for the CSV; repeat for several (default: all). `--metric help` lists them
    /// (and runs nothing).
    #[arg(long = "metric", value_name = "NAME")]
    metrics: Vec<String>,
    /// Metric plotted against the parameter, one SVG each; repeat for several (default: the
    /// first --metric, else idle_ratio for a scenario with chains, else wait_p99_ms).
    #[arg(long = "plot", value_name = "NAME")]
    plots: Vec<String>,
    /// Simulated time of every run (default: the scenario's).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<u64>,
    /// Directory for sweep.csv and sweep-METRIC.svg.
    #[arg(long, value_name = "DIR", default_value = "sweep-out")]
    out: PathBuf,
    /// Runs at a time (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Check every run's invariants (work conservation, no task lost, bounded waits) after
    /// every event, as `upsched sim --check` does; a run that breaks one fails the sweep. Slow.
    #[arg(long)]
    check: bool,
    /// Print the runs (metrics per run, failed runs with their error, files written) as JSON
    /// on stdout instead of the summary table; errors too are JSON then (see docs/cli.md).
    #[arg(long)]
    json: bool,
    /// Run only shard K of N of the grid (runs K, K+N, K+2N, ... in grid order) and write
    /// DIR/sweep-shard-K-of-N.json instead of the CSV and plots; `upsched sweep merge` of
    /// all N shards writes exactly the CSV and plots of the whole sweep. For array jobs on a
    /// cluster (docs/simulator.md).
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Merge the shard files of a sharded sweep (`--shard K/N`) into the CSV, plots and
    /// summary of the whole sweep, byte for byte those of an unsharded run.
    ///
    /// Every shard 1..N of the same sweep must be given once; shards of different sweeps, a
    /// missing or repeated shard, or a damaged file are refused and nothing is written.
    #[command(
        after_help = "Examples:\n  upsched sweep merge shards/sweep-shard-*-of-8.json --out sweep-out"
    )]
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// The shard files (sweep-shard-K-of-N.json).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Directory for sweep.csv and sweep-METRIC.svg.
    #[arg(long, value_name = "DIR", default_value = "sweep-out")]
    out: PathBuf,
    /// Print the runs as JSON, as `upsched sweep --json` does.
    #[arg(long)]
    json: bool,
}

impl SweepArgs {
    pub fn json(&self) -> bool {
        match &self.command {
            Some(SweepCommand::Merge(merge)) => merge.json,
            None => self.json,
        }
    }
}

/// Shard `index` (from 1) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Shard {
    index: usize,
    count: usize,
}

/// The most shards a sweep may be split into.
const MAX_SHARDS: usize = 100_000;

impl Shard {
    fn parse(text: &str) -> Result<Shard, String> {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not K/N (e.g. 3/8)"))?;
        let number = |t: &str| t.trim().parse::<usize>().ok();
        match (number(k), number(n)) {
            (Some(index), Some(count)) if (1..=count).contains(&index) && count <= MAX_SHARDS => {
                Ok(Shard { index, count })
            }
            _ => Err(format!(
                "{text:?}: K/N needs 1 <= K <= N <= {MAX_SHARDS} (e.g. 3/8)"
            )),
        }
    }

    /// Whether the run at `index` of the grid is this shard's.
    fn holds(self, index: usize) -> bool {
        index % self.count == self.index - 1
    }

    fn file_name(self) -> String {
        format!("sweep-shard-{}-of-{}.json", self.index, self.count)
    }
}

/// What one shard ran: the grid (so that the merge can check every shard is of one sweep and
/// write its outputs) and its runs, every metric at full precision.
#[derive(Serialize, Deserialize)]
struct ShardFile {
    format_version: u32,
    shard: Shard,
    grid: Grid,
    rows: Vec<Row>,
    failed: Vec<Failed>,
}

/// The largest shard file read: a bound on what a file can make the merge allocate.
const MAX_SHARD_FILE_BYTES: u64 = 256 << 20;

impl ShardFile {
    fn write(&self, out: &Path, json: bool) -> anyhow::Result<ExitCode> {
        let path = out.join(self.shard.file_name());
        std::fs::write(&path, serde_json::to_string(self)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        if json {
            println!(
                "{}",
                serde_json::json!({ "format_version": SWEEP_FORMAT_VERSION, "files": [path.display().to_string()] })
            );
        } else {
            println!(
                "shard {} of {}: {} runs, {} failed; wrote {}",
                self.shard.index,
                self.shard.count,
                self.rows.len(),
                self.failed.len(),
                path.display()
            );
        }
        Ok(if self.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    fn read(path: &Path) -> Result<ShardFile, String> {
        use std::io::Read;
        let name = path.display();
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_SHARD_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| format!("{name}: {e}"))?;
        if text.len() as u64 > MAX_SHARD_FILE_BYTES {
            return Err(format!(
                "{name}: larger than {} MiB: not a shard file",
                MAX_SHARD_FILE_BYTES >> 20
            ));
        }
        let file: ShardFile = serde_json::from_str(&text)
            .map_err(|e| format!("{name}: not a shard file of upsched sweep --shard: {e}"))?;
        if file.format_version != SWEEP_FORMAT_VERSION {
            return Err(format!(
                "{name}: shard format version {}, this upsched reads {SWEEP_FORMAT_VERSION}",
                file.format_version
            ));
        }
        Ok(file)
    }
}

/// `upsched sweep merge`: all shards of one sweep, checked, into its outputs.
fn merge(args: &MergeArgs) -> Result<(Sheet, Vec<Row>, Vec<Failed>), String> {
    let files = args
        .shards
        .iter()
        .map(|p| ShardFile::read(p).map(|f| (p, f)))
        .collect::<Result<Vec<_>, _>>()?;
    let (first_path, first) = &files[0];
    let count = first.shard.count;
    let mut seen = vec![false; count];
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (path, file) in &files {
        let name = path.display();
        if file.grid != first.grid || file.shard.count != count {
            return Err(format!(
                "{name} is a shard of another sweep than {} (grid or shard count differ)",
                first_path.display()
            ));
        }
        let slot = &mut seen[file.shard.index - 1];
        if std::mem::replace(slot, true) {
            return Err(format!(
                "{name}: shard {} of {count} given twice",
                file.shard.index
            ));
        }
        rows.extend(file.rows.iter().cloned());
        failed.extend(file.failed.iter().cloned());
    }
    let missing: Vec<String> = (1..=count)
        .filter(|k| !seen[k - 1])
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shards {} of {count} are missing",
            missing.join(", ")
        ));
    }
    // Every run of the grid once, each as the grid places it, with every metric.
    let jobs = first.grid.jobs();
    let mut done = vec![false; jobs.len()];
    for job in rows
        .iter()
        .map(|r| &r.job)
        .chain(failed.iter().map(|f| &f.job))
    {
        let expected = jobs.get(job.index);
        if expected != Some(job) || std::mem::replace(&mut done[job.index], true) {
            return Err(format!(
                "run {} of the grid is damaged or repeated",
                job.index
            ));
        }
    }
    if let Some(index) = done.iter().position(|d| !d) {
        return Err(format!("run {index} of the grid is in no shard"));
    }
    if rows.iter().any(|r| r.metrics.len() != METRICS.len()) {
        return Err("a run has another number of metrics than this upsched knows".into());
    }
    rows.sort_by_key(|r| r.job.index);
    failed.sort_by_key(|f| f.job.index);
    Ok((Sheet::new(first.grid.clone())?, rows, failed))
}

/// A metric of one run: name, meaning, and how to read it from the report (`None`: does not
/// apply, e.g. chain metrics without chains).
struct Metric {
    name: &'static str,
    about: &'static str,
    /// The plots' axis label: what it measures and in which unit.
    axis: &'static str,
    read: fn(&RunReport) -> Option<f64>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / MS as f64
}

const METRICS: [Metric; 13] = [
    Metric {
        name: "idle_ratio",
        about: "chains: CPU of the runtimes while no request was pending / their CPU",
        axis: "idle ratio (fraction of the runtimes' CPU)",
        read: |r| r.chains.as_ref()?.all.idle_ratio,
    },
    Metric {
        name: "poll_ratio",
        about: "chains: CPU the runtimes spent polling (spin) / their CPU",
        axis: "polling share (fraction of the runtimes' CPU)",
        read: RunReport::poll_ratio,
    },
    Metric {
        name: "latency_mean_ms",
        about: "chains: mean end-to-end latency",
        axis: "mean end-to-end latency (ms)",
        read: |r| Some(r.chains.as_ref()?.all.latency.mean_ns / MS as f64),
    },
    Metric {
        name: "latency_p50_ms",
        about: "chains: median end-to-end latency",
        axis: "median end-to-end latency (ms)",
        read: |r| Some(ms(r.chains.as_ref()?.all.latency.p50_ns)),
    },
    Metric {
        name: "latency_p99_ms",
        about: "chains: 99th percentile of the end-to-end latency",
        axis: "p99 end-to-end latency (ms)",
        read: |r| Some(ms(r.chains.as_ref()?.all.latency.p99_ns)),
    },
    Metric {
        name: "latency_max_ms",
        about: "chains: longest end-to-end latency",
        axis: "longest end-to-end latency (ms)",
        read: |r| Some(ms(r.chains.as_ref()?.all.latency.max_ns)),
    },
    Metric {
        name: "throughput",
        about: "chains: completed requests per simulated second, all chains",
        axis: "completed requests (per simulated second)",
        read: |r| Some(r.chains.as_ref()?.all.throughput_per_s),
    },
    Metric {
        name: "completed_ratio",
        about: "chains: completed / arrived requests",
        axis: "completed requests (fraction of arrived)",
        read: |r| {
            let all = &r.chains.as_ref()?.all;
            (all.arrivals > 0).then(|| all.completed as f64 / all.arrivals as f64)
        },
    },
    Metric {
        name: "utilisation",
        about: "busy time of all CPUs / their capacity",
        axis: "CPU utilisation (fraction of capacity)",
        read: |r| Some(r.totals.utilisation),
    },
    Metric {
        name: "spin_share",
        about: "CPU time spent spinning / all task CPU time",
        axis: "spinning (fraction of all task CPU)",
        read: |r| upsched_sim::chains::ratio(r.totals.spin_ns, r.totals.cpu_ns),
    },
    Metric {
        name: "wait_p99_ms",
        about: "99th percentile of the runnable wait of all tasks",
        axis: "p99 runnable wait (ms)",
        read: |r| Some(ms(r.totals.wait.p99_ns)),
    },
    Metric {
        name: "fairness",
        about: "Jain's index over weight-normalised CPU time",
        axis: "Jain's fairness index (1 = fair)",
        read: |r| r.fairness.jain_index,
    },
    Metric {
        name: "events",
        about: "events the simulator handled",
        axis: "events handled (count)",
        read: |r| Some(r.events as f64),
    },
];

/// Metric `name` of a simulator run's report (`None`: unknown or does not apply).
pub fn metric_of(name: &str, report: &RunReport) -> Option<f64> {
    (metric(name).ok()?.read)(report)
}

fn metric(name: &str) -> Result<&'static Metric, String> {
    METRICS.iter().find(|m| m.name == name).ok_or_else(|| {
        format!(
            "unknown metric {name:?}; metrics:\n{}",
            METRICS
                .iter()
                .map(|m| format!("  {:<16} {}", m.name, m.about))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Splits `NAME=VALUES` and expands the values.
fn parse_param(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, values) = text
        .split_once('=')
        .filter(|(n, v)| !n.trim().is_empty() && !v.trim().is_empty())
        .ok_or_else(|| format!("--param {text:?}: write NAME=V1,V2,... or NAME=FROM..TO:STEP"))?;
    let values = values.trim();
    let list = match values.split_once("..") {
        Some((from, rest)) => {
            let (to, step) = rest.split_once(':').unwrap_or((rest, "1"));
            let number = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("--param {name}: {s:?} in the range is not a number"))
            };
            let (from, to, step) = (number(from)?, number(to)?, number(step)?);
            if step <= 0.0 || to < from {
                return Err(format!(
                    "--param {name}: the range {values:?} is empty (FROM <= TO, STEP > 0)"
                ));
            }
            let count = ((to - from) / step + 1e-9).floor() as u64 + 1;
            if count > 10_000 {
                return Err(format!("--param {name}: {count} values is too many"));
            }
            (0..count)
                .map(|i| format_number(from + i as f64 * step))
                .collect()
        }
        None => values
            .split(',')
            .map(|v| v.trim().to_string())
            .collect::<Vec<_>>(),
    };
    if list.iter().any(|v| v.is_empty()) {
        return Err(format!("--param {name}: an empty value in {values:?}"));
    }
    Ok((name.trim().to_string(), list))
}

/// `3` rather than `3.0`, but `0.5` stays.
fn format_number(v: f64) -> String {
    let rounded = (v * 1e9).round() / 1e9;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// The scenario at one value of the parameter.
enum Base {
    Faas(FaasParams),
    Toml { file: String, doc: toml::Table },
}

impl Base {
    fn load(spec: &str) -> Result<Base, String> {
        if let Some(params) = FaasParams::from_spec(spec) {
            return params.map(Base::Faas);
        }
        let text = std::fs::read_to_string(spec).map_err(|e| format!("cannot read {spec}: {e}"))?;
        // Check the file as it is first, so that its own errors name their line.
        upsched_sim::parse_scenario(&text, spec).map_err(|e| e.to_string())?;
        let doc = text
            .parse::<toml::Table>()
            .map_err(|e| format!("{spec}: {e}"))?;
        Ok(Base::Toml {
            file: spec.to_string(),
            doc,
        })
    }

    fn with(&self, name: &str, value: &str) -> Result<Scenario, String> {
        match self {
            Base::Faas(params) => {
                let mut p = params.clone();
                p.set(name, value)?;
                Ok(p.build())
            }
            Base::Toml { file, doc } => {
                let mut doc = doc.clone();
                set_path(&mut doc, name, value)?;
                let text = toml::to_string(&doc).map_err(|e| format!("{name}: {e}"))?;
                let label = format!("{file} with {name}={value}");
                upsched_sim::parse_scenario(&text, &label).map_err(|e| e.to_string())
            }
        }
    }

    fn file(&self) -> String {
        match self {
            Base::Faas(p) => p.name(),
            Base::Toml { file, .. } => file.clone(),
        }
    }
}

/// Sets the value at a dotted path in a TOML document, keeping its type.
fn set_path(doc: &mut toml::Table, path: &str, value: &str) -> Result<(), String> {
    let segments: Vec<&str> = path.split('.').collect();
    let (last, parents) = segments
        .split_last()
        .filter(|(l, _)| !l.is_empty())
        .ok_or_else(|| format!("parameter path {path:?} is empty"))?;
    let mut table = doc;
    for (i, segment) in parents.iter().enumerate() {
        let here = segments[..=i].join(".");
        let next = match table.get_mut(*segment) {
            Some(toml::Value::Table(t)) => t,
            Some(toml::Value::Array(items)) => {
                return set_in_array(items, &segments[i + 1..], &here, path, value);
            }
            Some(_) => return Err(format!("parameter {path:?}: {here} is not a table")),
            None => return Err(format!("parameter {path:?}: the scenario has no {here}")),
        };
        table = next;
    }
    let new = match table.get(*last) {
        Some(old) => typed_like(old, value, path)?,
        None => return Err(format!("parameter {path:?}: the scenario has no {path}")),
    };
    table.insert(last.to_string(), new);
    Ok(())
}

/// `rest` = [element, field...]: the element by index or by its `name`.
fn set_in_array(
    items: &mut [toml::Value],
    rest: &[&str],
    here: &str,
    path: &str,
    value: &str,
) -> Result<(), String> {
    let key = rest[0];
    let position = match key.parse::<usize>() {
        Ok(i) if i < items.len() => i,
        Ok(i) => {
            return Err(format!(
                "parameter {path:?}: {here} has {} elements, no {i}",
                items.len()
            ));
        }
        Err(_) => items
            .iter()
            .position(|v| v.get("name").and_then(|n| n.as_str()) == Some(key))
            .ok_or_else(|| format!("parameter {path:?}: no {here} is named {key:?}"))?,
    };
    let element = &mut items[position];
    let Some(table) = element.as_table_mut() else {
        return Err(format!("parameter {path:?}: {here}.{key} is not a table"));
    };
    if rest.len() < 2 {
        return Err(format!(
            "parameter {path:?}: name a value inside {here}.{key}"
        ));
    }
    set_path(table, &rest[1..].join("."), value).map_err(|e| {
        // Errors of the inner path name the whole path.
        e.replacen(
            &format!("{:?}", rest[1..].join(".")),
            &format!("{path:?}"),
            1,
        )
    })
}

fn typed_like(old: &toml::Value, value: &str, path: &str) -> Result<toml::Value, String> {
    let bad = |kind: &str| format!("parameter {path}: {value:?} is not {kind}");
    Ok(match old {
        toml::Value::Integer(_) => {
            toml::Value::Integer(value.parse().map_err(|_| bad("an integer"))?)
        }
        toml::Value::Float(_) => toml::Value::Float(value.parse().map_err(|_| bad("a number"))?),
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(value.parse().map_err(|_| bad("true or false"))?)
        }
        toml::Value::String(_) => toml::Value::String(value.to_string()),
        _ => {
            return Err(format!(
                "parameter {path}: only integers, numbers, booleans and strings can be swept"
            ));
        }
    })
}

/// One run of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    /// Its place in the whole grid (points × policies × seeds, in that order).
    index: usize,
    point: usize,
    policy: usize,
    seed: u64,
}

/// A run's result: every metric of [`METRICS`], in its order (`None` where it does not apply).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    job: Job,
    metrics: Vec<Option<f64>>,
}

impl Row {
    fn of(job: Job, report: &RunReport) -> Row {
        Row {
            job,
            metrics: METRICS.iter().map(|m| (m.read)(report)).collect(),
        }
    }

    fn value(&self, metric: &Metric) -> Option<f64> {
        let index = METRICS.iter().position(|m| m.name == metric.name)?;
        self.metrics.get(index).copied().flatten()
    }
}

/// What the outputs (CSV, plots, summary, JSON) are made of: the grid and the metrics. A
/// shard's file carries it, so that merged shards give the outputs of the unsharded sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Grid {
    /// The scenario's label in the plots' captions.
    file: String,
    param: String,
    values: Vec<String>,
    policies: Vec<String>,
    seeds: u64,
    columns: Vec<String>,
    plotted: Vec<String>,
}

impl Grid {
    fn jobs(&self) -> Vec<Job> {
        let (policies, seeds) = (self.policies.len(), self.seeds);
        (0..self.values.len())
            .flat_map(|point| {
                (0..policies).flat_map(move |policy| {
                    (1..=seeds).map(move |seed| Job {
                        index: (point * policies + policy) * seeds as usize + seed as usize - 1,
                        point,
                        policy,
                        seed,
                    })
                })
            })
            .collect()
    }
}

/// A grid with its metrics resolved.
struct Sheet {
    grid: Grid,
    columns: Vec<&'static Metric>,
    plotted: Vec<&'static Metric>,
}

impl Sheet {
    fn new(grid: Grid) -> Result<Sheet, String> {
        let resolve = |names: &[String]| -> Result<Vec<&'static Metric>, String> {
            names.iter().map(|m| metric(m)).collect()
        };
        Ok(Sheet {
            columns: resolve(&grid.columns)?,
            plotted: resolve(&grid.plotted)?,
            grid,
        })
    }
}

pub fn run(args: &SweepArgs) -> anyhow::Result<ExitCode> {
    if let Some(SweepCommand::Merge(merge_args)) = &args.command {
        let (sheet, rows, failed) = merge(merge_args).map_err(|e| failure(2, e))?;
        return write_outputs(&merge_args.out, &sheet, &rows, &failed, merge_args.json);
    }
    if args.metrics.iter().any(|m| m == "help") {
        for m in &METRICS {
            println!("{:<16} {}", m.name, m.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match prepare(args) {
        Ok(plan) => execute(args, plan),
        Err(e) => Err(failure(2, e)),
    }
}

struct Plan {
    sheet: Sheet,
    scenarios: Vec<Scenario>,
    /// Each policy loaded once, instantiated per run.
    policy_cache: tenants::PolicyCache,
}

/// Checks every argument and builds every scenario before anything runs.
fn prepare(args: &SweepArgs) -> Result<Plan, String> {
    let mut columns = args
        .metrics
        .iter()
        .map(|m| metric(m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plotted = args
        .plots
        .iter()
        .map(|m| metric(m))
        .collect::<Result<Vec<_>, _>>()?;
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    let (Some(scenario), Some(param)) = (&args.scenario, &args.param) else {
        return Err("a sweep needs a scenario and --param".into());
    };
    let (param, values) = parse_param(param)?;
    let base = Base::load(scenario)?;
    let scenarios = values
        .iter()
        .map(|v| base.with(&param, v))
        .collect::<Result<Vec<_>, _>>()?;
    let policies = if args.policies.is_empty() {
        scenarios[0].policies.clone()
    } else {
        args.policies.clone()
    };
    if let Some(warning) = tenants::unused_tenants_warning(&scenarios[0], &policies) {
        eprintln!("upsched sweep: warning: {warning}");
    }
    let file = base.file();
    let cache = tenants::PolicyCache::new(args.engine.mode());
    for p in &policies {
        tenants::scheduler_from(p, &scenarios[0], &file, &cache)?;
    }
    let has_chains = scenarios.iter().any(|s| !s.chains.is_empty());
    if plotted.is_empty() {
        plotted.push(match columns.first() {
            Some(m) => *m,
            None => metric(if has_chains {
                "idle_ratio"
            } else {
                "wait_p99_ms"
            })?,
        });
    }
    if columns.is_empty() {
        columns = METRICS.iter().collect();
    }
    let name = |m: &&Metric| m.name.to_string();
    let grid = Grid {
        file,
        param,
        values,
        policies,
        seeds: args.seeds,
        columns: columns.iter().map(name).collect(),
        plotted: plotted.iter().map(name).collect(),
    };
    Ok(Plan {
        sheet: Sheet {
            grid,
            columns,
            plotted,
        },
        scenarios,
        policy_cache: cache,
    })
}

fn execute(args: &SweepArgs, plan: Plan) -> anyhow::Result<ExitCode> {
    let grid = &plan.sheet.grid;
    let jobs: Vec<Job> = grid
        .jobs()
        .into_iter()
        .filter(|job| args.shard.is_none_or(|shard| shard.holds(job.index)))
        .collect();
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, jobs.len().max(1));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "sweep [{bar:40}] {pos}/{len} runs, {elapsed}, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Row, String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let scenario = &plan.scenarios[job.point];
                    let policy = &grid.policies[job.policy];
                    let outcome =
                        tenants::scheduler_from(policy, scenario, &grid.file, &plan.policy_cache)
                            .and_then(|sched| {
                                let opts = RunOptions {
                                    seed: job.seed,
                                    duration: args.duration,
                                    check_invariants: args.check,
                                    limits: args.limits.limits(),
                                    ..Default::default()
                                };
                                engine::run(scenario, sched, opts).map_err(|e| e.to_string())
                            });
                    let line = format!(
                        "{}={} {policy} seed {}",
                        grid.param, grid.values[job.point], job.seed
                    );
                    let result = outcome.map(|o| Row::of(*job, &report::run_report(&o, scenario)));
                    if bar.is_hidden() {
                        eprintln!(
                            "[{}/{}] {line}{}",
                            bar.position() + 1,
                            jobs.len(),
                            if result.is_err() { ": failed" } else { "" }
                        );
                    } else {
                        bar.set_message(line);
                    }
                    bar.inc(1);
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(result);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a sweep thread panicked"))?;

    // A failed run (a policy broke an invariant, a run limit) is reported and left out; the
    // others are written.
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Some(Ok(row)) => rows.push(row),
            Some(Err(error)) => {
                eprintln!(
                    "upsched sweep: {}={} {} seed {}: failed: {error}",
                    grid.param, grid.values[job.point], grid.policies[job.policy], job.seed
                );
                failed.push(Failed { job: *job, error });
            }
            None => anyhow::bail!("a sweep run produced no result"),
        }
    }
    if let Some(shard) = args.shard {
        let file = ShardFile {
            format_version: SWEEP_FORMAT_VERSION,
            shard,
            grid: grid.clone(),
            rows,
            failed,
        };
        return file.write(&args.out, args.json);
    }
    write_outputs(&args.out, &plan.sheet, &rows, &failed, args.json)
}

/// A run that failed, with its error.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Failed {
    job: Job,
    error: String,
}

/// Writes the CSV and the plots of `rows` (in grid order) into `out` and prints the summary
/// (or the JSON document); status 1 if a run failed.
fn write_outputs(
    out: &Path,
    sheet: &Sheet,
    rows: &[Row],
    failed: &[Failed],
    json: bool,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let csv_path = out.join("sweep.csv");
    std::fs::write(&csv_path, csv(sheet, rows))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let mut written = vec![csv_path.display().to_string()];
    let mut summaries = String::new();
    for metric in &sheet.plotted {
        let svg = plot(sheet, rows, metric).map_err(anyhow::Error::msg)?;
        let svg_path = out.join(format!("sweep-{}.svg", metric.name));
        std::fs::write(&svg_path, svg)
            .with_context(|| format!("cannot write {}", svg_path.display()))?;
        summaries.push_str(&summary(sheet, rows, metric));
        written.push(svg_path.display().to_string());
    }
    if json {
        let report = json_report(sheet, rows, failed, written);
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summaries}");
        println!("wrote {}", written.join(", "));
        if !failed.is_empty() {
            println!(
                "{} of {} runs failed (see above)",
                failed.len(),
                rows.len() + failed.len()
            );
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Version of the `sweep --json` document; raised when a field changes meaning or goes away.
const SWEEP_FORMAT_VERSION: u32 = 1;

/// `sweep --json`: every run of the grid with its metrics, the failed runs with their error,
/// and the files written.
fn json_report(
    sheet: &Sheet,
    rows: &[Row],
    failed: &[Failed],
    files: Vec<String>,
) -> serde_json::Value {
    let grid = &sheet.grid;
    let run = |job: &Job| {
        serde_json::json!({
            "value": grid.values[job.point],
            "policy": grid.policies[job.policy],
            "seed": job.seed,
        })
    };
    let runs: Vec<_> = rows
        .iter()
        .map(|row| {
            let mut entry = run(&row.job);
            let metrics: serde_json::Map<_, _> = sheet
                .columns
                .iter()
                .map(|m| (m.name.to_string(), row.value(m).into()))
                .collect();
            entry["metrics"] = metrics.into();
            entry
        })
        .collect();
    let failed: Vec<_> = failed
        .iter()
        .map(|f| {
            let mut entry = run(&f.job);
            entry["error"] = f.error.clone().into();
            entry
        })
        .collect();
    serde_json::json!({
        "format_version": SWEEP_FORMAT_VERSION,
        "param": grid.param,
        "values": grid.values,
        "policies": grid.policies,
        "runs": runs,
        "failed": failed,
        "files": files,
    })
}

fn value_text(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// One row per run, in grid order (the same bytes for the same arguments).
fn csv(sheet: &Sheet, rows: &[Row]) -> String {
    let grid = &sheet.grid;
    let mut out = format!(
        "{},policy,seed,{}\n",
        grid.param,
        sheet
            .columns
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(",")
    );
    for row in rows {
        let job = &row.job;
        let _ = writeln!(
            out,
            "{},{},{},{}",
            grid.values[job.point],
            grid.policies[job.policy],
            job.seed,
            sheet
                .columns
                .iter()
                .map(|m| value_text(row.value(m)))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    out
}

/// (mean, min, max) of `metric` per policy and point (`None` where it does not
/// apply).
fn aggregate(grid: &Grid, rows: &[Row], metric: &Metric) -> Vec<Vec<Option<(f64, f64, f64)>>> {
    (0..grid.policies.len())
        .map(|policy| {
            (0..grid.values.len())
                .map(|point| {
                    let values: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.job.policy == policy && r.job.point == point)
                        .filter_map(|r| r.value(metric))
                        .collect();
                    (!values.is_empty()).then(|| {
                        let mean = values.iter().sum::<f64>() / values.len() as f64;
                        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        (mean, min, max)
                    })
                })
                .collect()
        })
        .collect()
}

/// The mean of `metric` per point and policy, as a table.
fn summary(sheet: &Sheet, rows: &[Row], metric: &Metric) -> String {
    let grid = &sheet.grid;
    let stats = aggregate(grid, rows, metric);
    let width = grid.param.len().max(12);
    let mut out = format!(
        "{} (mean over {} seeds)\n{:>width$}",
        metric.name,
        rows.iter().map(|r| r.job.seed).max().unwrap_or(0),
        grid.param
    );
    for p in &grid.policies {
        let _ = write!(out, " {p:>16}");
    }
    out.push('\n');
    for (point, value) in grid.values.iter().enumerate() {
        let _ = write!(out, "{value:>width$}");
        for policy in &stats {
            let cell = policy[point].map_or("-".into(), |(mean, _, _)| format!("{mean:.4}"));
            let _ = write!(out, " {cell:>16}");
        }
        out.push('\n');
    }
    out
}

/// X coordinate of a parameter value: the number, a duration in ms, else its position.
fn x_of(values: &[String]) -> (Vec<f64>, &'static str) {
    if let Ok(xs) = values.iter().map(|v| v.parse::<f64>()).collect() {
        return (xs, "");
    }
    if let Ok(xs) = values
        .iter()
        .map(|v| parse_duration(v).map(|t| t as f64 / MS as f64))
        .collect()
    {
        return (xs, " (ms)");
    }
    ((0..values.len()).map(|i| i as f64).collect(), " (index)")
}

/// The parameter's axis: ticks at integers only when every value is one (a count has no
/// value between two), plotters' own ticks otherwise.
struct ParamAxis {
    linear: RangedCoordf64,
    integer: bool,
}

impl Ranged for ParamAxis {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if !self.integer {
            return self.linear.key_points(hint);
        }
        if hint.weight().allow_light_points() {
            // No fine mesh between two integers.
            return Vec::new();
        }
        let range = self.linear.range();
        let (from, to) = (range.start.ceil(), range.end.floor());
        let most = hint.max_num_points().max(2) as f64;
        // The smallest of 1, 2, 5, 10, 20, 50, ... that keeps the ticks within the hint.
        let step = (0..)
            .map(|i| [1.0, 2.0, 5.0][i % 3] * 10f64.powi(i as i32 / 3))
            .find(|step| (to - from) / step < most)
            .unwrap_or(1.0);
        let first = (from / step).ceil() * step;
        (0..)
            .map(|i| first + i as f64 * step)
            .take_while(|x| *x <= to)
            .collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.linear.range()
    }
}

/// `metric` against the parameter, one line per policy (the mean over the seeds) on a band
/// from their minimum to their maximum; the legend beside the chart.
fn plot(sheet: &Sheet, rows: &[Row], metric: &Metric) -> Result<String, String> {
    let grid = &sheet.grid;
    let stats = aggregate(grid, rows, metric);
    let (xs, x_unit) = x_of(&grid.values);
    let chart = LineChart {
        caption: format!("{}: {} against {}", grid.file, metric.axis, grid.param),
        x_desc: format!("{}{x_unit}", grid.param),
        integer_x: x_unit.is_empty() && xs.iter().all(|x| x.fract() == 0.0),
        y_desc: metric.axis.to_string(),
        xs,
    };
    let series: Vec<Curve> = grid.policies.iter().cloned().zip(stats).collect();
    chart.svg(&series)
}

/// A curve's value at one point: (mean, min, max).
pub type Band = (f64, f64, f64);
/// A labelled curve: its value at each x, if measured there.
pub type Curve = (String, Vec<Option<Band>>);

/// A chart of curves against a numeric parameter: each curve a mean per point with a min-max
/// band (the sweep's plots, and `upsched faas compare`'s).
pub struct LineChart {
    pub caption: String,
    pub x_desc: String,
    /// Whether the parameter only takes whole values (ticks without fractions).
    pub integer_x: bool,
    pub y_desc: String,
    pub xs: Vec<f64>,
}

impl LineChart {
    /// The SVG of `series`: per curve its label and, per x, its (mean, min, max) if measured.
    pub fn svg(&self, series: &[Curve]) -> Result<String, String> {
        let xs = &self.xs;
        let stats: Vec<&Vec<Option<Band>>> = series.iter().map(|s| &s.1).collect();
        let bounds =
            |f: fn(f64, f64) -> f64, init: f64, it: &mut dyn Iterator<Item = f64>| it.fold(init, f);
        let (x_lo, x_hi) = (
            bounds(f64::min, f64::INFINITY, &mut xs.iter().copied()),
            bounds(f64::max, f64::NEG_INFINITY, &mut xs.iter().copied()),
        );
        let points = || stats.iter().copied().flatten().flatten();
        let y_hi = bounds(f64::max, 0.0, &mut points().map(|p| p.2));
        let y_lo = bounds(f64::min, 0.0, &mut points().map(|p| p.1));
        let x_range = if x_hi > x_lo {
            x_lo..x_hi
        } else {
            x_lo - 1.0..x_hi + 1.0
        };
        let x_axis = ParamAxis {
            linear: x_range.into(),
            integer: self.integer_x,
        };
        let y_range = y_lo..if y_hi > y_lo { y_hi * 1.05 } else { y_lo + 1.0 };
        let legend: Vec<LegendEntry> = series
            .iter()
            .enumerate()
            .map(|(i, (label, _))| LegendEntry {
                label: label.clone(),
                colour: plots::colour(i),
                swatch: Swatch::Line,
            })
            .collect();
        let legend_width = plots::legend_width(&legend);
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (760 + legend_width, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let (plot_area, legend_area) = root.split_horizontally(760);
            let mut chart = ChartBuilder::on(&plot_area)
                .caption(self.caption.as_str(), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x_axis, y_range)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc.as_str())
                .x_label_formatter(&|x| format_number(*x))
                .y_desc(self.y_desc.as_str())
                .draw()
                .map_err(plot_error)?;
            for (series, entry) in stats.iter().copied().zip(&legend) {
                let colour = entry.colour;
                let present: Vec<(f64, (f64, f64, f64))> = xs
                    .iter()
                    .zip(series)
                    .filter_map(|(x, s)| s.map(|s| (*x, s)))
                    .collect();
                // The min-max band over seeds, then the mean on top.
                let band: Vec<(f64, f64)> = present
                    .iter()
                    .map(|(x, s)| (*x, s.2))
                    .chain(present.iter().rev().map(|(x, s)| (*x, s.1)))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(band, colour.mix(0.2))))
                    .map_err(plot_error)?;
                chart
                    .draw_series(LineSeries::new(
                        present.iter().map(|(x, s)| (*x, s.0)),
                        colour.stroke_width(2),
                    ))
                    .map_err(plot_error)?;
                chart
                    .draw_series(
                        present
                            .iter()
                            .map(|(x, s)| Circle::new((*x, s.0), 3, colour.filled())),
                    )
                    .map_err(plot_error)?;
            }
            plots::draw_legend(&legend_area, &legend)?;
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }
}
