//! `upsched sim`: run a scenario in the simulator under one or more policies.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use upsched_sim::faas::FaasParams;
use upsched_sim::rtapp::ImportOptions;
use upsched_sim::units::{MS, parse_duration};
use upsched_sim::{RunOptions, Scenario, engine, perfetto, plots, report, tenants};

use crate::engine_arg::EngineArg;
use crate::failure::failure;
use crate::limits_arg::LimitArgs;

#[derive(Args)]
// A negative number reaches the value parser, which says what is wrong with it (clap would
// take it for an option and suggest `-- -1`).
#[command(allow_negative_numbers = true)]
pub struct SimArgs {
    /// Scenario: TOML (see docs/simulator.md), rt-app JSON (`*.json`), or the built-in FaaS
    /// chains `faas[:NAME=VALUE,...]` (docs/faas-sim.md), e.g. `faas:chains=50,rate=10`.
    scenario: PathBuf,
    /// Policy to run; repeat to compare several (default: the scenario's `policy`).
    /// Built in: linux-eevdf, upsched-default, fifo, rr. `upsched`: the upsched mechanism with
    /// the scenario's [[tenant]]s. `example:NAME` or FILE.bpf.o: the mechanism with that
    /// tenant policy on the root cgroup (next to the scenario's tenants).
    #[arg(long = "policy", value_name = "NAME|example:NAME|FILE.bpf.o")]
    policies: Vec<String>,
    /// Seed of the random streams (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated time to run, e.g. 10s (default: the scenario's `duration`).
    #[arg(long, value_parser = parse_duration_arg)]
    duration: Option<u64>,
    /// Print the full report as JSON on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Write report.json and, per policy, POLICY-tasks.csv, POLICY-timeline.svg,
    /// POLICY-latency-cdf.svg and POLICY-trace.json (Chrome/Perfetto trace) into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Time span shown by the timeline plot.
    #[arg(long, default_value = "50ms", value_parser = parse_duration_arg)]
    timeline_window: u64,
    /// Most CPU stints kept for the timeline and the trace.
    #[arg(long, default_value_t = 2_000_000)]
    trace_limit: usize,
    /// CPUs of the machine, in place of the scenario's (`machine.cpus` of a TOML file,
    /// `cpus` of `faas`, the CPUs an rt-app JSON file uses).
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,
    /// Check the invariants (work conservation, no task lost, bounded waits) after every
    /// event and at the end; slow (always on in debug builds).
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    engine: EngineArg,
    #[command(flatten)]
    limits: LimitArgs,
}

fn parse_duration_arg(text: &str) -> Result<u64, String> {
    parse_duration(text)
}

fn load(args: &SimArgs) -> Result<Scenario, upsched_sim::ScenarioError> {
    let spec = args.scenario.to_string_lossy();
    let file = args.scenario.display().to_string();
    if let Some(params) = FaasParams::from_spec(&spec) {
        let error = |message| upsched_sim::ScenarioError {
            file: file.clone(),
            line: None,
            message,
        };
        let mut params = params.map_err(error)?;
        if let Some(cpus) = args.cpus {
            params.set("cpus", &cpus.to_string()).map_err(error)?;
        }
        return Ok(params.build());
    }
    let text = std::fs::read_to_string(&args.scenario).map_err(|e| upsched_sim::ScenarioError {
        file: file.clone(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    if args.scenario.extension().is_some_and(|e| e == "json") {
        let options = ImportOptions {
            nr_cpus: args.cpus,
            ..Default::default()
        };
        upsched_sim::rtapp::import(&text, &file, &options)
    } else {
        upsched_sim::parse_scenario_on(&text, &file, args.cpus)
    }
}

/// File name prefixes for the policies' outputs, one per policy and all different: a policy
/// named again, or two files of one name in different directories, get `-2`, `-3`, ...
fn file_stems(policies: &[String]) -> Vec<String> {
    let mut stems: Vec<String> = Vec::with_capacity(policies.len());
    for policy in policies {
        let stem = file_stem(policy);
        let mut unique = stem.clone();
        let mut n = 1;
        while stems.contains(&unique) {
            n += 1;
            unique = format!("{stem}-{n}");
        }
        stems.push(unique);
    }
    stems
}

/// A file name prefix for a policy's outputs: a path or `example:NAME` keeps its letters,
/// digits, `.`, `-` and `_`.
fn file_stem(policy: &str) -> String {
    let name = policy.rsplit('/').next().unwrap_or(policy);
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let scenario = load(args).map_err(|e| failure(2, e))?;
    for warning in &scenario.warnings {
        eprintln!("upsched sim: warning: {warning}");
    }
    let policies = if args.policies.is_empty() {
        scenario.policies.clone()
    } else {
        args.policies.clone()
    };
    if let Some(warning) = tenants::unused_tenants_warning(&scenario, &policies) {
        eprintln!("upsched sim: warning: {warning}");
    }
    // Every policy is loaded (and a tenant policy checked and verified) before anything runs,
    // each once: the scenario's tenants serve every policy that runs them.
    let scenario_file = args.scenario.display().to_string();
    let cache = tenants::PolicyCache::new(args.engine.mode());
    let mut schedulers = Vec::new();
    for p in &policies {
        let sched = tenants::scheduler_from(p, &scenario, &scenario_file, &cache)
            .map_err(|e| failure(2, e))?;
        schedulers.push(sched);
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let seed = args.seed.unwrap_or(scenario.seed);
    let duration = args.duration.unwrap_or(scenario.duration);
    let show_progress = std::io::stderr().is_terminal();

    let mut runs = Vec::new();
    let stems = file_stems(&policies);
    for ((policy, sched), file_stem) in policies.iter().zip(schedulers).zip(stems) {
        let bar = show_progress.then(|| {
            let bar = indicatif::ProgressBar::new(duration / MS);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>16} [{bar:40}] {pos}/{len} ms simulated, {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(policy.clone());
            bar
        });
        let mut progress = |now: u64| {
            if let Some(bar) = &bar {
                bar.set_position(now / MS);
            }
        };
        let opts = RunOptions {
            seed,
            duration: Some(duration),
            record_trace: args.out.is_some(),
            trace_limit: args.trace_limit,
            // Only on request: the state checks cost O(tasks) per event, which a debug build of
            // a large scenario (the run-limit tests) cannot afford.
            check_invariants: args.check,
            progress: Some(&mut progress),
            limits: args.limits.limits(),
        };
        let outcome = match engine::run(&scenario, sched, opts) {
            Ok(o) => o,
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(failure(1, format!("{policy}: {e}")));
            }
        };
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let run = report::run_report(&outcome, &scenario);
        if let Some(dir) = &args.out {
            write(
                dir,
                &format!("{file_stem}-tasks.csv"),
                &report::tasks_csv(&run),
            )?;
            let timeline = plots::timeline_svg(&outcome, &scenario, args.timeline_window)
                .map_err(anyhow::Error::msg)?;
            write(dir, &format!("{file_stem}-timeline.svg"), &timeline)?;
            if run.chains.is_some() {
                write(
                    dir,
                    &format!("{file_stem}-chains.csv"),
                    &report::chains_csv(&run),
                )?;
            }
            let cdf = plots::latency_cdf_svg(&outcome, &scenario).map_err(anyhow::Error::msg)?;
            write(dir, &format!("{file_stem}-latency-cdf.svg"), &cdf)?;
            write(
                dir,
                &format!("{file_stem}-trace.json"),
                &perfetto::trace(&outcome, &scenario),
            )?;
            if outcome.trace_truncated {
                eprintln!(
                    "upsched sim: {policy}: timeline and trace keep the first {} stints only (--trace-limit)",
                    args.trace_limit
                );
            }
        }
        if !args.json {
            print!("{}", report::text_summary(&run, 40));
        }
        runs.push(run);
    }
    let full = report::report(&scenario, seed, runs);
    let json = serde_json::to_string_pretty(&full)? + "\n";
    if let Some(dir) = &args.out {
        write(dir, "report.json", &json)?;
    }
    if args.json {
        print!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_are_unique_per_policy() {
        let policies = [
            "a/fifo.bpf.o",
            "b/fifo.bpf.o",
            "example:fifo",
            "fifo",
            "fifo",
        ]
        .map(String::from);
        assert_eq!(
            file_stems(&policies),
            [
                "fifo.bpf.o",
                "fifo.bpf.o-2",
                "example_fifo",
                "fifo",
                "fifo-2"
            ]
        );
    }
}
