//! `upsched-workload`: runs measured scheduling workloads and prints JSON reports.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use upsched_workload::{RunError, bench, report, run, spec};

#[derive(Parser)]
#[command(
    name = "upsched-workload",
    version,
    about = "Runs measured scheduling workloads (CPU hogs, sleepers, pipe ping-pong, commands) \
             in cgroups and reports CPU shares, finish times and latencies as JSON",
    after_help = "Exit status: 0 report printed, 1 the run failed (cgroups, fork, ...), \
                  2 bad spec or usage, 128+N interrupted by signal N.\n\
                  The spec and report formats are described in crates/upsched-workload/README.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One JSON object.
    Json,
    /// `key=value` lines (`group.NAME.cpu_share=0.25`), for shells without a JSON parser.
    Kv,
}

#[derive(Subcommand)]
enum Command {
    /// Run the groups of a spec and print one report on stdout.
    #[command(after_help = "Examples:\n  \
        upsched-workload run spec.json\n  \
        upsched-workload run --spec-inline '{\"duration_ms\": 2000, \"groups\": [\n    \
            {\"name\": \"hog\", \"kind\": \"hog\", \"tasks\": 2, \"cgroup\": \"t/a\"},\n    \
            {\"name\": \"sl\", \"kind\": \"sleeper\", \"run_us\": 100, \"sleep_us\": 1000}]}'\n  \
        cat spec.json | upsched-workload run - --format kv | grep cpu_share")]
    Run {
        /// Spec file (JSON); `-` reads stdin.
        #[arg(
            required_unless_present = "spec_inline",
            conflicts_with = "spec_inline"
        )]
        spec: Option<PathBuf>,
        /// The spec itself, as a JSON string.
        #[arg(long, value_name = "JSON")]
        spec_inline: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Like `perf bench sched pipe`: two processes ping-pong a token over pipes.
    #[command(after_help = "Example:\n  upsched-workload pipe-bench --loops 100000 --json")]
    PipeBench {
        /// Round trips.
        #[arg(long, short = 'l', default_value_t = 1_000_000)]
        loops: u64,
        /// Pin both processes to these CPUs (comma-separated), like `taskset -c`.
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        cpus: Vec<u32>,
        /// Print one JSON object instead of perf-style text.
        #[arg(long)]
        json: bool,
    },
    /// Like `perf bench sched messaging` (hackbench): G groups of senders and receivers.
    #[command(
        after_help = "Example:\n  upsched-workload messaging-bench --groups 2 --loops 50 --json"
    )]
    MessagingBench {
        /// Groups of senders and receivers.
        #[arg(long, short = 'g', default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
        groups: u64,
        /// Messages each sender sends to each receiver of its group.
        #[arg(long, short = 'l', default_value_t = 100)]
        loops: u64,
        /// Senders and receivers per group (each).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=200))]
        fds: u64,
        /// Bytes per message.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=65536))]
        data_size: u64,
        /// Use pipes instead of socketpairs.
        #[arg(long)]
        pipe: bool,
        /// Pin every process to these CPUs (comma-separated), like `taskset -c`.
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        cpus: Vec<u32>,
        /// Print one JSON object instead of perf-style text.
        #[arg(long)]
        json: bool,
    },
    /// Measure hog iterations per CPU-second here, to size `iterations` in a spec.
    Calibrate {
        /// CPU time to measure for.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        ms: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            spec,
            spec_inline,
            format,
            pretty,
        } => cmd_run(spec, spec_inline, format, pretty),
        Command::PipeBench { loops, cpus, json } => match bench::pipe_bench(loops, &cpus) {
            Ok(r) if json => print_json(&r),
            Ok(r) => emit(&format!(
                "# Executed {} pipe operations between two processes\n\n     \
                 Total time: {:.3} [sec]\n\n{:>15.6} usecs/op\n{:>15.0} ops/sec\n",
                r.loops, r.total_sec, r.usec_per_op, r.ops_per_sec
            )),
            Err(err) => fail(1, &format!("pipe-bench: {err}{}", cpus_hint(&cpus))),
        },
        Command::MessagingBench {
            groups,
            loops,
            fds,
            data_size,
            pipe,
            cpus,
            json,
        } => match bench::messaging_bench(groups, loops, fds, data_size, pipe, &cpus) {
            Ok(r) if json => print_json(&r),
            Ok(r) => emit(&format!(
                "# {} sender and receiver processes per group\n\
                 # {} groups == {} processes run\n\n     Total time: {:.3} [sec]\n",
                r.fds, r.groups, r.processes, r.total_sec
            )),
            Err(err) => fail(
                1,
                &format!(
                    "messaging-bench: {err}{} (many processes: try fewer --groups)",
                    cpus_hint(&cpus)
                ),
            ),
        },
        Command::Calibrate { ms, json } => {
            let (iterations, per_sec) = run::calibrate(ms);
            if json {
                print_json(&serde_json::json!({
                    "iterations": iterations,
                    "iterations_per_cpu_sec": per_sec.round(),
                }))
            } else {
                emit(&format!("{per_sec:.0} hog iterations per CPU-second\n"))
            }
        }
    }
}

fn cmd_run(
    path: Option<PathBuf>,
    inline: Option<String>,
    format: Format,
    pretty: bool,
) -> ExitCode {
    let text = match (inline, path) {
        (Some(text), _) => text,
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            if let Err(err) = std::io::stdin().read_to_string(&mut text) {
                return fail(2, &format!("cannot read the spec from stdin: {err}"));
            }
            text
        }
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => return fail(2, &format!("cannot read {}: {err}", path.display())),
        },
        (None, None) => return fail(2, "give a spec file or --spec-inline"),
    };
    let spec = match spec::parse(&text) {
        Ok(spec) => spec,
        Err(err) => return fail(2, &err.to_string()),
    };
    match run::run(&spec) {
        Ok(report) => match format {
            Format::Kv => emit(&report::to_key_values(&report)),
            Format::Json if pretty => emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            )),
            Format::Json => print_json(&report),
        },
        Err(err @ RunError::Interrupted(_)) => fail(err.exit_code(), &err.to_string()),
        Err(err) => fail(err.exit_code(), &err.to_string()),
    }
}

/// A failed bench child with --cpus most likely got a CPU that does not exist.
fn cpus_hint(cpus: &[u32]) -> String {
    if cpus.is_empty() {
        String::new()
    } else {
        format!(
            " (check --cpus {cpus:?}: {} CPUs online)",
            upsched_workload::sys::cpus_online()
        )
    }
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string(value) {
        Ok(text) => emit(&format!("{text}\n")),
        Err(err) => fail(1, &format!("cannot serialise the result: {err}")),
    }
}

/// Writes the result to stdout. A reader that went away (`| head`) is not an error of ours;
/// any other write error is reported instead of panicking as `println!` would.
fn emit(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => fail(1, &format!("cannot write to stdout: {err}")),
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("upsched-workload: error: {message}");
    ExitCode::from(code)
}
