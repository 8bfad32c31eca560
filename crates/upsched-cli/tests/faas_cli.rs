// SPDX-License-Identifier: GPL-2.0-only
//! `upsched faas run` on the build machine: bad arguments are refused by name and change
//! nothing; as root on a writable cgroup2 mount, a short run of real processes completes its
//! requests, reports consistent figures and leaves no process or cgroup behind, also when it
//! is interrupted; `faas compare` puts such a run beside the simulator's and refuses runs files
//! it cannot use. (The kernel side, with a tenant and its hints, is `vm_faas`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::{assert_refused, text, upsched};

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
        assert_refused(&args, &upsched(&all), expected);
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
    compares_with_the_simulator(&report);

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

/// `faas compare` of a real report: the table holds it and the simulator's two policies at
/// its chain count, and both plots are written; runs of other parameters are refused.
fn compares_with_the_simulator(report: &Report) {
    let dir = support::scratch_dir("faas-compare");
    let runs = dir.join("runs.json");
    let labelled = serde_json::json!([{ "scheduler": "linux", "report": report }]);
    std::fs::write(&runs, labelled.to_string()).unwrap();
    let out = upsched(&[
        "faas",
        "compare",
        runs.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for row in [
        "| 2 | kernel: linux |",
        "| 2 | sim: linux-eevdf |",
        "| 2 | sim: example:faas |",
    ] {
        assert!(table.contains(row), "{row} missing from {table}");
    }
    for plot in ["faas-real-idle_ratio.svg", "faas-real-latency_p99_ms.svg"] {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("sim: example:faas"),
            "{plot}"
        );
    }
    let mut other = report.clone();
    other.params.rate *= 2.0;
    let mixed = serde_json::json!([
        { "scheduler": "linux", "report": report },
        { "scheduler": "host", "report": other },
    ]);
    std::fs::write(&runs, mixed.to_string()).unwrap();
    let out = upsched(&["faas", "compare", runs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("other parameters than the first run"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_runs_files_are_refused() {
    let dir = support::scratch_dir("faas-compare-bad");
    let cases = [
        ("missing.json", None, "No such file"),
        ("empty.json", Some("[]"), "no runs"),
        ("garbage.json", Some("{\"scheduler\": 3"), "garbage.json"),
    ];
    for (name, content, expected) in cases {
        let path = dir.join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        let out = upsched(&[
            "faas",
            "compare",
            path.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(expected),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    assert!(!dir.join("faas-real-idle_ratio.svg").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
