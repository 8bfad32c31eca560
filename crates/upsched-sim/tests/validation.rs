//! Validation of the simulator against analytic results and its own promises.

use upsched_sim::engine::RunOutcome;
use upsched_sim::report::{self, RunReport};
use upsched_sim::sched::{Cx, Dispatch, Scheduler, TaskId};
use upsched_sim::units::{MS, S};
use upsched_sim::{RunOptions, Scenario, SimError, parse_scenario, run, run_builtin};

fn scenario(text: &str) -> Scenario {
    parse_scenario(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn run_checked(s: &Scenario, policy: &str, seed: u64) -> RunOutcome {
    run_builtin(
        s,
        policy,
        RunOptions {
            seed,
            check_invariants: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{policy}: {e}"))
}

fn json_of(s: &Scenario, policies: &[&str], seed: u64) -> String {
    let runs: Vec<RunReport> = policies
        .iter()
        .map(|p| report::run_report(&run_checked(s, p, seed), s))
        .collect();
    serde_json::to_string_pretty(&report::report(s, seed, runs)).unwrap()
}

fn example(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    upsched_sim::load_scenario(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn same_seed_gives_identical_json_and_other_seeds_differ() {
    let mut s = example("interactive.toml");
    s.duration = 500 * MS;
    let policies = ["linux-eevdf", "upsched-default", "rr"];
    let a = json_of(&s, &policies, 7);
    let b = json_of(&s, &policies, 7);
    assert_eq!(a, b);
    let c = json_of(&s, &policies, 8);
    assert_ne!(a, c);
}

#[test]
fn mm1_queue_under_fifo_matches_queueing_theory() {
    // lambda = 500/s, mu = 1000/s: rho = 0.5, mean wait in queue rho / (mu - lambda) = 1 ms,
    // mean time in system 1 / (mu - lambda) = 2 ms. 300,000 jobs put the standard error of
    // the mean wait near 1.5%, so 5% is about 3 standard errors away for any seed.
    let s = scenario(
        r#"
duration = "600s"
[machine]
cpus = 1
costs = { preset = "zero" }
[[task]]
name = "job"
count = 0
program = [{ run = { dist = "exponential", mean = "1ms" } }]
[[arrival]]
name = "requests"
process = "poisson"
rate = 500.0
spawn = "job"
"#,
    );
    for seed in [1, 2] {
        let outcome = run_builtin(
            &s,
            "fifo",
            RunOptions {
                seed,
                check_invariants: false,
                ..Default::default()
            },
        )
        .unwrap();
        let job = &outcome.records[0];
        assert!(job.instances > 290_000, "{}", job.instances);
        let wait_ms = job.wait.mean() / MS as f64;
        let system_ms = job.turnaround.mean() / MS as f64;
        assert!(
            (wait_ms - 1.0).abs() < 0.05,
            "seed {seed}: mean wait {wait_ms} ms, theory 1 ms"
        );
        assert!(
            (system_ms - 2.0).abs() < 0.10,
            "seed {seed}: mean time in system {system_ms} ms, theory 2 ms"
        );
        let utilisation = outcome.cpu_busy_ns[0] as f64 / outcome.end as f64;
        assert!(
            (utilisation - 0.5).abs() < 0.01,
            "utilisation {utilisation}"
        );
    }
}

const WEIGHTS: &str = r#"
duration = "20s"
[machine]
cpus = CPUS
[[task]]
name = "w1"
count = N
weight = 1024
program = [{ run = "1000s" }]
[[task]]
name = "w2"
count = N
weight = 2048
program = [{ run = "1000s" }]
[[task]]
name = "w4"
count = N
weight = 4096
program = [{ run = "1000s" }]
"#;

fn assert_weighted_shares(cpus: u32, per_weight: u32, policy: &str) {
    let s = scenario(
        &WEIGHTS
            .replace("CPUS", &cpus.to_string())
            .replace("N", &per_weight.to_string()),
    );
    let outcome = run_checked(&s, policy, 1);
    let total: u64 = outcome.records.iter().map(|r| r.cpu_ns).sum();
    for r in &outcome.records {
        let expected = r.weight as f64 / (7.0 * 1024.0 * per_weight as f64);
        let got = r.cpu_ns as f64 / total as f64;
        assert!(
            (got / expected - 1.0).abs() < 0.01,
            "{policy} on {cpus} CPUs: {} got {got:.5}, expected {expected:.5}",
            r.name
        );
    }
    let run = report::run_report(&outcome, &s);
    assert!(
        run.fairness.jain_index.unwrap() > 0.9999,
        "{policy}: {:?}",
        run.fairness
    );
}

#[test]
fn weights_1_2_4_get_shares_within_one_percent() {
    for policy in ["upsched-default", "linux-eevdf"] {
        assert_weighted_shares(1, 1, policy);
        assert_weighted_shares(4, 4, policy);
    }
}

#[test]
fn round_robin_gives_the_configured_slices() {
    let s = scenario(
        r#"
duration = "1s"
[machine]
cpus = 1
costs = { preset = "zero" }
[scheduler.rr]
slice = "7ms"
[[task]]
name = "hog"
count = 3
program = [{ run = "100s" }]
"#,
    );
    let outcome = run_builtin(
        &s,
        "rr",
        RunOptions {
            record_trace: true,
            ..Default::default()
        },
    )
    .unwrap();
    let stints: Vec<_> = outcome
        .trace
        .iter()
        .filter(|seg| seg.end < outcome.end)
        .collect();
    assert!(stints.len() > 100);
    for seg in &stints {
        assert_eq!(seg.end - seg.exec, 7 * MS, "{seg:?}");
    }
    // Strict rotation: each task follows the other two.
    for pair in stints.windows(3) {
        assert_ne!(pair[0].record, pair[1].record);
        assert_ne!(pair[0].record, pair[2].record);
    }
}

#[test]
fn spinning_is_cpu_time_and_counted_as_spin() {
    // The poller on CPU 0 spins until the ticker on CPU 1 signals (every 10 ms), works 1 ms,
    // spins again: over 1 s it spins 10 ms + 99 x 9 ms = 901 ms and uses the CPU throughout.
    let s = scenario(
        r#"
duration = "1s"
[machine]
cpus = 2
costs = { preset = "zero" }
[[event]]
name = "e"
[[task]]
name = "poller"
cpus = [0]
program = [{ loop = "forever", body = [{ spin_until = "e" }, { run = "1ms" }] }]
[[task]]
name = "blocker"
cpus = [0]
program = [{ loop = "forever", body = [{ block = "e" }, { run = "1ms" }] }]
[[task]]
name = "ticker"
cpus = [1]
program = [{ loop = "forever", body = [{ sleep = "10ms" }, { signal = "e" }] }]
"#,
    );
    // Under fifo the poller never leaves CPU 0, so the blocker never runs and every signal
    // goes to the poller.
    let outcome = run_checked(&s, "fifo", 1);
    let by_name = |n: &str| outcome.records.iter().find(|r| r.name == n).unwrap();
    assert_eq!(by_name("poller").spin_ns, 901 * MS);
    assert_eq!(by_name("poller").cpu_ns, S);
    assert_eq!(by_name("blocker").cpu_ns, 0);
    assert_eq!(by_name("ticker").spin_ns, 0);
    // Under a fair policy the two share CPU 0; spin time stays a part of CPU time.
    let fair = run_checked(&s, "upsched-default", 1);
    let poller = fair.records.iter().find(|r| r.name == "poller").unwrap();
    let blocker = fair.records.iter().find(|r| r.name == "blocker").unwrap();
    assert!(poller.spin_ns > 0 && poller.spin_ns < poller.cpu_ns);
    assert_eq!(blocker.spin_ns, 0);
    assert!(poller.cpu_ns + blocker.cpu_ns <= S);
}

/// A policy that claims to be work conserving but only ever uses CPU 0.
struct Lazy(Vec<TaskId>);

impl Scheduler for Lazy {
    fn name(&self) -> &str {
        "lazy"
    }
    fn work_conserving(&self) -> bool {
        true
    }
    fn select_cpu(&mut self, _cx: &mut Cx, _task: TaskId, _prev: u32, _flags: u32) -> u32 {
        0
    }
    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, _cpu: u32, _flags: u32) {
        self.0.push(task);
        if cx.is_idle(0) {
            cx.kick(0);
        }
    }
    fn dispatch(&mut self, _cx: &mut Cx, cpu: u32) -> Option<Dispatch> {
        if cpu != 0 || self.0.is_empty() {
            return None;
        }
        Some(Dispatch {
            task: self.0.remove(0),
            slice: 5 * MS,
        })
    }
}

#[test]
fn the_work_conserving_check_catches_an_idle_cpu_and_passes_real_policies() {
    let s = example("interactive.toml");
    let err = run(
        &s,
        Box::new(Lazy(Vec::new())),
        RunOptions {
            check_invariants: true,
            ..Default::default()
        },
    );
    match err {
        Err(SimError::Policy { policy, message }) => {
            assert_eq!(policy, "lazy");
            assert!(message.contains("not work conserving"), "{message}");
        }
        other => panic!("expected a violation, got {:?}", other.map(|o| o.events)),
    }
    // Without the check the same lazy run completes.
    assert!(
        run(
            &s,
            Box::new(Lazy(Vec::new())),
            RunOptions {
                check_invariants: false,
                duration: Some(100 * MS),
                ..Default::default()
            }
        )
        .is_ok()
    );
    for name in [
        "interactive.toml",
        "spinner.toml",
        "mm1.toml",
        "cpu-weights.toml",
    ] {
        let mut s = example(name);
        s.duration = s.duration.min(500 * MS);
        for policy in ["upsched-default", "fifo", "rr"] {
            run_checked(&s, policy, 3);
        }
    }
}

#[test]
fn every_example_runs_under_every_builtin_policy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut ran = 0;
    for name in names
        .iter()
        .filter(|n| n.ends_with(".toml") || n.ends_with(".json"))
    {
        let mut s = example(name);
        s.duration = s.duration.min(300 * MS);
        for policy in upsched_sim::BUILTIN_POLICIES {
            let outcome = run_checked(&s, policy, 1);
            assert!(outcome.events > 0, "{name} {policy}");
            ran += 1;
        }
    }
    assert!(ran >= 20, "{ran}");
}

#[test]
fn eevdf_balances_load_across_cpus() {
    let s = scenario(
        r#"
duration = "4s"
[machine]
cpus = 4
[[task]]
name = "hog"
count = 8
program = [{ run = "100s" }]
"#,
    );
    let outcome = run_checked(&s, "linux-eevdf", 1);
    for r in &outcome.records {
        let share = r.cpu_ns as f64 / outcome.end as f64;
        assert!((share - 0.5).abs() < 0.02, "{}: {share}", r.name);
    }
    assert!(
        outcome
            .cpu_busy_ns
            .iter()
            .all(|b| *b as f64 > 0.999 * outcome.end as f64)
    );
}

#[test]
fn fork_exit_and_yield_are_accounted() {
    let s = scenario(
        r#"
duration = "1s"
[machine]
cpus = 2
costs = { preset = "zero" }
[[task]]
name = "parent"
program = [{ loop = 3, body = [{ fork = "child" }, { yield = true }] }, { run = "1ms" }]
[[task]]
name = "child"
count = 0
program = [{ run = "2ms" }, { exit = true }, { run = "1s" }]
"#,
    );
    for policy in upsched_sim::BUILTIN_POLICIES {
        let outcome = run_checked(&s, policy, 1);
        let child = outcome
            .records
            .iter()
            .find(|r| r.name == "child[*]")
            .unwrap();
        assert_eq!(child.instances, 3, "{policy}");
        assert_eq!(child.exited, 3, "{policy}");
        assert_eq!(child.cpu_ns, 6 * MS, "{policy}");
        let parent = outcome.records.iter().find(|r| r.name == "parent").unwrap();
        assert_eq!(parent.exited, 1);
        assert_eq!(parent.cpu_ns, MS);
        assert_eq!(outcome.tasks_alive_at_end, 0);
        assert!(
            outcome.end < 20 * MS,
            "{policy}: the run ends when nothing is left: {}",
            outcome.end
        );
    }
}

#[test]
fn a_thousand_cpus_with_topology() {
    let s = scenario(
        r#"
duration = "30ms"
[machine]
cpus = 1024
smt = 2
llc_cpus = 32
numa_nodes = 4
[[task]]
name = "t"
count = 2048
program = [{ loop = "forever", body = [
  { run = { dist = "uniform", min = "100us", max = "300us" } },
  { sleep = { dist = "normal", mean = "200us", stddev = "50us" } },
] }]
"#,
    );
    for policy in ["linux-eevdf", "upsched-default"] {
        let outcome = run_builtin(
            &s,
            policy,
            RunOptions {
                check_invariants: false,
                ..Default::default()
            },
        )
        .unwrap();
        let busy = outcome.cpu_busy_ns.iter().filter(|b| **b > 0).count();
        assert!(busy > 1000, "{policy}: only {busy} CPUs used");
        assert!(outcome.records.iter().map(|r| r.migrations).sum::<u64>() > 0);
    }
}

#[test]
fn outputs_are_complete() {
    let mut s = example("interactive.toml");
    s.duration = 200 * MS;
    let outcome = run_builtin(
        &s,
        "linux-eevdf",
        RunOptions {
            record_trace: true,
            ..Default::default()
        },
    )
    .unwrap();
    let run = report::run_report(&outcome, &s);
    assert_eq!(run.tasks.len(), 10);
    assert_eq!(run.cgroups.len(), 2);
    assert_eq!(run.cpus.len(), 4);
    for cpu in &run.cpus {
        assert_eq!(cpu.busy_ns + cpu.idle_ns, run.duration_ns);
        assert!(cpu.task_ns <= cpu.busy_ns);
    }
    let csv = report::tasks_csv(&run);
    assert_eq!(csv.lines().count(), 11);
    let trace: serde_json::Value =
        serde_json::from_str(&upsched_sim::perfetto::trace(&outcome, &s)).unwrap();
    let slices = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "run")
        .count();
    assert_eq!(slices, outcome.trace.len());
    let timeline = upsched_sim::plots::timeline_svg(&outcome, &s, 50 * MS).unwrap();
    assert!(timeline.starts_with("<svg") && timeline.matches("<rect").count() > 50);
    let cdf = upsched_sim::plots::latency_cdf_svg(&outcome, &s).unwrap();
    assert!(cdf.contains("/interactive") && cdf.contains("<polyline"));
    let text = report::text_summary(&run, 40);
    assert!(text.contains("ui.0") && text.contains("/batch"));
}

#[test]
fn switch_costs_and_remote_wakeups_are_charged_as_configured() {
    // The sleeper wakes on its own CPU (local timer, no IPI) and pays the voluntary switch
    // cost from idle at every start; the waiter on CPU 1 is woken from CPU 0 and waits exactly
    // the wake-up IPI latency each time.
    let s = scenario(
        r#"
duration = "100ms"
[machine]
cpus = 2
costs = { preset = "zero", switch_voluntary = "10us", wakeup_ipi = "5us" }
[[event]]
name = "e"
[[task]]
name = "sleeper"
cpus = [0]
program = [{ loop = "forever", body = [{ run = "1ms" }, { signal = "e" }, { sleep = "1ms" }] }]
[[task]]
name = "waiter"
cpus = [1]
program = [{ loop = "forever", body = [{ block = "e" }, { run = "100us" }] }]
"#,
    );
    for policy in upsched_sim::BUILTIN_POLICIES {
        let outcome = run_checked(&s, policy, 1);
        let rep = report::run_report(&outcome, &s);
        let sleeper = outcome
            .records
            .iter()
            .find(|r| r.name == "sleeper")
            .unwrap();
        let waiter = outcome.records.iter().find(|r| r.name == "waiter").unwrap();
        let starts = sleeper.wakeups + 1;
        assert_eq!(sleeper.wait.count, starts, "{policy}");
        assert_eq!(
            sleeper.wait.max, 0,
            "{policy}: a local wake-up on an idle CPU waits 0"
        );
        assert_eq!(rep.cpus[0].overhead_ns, starts * 10_000, "{policy}");
        assert!(waiter.wakeups > 40, "{policy}");
        // Every wake-up waits exactly the IPI latency; the start at time 0 does not.
        assert_eq!(waiter.wait.count, waiter.wakeups + 1, "{policy}");
        assert_eq!(waiter.wait.sum, 5_000 * waiter.wakeups as u128, "{policy}");
        assert_eq!(waiter.wait.max, 5_000, "{policy}");
        assert_eq!(sleeper.migrations + waiter.migrations, 0);
    }
}

#[test]
fn eevdf_preempts_for_a_waking_task_with_lag() {
    // A task that sleeps most of the time builds up lag; woken next to a CPU hog it is placed
    // at V - lag, which makes the hog ineligible, so it preempts at once, RUN_TO_PARITY or
    // not (Linux drops the running task from the pick when it is not eligible). The default
    // class has no wake-up preemption: the sleeper waits for the hog's slice to end.
    let text = r#"
duration = "2s"
[machine]
cpus = 1
costs = { preset = "zero" }
[scheduler.linux-eevdf]
run_to_parity = PARITY
[[task]]
name = "hog"
program = [{ run = "100s" }]
[[task]]
name = "sleeper"
program = [{ loop = "forever", body = [{ run = "100us" }, { sleep = "7ms" }] }]
"#;
    let sleeper_wait = |parity: bool, policy: &str| {
        let s = scenario(&text.replace("PARITY", &parity.to_string()));
        let outcome = run_checked(&s, policy, 1);
        outcome
            .records
            .iter()
            .find(|r| r.name == "sleeper")
            .unwrap()
            .wait
            .clone()
    };
    for parity in [false, true] {
        let wait = sleeper_wait(parity, "linux-eevdf");
        assert!(wait.count > 90);
        assert_eq!(wait.quantile(0.9), 0, "run_to_parity = {parity}");
    }
    let no_preemption = sleeper_wait(true, "upsched-default");
    assert!(
        no_preemption.quantile(0.5) > MS,
        "p50 {}",
        no_preemption.quantile(0.5)
    );
}
