//! `upsched sweep`: run a scenario over a grid (one parameter × policies × seeds) on all cores
//! and write one CSV row per run and an SVG plot of a metric against the parameter.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use clap::Args;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
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
#[command(allow_negative_numbers = true)]
pub struct SweepArgs {
    /// Scenario: the built-in `faas[:NAME=VALUE,...]` (docs/faas-sim.md) or a TOML file.
    scenario: String,
    /// The parameter to vary and its values: `NAME=V1,V2,...` or `NAME=FROM..TO:STEP` (TO
    /// included). For `faas`, NAME is one of its parameters (chains, rate, cpus, spin,
    /// pollers, ...). For a TOML file, NAME is the dotted path of a value in the file, array
    /// elements chosen by index or by their `name`: `machine.cpus`, `arrival.requests.rate`,
    /// `task.0.count`, `duration`; the new value keeps the old one's type (integer, float,
    /// string such as "5ms").
    #[arg(long, value_name = "NAME=VALUES")]
    param: String,
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
    pub json: bool,
    #[command(flatten)]
    limits: LimitArgs,
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
        read: |r| {
            let chains = r.chains.as_ref()?;
            let runtimes = r.cgroups.iter().filter(|g| g.idle_ns.is_some());
            let spin: u64 = runtimes.map(|g| g.spin_ns).sum();
            upsched_sim::chains::ratio(spin, chains.all.cpu_ns)
        },
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
struct Job {
    point: usize,
    policy: usize,
    seed: u64,
}

pub fn run(args: &SweepArgs) -> anyhow::Result<ExitCode> {
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
    param: String,
    values: Vec<String>,
    scenarios: Vec<Scenario>,
    policies: Vec<String>,
    /// Each policy loaded once, instantiated per run.
    policy_cache: tenants::PolicyCache,
    file: String,
    columns: Vec<&'static Metric>,
    plotted: Vec<&'static Metric>,
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
    let (param, values) = parse_param(&args.param)?;
    let base = Base::load(&args.scenario)?;
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
    Ok(Plan {
        param,
        values,
        scenarios,
        policies,
        policy_cache: cache,
        file,
        columns,
        plotted,
    })
}

fn execute(args: &SweepArgs, plan: Plan) -> anyhow::Result<ExitCode> {
    let jobs: Vec<Job> = (0..plan.scenarios.len())
        .flat_map(|point| {
            (0..plan.policies.len()).flat_map(move |policy| {
                (1..=args.seeds).map(move |seed| Job {
                    point,
                    policy,
                    seed,
                })
            })
        })
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
    let results: Mutex<Vec<Option<Result<RunReport, String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let scenario = &plan.scenarios[job.point];
                    let policy = &plan.policies[job.policy];
                    let outcome =
                        tenants::scheduler_from(policy, scenario, &plan.file, &plan.policy_cache)
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
                        plan.param, plan.values[job.point], job.seed
                    );
                    let result = outcome.map(|o| report::run_report(&o, scenario));
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
            Some(Ok(report)) => rows.push((job, report)),
            Some(Err(error)) => {
                eprintln!(
                    "upsched sweep: {}={} {} seed {}: failed: {error}",
                    plan.param, plan.values[job.point], plan.policies[job.policy], job.seed
                );
                failed.push((job, error));
            }
            None => anyhow::bail!("a sweep run produced no result"),
        }
    }
    let csv_path = args.out.join("sweep.csv");
    std::fs::write(&csv_path, csv(&plan, &rows))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let mut written = vec![csv_path.display().to_string()];
    let mut summaries = String::new();
    for metric in &plan.plotted {
        let svg = plot(&plan, &rows, metric).map_err(anyhow::Error::msg)?;
        let svg_path = args.out.join(format!("sweep-{}.svg", metric.name));
        std::fs::write(&svg_path, svg)
            .with_context(|| format!("cannot write {}", svg_path.display()))?;
        summaries.push_str(&summary(&plan, &rows, metric));
        written.push(svg_path.display().to_string());
    }
    if args.json {
        let report = json_report(&plan, &rows, &failed, written);
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summaries}");
        println!("wrote {}", written.join(", "));
        if !failed.is_empty() {
            println!("{} of {} runs failed (see above)", failed.len(), jobs.len());
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
    plan: &Plan,
    rows: &[(&Job, RunReport)],
    failed: &[(&Job, String)],
    files: Vec<String>,
) -> serde_json::Value {
    let run = |job: &Job| {
        serde_json::json!({
            "value": plan.values[job.point],
            "policy": plan.policies[job.policy],
            "seed": job.seed,
        })
    };
    let runs: Vec<_> = rows
        .iter()
        .map(|(job, report)| {
            let mut entry = run(job);
            let metrics: serde_json::Map<_, _> = plan
                .columns
                .iter()
                .map(|m| (m.name.to_string(), (m.read)(report).into()))
                .collect();
            entry["metrics"] = metrics.into();
            entry
        })
        .collect();
    let failed: Vec<_> = failed
        .iter()
        .map(|(job, error)| {
            let mut entry = run(job);
            entry["error"] = error.clone().into();
            entry
        })
        .collect();
    serde_json::json!({
        "format_version": SWEEP_FORMAT_VERSION,
        "param": plan.param,
        "values": plan.values,
        "policies": plan.policies,
        "runs": runs,
        "failed": failed,
        "files": files,
    })
}

fn value_text(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// One row per run, in grid order (the same bytes for the same arguments).
fn csv(plan: &Plan, rows: &[(&Job, RunReport)]) -> String {
    let mut out = format!(
        "{},policy,seed,{}\n",
        plan.param,
        plan.columns
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(",")
    );
    for (job, report) in rows {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            plan.values[job.point],
            plan.policies[job.policy],
            job.seed,
            plan.columns
                .iter()
                .map(|m| value_text((m.read)(report)))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    out
}

/// (mean, min, max) of `metric` per policy and point (`None` where it does not
/// apply).
fn aggregate(
    plan: &Plan,
    rows: &[(&Job, RunReport)],
    metric: &Metric,
) -> Vec<Vec<Option<(f64, f64, f64)>>> {
    (0..plan.policies.len())
        .map(|policy| {
            (0..plan.values.len())
                .map(|point| {
                    let values: Vec<f64> = rows
                        .iter()
                        .filter(|(j, _)| j.policy == policy && j.point == point)
                        .filter_map(|(_, r)| (metric.read)(r))
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
fn summary(plan: &Plan, rows: &[(&Job, RunReport)], metric: &Metric) -> String {
    let stats = aggregate(plan, rows, metric);
    let width = plan.param.len().max(12);
    let mut out = format!(
        "{} (mean over {} seeds)\n{:>width$}",
        metric.name,
        rows.iter().map(|(j, _)| j.seed).max().unwrap_or(0),
        plan.param
    );
    for p in &plan.policies {
        let _ = write!(out, " {p:>16}");
    }
    out.push('\n');
    for (point, value) in plan.values.iter().enumerate() {
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
fn plot(plan: &Plan, rows: &[(&Job, RunReport)], metric: &Metric) -> Result<String, String> {
    let stats = aggregate(plan, rows, metric);
    let (xs, x_unit) = x_of(&plan.values);
    let bounds =
        |f: fn(f64, f64) -> f64, init: f64, it: &mut dyn Iterator<Item = f64>| it.fold(init, f);
    let (x_lo, x_hi) = (
        bounds(f64::min, f64::INFINITY, &mut xs.iter().copied()),
        bounds(f64::max, f64::NEG_INFINITY, &mut xs.iter().copied()),
    );
    let points = || stats.iter().flatten().flatten();
    let y_hi = bounds(f64::max, 0.0, &mut points().map(|p| p.2));
    let y_lo = bounds(f64::min, 0.0, &mut points().map(|p| p.1));
    let x_range = if x_hi > x_lo {
        x_lo..x_hi
    } else {
        x_lo - 1.0..x_hi + 1.0
    };
    let x_axis = ParamAxis {
        linear: x_range.into(),
        integer: x_unit.is_empty() && xs.iter().all(|x| x.fract() == 0.0),
    };
    let y_range = y_lo..if y_hi > y_lo { y_hi * 1.05 } else { y_lo + 1.0 };
    let legend: Vec<LegendEntry> = plan
        .policies
        .iter()
        .enumerate()
        .map(|(i, policy)| LegendEntry {
            label: policy.clone(),
            colour: plots::colour(i),
            swatch: Swatch::Line,
        })
        .collect();
    let legend_width = plots::legend_width(&legend);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760 + legend_width, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (plot_area, legend_area) = root.split_horizontally(760);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(
                format!("{}: {} against {}", plan.file, metric.name, plan.param),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_axis, y_range)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(format!("{}{x_unit}", plan.param))
            .x_label_formatter(&|x| format_number(*x))
            .y_desc(metric.axis)
            .draw()
            .map_err(plot_error)?;
        for (series, entry) in stats.iter().zip(&legend) {
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
