//! `upsched sweep` as a user runs it: the CSV of a tiny grid, determinism across thread
//! counts, the plot, and clear errors that change nothing.

use std::path::{Path, PathBuf};

mod support;
use support::{text, upsched};

#[path = "../../upsched-sim/tests/support/svg.rs"]
mod svg;

/// A directory of this test's own (tests run in parallel), empty.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upsched-sweep-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The one-stage chain of upsched-sim's tests: a request every 10 ms (`count` of them), 6 ms
/// end to end, 30 ms simulated; its comment derives the idle times.
fn chain_scenario() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../upsched-sim/tests/data/one-stage-chain.toml");
    path.to_str().unwrap().to_string()
}

#[test]
fn a_tiny_toml_grid_gives_one_exact_row_per_run() {
    let dir = scratch("toml");
    let scenario = chain_scenario();
    let out_dir = dir.join("out");
    let out = upsched(&[
        "sweep",
        &scenario,
        "--param",
        "arrival.requests.count=1..2",
        "--policy",
        "fifo",
        "--seeds",
        "2",
        "--metric",
        "latency_p50_ms",
        "--metric",
        "throughput",
        "--metric",
        "idle_ratio",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    // One request: the housekeeper's [0,1] [3,4] are pending, its 8 other ms idle of 10,
    // plus 3 ms of the worker; two requests: [6,7] [9,10] [18,19] [21,22] [24,25] [27,28] idle.
    assert_eq!(
        csv,
        "arrival.requests.count,policy,seed,latency_p50_ms,throughput,idle_ratio\n\
         1,fifo,1,6.000000,33.333333,0.615385\n\
         1,fifo,2,6.000000,33.333333,0.615385\n\
         2,fifo,1,6.000000,66.666667,0.375000\n\
         2,fifo,2,6.000000,66.666667,0.375000\n"
    );
    let svg = std::fs::read_to_string(out_dir.join("sweep-latency_p50_ms.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("fifo"), "{svg}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("latency_p50_ms (mean over 2 seeds)"),
        "{stdout}"
    );
    assert!(stdout.contains("6.0000"), "{stdout}");
}

#[test]
fn the_plot_has_units_integer_ticks_for_a_count_and_a_legend_beside_the_data() {
    let dir = scratch("plot");
    let out = upsched(&[
        "sweep",
        &chain_scenario(),
        "--param",
        "arrival.requests.count=1..2",
        "--policy",
        "fifo",
        "--policy",
        "rr",
        "--seeds",
        "1",
        "--plot",
        "latency_p50_ms",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(dir.join("sweep-latency_p50_ms.svg")).unwrap();
    let texts = svg::elements(&svg, "text");
    let y_title = texts
        .iter()
        .find(|t| t.attrs.contains_key("transform"))
        .expect("a y axis title");
    assert_eq!(y_title.text, "median end-to-end latency (ms)");
    assert!(texts.iter().any(|t| t.text == "arrival.requests.count"));
    // The x axis labels (centred under their tick): the two values, and nothing between.
    let x_ticks: Vec<&str> = texts
        .iter()
        .filter(|t| t.attrs.get("text-anchor").map(String::as_str) == Some("middle"))
        .filter(|t| t.text.parse::<f64>().is_ok())
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(x_ticks, ["1", "2"], "{svg}");
    let legend = svg::legend(&svg);
    let labels: Vec<&str> = legend.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["fifo", "rr"]);
    assert_ne!(legend[0].1, legend[1].1);
    // The legend stands beside the chart: every mean's marker is left of its swatches.
    let legend_x = texts
        .iter()
        .filter(|t| t.text == "fifo")
        .map(|t| t.num("x") - 30.0)
        .fold(f64::MAX, f64::min);
    let markers: Vec<f64> = svg::elements(&svg, "circle")
        .iter()
        .map(|c| c.num("cx"))
        .collect();
    assert_eq!(markers.len(), 4, "both policies at both points");
    assert!(
        markers.iter().all(|x| *x < legend_x),
        "{markers:?} {legend_x}"
    );
}

#[test]
fn the_faas_sweep_is_the_same_on_one_thread_and_on_many() {
    let dir = scratch("faas");
    let run = |jobs: &str| {
        let out_dir = dir.join(format!("out-{jobs}"));
        let out = upsched(&[
            "sweep",
            "faas:duration=300ms,cpus=4,rate=40",
            "--param",
            "chains=0,1,2",
            "--policy",
            "linux-eevdf",
            "--policy",
            "fifo",
            "--seeds",
            "2",
            "--jobs",
            jobs,
            "--plot",
            "idle_ratio",
            "--plot",
            "latency_p99_ms",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
        (
            read("sweep.csv"),
            read("sweep-idle_ratio.svg") + &read("sweep-latency_p99_ms.svg"),
        )
    };
    let (csv, svg) = run("1");
    assert_eq!((csv.clone(), svg), run("3"));
    let rows: Vec<&str> = csv.lines().collect();
    // Header, then 3 points × 2 policies × 2 seeds in grid order.
    assert_eq!(rows.len(), 13, "{csv}");
    assert!(rows[0].starts_with("chains,policy,seed,idle_ratio,poll_ratio,"));
    assert!(
        rows[1].starts_with("0,linux-eevdf,1,,,"),
        "no chains, no chain metrics"
    );
    assert!(rows[12].starts_with("2,fifo,2,0."), "{}", rows[12]);
    // Different seeds draw different requests.
    assert_ne!(rows[5].split_once(",1,"), rows[6].split_once(",2,"));
}

#[test]
fn a_checked_sweep_of_tenants_gives_the_same_rows() {
    let dir = scratch("check");
    let scenario = dir.join("tenants.toml");
    std::fs::write(
        &scenario,
        "duration = \"200ms\"\n[machine]\ncpus = 2\n\
         [[task]]\nname = \"w\"\ncount = 3\ncgroup = \"/t\"\n\
         program = [{ loop = \"forever\", body = [{ run = \"2ms\" }, { sleep = \"1ms\" }] }]\n\
         [[tenant]]\npolicy = \"example:rr\"\ncgroup = \"/t\"\npark_max = \"10ms\"\nwatchdog = \"50ms\"\n",
    )
    .unwrap();
    let run = |check: bool| {
        let out_dir = dir.join(format!("out-{check}"));
        let mut args = vec![
            "sweep",
            scenario.to_str().unwrap(),
            "--param",
            "task.w.count=1,4",
            "--policy",
            "upsched",
            "--seeds",
            "2",
            "--metric",
            "wait_p99_ms",
            "--out",
            out_dir.to_str().unwrap(),
        ];
        if check {
            args.push("--check");
        }
        let out = upsched(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap()
    };
    let checked = run(true);
    assert_eq!(checked.lines().count(), 5, "{checked}");
    assert_eq!(checked, run(false));
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let dir = scratch("bad");
    let scenario = chain_scenario();
    let out_dir = dir.join("never");
    for (args, expected) in [
        (
            vec!["faas", "--param", "colour=1,2"],
            "unknown faas parameter \"colour\"",
        ),
        (vec!["faas", "--param", "chains=5..1"], "is empty"),
        (vec!["faas", "--param", "chains=1..x"], "is not a number"),
        (vec!["faas", "--param", "chains"], "write NAME=V1,V2"),
        (vec!["faas", "--param", "chains=1,-2"], "not a valid number"),
        (
            vec!["faas", "--param", "chains=1", "--metric", "speed"],
            "unknown metric \"speed\"",
        ),
        (
            vec!["faas", "--param", "chains=1", "--plot", "colour"],
            "unknown metric \"colour\"",
        ),
        (
            vec!["faas", "--param", "chains=1", "--policy", "nonesuch"],
            "unknown policy \"nonesuch\"",
        ),
        (
            vec!["faas", "--param", "chains=1", "--seeds", "0"],
            "--seeds must be at least 1",
        ),
        (
            vec![&scenario, "--param", "machine.gpus=1"],
            "the scenario has no machine.gpus",
        ),
        (
            vec![&scenario, "--param", "task.7.count=1"],
            "has 3 elements, no 7",
        ),
        (
            vec![&scenario, "--param", "machine.cpus=two"],
            "\"two\" is not an integer",
        ),
        (vec![&scenario, "--param", "machine.cpus=0"], "machine"),
        (vec!["missing.toml", "--param", "cpus=1"], "cannot read"),
    ] {
        let mut argv = vec!["sweep"];
        argv.extend(args.iter().copied());
        argv.extend(["--out", out_dir.to_str().unwrap()]);
        let out = upsched(&argv);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stderr}");
        assert!(stderr.contains(expected), "{argv:?}: {stderr}");
        assert!(!out_dir.exists(), "{argv:?} created the output directory");
    }
    let out = upsched(&["sweep", "faas", "--param", "chains=1", "--metric", "help"]);
    assert_eq!(out.status.code(), Some(0));
    let listing = text(&out.stdout);
    assert!(
        listing.contains("idle_ratio") && listing.contains("latency_p99_ms"),
        "{listing}"
    );
}

#[test]
fn upsched_sim_runs_the_builtin_faas_scenario_and_refuses_bad_parameters() {
    let out = upsched(&[
        "sim",
        "faas:chains=2,duration=300ms,cpus=4",
        "--policy",
        "linux-eevdf",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["scenario"],
        "faas:chains=2,cpus=4,duration=300.000ms"
    );
    let chains = &report["runs"][0]["chains"];
    assert_eq!(chains["chains"].as_array().unwrap().len(), 2);
    assert_eq!(chains["chains"][1]["name"], "c01");
    assert!(chains["all"]["completed"].as_u64().unwrap() > 0, "{chains}");
    let runtimes = report["runs"][0]["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["idle_ratio"].is_f64())
        .count();
    assert_eq!(runtimes, 10);

    let out = upsched(&["sim", "faas:chains=2,speed=3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown faas parameter \"speed\""));
}

/// The arguments of a small grid of two policies and two seeds, 8 runs, into `out`.
fn small_grid(out: &Path) -> Vec<String> {
    [
        "sweep",
        &chain_scenario(),
        "--param",
        "arrival.requests.count=1..2",
        "--policy",
        "fifo",
        "--policy",
        "linux-eevdf",
        "--seeds",
        "2",
        "--plot",
        "idle_ratio",
        "--plot",
        "throughput",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    upsched(&args)
}

#[test]
fn sharded_sweeps_merge_into_the_bytes_of_the_whole_sweep() {
    let dir = scratch("shards");
    let whole = dir.join("whole");
    let out = run(&small_grid(&whole));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shards = dir.join("shards");
    let mut files = Vec::new();
    for k in 1..=3 {
        let mut args = small_grid(&shards);
        args.extend(["--shard".into(), format!("{k}/3")]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(!shards.join("sweep.csv").exists(), "a shard writes no CSV");
        // Runs 1, 4, 7 / 2, 5, 8 / 3, 6 of the 8.
        let runs = if k == 3 { 2 } else { 3 };
        assert!(
            text(&out.stdout).starts_with(&format!("shard {k} of 3: {runs} runs, 0 failed")),
            "{}",
            text(&out.stdout)
        );
        files.push(shards.join(format!("sweep-shard-{k}-of-3.json")));
    }
    let merged = dir.join("merged");
    let mut merge = vec!["sweep".to_string(), "merge".into()];
    // In any order.
    merge.extend(files.iter().rev().map(|f| f.to_str().unwrap().to_string()));
    merge.extend(["--out".into(), merged.to_str().unwrap().to_string()]);
    let out = run(&merge);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for file in ["sweep.csv", "sweep-idle_ratio.svg", "sweep-throughput.svg"] {
        let expected = std::fs::read(whole.join(file)).unwrap();
        assert_eq!(
            std::fs::read(merged.join(file)).unwrap(),
            expected,
            "{file}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(merged.join("sweep.csv"))
            .unwrap()
            .lines()
            .count(),
        9
    );

    // Refused, writing nothing: a missing shard, a repeated one, one of another sweep, a
    // damaged file.
    let refused = dir.join("refused");
    let path = |f: &PathBuf| f.to_str().unwrap().to_string();
    let other = dir.join("other");
    let mut other_args = small_grid(&other);
    other_args[3] = "arrival.requests.count=1..3".into();
    other_args.extend(["--shard".into(), "3/3".into()]);
    assert_eq!(run(&other_args).status.code(), Some(0));
    let damaged = dir.join("damaged.json");
    let mut text_of_1 = std::fs::read_to_string(&files[0]).unwrap();
    text_of_1 = text_of_1.replacen("\"seed\":1", "\"seed\":7", 1);
    std::fs::write(&damaged, text_of_1).unwrap();
    for (shards, expected) in [
        (
            vec![path(&files[0]), path(&files[1])],
            "shards 3 of 3 are missing",
        ),
        (
            vec![path(&files[0]), path(&files[0]), path(&files[1])],
            "given twice",
        ),
        (
            vec![
                path(&files[0]),
                path(&files[1]),
                path(&other.join("sweep-shard-3-of-3.json")),
            ],
            "another sweep",
        ),
        (
            vec![path(&damaged), path(&files[1]), path(&files[2])],
            "damaged or repeated",
        ),
        (vec![path(&dir.join("nope.json"))], "No such file"),
    ] {
        let mut args = vec!["sweep".to_string(), "merge".into()];
        args.extend(shards);
        args.extend(["--out".into(), path(&refused)]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{expected}");
        assert!(
            text(&out.stderr).contains(expected),
            "{}",
            text(&out.stderr)
        );
        assert!(!refused.exists(), "{expected}: nothing written");
    }
    let mut bad_shard = small_grid(&shards);
    bad_shard.extend(["--shard".into(), "4/3".into()]);
    assert_eq!(run(&bad_shard).status.code(), Some(2));
}
