//! The benchmark of docs/kernel-bench.md (not a test: ignored by default, it takes minutes and
//! its figures need an idle machine):
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-kernel cargo test -p upsched-kernel --test kernel_bench \
//!     -- --ignored --nocapture
//! ```
//!
//! One boot: `perf bench sched messaging` and `perf bench sched pipe` under the kernel's default
//! scheduler, the host alone and a FIFO tenant on every task, in ABBA rounds. The timed passes
//! run without the kernel's BPF run-time statistics (they add two clock reads to every BPF
//! call); a second, instrumented pass per configuration gives the per-program figures. The host's `perf` (Debian's linux-perf) and the shared
//! libraries `ldd` lists for it are copied into the initramfs.

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

#[test]
#[ignore = "benchmark: minutes long, needs an idle machine; run with --ignored"]
fn kernel_bench() {
    let kernel = kernel::obtain().unwrap_or_else(|e| panic!("{e:#}"));
    let runner = guest_binary::build_static_binary(env!("CARGO_PKG_NAME"), "upsched-vm-scenarios")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rounds = std::env::var(ROUNDS_ENV).unwrap_or_else(|_| "4".into());
    let script = format!("#!/bin/sh\n{RUNNER_GUEST_PATH} bench --rounds {rounds}\n");
    let mut files = InitramfsSpec::with_default_busybox(script).unwrap_or_else(|e| panic!("{e:#}"));
    files.add_host_file(&runner, RUNNER_GUEST_PATH, 0o755);
    for path in perf_files() {
        files.add_host_file(Path::new(&path), &path, 0o755);
    }
    let mut scenario = Scenario::new("kernel-bench", files);
    scenario.timeout = Duration::from_secs(1200);
    let report = run_scenario(&kernel, &scenario, &mut print_event)
        .unwrap_or_else(|e| panic!("the harness failed: {e:#}"));
    let description = report.describe();
    let _ = writeln!(std::io::stderr().lock(), "{description}");
    if let Some(boot) = report.final_boot() {
        let log = std::fs::read_to_string(&boot.console_log).unwrap_or_default();
        for line in log.lines().filter(|l| l.starts_with("UPSCHED-BENCH")) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
    assert!(report.passed(), "{description}");
}
