//! Simulated scheduling events per second on one core, per built-in policy and with tenant
//! policies in the upsched mechanism (example fifo and wfq on the root cgroup, each through
//! the engine's JIT and its interpreter), next to each other in one run.
//!
//! `cargo bench -p upsched-sim --bench events` (after `--`: `--quick` for a tenth of the
//! simulated time, `--policy NAME` for one policy, `--scenario FILE` for another workload
//! (or a built-in one: `--scenario faas:chains=50`),
//! `--runs N` for the best of N runs, default 3). Not a test: it prints figures for
//! docs/simulator.md.

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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
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
        let mut best: Option<(f64, f64, engine::RunOutcome)> = None;
        for _ in 0..runs {
            let sched =
                tenants::scheduler_in(policy, &scenario, "bench", mode).expect("policy loads");
            let start = Instant::now();
            let cpu_start = thread_cpu_ns();
            let outcome = engine::run(
                &scenario,
                sched,
                RunOptions {
                    check_invariants: false,
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
