//! The simulator held against the real kernel (`docs/fidelity.md`): the report of a real run
//! of a scenario ([`crate::runner`]) beside the simulator's report of the same file under the
//! matching policy, metric by metric, with the error of each and the bound it must stay in.

use upsched_policy::engine::ExecMode;
use upsched_sim::report::{self, RunReport, TaskReport};
use upsched_sim::scenario::Op;
use upsched_sim::{RunOptions, Scenario, engine, tenants};

use crate::runner::{RealReport, RealTask};

/// How far the simulator may be from the real run: the regression fence of the fidelity
/// suite. The values and why they are what they are: `docs/fidelity.md`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// CPU share (1.0 = one CPU) of a task or a cgroup, absolute.
    pub share: f64,
    /// Wait share of a task (its time runnable but not running over the run), absolute.
    pub wait_share: f64,
    /// Finish time of a task, relative to the simulator's.
    pub finish: f64,
    /// Two tasks' finish order is a fact the real run must reproduce when the simulator
    /// finishes them at least this fraction of the run apart.
    pub order_gap: f64,
}

/// The bounds of a workload whose tasks only compute: what the simulator models whole.
pub const STEADY_BOUNDS: Bounds = Bounds {
    share: 0.1,
    wait_share: 0.35,
    finish: 0.5,
    order_gap: 0.3,
};

/// The bounds of a workload whose tasks also sleep, block, signal, yield or fork: the kernel
/// time of those system calls and forks, which the simulator does not charge, and their cost
/// under TCG, which moves with the build machine's load, widen the errors.
pub const SYSCALL_BOUNDS: Bounds = Bounds {
    share: 0.3,
    wait_share: 1.0,
    finish: 1.5,
    order_gap: 0.3,
};

impl Bounds {
    /// The bounds `scenario` is held to: [`STEADY_BOUNDS`] when every task only runs (and
    /// loops and exits), else [`SYSCALL_BOUNDS`].
    pub fn of(scenario: &Scenario) -> &'static Bounds {
        let computes_only = scenario.tasks.iter().all(|task| {
            task.program.iter().all(|op| {
                matches!(
                    op,
                    Op::Run(_) | Op::LoopBegin { .. } | Op::LoopEnd { .. } | Op::Exit
                )
            })
        });
        if computes_only {
            &STEADY_BOUNDS
        } else {
            &SYSCALL_BOUNDS
        }
    }
}

/// One metric of one task or cgroup in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// A task instance's name or a cgroup's path.
    pub subject: String,
    pub metric: &'static str,
    pub real: f64,
    pub sim: f64,
    /// `real - sim` (absolute), or `(real - sim) / sim` for relative metrics.
    pub error: f64,
    /// None for a metric reported but not fenced.
    pub bound: Option<f64>,
}

impl Row {
    pub fn within(&self) -> bool {
        self.bound.is_none_or(|bound| self.error.abs() <= bound)
    }
}

/// "`first` finishes before `second`", which the simulator says with a margin.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderFact {
    pub first: String,
    pub second: String,
    /// How far apart the simulator finishes them.
    pub sim_gap_ns: u64,
    /// Whether the real run finished them in this order.
    pub holds: bool,
}

/// A real run and the simulator's run of the same scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub scenario: String,
    pub policy: String,
    pub rows: Vec<Row>,
    pub order: Vec<OrderFact>,
}

impl Comparison {
    /// Each metric outside its bound and each order fact the real run broke, described.
    pub fn violations(&self) -> Vec<String> {
        let rows = self.rows.iter().filter(|r| !r.within()).map(|r| {
            format!(
                "{} {}: real {:.3}, simulator {:.3}, error {:+.3} outside ±{}",
                r.subject,
                r.metric,
                r.real,
                r.sim,
                r.error,
                r.bound.unwrap_or(f64::INFINITY)
            )
        });
        let order = self.order.iter().filter(|o| !o.holds).map(|o| {
            format!(
                "{} finishes before {} in the simulator ({:.0} ms apart), not in the real run",
                o.first,
                o.second,
                o.sim_gap_ns as f64 / 1e6
            )
        });
        rows.chain(order).collect()
    }

    /// The comparison as a Markdown table (the form of `docs/fidelity.md`).
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} under {}\n\n| task or cgroup | metric | kernel | simulator | error | bound |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
            self.scenario, self.policy
        );
        for r in &self.rows {
            let bound = r
                .bound
                .map_or("not fenced".to_string(), |b| format!("±{b}"));
            out.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:+.3} | {bound} |\n",
                r.subject, r.metric, r.real, r.sim, r.error
            ));
        }
        for o in &self.order {
            out.push_str(&format!(
                "| {} before {} | finish order | {} | yes ({:.0} ms apart) | | |\n",
                o.first,
                o.second,
                if o.holds { "yes" } else { "no" },
                o.sim_gap_ns as f64 / 1e6
            ));
        }
        out
    }
}

/// The simulator's run of `scenario` (read from `file`, against which its tenants' policy
/// paths resolve) under `policy`: a built-in, or `upsched` for the mechanism with the
/// scenario's `[[tenant]]`s, as `upsched sim` runs it.
pub fn simulate(scenario: &Scenario, file: &str, policy: &str) -> Result<RunReport, String> {
    let cache = tenants::PolicyCache::new(ExecMode::default());
    let sched = tenants::scheduler_from(policy, scenario, file, &cache)?;
    let outcome = engine::run(scenario, sched, RunOptions::default()).map_err(|e| e.to_string())?;
    Ok(report::run_report(&outcome, scenario))
}

fn share(ns: u64, duration_ns: u64) -> f64 {
    if duration_ns == 0 {
        0.0
    } else {
        ns as f64 / duration_ns as f64
    }
}

/// When the simulator's instance finished (its start plus its turnaround), if it did.
fn sim_finish(task: &TaskReport, start: u64) -> Option<u64> {
    (task.exited == 1).then_some(start + task.turnaround.max_ns)
}

/// Compares the real run of `scenario` with the simulator's run `sim` of it. Fails when the
/// two do not describe the same tasks on the same number of CPUs.
pub fn compare(
    real: &RealReport,
    sim: &RunReport,
    scenario: &Scenario,
    bounds: &Bounds,
) -> Result<Comparison, String> {
    let sim_cpus = scenario.machine.nr_cpus();
    let starts = |task: &TaskReport| {
        scenario
            .tasks
            .iter()
            .find(|t| t.name == task.task)
            .map_or(0, |t| t.start)
    };
    if sim_cpus != real.cpus {
        return Err(format!(
            "the simulator's machine has {sim_cpus} CPUs, the real run {}",
            real.cpus
        ));
    }
    let mut pairs: Vec<(&RealTask, &TaskReport)> = Vec::new();
    for task in &real.tasks {
        let row = sim
            .tasks
            .iter()
            .find(|t| t.name == task.name)
            .ok_or_else(|| format!("the simulator has no task {}", task.name))?;
        pairs.push((task, row));
    }
    let mut rows = Vec::new();
    for (real_task, sim_task) in &pairs {
        let real_share = share(real_task.cpu_ns, real.duration_ns);
        let sim_share = share(sim_task.cpu_ns, sim.duration_ns);
        rows.push(Row {
            subject: real_task.name.clone(),
            metric: "CPU share",
            real: real_share,
            sim: sim_share,
            error: real_share - sim_share,
            bound: Some(bounds.share),
        });
        // The simulator's waits summed: the kernel counts a switch-in for every wait
        // (`pcount`), the simulator a sample only for a wait between two runs, so the total is
        // the comparable figure and the mean is shown beside it, unfenced.
        let sim_wait_ns = sim_task.wait.mean_ns * sim_task.wait.count as f64;
        let real_wait_share = share(real_task.wait_ns, real.duration_ns);
        let sim_wait_share = sim_wait_ns / sim.duration_ns.max(1) as f64;
        rows.push(Row {
            subject: real_task.name.clone(),
            metric: "wait share",
            real: real_wait_share,
            sim: sim_wait_share,
            error: real_wait_share - sim_wait_share,
            bound: Some(bounds.wait_share),
        });
        if real_task.switch_ins > 0 && sim_task.wait.count > 0 {
            let real_wait = real_task.wait_ns as f64 / real_task.switch_ins as f64 / 1e6;
            let sim_wait = sim_task.wait.mean_ns / 1e6;
            rows.push(Row {
                subject: real_task.name.clone(),
                metric: "mean wait (ms)",
                real: real_wait,
                sim: sim_wait,
                error: real_wait - sim_wait,
                bound: None,
            });
        }
        let start = starts(sim_task);
        if let (Some(real_end), Some(sim_end)) = (real_task.finish_ns, sim_finish(sim_task, start))
            && sim_end > 0
        {
            rows.push(Row {
                subject: real_task.name.clone(),
                metric: "finish (s)",
                real: real_end as f64 / 1e9,
                sim: sim_end as f64 / 1e9,
                error: (real_end as f64 - sim_end as f64) / sim_end as f64,
                bound: Some(bounds.finish),
            });
        }
    }
    let mut groups: Vec<&str> = real.tasks.iter().map(|t| t.cgroup.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.len() > 1 {
        for group in groups {
            let (real_ns, sim_ns) = pairs
                .iter()
                .filter(|(r, _)| r.cgroup == group)
                .fold((0, 0), |(a, b), (r, s)| (a + r.cpu_ns, b + s.cpu_ns));
            let (real_share, sim_share) = (
                share(real_ns, real.duration_ns),
                share(sim_ns, sim.duration_ns),
            );
            rows.push(Row {
                subject: group.to_string(),
                metric: "CPU share",
                real: real_share,
                sim: sim_share,
                error: real_share - sim_share,
                bound: Some(bounds.share),
            });
        }
    }
    let mut order = Vec::new();
    let min_gap = (bounds.order_gap * sim.duration_ns as f64) as u64;
    for (a_real, a_sim) in &pairs {
        for (b_real, b_sim) in &pairs {
            let (Some(a_end), Some(b_end)) = (
                sim_finish(a_sim, starts(a_sim)),
                sim_finish(b_sim, starts(b_sim)),
            ) else {
                continue;
            };
            if b_end > a_end && b_end - a_end >= min_gap {
                let holds = match (a_real.finish_ns, b_real.finish_ns) {
                    (Some(a), Some(b)) => a < b,
                    (Some(_), None) => true,
                    _ => false,
                };
                order.push(OrderFact {
                    first: a_real.name.clone(),
                    second: b_real.name.clone(),
                    sim_gap_ns: b_end - a_end,
                    holds,
                });
            }
        }
    }
    Ok(Comparison {
        scenario: real.scenario.clone(),
        policy: sim.policy.clone(),
        rows,
        order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
duration = "2s"
[machine]
cpus = 1
costs = { preset = "zero" }
[[task]]
name = "short"
cgroup = "/a"
program = [{ run = "100ms" }]
[[task]]
name = "long"
cgroup = "/b"
program = [{ run = "300ms" }]
"#;

    fn task(name: &str, cgroup: &str, cpu_ms: u64, wait_ms: u64, finish_ms: u64) -> RealTask {
        RealTask {
            name: name.into(),
            task: name.into(),
            cgroup: cgroup.into(),
            nice: 0,
            cpu_ns: cpu_ms * 1_000_000,
            wait_ns: wait_ms * 1_000_000,
            switch_ins: 1,
            finished: true,
            finish_ns: Some(finish_ms * 1_000_000),
        }
    }

    fn comparison(real: &RealReport) -> Result<Comparison, String> {
        let scenario = upsched_sim::parse_scenario(SCENARIO, "t.toml").unwrap();
        let sim = simulate(&scenario, "t.toml", "fifo").unwrap();
        compare(real, &sim, &scenario, Bounds::of(&scenario))
    }

    #[test]
    fn compares_shares_waits_finishes_and_order() {
        // fifo on one CPU: short runs 0-100 ms, long 100-400 ms.
        let real = RealReport {
            scenario: "t".into(),
            cpus: 1,
            duration_ns: 400_000_000,
            tasks: vec![
                task("short", "/a", 100, 0, 110),
                task("long", "/b", 300, 105, 400),
            ],
        };
        let c = comparison(&real).unwrap();
        let row = |subject: &str, metric: &str| {
            c.rows
                .iter()
                .find(|r| r.subject == subject && r.metric == metric)
                .unwrap_or_else(|| panic!("{subject} {metric}: {c:?}"))
                .clone()
        };
        assert!((row("short", "CPU share").error).abs() < 1e-9);
        assert!((row("/b", "CPU share").sim - 0.75).abs() < 1e-9);
        assert!((row("short", "finish (s)").error - 0.1).abs() < 1e-9);
        assert!((row("long", "mean wait (ms)").error - 5.0).abs() < 1e-6);
        assert!((row("long", "wait share").error - 0.0125).abs() < 1e-6);
        assert_eq!(c.order.len(), 1);
        assert!(c.order[0].holds && c.order[0].first == "short");
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert!(
            c.table()
                .contains("| short before long | finish order | yes |")
        );

        let mut late = real.clone();
        late.tasks[0].finish_ns = Some(450_000_000);
        late.tasks[0].cpu_ns = 300_000_000;
        let violations = comparison(&late).unwrap().violations();
        assert!(violations.iter().any(|v| v.starts_with("short CPU share")));
        assert!(violations.iter().any(|v| v.contains("not in the real run")));

        let mut other = real.clone();
        other.cpus = 2;
        assert!(comparison(&other).unwrap_err().contains("1 CPUs"));
        other.cpus = 1;
        other.tasks[0].name = "nope".into();
        assert!(comparison(&other).unwrap_err().contains("no task nope"));
    }

    #[test]
    fn compute_only_workloads_get_the_steady_bounds_and_the_others_the_wider_ones() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fidelity");
        let bounds = |file: &str| {
            let path = format!("{dir}/{file}");
            let text = std::fs::read_to_string(&path).unwrap();
            *Bounds::of(&upsched_sim::parse_scenario(&text, &path).unwrap())
        };
        assert_eq!(bounds("hogs.toml"), STEADY_BOUNDS);
        assert_eq!(bounds("tenants.toml"), STEADY_BOUNDS);
        for file in ["sleepers.toml", "pingpong.toml", "fork.toml"] {
            assert_eq!(bounds(file), SYSCALL_BOUNDS, "{file}");
        }
    }
}
