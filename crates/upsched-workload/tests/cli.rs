//! End-to-end tests of the `upsched-workload` binary on this host. The binary forks, so it is
//! run as a separate process rather than through the library inside the test harness.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_upsched-workload");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run upsched-workload")
}

fn run_spec(spec: &str) -> (Value, Output) {
    let out = run(&["run", "--spec-inline", spec]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    (report, out)
}

fn group<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {report}"))
}

#[test]
fn hog_and_sleeper_without_cgroups() {
    let (report, _) = run_spec(
        r#"{"name": "t", "duration_ms": 1000, "groups": [
            {"name": "hog", "kind": "hog", "tasks": 2, "cgroup": null},
            {"name": "sl", "kind": "sleeper", "run_us": 50, "sleep_us": 2000}
        ]}"#,
    );
    assert_eq!(report["format"], "upsched-workload-report/1");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["stopped_by"], "duration");
    assert!(report["cpus_online"].as_u64().unwrap() >= 1);
    let wall = report["wall_ms"].as_f64().unwrap();
    assert!((1000.0..1500.0).contains(&wall), "wall_ms {wall}");

    let hog = group(&report, "hog");
    assert_eq!(hog["cpu_source"], "tasks");
    assert!(hog["cpu_usec"].as_u64().unwrap() > 0, "{hog}");
    assert!(hog["work"].as_u64().unwrap() > 0);
    assert_eq!(hog["task_results"].as_array().unwrap().len(), 2);
    assert!(hog["latency_us"].is_null());

    let sleeper = group(&report, "sl");
    let latency = &sleeper["latency_us"];
    assert!(latency["count"].as_u64().unwrap() >= 10, "{sleeper}");
    let p50 = latency["p50_us"].as_f64().unwrap();
    let p99 = latency["p99_us"].as_f64().unwrap();
    let max = latency["max_us"].as_f64().unwrap();
    assert!(p50 >= 0.0 && p50 <= p99 && p99 <= max, "{latency}");
    // Hogs burn far more CPU than a sleeper that mostly sleeps.
    let share = |g: &Value| g["cpu_share"].as_f64().unwrap();
    assert!(share(hog) > share(sleeper), "{report}");
    assert!((share(hog) + share(sleeper) - 1.0).abs() < 0.01);
}

#[test]
fn fixed_work_reports_finish_times_and_ends_early() {
    let started = Instant::now();
    let (report, _) = run_spec(
        r#"{"duration_ms": 20000, "groups": [
            {"name": "a", "kind": "hog", "iterations": 2000},
            {"name": "b", "kind": "hog", "tasks": 2, "iterations": 4000, "nice": 3},
            {"name": "p", "kind": "pingpong", "round_trips": 200},
            {"name": "s", "kind": "sleeper", "sleep_us": 500, "cycles": 5},
            {"name": "bg", "kind": "hog", "background": true, "iterations": 1000000000}
        ]}"#,
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "did not end at work done"
    );
    assert_eq!(report["stopped_by"], "work_done", "{report}");
    for name in ["a", "b", "p", "s"] {
        let g = group(&report, name);
        assert_eq!(g["finished_tasks"], g["tasks"], "{g}");
        let finish = &g["finish_ms"];
        assert!(finish["first_ms"].as_f64().unwrap() <= finish["last_ms"].as_f64().unwrap());
    }
    assert_eq!(group(&report, "b")["work"], 8000);
    assert_eq!(group(&report, "b")["nice"], 3);
    let p = group(&report, "p");
    assert_eq!(p["work"], 200);
    assert_eq!(p["latency_us"]["count"], 200);
    assert_eq!(p["task_results"][1]["role"], "responder");
    let bg = group(&report, "bg");
    assert_eq!(bg["task_results"][0]["status"], "stopped");
    assert!(bg["finish_ms"].is_null());
}

#[test]
fn exec_group_captures_output_and_status() {
    let (report, _) = run_spec(
        r#"{"groups": [
            {"name": "ok", "kind": "exec", "argv": ["sh", "-c", "echo hello"], "capture_output": true},
            {"name": "bad", "kind": "exec", "argv": ["sh", "-c", "exit 3"]}
        ]}"#,
    );
    let ok = &group(&report, "ok")["task_results"][0];
    assert_eq!(ok["status"], "finished");
    assert_eq!(ok["output"], "hello\n");
    let bad = &group(&report, "bad")["task_results"][0];
    assert_eq!(bad["status"], "exited");
    assert_eq!(bad["exit_code"], 3);
    assert_eq!(report["ok"], false);
}

#[test]
fn bad_specs_exit_2_naming_the_field() {
    let cases = [
        (
            r#"{"groups": [{"name": "h", "kind": "hog", "tasks": 0, "duration_ms": 5}]}"#,
            "unknown field `duration_ms`",
        ),
        (
            r#"{"duration_ms": 5, "groups": [{"name": "h", "kind": "hog", "tasks": 0}]}"#,
            "tasks: must be >= 1",
        ),
        (
            r#"{"duration_ms": 5, "groups": [{"name": "e", "kind": "exec", "argv": ["/no/such/program"]}]}"#,
            "argv[0]",
        ),
        ("not json", "bad spec"),
    ];
    for (spec, expected) in cases {
        let out = run(&["run", "--spec-inline", spec]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(expected), "{spec}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = run(&["run", "/no/such/spec.json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn key_value_format() {
    let out = run(&[
        "run",
        "--format",
        "kv",
        "--spec-inline",
        r#"{"groups": [{"name": "h", "kind": "hog", "iterations": 100}]}"#,
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("group.h.finished_tasks=1\n"), "{text}");
    assert!(text.contains("ok=true\n"), "{text}");
}

#[test]
fn sigterm_kills_the_tasks() {
    let dir = std::env::temp_dir().join(format!("upsched-workload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    let spec = format!(
        r#"{{"duration_ms": 30000, "groups": [
            {{"name": "e", "kind": "exec", "argv": ["sh", "-c", "echo $$ > {}; exec sleep 30"]}},
            {{"name": "h", "kind": "hog"}}
        ]}}"#,
        pid_file.display()
    );
    let child = Command::new(BIN)
        .args(["run", "--spec-inline", &spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let task_pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted by signal 15"));
    // SAFETY: signal 0 only checks for existence.
    let alive = unsafe { libc::kill(task_pid, 0) } == 0;
    assert!(!alive, "task {task_pid} survived");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where cgroup2 is mounted here, if anywhere (hybrid hosts mount it at /sys/fs/cgroup/unified).
fn cgroup2_mount() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| fields[1].to_string())
    })
}

#[test]
fn cgroups_are_created_measured_and_removed_where_allowed() {
    let Some(mount) = cgroup2_mount() else {
        eprintln!("SKIP: no cgroup2 mount on this host");
        return;
    };
    let root = format!("{mount}/upsched-workload-test-{}", std::process::id());
    if std::fs::create_dir(&root).is_err() {
        eprintln!("SKIP: cannot create cgroups under {mount} here");
        return;
    }
    let _ = std::fs::remove_dir(&root);
    let spec = format!(
        r#"{{"duration_ms": 600, "cgroup_root": "{root}", "groups": [
            {{"name": "a", "kind": "hog", "cgroup": "t/a", "cpus": [0]}},
            {{"name": "b", "kind": "hog", "tasks": 3, "cgroup": "t/b", "cpus": [0]}}
        ]}}"#
    );
    let (report, _) = run_spec(&spec);
    assert!(!std::path::Path::new(&root).exists(), "cgroups left behind");
    let a = group(&report, "a");
    let b = group(&report, "b");
    assert_eq!(a["cgroup"], format!("{root}/t/a"));
    assert_eq!(a["cpu_source"], "cgroup");
    assert!(a["cpu_usec"].as_u64().unwrap() > 0);
    // One CPU shared by 1 + 3 equal tasks: about 1:3 (loose: the host is shared).
    let share = b["cpu_share"].as_f64().unwrap();
    assert!((0.55..0.9).contains(&share), "{report}");
}

#[test]
fn pipe_bench_few_loops() {
    let out = run(&["pipe-bench", "--loops", "200", "--cpus", "0", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["loops"], 200);
    assert!(r["usec_per_op"].as_f64().unwrap() > 0.0);
    let out = run(&["pipe-bench", "--loops", "50"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("usecs/op"), "{text}");
    let out = run(&["pipe-bench", "--loops", "5", "--cpus", "4000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check --cpus"));
}

#[test]
fn messaging_bench_small() {
    let out = run(&["messaging-bench", "--groups", "1", "--loops", "5", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["processes"], 40);
    assert_eq!(r["messages"], 2000);
    assert!(r["total_sec"].as_f64().unwrap() > 0.0);
}
