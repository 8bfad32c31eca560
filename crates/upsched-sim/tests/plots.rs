//! The structure of the pictures and the trace of a run, read back from their text: which
//! legend entries the SVGs have, what shape the CDF curves take, which tracks, flows and
//! counters the Perfetto trace holds. No pixel is compared.

use std::collections::{BTreeMap, BTreeSet};

use upsched_sim::units::MS;
use upsched_sim::{RunOptions, RunOutcome, Scenario, parse_scenario, perfetto, plots, run_builtin};

#[path = "support/svg.rs"]
mod svg;
use svg::{elements, legend, points};

fn example(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    upsched_sim::load_scenario(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn traced(s: &Scenario, policy: &str) -> RunOutcome {
    run_builtin(
        s,
        policy,
        RunOptions {
            record_trace: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{policy}: {e}"))
}

#[test]
fn the_timeline_has_a_legend_entry_of_its_own_colour_per_task() {
    let mut s = example("interactive.toml");
    s.duration = 100 * MS;
    let outcome = traced(&s, "linux-eevdf");
    let svg = plots::timeline_svg(&outcome, &s, 50 * MS).unwrap();
    let legend = legend(&svg);
    let labels: BTreeSet<&str> = legend.iter().map(|(l, _)| l.as_str()).collect();
    let ran: BTreeSet<&str> = outcome
        .trace
        .iter()
        .filter(|seg| seg.dispatched < 50 * MS)
        .map(|seg| outcome.records[seg.record as usize].name.as_str())
        .collect();
    assert_eq!(ran.len(), 10, "every task of the example runs in 50 ms");
    let mut expected = ran.clone();
    expected.insert("switch / migration");
    assert_eq!(labels, expected, "{legend:?}");
    let colours: BTreeSet<&str> = legend.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(colours.len(), legend.len(), "colours repeat: {legend:?}");
    // Every task's stints are drawn in its legend colour.
    let fills: BTreeSet<String> = elements(&svg, "rect")
        .iter()
        .map(|r| r.attrs["fill"].clone())
        .collect();
    assert!(
        legend
            .iter()
            .all(|(_, c)| fills.iter().filter(|f| *f == c).count() == 1)
    );
    assert!(
        elements(&svg, "rect")
            .iter()
            .filter(|r| r.attrs["fill"] == legend[0].1)
            .count()
            > 1,
        "the first task's stints share its colour"
    );
    // Wide stints carry their task's name.
    let texts = elements(&svg, "text");
    let in_stints = texts
        .iter()
        .filter(|t| ran.contains(t.text.as_str()))
        .count();
    assert!(in_stints > legend.len(), "{in_stints} names");
}

#[test]
fn a_timeline_of_more_tasks_than_colours_groups_them_by_name() {
    let s = parse_scenario(
        r#"
duration = "20ms"
[machine]
cpus = 4
[[task]]
name = "worker"
count = 30
program = [{ loop = "forever", body = [{ run = "1ms" }, { sleep = "1ms" }] }]
[[task]]
name = "hog"
program = [{ run = "1s" }]
"#,
        "many.toml",
    )
    .unwrap();
    let outcome = traced(&s, "linux-eevdf");
    let svg = plots::timeline_svg(&outcome, &s, 20 * MS).unwrap();
    let labels: Vec<String> = legend(&svg).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["worker", "hog", "switch / migration"]);
}

#[test]
fn the_latency_cdf_is_a_staircase_with_a_legend_beside_the_data() {
    let mut s = example("interactive.toml");
    s.duration = 200 * MS;
    let outcome = traced(&s, "linux-eevdf");
    let svg = plots::latency_cdf_svg(&outcome, &s).unwrap();
    let curves: Vec<Vec<(f64, f64)>> = elements(&svg, "polyline")
        .iter()
        .map(|l| points(&l.attrs["points"]))
        .filter(|p| p.len() > 2)
        .collect();
    assert_eq!(curves.len(), 2);
    for curve in &curves {
        let mut rises = 0;
        for pair in curve.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            assert!(
                x0 == x1 || y0 == y1,
                "a slope from {:?} to {:?}",
                pair[0],
                pair[1]
            );
            assert!(x1 >= x0 && y1 <= y0, "the CDF goes right and up");
            rises += (y1 < y0) as usize;
        }
        assert!(rises > 3, "{curve:?}");
    }
    let legend = legend(&svg);
    let labels: BTreeSet<&str> = legend.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, BTreeSet::from(["/batch", "/interactive"]));
    let legend_x = elements(&svg, "text")
        .iter()
        .filter(|t| labels.contains(t.text.as_str()))
        .map(|t| t.num("x"))
        .fold(f64::MAX, f64::min);
    for curve in &curves {
        assert!(
            curve.iter().all(|(x, _)| *x < legend_x),
            "the legend is over the data"
        );
    }
}

/// The trace's events, parsed.
fn trace_events(outcome: &RunOutcome, s: &Scenario) -> Vec<serde_json::Value> {
    let trace: serde_json::Value =
        serde_json::from_str(&perfetto::trace(outcome, s)).expect("the trace is JSON");
    trace["traceEvents"].as_array().unwrap().clone()
}

/// A timestamp of the trace (µs with decimals) in ns.
fn ns(event: &serde_json::Value, key: &str) -> u64 {
    (event[key].as_f64().unwrap() * 1000.0).round() as u64
}

fn track(event: &serde_json::Value) -> (u64, u64) {
    (
        event["pid"].as_u64().unwrap(),
        event["tid"].as_u64().unwrap(),
    )
}

/// The value of counter `name` at `at`: its last sample at or before `at`.
fn counter_at(events: &[serde_json::Value], name: &str, at: u64) -> i64 {
    events
        .iter()
        .rfind(|e| e["ph"] == "C" && e["name"] == name && ns(e, "ts") <= at)
        .unwrap_or_else(|| panic!("no {name} sample by {at}"))["args"]["tasks"]
        .as_i64()
        .unwrap()
}

#[test]
fn the_trace_has_a_track_per_task_and_well_formed_slices_flows_and_counters() {
    // Requests pass from task to task: wake-ups by tasks, by timers and by arrivals.
    let mut s = example("faas-chain.toml");
    s.duration = 500 * MS;
    let outcome = traced(&s, "linux-eevdf");
    let nr_cpus = s.machine.nr_cpus();
    let events = trace_events(&outcome, &s);
    let names: BTreeMap<(u64, u64), &str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| (track(e), e["args"]["name"].as_str().unwrap()))
        .collect();
    let processes: BTreeMap<u64, &str> = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .map(|e| {
            (
                e["pid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    // Every task has a track named after it, in its cgroup's process.
    for stint in &outcome.trace {
        let record = &outcome.records[stint.record as usize];
        let (&(pid, _), _) = names
            .iter()
            .find(|((_, tid), _)| *tid == stint.pid as u64)
            .expect("a track per task");
        assert_eq!(names[&(pid, stint.pid as u64)], record.name);
        assert_eq!(processes[&pid], s.cgroups[record.cgroup as usize]);
    }
    let tasks: BTreeSet<u32> = outcome.trace.iter().map(|st| st.pid).collect();
    assert_eq!(names.len(), tasks.len() + nr_cpus as usize);
    let task_slices = |name: &str| {
        events
            .iter()
            .filter(|e| e["cat"] == "task" && e["name"] == name)
            .count()
    };
    assert_eq!(task_slices("running"), outcome.trace.len());
    let waits = outcome
        .trace
        .iter()
        .filter(|st| st.wait.since < st.dispatched)
        .count()
        + outcome
            .trace_open_waits
            .iter()
            .filter(|open| open.wait.since < outcome.end)
            .count();
    assert!(waits > 10, "{waits} waits");
    assert_eq!(task_slices("runnable"), waits);
    // The slices of a track follow one another in time and do not overlap.
    let mut last_end: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let (ts, dur) = (ns(e, "ts"), ns(e, "dur"));
        let end = last_end.entry(track(e)).or_default();
        assert!(ts >= *end, "{e} starts before the slice before it ends");
        *end = ts + dur;
    }
    // Flows: one start and one end per id, the start inside a running slice of the waker,
    // the end at the start of a running slice of another task, not before the start.
    let running: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["cat"] == "task" && e["name"] == "running")
        .collect();
    let mut ends: BTreeMap<u64, [Vec<&serde_json::Value>; 2]> = BTreeMap::new();
    for e in events.iter().filter(|e| e["cat"] == "wakeup") {
        let side = match e["ph"].as_str().unwrap() {
            "s" => 0,
            "f" => 1,
            ph => panic!("flow phase {ph}"),
        };
        ends.entry(e["id"].as_u64().unwrap()).or_default()[side].push(e);
    }
    assert!(ends.len() > 10, "{} flows", ends.len());
    for (id, [starts, finishes]) in &ends {
        let ([start], [finish]) = (starts.as_slice(), finishes.as_slice()) else {
            panic!("flow {id}: {starts:?} {finishes:?}");
        };
        assert_eq!(finish["bp"], "e");
        assert_ne!(track(start), track(finish));
        assert!(ns(finish, "ts") >= ns(start, "ts"), "flow {id}");
        assert!(running.iter().any(|r| track(r) == track(start)
            && ns(r, "ts") <= ns(start, "ts")
            && ns(start, "ts") <= ns(r, "ts") + ns(r, "dur")));
        assert!(
            running
                .iter()
                .any(|r| track(r) == track(finish) && ns(r, "ts") == ns(finish, "ts"))
        );
    }
    // Counters: never negative; the total is the number of tasks whose track shows them
    // runnable at that instant, and the sum of the per-CPU queues.
    let counters: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "C").collect();
    assert!(
        counters
            .iter()
            .all(|c| c["args"]["tasks"].as_i64().unwrap() >= 0)
    );
    let runnable: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["cat"] == "task" && e["name"] == "runnable")
        .collect();
    for at in (0..100).map(|i| i * 5 * MS + 1) {
        let shown = runnable
            .iter()
            .filter(|r| ns(r, "ts") <= at && at < ns(r, "ts") + ns(r, "dur"))
            .count() as i64;
        let total = counter_at(&events, "runnable", at);
        assert_eq!(total, shown, "at {at} ns");
        let queues: i64 = (0..nr_cpus)
            .map(|cpu| counter_at(&events, &format!("CPU {cpu} queue"), at))
            .sum();
        assert_eq!(queues, total, "at {at} ns");
    }
}

#[test]
fn each_wake_up_by_a_task_that_then_ran_is_one_flow_from_waker_to_wakee() {
    // The pinger signals five times; each wakes the blocked waiter on the other CPU, which
    // runs. The pinger's own wake-ups are timer expiries: no task woke it, no flow.
    let s = parse_scenario(
        r#"
duration = "20ms"
[machine]
cpus = 2
costs = { preset = "zero" }
[[event]]
name = "e"
[[task]]
name = "pinger"
cpus = [0]
program = [{ loop = 5, body = [{ run = "1ms" }, { signal = "e" }, { sleep = "1ms" }] }]
[[task]]
name = "waiter"
cpus = [1]
program = [{ loop = "forever", body = [{ block = "e" }, { run = "100us" }] }]
"#,
        "ping.toml",
    )
    .unwrap();
    for policy in upsched_sim::BUILTIN_POLICIES {
        let outcome = traced(&s, policy);
        let events = trace_events(&outcome, &s);
        let tid_of = |name: &str| {
            events
                .iter()
                .find(|e| e["name"] == "thread_name" && e["args"]["name"] == name)
                .map(|e| e["tid"].as_u64().unwrap())
                .unwrap()
        };
        let (pinger, waiter) = (tid_of("pinger"), tid_of("waiter"));
        let flows = |ph: &str| -> Vec<(u64, u64)> {
            events
                .iter()
                .filter(|e| e["cat"] == "wakeup" && e["ph"] == ph)
                .map(|e| (e["tid"].as_u64().unwrap(), ns(e, "ts")))
                .collect()
        };
        let (starts, finishes) = (flows("s"), flows("f"));
        // The pinger signals at the end of each 1 ms of work (after its 1 ms sleeps).
        let signals: Vec<u64> = (0..5).map(|i| (2 * i + 1) * MS).collect();
        let expected: Vec<(u64, u64)> = signals.iter().map(|&t| (pinger, t)).collect();
        assert_eq!(starts, expected, "{policy}");
        assert_eq!(finishes.len(), 5, "{policy}");
        for ((tid, ts), signal) in finishes.iter().zip(&signals) {
            assert_eq!(*tid, waiter, "{policy}");
            assert!(*ts >= *signal && *ts < signal + MS, "{policy}: {ts}");
        }
    }
}

#[test]
fn the_run_queue_counters_count_the_runnable_tasks() {
    // Three CPU hogs on one CPU: after time 0 two of them are always waiting.
    let s = parse_scenario(
        r#"
duration = "50ms"
[machine]
cpus = 1
[[task]]
name = "hog"
count = 3
program = [{ run = "1s" }]
"#,
        "hogs.toml",
    )
    .unwrap();
    for policy in upsched_sim::BUILTIN_POLICIES {
        let outcome = traced(&s, policy);
        let events = trace_events(&outcome, &s);
        for at in (0..50).map(|i| i * MS + 500) {
            assert_eq!(counter_at(&events, "runnable", at), 2, "{policy} at {at}");
            assert_eq!(
                counter_at(&events, "CPU 0 queue", at),
                2,
                "{policy} at {at}"
            );
        }
    }
}

#[test]
fn the_trace_is_the_same_bytes_for_the_same_seed() {
    let mut s = example("interactive.toml");
    s.duration = 50 * MS;
    let first = perfetto::trace(&traced(&s, "linux-eevdf"), &s);
    let second = perfetto::trace(&traced(&s, "linux-eevdf"), &s);
    assert!(first == second, "two runs gave different traces");
}

#[test]
fn exact_samples_make_a_bounded_cdf_ending_at_the_maximum() {
    // Equal samples are one step at their highest rank.
    let mut few = vec![5, 1, 5, 3];
    assert_eq!(
        plots::samples_cdf(&mut few),
        [(1, 0.25), (3, 0.5), (5, 1.0)]
    );
    assert!(plots::samples_cdf(&mut []).is_empty());
    // A million distinct samples are thinned to at most 2000 rising steps, ending at the
    // largest sample with every sample at or below it.
    let mut many: Vec<u64> = (0..1_000_000).rev().collect();
    let cdf = plots::samples_cdf(&mut many);
    assert!(cdf.len() <= 2000 && cdf.len() > 1000, "{}", cdf.len());
    assert_eq!(*cdf.last().unwrap(), (999_999, 1.0));
    for pair in cdf.windows(2) {
        assert!(pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1, "{pair:?}");
    }
    // Each point's fraction is exact for its value: value v has v + 1 samples at or below it.
    for &(value, fraction) in &cdf {
        assert_eq!(fraction, (value + 1) as f64 / 1e6);
    }
}
