//! What a scenario may create is bounded: absurd parameters are refused when the scenario is
//! read, and a run that outgrows its limits (events, live tasks, memory, wall time) ends with
//! an error naming the limit and the option that raises it, in `sim` and per grid point in
//! `sweep`. Every case here ends within a second or two, where the unbounded runs these
//! cases come from grew past 3 GB or aborted on an 8 GB allocation.

use std::path::{Path, PathBuf};

mod support;
use support::{text, upsched};

/// `examples/mm1.toml` with its arrival rate (500.0) and job count (0) replaced, written into
/// a file of this test's own.
fn mm1_with(test: &str, rate: &str, count: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let original = std::fs::read_to_string(examples.join("mm1.toml")).unwrap();
    let changed = original
        .replace("rate = 500.0", &format!("rate = {rate}"))
        .replace("count = 0 ", &format!("count = {count} "));
    let path =
        std::env::temp_dir().join(format!("upsched-limits-{test}-{}.toml", std::process::id()));
    std::fs::write(&path, changed).unwrap();
    path
}

#[test]
fn an_absurd_arrival_rate_is_refused_with_the_file_key_and_bound() {
    let file = mm1_with("rate", "1e12", "0");
    for policy in ["fifo", "linux-eevdf"] {
        let out = upsched(&["sim", file.to_str().unwrap(), "--policy", policy]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{policy}: {stderr}");
        let place = format!("{}:24:", file.display());
        assert!(stderr.contains(&place), "{policy}: {stderr}");
        assert!(
            stderr.contains("rate = 1000000000000: at most 1e9 arrivals per second"),
            "{stderr}"
        );
    }
}

#[test]
fn an_absurd_task_count_is_refused_and_a_large_one_stops_before_it_runs() {
    let file = mm1_with("count", "500.0", "2000000");
    let out = upsched(&["sim", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("count = 2000000: at most 1000000 instances"),
        "{stderr}"
    );

    let file = mm1_with("count-run", "500.0", "200000");
    let out = upsched(&["sim", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("run stopped at 0ns simulated: the number of tasks alive at once reached the limit of 100000 (raise it with --max-tasks"),
        "{stderr}"
    );
}

#[test]
fn arrivals_that_outpace_the_machine_stop_at_the_task_limit() {
    // The highest rate the format takes, a job per ns against a 1 ms service time: the queue
    // grows by a task per ns until the default limit of live tasks ends the run.
    let file = mm1_with("outpace", "1e9", "0");
    for policy in ["fifo", "linux-eevdf"] {
        let out = upsched(&["sim", file.to_str().unwrap(), "--policy", policy]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{policy}: {stderr}");
        assert!(
            stderr.contains(&format!("{policy}: run stopped at")) && stderr.contains("tasks alive at once reached the limit of 100000 (raise it with --max-tasks; 0 lifts it)"),
            "{policy}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{policy}");
    }
}

#[test]
fn every_limit_names_itself_and_its_option() {
    let file = mm1_with("each", "1e9", "0");
    let file = file.to_str().unwrap();
    for (options, message) in [
        (
            &["--max-tasks", "0", "--max-events", "20000"][..],
            "the number of events handled reached the limit of 20000 (raise it with --max-events",
        ),
        (
            &["--max-tasks", "0", "--max-memory", "1M"],
            "the estimated memory of the run reached the limit of 1048576 bytes (raise it with --max-memory",
        ),
        (
            &["--max-tasks", "0", "--max-wall", "1ns"],
            "the wall-clock time of the run reached the limit of 1ns (raise it with --max-wall",
        ),
        (
            &["--max-tasks", "1000"],
            "tasks alive at once reached the limit of 1000",
        ),
    ] {
        let mut args = vec!["sim", file, "--policy", "fifo"];
        args.extend(options);
        let out = upsched(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{options:?}: {stderr}");
        assert!(stderr.contains(message), "{options:?}: {stderr}");
    }
}

#[test]
fn a_sweep_point_over_a_limit_fails_and_the_others_are_written() {
    let file = mm1_with("sweep", "500.0", "0");
    let out_dir = std::env::temp_dir().join(format!("upsched-limits-sweep-{}", std::process::id()));
    let out = upsched(&[
        "sweep",
        file.to_str().unwrap(),
        "--param",
        "arrival.requests.rate=100,1e9",
        "--seeds",
        "1",
        "--duration",
        "200ms",
        "--metric",
        "utilisation",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("arrival.requests.rate=1e9 fifo seed 1: failed: run stopped at")
            && stderr.contains("--max-tasks"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["runs"][0]["value"], "100", "{report}");
    assert_eq!(report["failed"][0]["value"], "1e9", "{report}");
    assert!(
        report["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("--max-tasks")
    );
    let csv = std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines().nth(1).unwrap().starts_with("100,fifo,1,"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(out_dir);
}
