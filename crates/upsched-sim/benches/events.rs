//! Simulated scheduling events per second on one core, per built-in policy and with tenant
//! policies in the upsched mechanism (example fifo and wfq on the root cgroup, each through
//! the engine's JIT and its interpreter), next to each other in one run.
//!
//! `cargo bench -p upsched-sim --bench events` (after `--`: `--quick` for a tenth of the
//! simulated time, `--policy NAME` for one policy, `--scenario FILE` for another workload
//! (or a built-in one: `--scenario faas:chains=50`),
//! `--runs N` for the best of N runs, default 3). Not a test: it prints figures for
//! docs/simulator.md.
//!
//! `-- --scaling` runs the scaling sweep instead: how the cost of an event grows with the
//! machine (`faas` on 16 to 1024 CPUs, chains scaled with the CPUs) and with the run queue
//! (10^2 to 10^6 tasks that run and yield on one CPU), per policy (`--policy` for one), each
//! size's cost per event next to the smallest size's. `--quick` simulates a tenth of the time
//! (the same sizes).

use std::time::Instant;

use upsched_policy::ExecMode;
use upsched_sim::{RunOptions, engine, parse_scenario, tenants};

/// Tenant policies measured in the mechanism, after the built-ins.
const TENANT_POLICIES: [&str; 2] = ["example:fifo", "example:wfq"];

/// 16 CPUs (8 cores x 2 SMT, 2 LLCs), 64 tasks that run ~200 µs and sleep ~1 ms (about 80%
/// load: queues form and the balancer works), 16 polling tasks signalled by a Poisson source,
/// and a stream of short jobs.
const MIXED: &str = r#"
name = "bench-mixed"
duration = "20s"
[machine]
cpus = 16
smt = 2
llc_cpus = 8
[[event]]
name = "req"
[[task]]
name = "worker"
count = 64
program = [{ loop = "forever", body = [
  { run = { dist = "exponential", mean = "200us" } },
  { sleep = { dist = "exponential", mean = "1ms" } },
] }]
[[task]]
name = "poller"
count = 16
program = [{ loop = "forever", body = [{ spin_until = "req" }, { run = "50us" }, { sleep = "2ms" }] }]
[[task]]
name = "job"
count = 0
program = [{ run = { dist = "exponential", mean = "100us" } }]
[[arrival]]
name = "jobs"
process = "poisson"
rate = 20000.0
spawn = "job"
[[arrival]]
name = "requests"
process = "poisson"
rate = 5000.0
signal = "req"
"#;

/// CPU time this thread has run, from the kernel's schedstat (ns). On a shared machine the
/// wall-clock time also counts time spent waiting for a core.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The policies of the scaling sweep: every built-in and the mechanism with a tenant.
const SCALING_POLICIES: [&str; 5] = [
    "linux-eevdf",
    "upsched-default",
    "fifo",
    "rr",
    "example:fifo",
];

/// Machine sizes of the sweep; `faas` runs 50 chains per 16 CPUs on each.
const SCALING_CPUS: [u32; 4] = [16, 64, 256, 1024];

/// Run-queue lengths of the sweep.
const SCALING_QUEUES: [u32; 5] = [100, 1_000, 10_000, 100_000, 1_000_000];

/// `tasks` tasks on one CPU that run 5 µs and yield, forever: the queue holds all but one of
/// them from the start (the start of each is an event on a queue of its own length).
fn queue_scenario(tasks: u32, duration: &str) -> upsched_sim::Scenario {
    let text = format!(
        r#"
name = "queue"
duration = "{duration}"
[machine]
cpus = 1
[[task]]
name = "hog"
count = {tasks}
program = [{{ loop = "forever", body = [{{ run = "5us" }}, {{ yield = true }}] }}]
"#
    );
    parse_scenario(&text, "queue").expect("queue scenario parses")
}

/// Best of `runs` by CPU time: (CPU seconds, wall seconds, outcome); `duration` overrides
/// the scenario's.
fn measure(
    scenario: &upsched_sim::Scenario,
    policy: &str,
    mode: ExecMode,
    runs: u32,
    limits: upsched_sim::engine::RunLimits,
    duration: Option<u64>,
) -> Option<(f64, f64, engine::RunOutcome)> {
    let mut best: Option<(f64, f64, engine::RunOutcome)> = None;
    for _ in 0..runs {
        let sched = tenants::scheduler_in(policy, scenario, "bench", mode).expect("policy loads");
        let start = Instant::now();
        let cpu_start = thread_cpu_ns();
        let outcome = engine::run(
            scenario,
            sched,
            RunOptions {
                check_invariants: false,
                limits,
                duration,
                ..Default::default()
            },
        )
        .expect("bench runs");
        let wall = start.elapsed().as_secs_f64();
        let cpu = match (cpu_start, thread_cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => wall,
        };
        if best.as_ref().is_none_or(|(c, _, _)| cpu < *c) {
            best = Some((cpu, wall, outcome));
        }
    }
    best
}

/// The scaling sweep: per policy, the machine sizes then the queue lengths, each with its
/// events per CPU second and the cost of an event relative to the smallest size's. Each case
/// also runs its start alone (the first nanosecond: the tasks created, their memory first
/// touched, a million of them in the largest queue); the rest of the events over the rest of
/// the CPU time are the rate after the start.
fn scaling(quick: bool, runs: u32, only: Option<&str>) {
    let policies: Vec<&str> = match only {
        Some(p) => vec![p],
        None => SCALING_POLICIES.to_vec(),
    };
    // A million queued tasks outgrow the default bounds on live tasks and memory.
    let unbounded = upsched_sim::engine::RunLimits {
        max_tasks: 0,
        max_memory: 0,
        ..Default::default()
    };
    // Long enough for a second of CPU time or so at the small sizes (the CPU clock read from
    // schedstat moves by ticks): the smaller machines simulate longer, to 2.8 M events.
    let faas_seconds = |cpus: u32| (2560 / cpus).max(10) / if quick { 10 } else { 1 };
    // 20 M events, 10 per task at a million tasks: the start of the tasks is a small part.
    let queue_duration = if quick { "6s" } else { "60s" };
    for policy in policies {
        let mut cases: Vec<(String, upsched_sim::Scenario)> = Vec::new();
        for cpus in SCALING_CPUS {
            let spec = format!(
                "faas:chains={},cpus={cpus},duration={}s",
                cpus * 50 / 16,
                faas_seconds(cpus)
            );
            let scenario = upsched_sim::builtin_scenario(&spec)
                .expect("a faas spec")
                .unwrap_or_else(|e| panic!("{e}"));
            cases.push((format!("{cpus} CPUs"), scenario));
        }
        for queue in SCALING_QUEUES {
            cases.push((
                format!("queue {queue}"),
                queue_scenario(queue, queue_duration),
            ));
        }
        let mut smallest: [Option<(f64, f64)>; 2] = [None; 2];
        for (i, (label, scenario)) in cases.iter().enumerate() {
            let mode = ExecMode::default();
            let whole = measure(scenario, policy, mode, runs, unbounded, None);
            let start = measure(scenario, policy, mode, runs, unbounded, Some(1));
            let (Some((cpu, wall, outcome)), Some((start_cpu, _, start_outcome))) = (whole, start)
            else {
                continue;
            };
            let rate = outcome.events as f64 / cpu;
            let steady = (outcome.events - start_outcome.events) as f64 / (cpu - start_cpu);
            // The machine sizes come first, then the queue lengths: each against its own first.
            let (base, steady_base) =
                *smallest[usize::from(i >= SCALING_CPUS.len())].get_or_insert((rate, steady));
            println!(
                "{policy:>16} {label:>14}: {:>9} events, {wall:.3} s wall, {cpu:.3} s CPU: {:.2} M events/s per CPU second ({:.2} x the smallest's cost per event); after the start {:.2} M/s ({:.2} x)",
                outcome.events,
                rate / 1e6,
                base / rate,
                steady / 1e6,
                steady_base / steady
            );
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let only: Vec<String> = std::env::args()
        .skip_while(|a| a != "--policy")
        .skip(1)
        .take(1)
        .collect();
    let runs: u32 = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map(|n| n.parse().expect("--runs takes a number"))
        .unwrap_or(3);
    if std::env::args().any(|a| a == "--scaling") {
        scaling(quick, runs, only.first().map(String::as_str));
        return;
    }
    let file: Vec<String> = std::env::args()
        .skip_while(|a| a != "--scenario")
        .skip(1)
        .take(1)
        .collect();
    let mut scenario = match file.first() {
        Some(spec) => upsched_sim::builtin_scenario(spec)
            .unwrap_or_else(|| upsched_sim::load_scenario(std::path::Path::new(spec)))
            .unwrap_or_else(|e| panic!("{e}")),
        None => parse_scenario(MIXED, "bench-mixed").expect("bench scenario parses"),
    };
    if quick {
        scenario.duration /= 10;
    }
    println!(
        "scenario {} ({} s simulated, 16 CPUs)",
        scenario.name,
        scenario.duration as f64 / 1e9
    );
    let mut baseline = None;
    let all: Vec<&str> = upsched_sim::BUILTIN_POLICIES
        .iter()
        .chain(&TENANT_POLICIES)
        .copied()
        .collect();
    // `--policy` may name any policy, also one not in the default list (e.g. example:faas).
    let policies = if only.is_empty() {
        all
    } else {
        vec![only[0].as_str()]
    };
    // A tenant policy runs once per engine; a built-in needs no engine.
    let runs_of = |policy: &str| -> Vec<(ExecMode, &'static str)> {
        if tenants::PolicySource::looks_like_policy(policy) {
            vec![
                (ExecMode::Jit, " (jit)"),
                (ExecMode::Interpreter, " (interp)"),
            ]
        } else {
            vec![(ExecMode::default(), "")]
        }
    };
    for (policy, mode, engine_label) in policies
        .iter()
        .flat_map(|p| runs_of(p).into_iter().map(move |(m, l)| (*p, m, l)))
    {
        // Best of `runs`: the least CPU time (the machine is shared).
        let best = measure(
            &scenario,
            policy,
            mode,
            runs,
            RunOptions::default().limits,
            None,
        );
        let Some((cpu, wall, outcome)) = best else {
            continue;
        };
        let rate = outcome.events as f64 / cpu / 1e6;
        // Tenant policies are compared with the mechanism's own default class.
        if policy == "upsched-default" {
            baseline = Some(rate);
        }
        let ratio = baseline
            .filter(|_| policy.starts_with(tenants::EXAMPLE_PREFIX))
            .map(|b| format!(", {:.2} x upsched-default", rate / b))
            .unwrap_or_default();
        let label = format!("{policy}{engine_label}");
        println!(
            "{label:>22}: {:>9} events, {wall:.3} s wall, {cpu:.3} s CPU: {rate:.2} M events/s per CPU second ({:.1} x real time){ratio}",
            outcome.events,
            outcome.end as f64 / 1e9 / cpu
        );
    }
}
