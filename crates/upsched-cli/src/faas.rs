// SPDX-License-Identifier: GPL-2.0-only
//! `upsched faas run`: the FaaS chain workload with real processes (`upsched-faas`,
//! `docs/faas.md`), and the hidden `faas-child` that each of its processes is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::io::Read;

use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use upsched_faas::{FaasError, HintsMode, Launcher, Params, Role};

use crate::failure::failure;

#[derive(Subcommand)]
pub enum FaasAction {
    /// Run N chains of the five functions of docs/faas-sim.md as real processes and print
    /// what their runtime threads burned.
    ///
    /// Each function is a process in ROOT/cNN/FUNCTION with a worker thread and --pollers
    /// runtime threads that spin-poll its inbox (shared memory) for up to --spin of their CPU
    /// time, then block on a futex; requests arrive open loop (Poisson, --rate per chain) and
    /// a platform process (ROOT/platform) routes them from function to function. Per thread,
    /// the CPU used while its function had no pending request is read from the kernel's
    /// per-thread accounting (schedstat, thread CPU clocks) whenever that state changes
    /// (docs/faas.md).
    ///
    /// With --hints runtime the runtime threads post SLEEPY and clear it themselves; with
    /// --hints platform the platform posts for them. Both write into --tenant's hint map, so
    /// the caller must own that tenant or run inside its cgroup (docs/hints.md). The caller
    /// must be allowed to create ROOT's groups and to move processes into them (write access to
    /// the cgroup.procs of ROOT's parent and of the cgroup it runs in, e.g. a delegated tree).
    ///
    /// Exit status: 0 ran, 1 the run failed (a process died, the hint path refused), 2 bad
    /// arguments, 130 interrupted (every process and cgroup is removed first).
    #[command(
        after_help = "Examples:\n  upsched faas run --chains 2 --seconds 5\n  upsched faas run --chains 1 --rate 5 --hints runtime --tenant fn --cgroup-root /sys/fs/cgroup/tenants/alice/faas --json"
    )]
    Run(RunArgs),
    /// Put real runs of the workload beside the simulator's runs of the same parameters: one
    /// table (idle ratio, polling share, p50/p99 latency, throughput) and SVG plots of the idle
    /// ratio and the p99 latency against chains.
    ///
    /// RUNS is a JSON array of `{"scheduler": LABEL, "report": REPORT}`, REPORT as printed by
    /// `faas run --json` (the side-by-side VM test writes it); every report must share its
    /// parameters but for the chains and the hints. The simulator runs each chain count on
    /// --cpus CPUs under linux-eevdf and example:faas, for the runs' --seconds.
    ///
    /// Exit status: 0 compared, 2 unreadable or inconsistent runs.
    #[command(
        after_help = "Examples:\n  upsched faas compare target/faas-side-by-side/runs.json --out docs"
    )]
    Compare(CompareArgs),
}

#[derive(Args)]
pub struct CompareArgs {
    runs: PathBuf,
    /// Where faas-real-idle_ratio.svg and faas-real-latency_p99_ms.svg are written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// CPUs of the simulated machine (the test VM has 2).
    #[arg(long, default_value_t = 2)]
    cpus: u32,
}

impl FaasAction {
    pub fn json(&self) -> bool {
        match self {
            FaasAction::Run(args) => args.json,
            FaasAction::Compare(_) => false,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum HintsArg {
    None,
    Runtime,
    Platform,
}

#[derive(Args)]
pub struct RunArgs {
    /// Colocated chains (1-32).
    #[arg(long, default_value_t = 1)]
    chains: u32,
    /// Requests per second into each chain.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// How long requests arrive.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// How long requests still in flight may take to complete afterwards (seconds).
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Runtime threads per function.
    #[arg(long, default_value_t = 2)]
    pollers: u32,
    /// CPU time a runtime thread polls before it blocks.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5ms")]
    spin: Duration,
    /// CPU time a runtime thread spends handing a request to the worker.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50us")]
    handoff: Duration,
    /// Factor on every function's CPU bursts.
    #[arg(long, default_value_t = 1.0)]
    cpu_scale: f64,
    /// Factor on every function's I/O waits.
    #[arg(long, default_value_t = 1.0)]
    io_scale: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Who posts the runtime threads' hints.
    #[arg(long, value_enum, default_value = "none")]
    hints: HintsArg,
    /// The tenant (of upschedd) whose hint map the hints are written to.
    #[arg(long)]
    tenant: Option<String>,
    /// The cgroup under which the run's groups are made (and removed afterwards).
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup/faas")]
    cgroup_root: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One process of a run (started by `faas run`).
#[derive(Args)]
pub struct ChildArgs {
    role: String,
    #[arg(long)]
    shm_fd: i32,
    #[arg(long)]
    chain: u32,
    #[arg(long)]
    stage: u32,
}

fn params(args: &RunArgs) -> Params {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Params {
        chains: args.chains,
        rate: args.rate,
        seconds: args.seconds,
        drain_seconds: args.drain,
        pollers: args.pollers,
        spin_ns: ns(args.spin),
        handoff_ns: ns(args.handoff),
        cpu_scale: args.cpu_scale,
        io_scale: args.io_scale,
        seed: args.seed,
        hints: match args.hints {
            HintsArg::None => HintsMode::None,
            HintsArg::Runtime => HintsMode::Runtime,
            HintsArg::Platform => HintsMode::Platform,
        },
        tenant: args.tenant.clone(),
        cgroup_root: args.cgroup_root.clone(),
    }
}

fn status(error: FaasError) -> anyhow::Error {
    match error {
        FaasError::Invalid(m) => failure(2, m),
        FaasError::Interrupted => failure(130, "interrupted; every process and cgroup removed"),
        other => failure(1, other),
    }
}

pub fn run(action: &FaasAction) -> anyhow::Result<ExitCode> {
    let args = match action {
        FaasAction::Run(args) => args,
        FaasAction::Compare(args) => return compare(args),
    };
    let params = params(args);
    params.validate().map_err(status)?;
    let launcher = Launcher {
        program: std::env::current_exe()
            .map_err(|e| failure(1, format!("finding this binary to start the workload: {e}")))?,
        prefix: vec!["faas-child".into()],
    };
    let report = upsched_faas::run(&params, &launcher).map_err(status)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn child(args: &ChildArgs) -> anyhow::Result<ExitCode> {
    let role = Role::from_name(&args.role)
        .ok_or_else(|| failure(2, format!("no faas process role {:?}", args.role)))?;
    upsched_faas::child(role, args.shm_fd, args.chain, args.stage).map_err(status)?;
    Ok(ExitCode::SUCCESS)
}

/// One real run as the side-by-side test records it.
#[derive(Deserialize)]
struct LabelledRun {
    scheduler: String,
    report: upsched_faas::Report,
}

/// The largest runs file read (a hundred reports are a few MB).
const MAX_RUNS_BYTES: u64 = 64 << 20;

/// The simulator's policies beside the real runs.
const SIM_POLICIES: [&str; 2] = ["linux-eevdf", "example:faas"];

/// One row of the table: a scheduler at a chain count and its figures.
struct Row {
    chains: u32,
    label: String,
    idle_ratio: Option<f64>,
    poll_ratio: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    throughput: Option<f64>,
}

fn read_runs(path: &std::path::Path) -> anyhow::Result<Vec<LabelledRun>> {
    let bad = |e: String| failure(2, format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_RUNS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_RUNS_BYTES {
        return Err(bad(format!("larger than {MAX_RUNS_BYTES} bytes")));
    }
    let runs: Vec<LabelledRun> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let Some(first) = runs.first() else {
        return Err(bad("no runs".into()));
    };
    // The simulator gets one set of parameters: every run must have them.
    let shape = |p: &Params| Params {
        chains: 1,
        hints: HintsMode::None,
        tenant: None,
        cgroup_root: PathBuf::new(),
        ..p.clone()
    };
    let base = shape(&first.report.params);
    for run in &runs {
        if shape(&run.report.params) != base {
            return Err(bad(format!(
                "the {} run at {} chains has other parameters than the first run",
                run.scheduler, run.report.params.chains
            )));
        }
    }
    Ok(runs)
}

fn simulate(params: &Params, chains: u32, cpus: u32, policy: &str) -> anyhow::Result<Row> {
    use upsched_sim::{RunOptions, engine, report, tenants};
    let sim = upsched_sim::faas::FaasParams {
        chains,
        rate: params.rate,
        cpus,
        duration: (params.seconds * 1e9) as u64,
        pollers: params.pollers,
        spin: params.spin_ns,
        handoff: params.handoff_ns,
        cpu_scale: params.cpu_scale,
        io_scale: params.io_scale,
        // The side-by-side's tenant: runtime hints, the simulator's park bound (1 s).
        hints: upsched_sim::faas::HintSource::Runtime,
        park_max: upsched_sim::faas::FaasParams::default().park_max,
        seed: params.seed,
    };
    let scenario = sim.build();
    let cache = tenants::PolicyCache::new(Default::default());
    let failed = |e: String| failure(1, format!("simulating {}: {e}", sim.name()));
    let scheduler = tenants::scheduler_from(policy, &scenario, "faas", &cache).map_err(failed)?;
    let options = RunOptions {
        seed: params.seed,
        check_invariants: false,
        ..Default::default()
    };
    let outcome = engine::run(&scenario, scheduler, options).map_err(|e| failed(e.to_string()))?;
    let report = report::run_report(&outcome, &scenario);
    let metric = |name| crate::sweep::metric_of(name, &report);
    Ok(Row {
        chains,
        label: format!("sim: {policy}"),
        idle_ratio: metric("idle_ratio"),
        poll_ratio: metric("poll_ratio"),
        p50_ms: metric("latency_p50_ms"),
        p99_ms: metric("latency_p99_ms"),
        throughput: metric("throughput"),
    })
}

fn compare(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let runs = read_runs(&args.runs)?;
    let params = runs[0].report.params.clone();
    let mut rows: Vec<Row> = runs
        .iter()
        .map(|run| {
            let r = &run.report;
            Row {
                chains: r.params.chains,
                label: format!("kernel: {}", run.scheduler),
                idle_ratio: r.idle_ratio,
                poll_ratio: r.poll_ratio,
                p50_ms: Some(r.latency.p50_ms),
                p99_ms: Some(r.latency.p99_ms),
                throughput: Some(r.throughput_per_s),
            }
        })
        .collect();
    let mut chains: Vec<u32> = rows.iter().map(|r| r.chains).collect();
    chains.sort_unstable();
    chains.dedup();
    for &n in &chains {
        for policy in SIM_POLICIES {
            rows.push(simulate(&params, n, args.cpus, policy)?);
        }
    }
    let mut labels: Vec<String> = Vec::new();
    for row in &rows {
        if !labels.contains(&row.label) {
            labels.push(row.label.clone());
        }
    }
    let order = |r: &Row| (r.chains, labels.iter().position(|l| *l == r.label));
    rows.sort_by_key(order);
    let xs: Vec<f64> = chains.iter().map(|&c| f64::from(c)).collect();
    type Figure = fn(&Row) -> Option<f64>;
    let plots: [(&str, &str, Figure); 2] = [
        (
            "idle_ratio",
            "idle ratio (fraction of the runtimes' CPU)",
            |r| r.idle_ratio,
        ),
        ("latency_p99_ms", "p99 end-to-end latency (ms)", |r| {
            r.p99_ms
        }),
    ];
    std::fs::create_dir_all(&args.out)
        .map_err(|e| failure(1, format!("{}: {e}", args.out.display())))?;
    for (name, axis, value) in plots {
        let series: Vec<crate::sweep::Curve> = labels
            .iter()
            .map(|label| {
                let points = chains
                    .iter()
                    .map(|&n| {
                        rows.iter()
                            .find(|r| r.chains == n && r.label == *label)
                            .and_then(value)
                            .map(|v| (v, v, v))
                    })
                    .collect();
                (label.clone(), points)
            })
            .collect();
        let chart = crate::sweep::LineChart {
            caption: format!(
                "FaaS chains on {} CPUs, kernel and simulator: {axis}",
                args.cpus
            ),
            x_desc: "chains".into(),
            integer_x: true,
            y_desc: axis.into(),
            xs: xs.clone(),
        };
        let svg = chart.svg(&series).map_err(|e| failure(1, e))?;
        let path = args.out.join(format!("faas-real-{name}.svg"));
        std::fs::write(&path, svg).map_err(|e| failure(1, format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    // The plots first: a closed stdout ends the command at the table.
    let percent = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0));
    let number = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    println!(
        "| chains | scheduler | idle ratio | polling share | p50 (ms) | p99 (ms) | completed/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.chains,
            r.label,
            percent(r.idle_ratio),
            percent(r.poll_ratio),
            number(r.p50_ms),
            number(r.p99_ms),
            number(r.throughput)
        );
    }
    Ok(ExitCode::SUCCESS)
}
