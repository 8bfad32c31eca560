//! `upsched trace stats` on the hand-written traces of `upsched-trace`: the figures, the JSON
//! document, and the refusals.

mod support;
use support::{scratch_dir, upsched};

#[path = "../../upsched-sim/tests/support/svg.rs"]
mod svg;

fn trace(name: &str) -> String {
    format!(
        "{}/../upsched-trace/tests/traces/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn stats_print_each_task_and_the_total() {
    let out = upsched(&["trace", "stats", &trace("basic.perf.txt")]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "perf script: 2 CPUs, 5.000 ms, 2 tasks");
    // By CPU time, most first: b ran 3.7 ms, a 2.5 ms.
    let row = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row(lines[2]),
        [
            "b", "101", "3.700", "2", "1", "2", "0.600", "0.200", "1.000", "1.000"
        ]
    );
    assert_eq!(
        row(lines[3]),
        [
            "a", "100", "2.500", "2", "0", "1", "0.500", "0.500", "0.500", "0.500"
        ]
    );
    assert_eq!(
        row(lines[4]),
        [
            "total", "6.200", "4", "1", "3", "0.567", "0.500", "1.000", "1.000"
        ]
    );
    assert_eq!(lines[5], "repairs: runnable_at_start 1");
    assert_eq!(lines[6], "other events read past: irq:irq_handler_entry 1");
}

#[test]
fn stats_json_holds_the_figures_and_the_repairs() {
    let out = upsched(&["trace", "stats", &trace("repairs.perf.txt"), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["format"], "perf-script");
    assert_eq!(doc["tasks"].as_array().unwrap().len(), 6);
    assert_eq!(doc["total"]["cpu_ns"], 9_000_000);
    assert_eq!(doc["total"]["wait"]["count"], 2);
    for (repair, count) in [
        ("out_of_order", 1),
        ("missing_wakeups", 1),
        ("pid_reuse", 1),
        ("truncated_lines", 1),
        ("inconsistent_switches", 0),
    ] {
        assert_eq!(doc["repairs"][repair], count, "{repair}");
    }
}

#[test]
fn what_is_not_a_trace_is_refused() {
    let dir = scratch_dir("trace-cli");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "shopping list\n").unwrap();
    let binary = dir.join("perf.data");
    std::fs::write(&binary, [0u8, 159, 146, 150]).unwrap();
    for (file, expected) in [
        (text.to_str().unwrap(), "not a scheduler trace: line 1"),
        (binary.to_str().unwrap(), "not text"),
        ("/nonexistent/trace.txt", "No such file"),
    ] {
        let out = upsched(&["trace", "stats", file]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}");
        let out = upsched(&["trace", "stats", file, "--json"]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["command"], "trace");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_imported_trace_runs_in_the_simulator() {
    let dir = scratch_dir("trace-import");
    let toml = dir.join("basic.toml");
    let out = upsched(&[
        "trace",
        "import",
        &trace("basic.trace-cmd.txt"),
        "-o",
        toml.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("2 tasks (0 started by a fork), 2 wake-up events, 2 CPUs"),
        "{summary}"
    );
    let out = upsched(&[
        "sim",
        toml.to_str().unwrap(),
        "--policy",
        "linux-eevdf",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = report["runs"][0]["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a-100", "b-101"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replay_compares_the_trace_with_each_policy() {
    let out = upsched(&[
        "trace",
        "replay",
        &trace("basic.perf.txt"),
        "--policy",
        "linux-eevdf",
        "--policy",
        "fifo",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, policy) in runs.iter().zip(["linux-eevdf", "fifo"]) {
        assert_eq!(run["policy"], policy);
        let names: Vec<&str> = run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a-100", "b-101"]);
        // The replay runs each burst in full within the trace's duration: the same CPU time.
        for (row, cpu) in run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .zip([2_500_000, 3_700_000])
        {
            assert_eq!(row["cpu_ns"]["trace"], cpu);
            assert_eq!(row["cpu_ns"]["replay"], cpu);
            assert_eq!(row["cpu_ns"]["error"], 0.0);
        }
        let wait = &run["total"]["wait_mean_ns"];
        assert_eq!(wait["trace"], 566_666);
        let error = wait["error"].as_f64().unwrap();
        let expected = (wait["replay"].as_f64().unwrap() - 566_666.0) / 566_666.0;
        assert!((error - expected).abs() < 1e-9, "{wait}");
    }
    // A task started by a fork in the trace is compared too (the replay spawns it).
    let out = upsched(&[
        "trace",
        "replay",
        &trace("repairs.perf.txt"),
        "--policy",
        "fifo",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let forked = doc["runs"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "w-300")
        .expect("the forked task w-300 is compared");
    assert!(forked["cpu_ns"]["replay"].as_u64().unwrap() > 0, "{forked}");
    let out = upsched(&[
        "trace",
        "replay",
        &trace("basic.perf.txt"),
        "--policy",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy"));
}

#[test]
fn a_replay_draws_the_trace_and_each_replay_on_one_cdf() {
    let dir = scratch_dir("replay-cdf");
    let svg = dir.join("waits.svg");
    let out = upsched(&[
        "trace",
        "replay",
        &trace("basic.perf.txt"),
        "--policy",
        "linux-eevdf",
        "--policy",
        "fifo",
        "--cdf",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let legend = svg::legend(&text);
    let labels: Vec<&str> = legend.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        ["trace", "replay under linux-eevdf", "replay under fifo"]
    );
    // One staircase per curve, in its legend colour; the trace's rises once per wait (its
    // waits are 0.2, 0.5 and 1.0 ms: three rises).
    let curves: Vec<svg::Element> = svg::elements(&text, "polyline")
        .into_iter()
        // The legend's swatches are two-point lines.
        .filter(|l| svg::points(&l.attrs["points"]).len() > 2)
        .collect();
    assert_eq!(curves.len(), 3);
    for (curve, (_, colour)) in curves.iter().zip(&legend) {
        assert_eq!(&curve.attrs["stroke"], colour);
    }
    let trace_points = svg::points(&curves[0].attrs["points"]);
    let rises = trace_points.windows(2).filter(|p| p[1].1 < p[0].1).count();
    assert_eq!(rises, 3, "{trace_points:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // An unwritable plot path fails with status 2 and says which.
    let out = upsched(&[
        "trace",
        "replay",
        &trace("basic.perf.txt"),
        "--cdf",
        "/nonexistent-dir/waits.svg",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-dir/waits.svg"));
}
