//! The benchmark of docs/kernel-bench.md (not a test: ignored by default, it takes minutes and
//! its figures need an idle machine):
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-kernel cargo test -p upsched-kernel --test kernel_bench \
//!     -- --ignored --nocapture
//! ```
//!
//! `perf bench sched messaging` and `perf bench sched pipe` under the kernel's default
//! scheduler, a minimal sched_ext scheduler (floor), the host alone and a FIFO tenant on every
//! task, in ABBA rounds, in one boot (more when a guest crash cuts one short: the next boot goes
//! on from the first incomplete round, and the ratios are computed here over all of them). The
//! timed passes run without the kernel's BPF run-time statistics (they add two clock reads to
//! every BPF call); a second, instrumented pass per configuration gives the per-program
//! figures. The host's `perf` (Debian's linux-perf) and the shared libraries `ldd` lists for it
//! are copied into the initramfs.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use upsched_vmtest::{InitramfsSpec, Scenario, guest_binary, kernel, print_event, run_scenario};

const RUNNER_GUEST_PATH: &str = "/usr/bin/upsched-vm-scenarios";
const ROUNDS_ENV: &str = "UPSCHED_BENCH_ROUNDS";

/// `perf` and every library it loads, as host paths (the guest gets them at the same paths).
fn perf_files() -> Vec<String> {
    let perf = "/usr/bin/perf";
    assert!(
        Path::new(perf).exists(),
        "no {perf}: apt-get install linux-perf"
    );
    let output = Command::new("ldd").arg(perf).output().expect("running ldd");
    let mut files = vec![perf.to_string()];
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push(path.to_string());
        }
    }
    files
}

/// One configuration's timed pass in one round, from an `UPSCHED-BENCH` line.
struct Pass {
    round: u32,
    config: String,
    messaging_s: f64,
    pipe_s: f64,
}

const CONFIGS: [&str; 4] = ["kernel", "floor", "host", "fifo"];

/// The timed passes of every round that a boot completed (a crash cuts the last one short).
fn complete_rounds(console: &str) -> Vec<Pass> {
    let passes: Vec<Pass> = console
        .lines()
        .filter_map(|line| line.strip_prefix("UPSCHED-BENCH "))
        .filter_map(|fields| {
            let field = |key: &str| {
                fields
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            };
            Some(Pass {
                round: field("round")?.parse().ok()?,
                config: field("config")?.to_string(),
                messaging_s: field("messaging_s")?.parse().ok()?,
                pipe_s: field("pipe_s")?.parse().ok()?,
            })
        })
        .collect();
    let complete: Vec<u32> = passes
        .iter()
        .map(|p| p.round)
        .filter(|round| {
            CONFIGS
                .iter()
                .all(|c| passes.iter().any(|p| p.round == *round && p.config == *c))
        })
        .collect();
    passes
        .into_iter()
        .filter(|p| complete.contains(&p.round))
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Rounds with every configuration's pass (`complete_rounds` keeps only those).
fn rounds_done(passes: &[Pass]) -> u32 {
    (passes.len() / CONFIGS.len()) as u32
}

/// `a`/`b` per round: median and range, as an `UPSCHED-BENCH-RATIO` line.
fn ratio_line(passes: &[Pass], bench: &str, a: &str, b: &str) -> String {
    let seconds = |round: u32, config: &str| {
        passes
            .iter()
            .find(|p| p.round == round && p.config == config)
            .map(|p| {
                if bench == "pipe" {
                    p.pipe_s
                } else {
                    p.messaging_s
                }
            })
    };
    let mut rounds: Vec<u32> = passes.iter().map(|p| p.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let mut ratios: Vec<f64> = rounds
        .iter()
        .filter_map(|r| Some(seconds(*r, a)? / seconds(*r, b)?))
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    format!(
        "UPSCHED-BENCH-RATIO {bench} {a}/{b}: median {:.3} (range {lo:.3}..{hi:.3}) over {} rounds",
        median(&mut ratios),
        ratios.len()
    )
}

/// Boots in all, when guest crashes cut runs short (see the brief: scheduler attach/detach
/// cycles sometimes crash a guest under TCG; the bench makes dozens of them).
const MAX_BOOTS: u32 = 5;

#[test]
#[ignore = "benchmark: minutes long, needs an idle machine; run with --ignored"]
fn kernel_bench() {
    let kernel = kernel::obtain().unwrap_or_else(|e| panic!("{e:#}"));
    let runner = guest_binary::build_static_binary(env!("CARGO_PKG_NAME"), "upsched-vm-scenarios")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rounds: u32 = std::env::var(ROUNDS_ENV)
        .map(|r| r.parse().expect("UPSCHED_BENCH_ROUNDS: a number"))
        .unwrap_or(4);
    let mut passes: Vec<Pass> = Vec::new();
    let mut err = std::io::stderr().lock();
    for boot in 1..=MAX_BOOTS {
        let done = rounds_done(&passes);
        if done >= rounds {
            break;
        }
        let script = format!(
            "#!/bin/sh\n{RUNNER_GUEST_PATH} bench --first-round {done} --rounds {}\n",
            rounds - done
        );
        let mut files =
            InitramfsSpec::with_default_busybox(script).unwrap_or_else(|e| panic!("{e:#}"));
        files.add_host_file(&runner, RUNNER_GUEST_PATH, 0o755);
        for path in perf_files() {
            files.add_host_file(Path::new(&path), &path, 0o755);
        }
        let mut scenario = Scenario::new("kernel-bench", files);
        scenario.timeout = Duration::from_secs(1200);
        // A crash is not retried from the start: the next boot goes on from the first round
        // this one did not complete.
        scenario.retry_on_crash = false;
        let report = run_scenario(&kernel, &scenario, &mut print_event)
            .unwrap_or_else(|e| panic!("the harness failed: {e:#}"));
        let _ = writeln!(err, "boot {boot}: {}", report.describe());
        for boot in &report.boots {
            let console = std::fs::read_to_string(&boot.console_log).unwrap_or_default();
            for line in console.lines().filter(|l| l.starts_with("UPSCHED-BENCH")) {
                let _ = writeln!(err, "{line}");
            }
            passes.extend(complete_rounds(&console));
        }
    }
    let done = rounds_done(&passes);
    for bench in ["messaging", "pipe"] {
        for (a, b) in [
            ("host", "kernel"),
            ("fifo", "host"),
            ("fifo", "kernel"),
            ("floor", "kernel"),
            ("host", "floor"),
        ] {
            let _ = writeln!(err, "{}", ratio_line(&passes, bench, a, b));
        }
    }
    assert!(
        done >= rounds,
        "{done} of {rounds} rounds completed in {MAX_BOOTS} boots"
    );
}
