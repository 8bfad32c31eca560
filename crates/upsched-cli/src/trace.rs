//! `upsched trace`: scheduler traces recorded on a real machine (docs/traces.md).

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use upsched_sim::metrics::{Histogram, LatencySummary};
use upsched_sim::plots::{self, CdfCurve};
use upsched_sim::report::RunReport;
use upsched_sim::{RunOptions, engine, report, tenants};
use upsched_trace::{
    Format, ImportOptions, Recording, Repairs, Scenario, Stats, TaskStats, Timeline, WaitStats,
};

use crate::engine_arg::EngineArg;
use crate::failure::failure;

#[derive(Subcommand)]
pub enum TraceAction {
    /// Per task and in total: CPU time, runnable wait (mean, p50, p99, max), switches and
    /// migrations, computed from the trace itself, and what had to be repaired in it.
    ///
    /// The runnable wait runs from a task becoming runnable (woken, forked or preempted) to its
    /// next run: the delay of `perf sched latency`. Percentiles are nearest-rank over the exact
    /// samples. Tasks are listed by CPU time, most first; kernel threads are marked `[k]`.
    ///
    /// Exit status: 0 read, 2 unreadable file or not a trace.
    #[command(
        after_help = "Recording a trace:\n  perf sched record -- CMD && perf script > trace.txt\n  trace-cmd record -e sched -- CMD && trace-cmd report > trace.txt\n\nExamples:\n  upsched trace stats trace.txt\n  upsched trace stats trace.txt --json | jq '.total.wait.p99_ns'"
    )]
    Stats(StatsArgs),
    /// Turn a trace into a scenario of the simulator (TOML, docs/simulator.md) that replays
    /// each task's bursts, sleeps, wake-ups and forks.
    ///
    /// A task woken by another task blocks on an event of its own (`wake.NAME`) that its waker
    /// signals where, in its burst, the wake-up happened; a task woken by nothing in the trace
    /// (an interrupt, a timer) sleeps as long as it slept. Writes the TOML to stdout (or
    /// --output) and a summary with the repairs to stderr. Run it with `upsched sim`.
    ///
    /// Exit status: 0 imported, 2 unreadable file, not a trace, or output not writable.
    #[command(
        after_help = "Examples:\n  upsched trace import trace.txt -o workload.toml && upsched sim workload.toml --policy linux-eevdf --policy fifo\n  upsched trace import trace.txt --skip-kernel-threads | less"
    )]
    Import(ImportArgs),
    /// Replay a trace in the simulator under one or more policies and compare, per task and
    /// in total, the trace's figures with the replay's, with the relative error of each.
    ///
    /// The trace is imported as `trace import` does (on a machine with the trace's CPU count)
    /// and run once per policy; the figures are those of `trace stats` (CPU time, runnable
    /// wait mean/p50/p99/max, switches, migrations). An error is (replay - trace) / trace,
    /// `-` where the trace's figure is 0.
    ///
    /// Exit status: 0 replayed, 1 a policy failed in the simulator, 2 unreadable file, not a
    /// trace, or an unknown policy.
    #[command(
        after_help = "Examples:\n  upsched trace replay trace.txt --policy linux-eevdf --policy fifo --cdf waits.svg\n  upsched trace replay trace.txt --policy example:wfq --json | jq '.runs[0].total.error'"
    )]
    Replay(ReplayArgs),
    /// Record the scheduler's events while COMMAND runs, as text that `trace stats`, `import`
    /// and `replay` read (root: it writes tracefs).
    ///
    /// The events of the whole machine (every task, not only COMMAND's) go to a tracefs
    /// instance of their own, apart from other tracers, from COMMAND's start to its end; the
    /// text is the ftrace one with trace-cmd's `cpus=N` header. When the ring buffer fills,
    /// the oldest events are overwritten and the count is reported: raise --buffer-kb.
    /// Ctrl-C goes to COMMAND; the recording ends when COMMAND does.
    ///
    /// Exit status: COMMAND's (128 + signal when a signal ended it) once recorded; 2 when
    /// recording is impossible (no tracefs, not root, unwritable output).
    #[command(
        after_help = "Examples:\n  upsched trace record -o build.txt -- make -j2\n  upsched trace record -- perf bench sched pipe && upsched trace replay upsched-trace.txt --policy linux-eevdf --cdf waits.svg"
    )]
    Record(RecordArgs),
}

#[derive(Args)]
pub struct RecordArgs {
    /// Write the trace here.
    #[arg(long, short, value_name = "FILE", default_value = "upsched-trace.txt")]
    output: PathBuf,
    /// The ring buffer per CPU, in KiB.
    #[arg(long, value_name = "KIB", default_value_t = upsched_trace::record::DEFAULT_BUFFER_KB)]
    buffer_kb: u32,
    /// The command to run while recording, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The text of `perf script` or `trace-cmd report` (`-`: standard input).
    file: PathBuf,
    /// A policy to replay under (as `upsched sim --policy`), repeatable [default: linux-eevdf].
    #[arg(long = "policy", value_name = "NAME|example:NAME|FILE.bpf.o")]
    policies: Vec<String>,
    /// Leave out the kernel's own threads (kworker/, ksoftirqd/, ...; docs/traces.md).
    #[arg(long)]
    skip_kernel_threads: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON document (shape in docs/traces.md).
    #[arg(long)]
    json: bool,
    /// Also draw the runnable-wait distributions (CDF) of the trace and of every replay on
    /// one plot, written here as SVG.
    #[arg(long, value_name = "FILE.svg")]
    cdf: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArg,
}

impl TraceAction {
    pub fn json(&self) -> bool {
        match self {
            TraceAction::Stats(args) => args.json,
            TraceAction::Import(_) => false,
            TraceAction::Replay(args) => args.json,
            TraceAction::Record(_) => false,
        }
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// The text of `perf script` or `trace-cmd report` (`-`: standard input).
    file: PathBuf,
    /// Write the scenario here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Leave out the kernel's own threads (kworker/, ksoftirqd/, ...; docs/traces.md).
    #[arg(long)]
    skip_kernel_threads: bool,
}

#[derive(Args)]
pub struct StatsArgs {
    /// The text of `perf script` or `trace-cmd report` (`-`: standard input).
    file: PathBuf,
    /// Print one JSON document (shape in docs/traces.md).
    #[arg(long)]
    json: bool,
}

/// The version of the `--json` document's shape.
const TRACE_STATS_FORMAT_VERSION: u32 = 1;

/// The head of every `--json` document of `trace`.
#[derive(Serialize)]
struct TraceHeader {
    format_version: u32,
    format: Format,
    cpus: u32,
    duration_ns: u64,
}

impl TraceHeader {
    fn of(timeline: &Timeline) -> TraceHeader {
        TraceHeader {
            format_version: TRACE_STATS_FORMAT_VERSION,
            format: timeline.format,
            cpus: timeline.cpus,
            duration_ns: timeline.duration_ns(),
        }
    }
}

/// The timeline of the trace in `file`; an unreadable file or a non-trace ends with status 2.
fn timeline_of(file: &Path) -> anyhow::Result<Timeline> {
    let parsed = upsched_trace::read(file).map_err(|e| failure(2, e))?;
    Ok(upsched_trace::build(&parsed))
}

#[derive(Serialize)]
struct StatsDocument<'a> {
    #[serde(flatten)]
    header: TraceHeader,
    tasks: &'a [TaskStats],
    total: &'a upsched_trace::TaskTotals,
    repairs: &'a Repairs,
}

pub fn run(action: &TraceAction) -> anyhow::Result<ExitCode> {
    match action {
        TraceAction::Stats(args) => stats(args),
        TraceAction::Import(args) => import(args),
        TraceAction::Replay(args) => replay(args),
        TraceAction::Record(args) => record(args),
    }
}

fn record(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let recording = Recording::start(args.buffer_kb).map_err(|e| failure(2, e))?;
    // Opened once recording is possible, so a refused recording leaves no file behind.
    let file = std::fs::File::create(&args.output)
        .map_err(|e| failure(2, format!("cannot write {}: {e}", args.output.display())))?;
    let (program, program_args) = args.command.split_first().expect("clap requires COMMAND");
    let mut child = std::process::Command::new(program)
        .args(program_args)
        .spawn()
        .map_err(|e| failure(2, format!("cannot run {program}: {e}")))?;
    // Ctrl-C is for the command; the recorder must live on to write what was recorded. Set
    // after the spawn: an ignored signal would be inherited across exec.
    let ignored = [libc::SIGINT, libc::SIGQUIT].map(|signal| {
        // SAFETY: SIG_IGN installs no handler; the previous disposition is restored below.
        (signal, unsafe { libc::signal(signal, libc::SIG_IGN) })
    });
    let status = child.wait();
    for (signal, previous) in ignored {
        // SAFETY: restores the disposition `signal` had before.
        unsafe { libc::signal(signal, previous) };
    }
    let status = status.map_err(|e| failure(2, format!("waiting for {program}: {e}")))?;
    let mut out = std::io::BufWriter::new(file);
    let recorded = recording.finish(&mut out).map_err(|e| failure(2, e))?;
    eprintln!(
        "upsched trace record: {} events on {} CPUs written to {}; {program} {status}",
        recorded.events,
        recorded.cpus,
        args.output.display()
    );
    if recorded.overrun > 0 {
        eprintln!(
            "upsched trace record: warning: the buffer overwrote the {} oldest events (raise --buffer-kb from {})",
            recorded.overrun, args.buffer_kb
        );
    }
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// One figure of the trace and of the replay.
#[derive(Serialize)]
struct Compared {
    trace: u64,
    replay: u64,
    /// (replay - trace) / trace; None where the trace's figure is 0.
    error: Option<f64>,
}

impl Compared {
    fn new(trace: u64, replay: u64) -> Compared {
        let error = (trace > 0).then(|| (replay as f64 - trace as f64) / trace as f64);
        Compared {
            trace,
            replay,
            error,
        }
    }
}

#[derive(Serialize)]
struct Comparison {
    name: String,
    cpu_ns: Compared,
    wait_mean_ns: Compared,
    wait_p50_ns: Compared,
    wait_p99_ns: Compared,
    wait_max_ns: Compared,
    switches: Compared,
    migrations: Compared,
}

impl Comparison {
    fn new(
        name: &str,
        trace: (&WaitStats, u64, u64, u64),
        replay: (&LatencySummary, u64, u64, u64),
    ) -> Comparison {
        let (tw, tcpu, tswitches, tmigr) = trace;
        let (rw, rcpu, rswitches, rmigr) = replay;
        Comparison {
            name: name.to_string(),
            cpu_ns: Compared::new(tcpu, rcpu),
            wait_mean_ns: Compared::new(tw.mean_ns, rw.mean_ns.round() as u64),
            wait_p50_ns: Compared::new(tw.p50_ns, rw.p50_ns),
            wait_p99_ns: Compared::new(tw.p99_ns, rw.p99_ns),
            wait_max_ns: Compared::new(tw.max_ns, rw.max_ns),
            switches: Compared::new(tswitches, rswitches),
            migrations: Compared::new(tmigr, rmigr),
        }
    }
}

#[derive(Serialize)]
struct ReplayRun {
    policy: String,
    tasks: Vec<Comparison>,
    total: Comparison,
}

#[derive(Serialize)]
struct ReplayDocument {
    #[serde(flatten)]
    header: TraceHeader,
    runs: Vec<ReplayRun>,
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let timeline = timeline_of(&args.file)?;
    let stats = Stats::of(&timeline);
    let options = ImportOptions {
        skip_kernel_threads: args.skip_kernel_threads,
    };
    let imported = upsched_trace::import(&timeline, options);
    // The waits of the tasks the replay runs (without kernel threads when they are skipped).
    let mut trace_waits: Vec<u64> = imported
        .tasks
        .iter()
        .flat_map(|spec| timeline.tasks[spec.task.0].waits.iter())
        .map(|w| w.duration_ns())
        .collect();
    let trace_wait = WaitStats::of(trace_waits.clone());
    let file = args.file.display().to_string();
    let scenario = upsched_sim::parse_scenario(&imported.to_toml(&file), &file)
        .map_err(|e| failure(2, format!("the imported scenario does not load: {e}")))?;
    let policies = if args.policies.is_empty() {
        vec!["linux-eevdf".to_string()]
    } else {
        args.policies.clone()
    };
    let cache = tenants::PolicyCache::new(args.engine.mode());
    let mut schedulers = Vec::new();
    for policy in &policies {
        schedulers.push(
            tenants::scheduler_from(policy, &scenario, &file, &cache).map_err(|e| failure(2, e))?,
        );
    }
    let mut runs = Vec::new();
    let mut curves = vec![CdfCurve {
        label: "trace".to_string(),
        points: plots::samples_cdf(&mut trace_waits),
    }];
    for (policy, scheduler) in policies.iter().zip(schedulers) {
        let options = RunOptions {
            seed: args.seed,
            check_invariants: false,
            ..RunOptions::default()
        };
        let outcome = engine::run(&scenario, scheduler, options)
            .map_err(|e| failure(1, format!("{policy}: {e}")))?;
        let run = report::run_report(&outcome, &scenario);
        runs.push(compare(policy, &imported, &stats, &trace_wait, &run));
        let mut waits = Histogram::default();
        for record in &outcome.records {
            waits.merge(&record.wait);
        }
        curves.push(CdfCurve {
            label: format!("replay under {policy}"),
            points: waits.cdf(),
        });
    }
    if let Some(path) = &args.cdf {
        let title = format!("{file}: runnable wait, trace and replay");
        let svg = plots::wait_cdf_svg(&title, &curves).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg)
            .map_err(|e| failure(2, format!("cannot write {}: {e}", path.display())))?;
    }
    if args.json {
        let document = ReplayDocument {
            header: TraceHeader::of(&timeline),
            runs,
        };
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        for run in &runs {
            print!("{}", render_replay(run));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The imported tasks' figures in the trace against the replay's, matched by name.
fn compare(
    policy: &str,
    imported: &Scenario,
    stats: &Stats,
    trace_wait: &WaitStats,
    run: &RunReport,
) -> ReplayRun {
    let replayed = |name: &str| run.tasks.iter().find(|t| t.task == name);
    let mut tasks = Vec::new();
    let mut matched = Vec::new();
    for spec in &imported.tasks {
        let traced = &stats.tasks[spec.task.0];
        let Some(sim) = replayed(&spec.name) else {
            continue;
        };
        matched.push(traced);
        tasks.push(Comparison::new(
            &spec.name,
            (
                &traced.wait,
                traced.cpu_ns,
                traced.switches,
                traced.migrations,
            ),
            (
                &sim.wait,
                sim.cpu_ns,
                sim.voluntary_switches + sim.involuntary_switches,
                sim.migrations,
            ),
        ));
    }
    let totals = &run.totals;
    let total = Comparison::new(
        "total",
        (
            trace_wait,
            matched.iter().map(|t| t.cpu_ns).sum(),
            matched.iter().map(|t| t.switches).sum(),
            matched.iter().map(|t| t.migrations).sum(),
        ),
        (
            &totals.wait,
            totals.cpu_ns,
            totals.voluntary_switches + totals.involuntary_switches,
            totals.migrations,
        ),
    );
    ReplayRun {
        policy: policy.to_string(),
        tasks,
        total,
    }
}

fn error_text(compared: &Compared) -> String {
    compared
        .error
        .map_or("-".to_string(), |e| format!("{:+.0}%", e * 100.0))
}

fn render_replay(run: &ReplayRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy {}: trace / replay (error)", run.policy);
    let _ = writeln!(
        out,
        "{:<24} {:>26} {:>26} {:>26} {:>18}",
        "task", "cpu ms", "wait avg ms", "wait p99 ms", "switches"
    );
    for row in run.tasks.iter().chain(std::iter::once(&run.total)) {
        let ms_pair =
            |c: &Compared| format!("{} / {} ({})", ms(c.trace), ms(c.replay), error_text(c));
        let _ = writeln!(
            out,
            "{:<24} {:>26} {:>26} {:>26} {:>18}",
            row.name,
            ms_pair(&row.cpu_ns),
            ms_pair(&row.wait_mean_ns),
            ms_pair(&row.wait_p99_ns),
            format!(
                "{} / {} ({})",
                row.switches.trace,
                row.switches.replay,
                error_text(&row.switches)
            )
        );
    }
    out
}

fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let timeline = timeline_of(&args.file)?;
    let options = ImportOptions {
        skip_kernel_threads: args.skip_kernel_threads,
    };
    let scenario = upsched_trace::import(&timeline, options);
    let toml = scenario.to_toml(&args.file.display().to_string());
    match &args.output {
        Some(path) => std::fs::write(path, &toml)
            .map_err(|e| failure(2, format!("writing {}: {e}", path.display())))?,
        None => print!("{toml}"),
    }
    let forked = scenario.tasks.iter().filter(|t| t.forked).count();
    eprintln!(
        "upsched trace import: {} tasks ({forked} started by a fork), {} wake-up events, {} CPUs, {} ms; repairs: {}",
        scenario.tasks.len(),
        scenario.woken.len(),
        scenario.cpus,
        ms(scenario.duration_ns),
        repairs_line(&timeline.repairs)
    );
    Ok(ExitCode::SUCCESS)
}

fn stats(args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let timeline = timeline_of(&args.file)?;
    let stats = Stats::of(&timeline);
    if args.json {
        let document = StatsDocument {
            header: TraceHeader::of(&timeline),
            tasks: &stats.tasks,
            total: &stats.total,
            repairs: &timeline.repairs,
        };
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", render(&timeline, &stats));
    }
    Ok(ExitCode::SUCCESS)
}

/// The repairs made, `name count` for each that is not zero, or `none`.
fn repairs_line(repairs: &Repairs) -> String {
    let made: Vec<String> = repairs
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if made.is_empty() {
        "none".to_string()
    } else {
        made.join(", ")
    }
}

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn wait_columns(wait: &WaitStats) -> String {
    if wait.count == 0 {
        return format!("{:>6} {:>9} {:>9} {:>9} {:>9}", 0, "-", "-", "-", "-");
    }
    format!(
        "{:>6} {:>9} {:>9} {:>9} {:>9}",
        wait.count,
        ms(wait.mean_ns),
        ms(wait.p50_ns),
        ms(wait.p99_ns),
        ms(wait.max_ns)
    )
}

fn render(timeline: &Timeline, stats: &Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} CPUs, {} ms, {} tasks",
        timeline.format.name(),
        stats.cpus,
        ms(stats.duration_ns),
        stats.total.tasks
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>10} {:>8} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "task",
        "pid",
        "cpu ms",
        "switches",
        "migr",
        "waits",
        "avg ms",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    let mut order: Vec<&TaskStats> = stats.tasks.iter().collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.cpu_ns));
    for task in order {
        let name = if task.kernel_thread {
            format!("{} [k]", task.comm)
        } else {
            task.comm.clone()
        };
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>10} {:>8} {:>5} {}",
            name,
            task.pid,
            ms(task.cpu_ns),
            task.switches,
            task.migrations,
            wait_columns(&task.wait)
        );
    }
    let total = &stats.total;
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>10} {:>8} {:>5} {}",
        "total",
        "",
        ms(total.cpu_ns),
        total.switches,
        total.migrations,
        wait_columns(&total.wait)
    );
    let _ = writeln!(out, "repairs: {}", repairs_line(&timeline.repairs));
    if !timeline.repairs.other_events.is_empty() {
        let other: Vec<String> = timeline
            .repairs
            .other_events
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(out, "other events read past: {}", other.join(", "));
    }
    out
}
