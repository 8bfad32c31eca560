// SPDX-License-Identifier: GPL-2.0-only
//! `upsched faas run` on the build machine: bad arguments are refused by name and change
//! nothing; as root on a writable cgroup2 mount, a short run of real processes completes its
//! requests, reports consistent figures and leaves no process or cgroup behind, also when it
//! is interrupted. (The kernel side, with a tenant and its hints, is `vm_faas`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::{text, upsched};

use upsched_faas::Report;

#[test]
fn out_of_bounds_arguments_are_refused_with_what_is_accepted() {
    let root = std::env::temp_dir().join(format!("upsched-faas-refused-{}", std::process::id()));
    let root_arg = root.to_str().unwrap();
    for (args, expected) in [
        (vec!["--chains", "0"], "--chains 0: expected 1-32"),
        (vec!["--chains", "1000"], "--chains 1000: expected 1-32"),
        (vec!["--rate=-3"], "--rate -3"),
        (vec!["--seconds", "1e9"], "--seconds 1000000000"),
        (
            vec!["--rate", "900", "--seconds", "500"],
            "requests per chain: at most 4096",
        ),
        (vec!["--pollers", "0"], "--pollers 0: expected 1-8"),
        (vec!["--spin", "1h"], "--spin: at most"),
        (vec!["--hints", "runtime"], "need --tenant"),
        (vec!["--tenant", "t"], "--tenant needs --hints"),
        (
            vec!["--cgroup-root", "relative"],
            "expected an absolute path",
        ),
    ] {
        let mut all = vec!["faas", "run"];
        if !args.contains(&"--cgroup-root") {
            all.extend(["--cgroup-root", root_arg]);
        }
        all.extend(&args);
        let out = upsched(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!root.exists(), "{args:?} created {}", root.display());
    }
    let out = upsched(&["faas", "run", "--chains", "0", "--json"]);
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["exit_status"], 2);
}

/// A cgroup2 mount this process may create groups in and move processes into (root only).
fn cgroup2_mount() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

/// What a run left: its cgroups can be removed only once their processes are gone, so a root
/// that is gone means no process either.
fn leftovers(root: &Path) -> Vec<String> {
    if root.exists() {
        vec![format!("{} still exists", root.display())]
    } else {
        Vec::new()
    }
}

#[test]
fn a_short_run_completes_its_requests_and_cleans_up_even_when_interrupted() {
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipped: needs root and a cgroup2 mount");
        return;
    };
    let root = mount.join(format!("upsched-faas-test-{}", std::process::id()));
    let root_arg = root.to_str().unwrap();
    let out = upsched(&[
        "faas",
        "run",
        "--chains",
        "2",
        "--rate",
        "10",
        "--seconds",
        "1",
        "--drain",
        "5",
        "--cgroup-root",
        root_arg,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.arrived > 0);
    assert_eq!(report.completed, report.arrived);
    assert_eq!(report.functions.len(), 10);
    for f in &report.functions {
        assert_eq!(f.threads.len(), 3, "worker and two runtime threads");
        assert!(f.pickups > 0, "{} took no request", f.function);
        let worker = &f.threads[0];
        assert!(
            worker.pending_cpu_ms > 0.0,
            "{}'s worker ran no burst",
            f.function
        );
    }
    let idle = report.idle_ratio.unwrap();
    let poll = report.poll_ratio.unwrap();
    assert!(
        idle > 0.0 && idle < 1.0 && poll > 0.0 && poll < 1.0,
        "{idle} {poll}"
    );
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    assert_eq!(leftovers(&root), Vec::<String>::new());

    // Ctrl-C in the middle of a run: everything goes, the status says so.
    let child = Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args(["faas", "run", "--seconds", "30", "--cgroup-root", root_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if root.join("c00/handler").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("interrupted"));
    assert_eq!(leftovers(&root), Vec::<String>::new());
}
